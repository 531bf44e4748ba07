"""``python -m bench`` (``just bench``): the relay against a bare h11 server, side by side, in one run.

Measured, in this order, on this machine:
1. start to listening: spawn -> first stdout line (the banner), ``--starts`` times each; min, median;
   the project's modules are byte-compiled first, as an install does (with PYTHONDONTWRITEBYTECODE
   set and no caches, every start would compile them from source: about 50 ms more for the relay);
2. VmRSS of the relay and the bare server right after their banner, and again after all load;
3. load: ``POST /v1/chat/completions`` at concurrency 1, 8 and 64, non-stream and stream, relay then
   bare server for each cell, each run by a fresh load-generator process (``bench._load``). The relay
   is answered by the instant worker (``bench._worker``), so its numbers are the relay's own cost
   plus the Unix socket hop; the bare server (``bench._bare``) answers in-process;
4. bytes and frames on the wire for one request of each kind with the 1,000-character answer;
5. structured output: the instant worker is replaced by the real mcptb-server worker with an instant
   model (``bench._mcp_worker``), and plain requests are compared with requests asking for the answer
   as JSON with a schema (``response_format`` json_schema), which mcptb-server checks before releasing,
   at concurrency 1 and 8, plus the frames of one structured stream;
6. the whole path: the relay answered by the real mcptb-server process, which an instant MCP client
   (``bench._instant_client``) started over stdio as an MCP client does and answers by sampling at
   once; the same load cells as 3., beside the bare server's figures from 3.;
7. CPU per request: the CPU time (user + system) of the relay, its worker (the instant one in 3.,
   mcptb-server in 6.), the instant MCP client and the bare server over each timed phase of 3. and 6.,
   divided by the requests timed (read from /proc by the load generator);
8. agent context: the characters ``next_request`` hands a serving agent over a 10-request chat and
   10 Claude-Code-shaped requests, in full and with references (``bench._agent_context``).
Exits 1 (after printing everything) if any request failed. Child processes are always stopped.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import subprocess
import sys
import time

from . import _agent_context, _report
from ._load import LoadResult
from ._procs import ROOT, Children, Server, health, read_line, rss_mib, temporary_children
from ._wire import Wire, probe

CONCURRENCY = (1, 8, 64)
BARE = ["-m", "bench._bare"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Relay vs bare h11 server.")
    parser.add_argument("--starts", type=int, default=5, help="timed starts per server (default 5)")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per cell (default 2000)")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="time limit of a cell (default 5)")
    return parser.parse_args()


def machine_note() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {len(os.sched_getaffinity(0))} CPUs usable (nproc), {platform.system()} "
        f"{platform.release()} {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, load average {load} at start\n"
        "         (shared: relay, worker, bare server and load generator all run on these CPUs)"
    )


def progress(text: str) -> None:
    """One status line on stderr, rewritten in place on a terminal."""
    if sys.stderr.isatty():
        print(f"\r\033[K... {text}", end="", file=sys.stderr, flush=True)
    else:
        print(f"... {text}", file=sys.stderr, flush=True)


def relay_args(socket: str) -> list[str]:
    return ["-m", "relay", "--port", "0", "--socket", socket]


def time_starts(children: Children, name: str, runs: list[list[str]]) -> list[float]:
    seconds = []
    for args in runs:
        server = children.start_server(name, args)
        seconds.append(server.seconds_to_banner)
        children.stop(server.proc)
    return seconds


def run_load(
    server: Server,
    concurrency: int,
    stream: bool,
    args: argparse.Namespace,
    structured: bool = False,
    cpu: dict[str, int] | None = None,
) -> LoadResult:
    """One load-generator run; ``cpu``: the processes (name -> pid) whose CPU time over the timed phase
    to report in the result's ``cpu_seconds``."""
    command = [sys.executable, "-m", "bench._load", server.url, "--concurrency", str(concurrency),
               "--requests", str(args.requests), "--warmup", str(max(100, 4 * concurrency)),
               "--max-seconds", str(args.max_seconds)]  # fmt: skip
    if stream:
        command.append("--stream")
    if structured:
        command.append("--structured")
    for name, pid in (cpu or {}).items():
        command += ["--cpu", f"{name}={pid}"]
    done = subprocess.run(command, capture_output=True, check=False, timeout=2 * args.max_seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-2000:]}")
    result: LoadResult = json.loads(done.stdout)
    return result


def measure(children: Children, tmp: str, args: argparse.Namespace) -> int:
    progress("timing process starts")
    for package in ("relay", "shared_protocol", "mcp_server", "bench"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    fresh_sockets = [os.path.join(tmp, f"start-{i}.sock") for i in range(args.starts)]  # no stale one to clear
    starts = {
        "relay": time_starts(children, "relay", [relay_args(path) for path in fresh_sockets]),
        "bare": time_starts(children, "bare", [BARE] * args.starts),
    }
    socket = os.path.join(tmp, "relay.sock")
    servers = {
        "relay": children.start_server("relay", relay_args(socket)),
        "bare": children.start_server("bare", BARE),
    }
    rss_start = {name: rss_mib(s.proc.pid) for name, s in servers.items()}
    worker_log = os.path.join(tmp, "worker.log")
    with open(worker_log, "wb") as log:
        worker = children.spawn(["-m", "bench._worker", socket], log)
    read_line(worker, "bench._worker", worker_log)  # the relay has welcomed it

    cells = []
    relay_cpu = {"relay": servers["relay"].proc.pid, "worker": worker.pid}
    bare_cpu = {"bare": servers["bare"].proc.pid}
    for stream in (False, True):
        for concurrency in CONCURRENCY:
            progress(f"load: {'stream' if stream else 'non-stream'}, concurrency {concurrency}")
            relay = run_load(servers["relay"], concurrency, stream, args, cpu=relay_cpu)
            bare = run_load(servers["bare"], concurrency, stream, args, cpu=bare_cpu)
            cells.append(_report.Cell(stream, concurrency, relay, bare))
    progress("wire probes")
    wires = {name: (probe(s.url, stream=True), probe(s.url, stream=False)) for name, s in servers.items()}
    rss_end = {name: rss_mib(s.proc.pid) for name, s in servers.items()}
    children.stop(worker)
    structured = measure_structured(children, servers["relay"], socket, tmp, args)
    whole = measure_whole_path(children, servers["relay"], socket, tmp, args, cells)
    progress("done")
    if sys.stderr.isatty():
        print(file=sys.stderr)

    sections = [
        _report.setup(),
        _report.starts(starts),
        _report.memory(rss_start, rss_end),
        _report.load(cells, args.requests, args.max_seconds),
        _report.whole_path(whole),
        _report.cpu(cells, whole),
        _report.wire(wires["relay"], wires["bare"]),
        _report.structured(*structured),
        _report.agent_context(_agent_context.measure()),
    ]
    print("\n" + "\n\n".join(sections))
    checked = [(name, cell, result) for cell in [*cells, *structured[0]]
               for name, result in (("relay", cell.relay), ("bare", cell.bare))]  # fmt: skip
    checked += [("whole path", cell, cell.relay) for cell in whole]  # their bare results are the Load cells'
    failed = 0
    for name, cell, result in checked:
        if result["errors"]:
            failed += 1
            print(f"\nERRORS ({name}, {cell.mode}, concurrency {cell.concurrency}): {result['errors']} "
                  f"failed requests; the first: {result['first_error']}")  # fmt: skip
    return 1 if failed else 0


def measure_structured(
    children: Children, relay: Server, socket: str, tmp: str, args: argparse.Namespace
) -> tuple[list[_report.Cell], Wire]:
    """Plain (``relay``) vs structured (``bare`` slot) requests through the real mcptb-server."""
    progress("structured output through mcptb-server")
    log_path = os.path.join(tmp, "mcp-worker.log")
    with open(log_path, "wb") as log:
        worker = children.spawn(["-m", "bench._mcp_worker", socket], log)
    read_line(worker, "bench._mcp_worker", log_path)
    wait_for_slots(relay, worker.pid)
    cells = [
        _report.Cell(False, concurrency, run_load(relay, concurrency, False, args),
                     run_load(relay, concurrency, False, args, structured=True))
        for concurrency in (1, 8)
    ]  # fmt: skip
    wire = probe(relay.url, stream=True, structured=True)
    children.stop(worker)
    return cells, wire


def measure_whole_path(
    children: Children, relay: Server, socket: str, tmp: str, args: argparse.Namespace, stand_in: list[_report.Cell]
) -> list[_report.Cell]:
    """The load cells through relay + mcptb-server process + instant MCP client (``relay`` slot), each with
    the bare server's result of the same stand-in cell (``bare`` slot)."""
    progress("whole path: starting mcptb-server through an instant MCP client")
    log_path = os.path.join(tmp, "instant-client.log")
    with open(log_path, "wb") as log:
        client = children.spawn(["-m", "bench._instant_client", socket], log)
    server_pid = int(read_line(client, "bench._instant_client", log_path).split()[1])  # "ready <pid>"
    wait_for_slots(relay, server_pid)
    cpu = {"relay": relay.proc.pid, "worker": server_pid, "client": client.pid}
    bare = {(cell.stream, cell.concurrency): cell.bare for cell in stand_in}
    cells = []
    for stream in (False, True):
        for concurrency in CONCURRENCY:
            progress(f"whole path: {'stream' if stream else 'non-stream'}, concurrency {concurrency}")
            result = run_load(relay, concurrency, stream, args, cpu=cpu)
            cells.append(_report.Cell(stream, concurrency, result, bare[(stream, concurrency)]))
    children.stop(client)  # it ends its mcptb-server before it exits
    return cells


def wait_for_slots(relay: Server, pid: int, slots: int = 64) -> None:
    """Wait until the relay holds ``slots`` free slots of the worker whose process is ``pid``."""
    deadline = time.monotonic() + 30
    while not any(w["pid"] == pid and w["free_slots"] >= slots for w in health(relay.url)["workers"]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"mcptb-server (pid {pid}) did not grant its slots: {health(relay.url)}")
        time.sleep(0.05)


def main() -> int:
    args = parse_args()
    print("$ " + " ".join(["python -m bench", *sys.argv[1:]]))
    print(machine_note())
    with temporary_children("mcptb-bench-") as (children, tmp):
        return measure(children, tmp, args)  # the relay's usage ledger on, as by default


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", file=sys.stderr)
        sys.exit(130)
