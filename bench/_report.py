"""The printed report: plain-text tables (first column left-aligned, the others right-aligned, two
spaces apart) for each measurement, from the numbers :mod:`bench.__main__` collected."""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass

from ._load import LoadResult
from ._payload import request_body
from ._wire import Wire


@dataclass(frozen=True)
class Cell:
    stream: bool
    concurrency: int
    relay: LoadResult
    bare: LoadResult

    @property
    def mode(self) -> str:
        return "stream" if self.stream else "non-stream"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join([title, line(header), *(line(row) for row in rows)])


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def ratio(a: float, b: float) -> str:
    return "-" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}x"


def setup() -> str:
    return "\n".join(
        [
            "relay: python -m relay --port 0 --socket <tmp>/relay.sock",
            "       (default settings: asyncio backend, info-level access log, stderr to a file)",
            "       answered by bench._worker over the Unix socket (start + text + end, at once)",
            "bare:  python -m bench._bare: h11 + anyio on asyncio, the same bodies in-process, no worker",
            f"request: POST /v1/chat/completions {request_body(False).decode()}",
            '         or the same with "stream": true; every answer is the same 1,000 characters',
        ]
    )


def starts(seconds: dict[str, list[float]]) -> str:
    def pick(values: list[float], how: str) -> float:
        return 1000 * (min(values) if how == "min" else statistics.median(values))

    rows = [[name, f"{pick(v, 'min'):.0f}", f"{pick(v, 'median'):.0f}"] for name, v in seconds.items()]
    relay, bare = seconds["relay"], seconds["bare"]
    rows.append(["relay/bare", *(ratio(pick(relay, how), pick(bare, how)) for how in ("min", "median"))])
    title = f"Start to listening (ms from spawn to the banner line on stdout, {len(relay)} starts each)"
    return table(title, ["", "min", "median"], rows)


def memory(after_start: dict[str, float], after_load: dict[str, float]) -> str:
    rows = [[name, f"{after_start[name]:.1f}", f"{after_load[name]:.1f}"] for name in after_start]
    title = "Memory (VmRSS in MiB: right after the banner, and after all load and wire probes)"
    return table(title, ["", "after start", "after load"], rows)


def _load_rows(cells: list[Cell], count_bare_errors: bool) -> list[list[str]]:
    rows = []
    for cell in cells:
        relay, bare = cell.relay, cell.bare
        timed = f"{relay['requests']}" + ("" if relay["requests"] == bare["requests"] else f"/{bare['requests']}")
        errors = relay["errors"] + (bare["errors"] if count_bare_errors else 0)
        rows.append([
            cell.mode, str(cell.concurrency),
            f"{relay['rps']:.0f}", f"{bare['rps']:.0f}", ratio(relay["rps"], bare["rps"]),
            ms(relay["p50_ms"]), ms(bare["p50_ms"]), ratio(relay["p50_ms"], bare["p50_ms"]),
            ms(relay["p99_ms"]), ms(bare["p99_ms"]),
            timed, str(errors),
        ])  # fmt: skip
    return rows


def load(cells: list[Cell], requests: int, max_seconds: float) -> str:
    header = ["mode", "conc", "relay req/s", "bare req/s", "ratio", "relay p50", "bare p50", "ratio",
              "relay p99", "bare p99", "timed", "errors"]  # fmt: skip
    title = (
        "Load (conc = callers, one keep-alive connection each; p50/p99 = ms until the whole body is read;\n"
        f"  per cell: warm-up of max(100, 4 x conc) requests, then {requests} timed requests "
        f"or {max_seconds:g} s,\n"
        "  whichever ends first; timed = requests answered in that phase; ratio = relay/bare)"
    )
    return table(title, header, _load_rows(cells, count_bare_errors=True))


def whole_path(cells: list[Cell]) -> str:
    """The relay answered by the real mcptb-server process and an instant MCP client (the cells' ``relay``
    slot), beside the bare server's figures of the Load table (their ``bare`` slot)."""
    header = ["mode", "conc", "path req/s", "bare req/s", "ratio", "path p50", "bare p50", "ratio",
              "path p99", "bare p99", "timed", "errors"]  # fmt: skip
    title = (
        "Whole path (relay -> Unix socket -> the real mcptb-server process, python -m mcp_server --socket\n"
        "  <tmp>/relay.sock --concurrency 64, default settings -> MCP over its stdin/stdout -> bench._instant_client,\n"
        "  which started it as an MCP client does (pipes, 2025 handshake, declares sampling) and answers every\n"
        "  sampling/createMessage at once with the same 1,000 characters; the same load as the Load table;\n"
        "  bare = the bare server's figures from the Load table; ratio = path/bare; errors = path's)"
    )
    return table(title, header, _load_rows(cells, count_bare_errors=False))


def cpu(stand_in: list[Cell], whole: list[Cell]) -> str:
    """CPU milliseconds per timed request of each process, from the cells' ``cpu_seconds``."""

    def per_request(result: LoadResult, name: str) -> float:
        seconds = result["cpu_seconds"].get(name)
        return math.nan if seconds is None or not result["requests"] else 1000 * seconds / result["requests"]

    header = ["cells, mode", "conc", "relay", "worker", "client", "path", "bare", "relay/bare", "path/bare"]
    rows = []
    for label, cells in (("stand-in", stand_in), ("whole path", whole)):
        for cell in cells:
            relay, worker, client = (per_request(cell.relay, name) for name in ("relay", "worker", "client"))
            path = relay + worker + (0.0 if math.isnan(client) else client)
            bare = per_request(cell.bare, "bare")
            rows.append([
                f"{label}, {cell.mode}", str(cell.concurrency),
                ms(relay), ms(worker), ms(client), ms(path), ms(bare), ratio(relay, bare), ratio(path, bare),
            ])  # fmt: skip
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    title = (
        "CPU per request (ms of CPU time, user + system, of each process over a cell's timed phase - its\n"
        "  /proc/<pid>/stat read right before and right after - divided by the requests timed; clock tick\n"
        f"  {tick:g} ms; stand-in = the Load cells, worker = bench._worker; whole path = the Whole path cells,\n"
        "  worker = mcptb-server, client = bench._instant_client; path = relay + worker + client;\n"
        "  bare = the bare server in the Load cell of the same mode and conc)"
    )
    return table(title, header, rows)


def wire(relay: tuple[Wire, Wire], bare: tuple[Wire, Wire]) -> str:
    (rs, rn), (bs, bn) = relay, bare
    rows: list[tuple[str, int, int]] = [
        ("stream: response bytes (head + chunked body)", rs.response_bytes, bs.response_bytes),
        ("stream: head bytes", rs.head_bytes, bs.head_bytes),
        ("stream: body bytes (de-chunked)", rs.body_bytes, bs.body_bytes),
        ("stream: SSE data: frames (incl. [DONE])", rs.data_frames, bs.data_frames),
        ("stream:   of which carry answer text", rs.text_frames, bs.text_frames),
        ("stream: SSE comment frames", rs.comment_frames, bs.comment_frames),
        ("non-stream: response bytes (head + body)", rn.response_bytes, bn.response_bytes),
        ("non-stream: head bytes", rn.head_bytes, bn.head_bytes),
        ("non-stream: body bytes", rn.body_bytes, bn.body_bytes),
    ]
    title = "On the wire (one request each, 1,000-character answer)"
    return table(title, ["", "relay", "bare"], [[name, str(r), str(b)] for name, r, b in rows])


def structured(cells: list[Cell], wire: Wire) -> str:
    """Plain vs structured requests through mcptb-server (the cells' ``relay`` and ``bare`` slots)."""
    header = ["mode", "conc", "plain req/s", "structured req/s", "ratio", "plain p50", "structured p50", "ratio",
              "timed", "errors"]  # fmt: skip
    rows = [
        [cell.mode, str(cell.concurrency),
         f"{cell.relay['rps']:.0f}", f"{cell.bare['rps']:.0f}", ratio(cell.bare["rps"], cell.relay["rps"]),
         ms(cell.relay["p50_ms"]), ms(cell.bare["p50_ms"]), ratio(cell.bare["p50_ms"], cell.relay["p50_ms"]),
         f"{cell.relay['requests']}/{cell.bare['requests']}", str(cell.relay["errors"] + cell.bare["errors"])]
        for cell in cells
    ]  # fmt: skip
    title = (
        "Structured output (relay + the real mcptb-server, instant model; structured = response_format\n"
        "  json_schema, checked by mcptb-server before release; ratio = structured/plain)"
    )
    frames = (
        f"one structured stream: {wire.data_frames} SSE data: frames (incl. [DONE]), {wire.text_frames} with "
        f"answer text, {wire.body_bytes} body bytes"
    )
    return table(title, header, rows) + "\n" + frames


def agent_context(handed: dict[str, tuple[int, int]]) -> str:
    """Characters next_request hands a serving agent: rendered in full vs with references."""
    header = ["session", "full chars", "handed chars", "fewer"]
    rows = [[name, f"{full:,}", f"{lean:,}", ratio(full, lean)] for name, (full, lean) in handed.items()]
    title = (
        "Agent context (next_request's text over one agent's session, through mcptb-server's core;\n"
        "  full = every request rendered whole, handed = with references to what the agent was shown)"
    )
    return table(title, header, rows)
