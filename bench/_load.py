"""The load generator: ``python -m bench._load URL --concurrency C --requests N ...``, one process per
measurement so it never shares an event loop (or a GIL) with the server it measures.

Each caller owns one keep-alive connection (raw non-blocking socket, h11, asyncio) and sends its
next request as soon as the previous response has fully arrived. First ``--warmup`` requests are
sent and thrown away, then ``--requests`` are timed (or as many as fit in ``--max-seconds``).
Latency of one request = from just before its bytes are sent to the end of its response body (for a
stream: the chunked body's end, after ``data: [DONE]``). A response counts as an error unless it is a
200 carrying the whole answer (and, for a stream, ending with ``data: [DONE]``).
``--cpu NAME=PID`` (repeatable): the CPU time (user + system, from ``/proc/PID/stat``) each of these
processes used during the timed phase, read right before its first request and right after its last.
Prints one JSON object: requests, errors, seconds, rps, p50_ms, p99_ms, first_error, cpu_seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TypedDict
from urllib.parse import urlsplit

from ._client import ClientConnection
from ._payload import ANSWER, request_body

_ANSWER = ANSWER.encode()
_DONE = b"data: [DONE]\n\n"


class LoadResult(TypedDict):
    requests: int
    """Timed requests answered correctly (the latency samples)."""
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    first_error: str | None
    cpu_seconds: dict[str, float]
    """CPU time (user + system) of each ``--cpu`` process over the timed phase, by its name."""


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``utime`` and ``stime`` of ``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of proc(5), from field 3 on


@dataclass
class Phase:
    """Requests still to send in one phase, shared by its callers (one event loop: no lock needed)."""

    left: int
    deadline: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def take(self) -> bool:
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


class Caller:
    def __init__(self, host: str, port: int, stream: bool, structured: bool) -> None:
        self.address = (host, port)
        self.client = ClientConnection(f"{host}:{port}")
        self.body = request_body(stream, structured)
        self.stream = stream
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)

    async def connect(self) -> None:
        await asyncio.get_running_loop().sock_connect(self.sock, self.address)

    async def run(self, phase: Phase) -> None:
        loop = asyncio.get_running_loop()
        while phase.take():
            started = time.perf_counter()
            try:
                await loop.sock_sendall(self.sock, self.client.request(self.body))
                while (response := self.client.feed(await loop.sock_recv(self.sock, 65536))) is None:
                    pass
            except (OSError, ConnectionError) as exc:
                phase.errors.append(f"connection failed: {exc!r}")
                return  # this caller's connection is gone
            elapsed = time.perf_counter() - started
            problem = self._check(response.status, response.body)
            if problem:
                phase.errors.append(problem)
            else:
                phase.latencies.append(elapsed)

    def _check(self, status: int, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}: {body[:300]!r}"
        if _ANSWER not in body or (self.stream and not body.endswith(_DONE)):
            return f"incomplete answer: {body[-300:]!r}"
        return None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


async def measure(
    url: str,
    concurrency: int,
    requests: int,
    warmup: int,
    max_seconds: float,
    stream: bool,
    structured: bool,
    cpu_pids: dict[str, int],
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    callers = [Caller(host, port, stream, structured) for _ in range(concurrency)]
    try:
        await asyncio.gather(*(c.connect() for c in callers))
        warm = Phase(warmup, time.perf_counter() + max_seconds)
        await asyncio.gather(*(c.run(warm) for c in callers))
        cpu_before = {name: cpu_seconds(pid) for name, pid in cpu_pids.items()}
        timed = Phase(requests, time.perf_counter() + max_seconds)
        started = time.perf_counter()
        await asyncio.gather(*(c.run(timed) for c in callers))
        seconds = time.perf_counter() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in cpu_pids.items()}
    finally:
        for c in callers:
            c.sock.close()
    latencies = sorted(timed.latencies)
    errors = warm.errors + timed.errors
    return LoadResult(
        requests=len(latencies),
        errors=len(errors),
        seconds=seconds,
        rps=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000 if latencies else math.nan,
        p99_ms=percentile(latencies, 0.99) * 1000 if latencies else math.nan,
        first_error=errors[0] if errors else None,
        cpu_seconds=cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._load")
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--structured", action="store_true", help="ask for the answer as JSON with a schema")
    parser.add_argument(
        "--cpu", action="append", default=[], metavar="NAME=PID", help="a process whose CPU time to report"
    )
    args = parser.parse_args()
    cpu_pids = {name: int(pid) for name, _, pid in (item.partition("=") for item in args.cpu)}
    result = asyncio.run(
        measure(
            args.url,
            args.concurrency,
            args.requests,
            args.warmup,
            args.max_seconds,
            args.stream,
            args.structured,
            cpu_pids,
        )
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
