"""``python -m bench.storm [--backend asyncio|trio]`` (``just storm``): does the relay give memory back?

Rounds of the traffic that used to pin large answers in the relay (issue 18), then the relay left
idle, with its resident memory (VmRSS) read at each step:

- the relay: ``--store-conversations 0`` (so nothing is kept on purpose), ``--send-timeout 2``;
- two real mcptb-server workers, each started by ``bench._instant_client`` with an answer of
  ``--answer-chars`` characters (default 2,000,000) to every request, at once;
- each round: ``--callers`` streamed ``/v1/responses`` callers that read 64 KiB and hang up; as many
  whole chat callers that hang up 50-100 ms after sending; 8 callers that never read a whole answer
  (their receive buffer is 4 KiB; each asks for four answers at once, more than the kernel's buffers
  hold) and are cut by the send deadline; 20 chat requests with hostile
  tool-call arguments (``"["`` x 50,000, a 5,000-digit number: each must be a 400); and a ``HEAD`` to
  every path (each must get a status line);
- after each round the relay is left idle for ``--idle`` seconds (default 5), and after the last for
  20 s more.

It prints VmRSS in MiB at start (banner, workers connected), after each round's idle time and at
the end, and exits 1 if the end is more than 10 MiB above the start (nothing is stored) or if any
check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from ._payload import MODEL, request_body
from ._procs import Children, Server, health, read_line, rss_mib, temporary_children

GIVE_BACK_MIB = 10.0
HOSTILE_ARGUMENTS = ["[" * 50_000, '{"n": ' + "9" * 5_000 + "}"]
HEAD_PATHS = [
    "/",
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/nope",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=100, help="callers of each kind per round (default 100)")
    parser.add_argument("--answer-chars", type=int, default=2_000_000)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle after each round (default 5)")
    return parser.parse_args()


def _request(path: str, body: bytes, method: str = "POST") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


async def _connect(
    address: tuple[str, int], rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address)
    return await asyncio.open_connection(sock=sock)


async def _read_then_leave(address: tuple[str, int], data: bytes, read_bytes: int) -> None:
    reader, writer = await _connect(address)
    writer.write(data)
    received = 0
    while received < read_bytes:
        chunk = await reader.read(65536)
        if not chunk:
            break
        received += len(chunk)
    writer.transport.abort()


async def _send_then_leave(address: tuple[str, int], data: bytes, after: float) -> None:
    _reader, writer = await _connect(address)
    writer.write(data)
    await asyncio.sleep(after)
    writer.transport.abort()


async def _never_read(address: tuple[str, int], data: bytes, cut: Callable[[], int], count: int) -> None:
    """Send, never read; hang up once the relay has logged ``count`` cuts (or after a minute)."""
    _reader, writer = await _connect(address, rcvbuf=4096)
    writer.write(data)
    for _ in range(600):  # the relay's log is a file: look every 0.1 s
        if cut() >= count:
            break
        await asyncio.sleep(0.1)
    writer.transport.abort()


async def _status(address: tuple[str, int], data: bytes) -> int:
    reader, writer = await _connect(address)
    writer.write(data)
    try:
        line = await asyncio.wait_for(reader.readline(), 30)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0
    finally:
        writer.transport.abort()


def _hostile_body(arguments: str) -> bytes:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ]
    return json.dumps({"model": MODEL, "messages": messages}).encode()


CUT = b"the caller took no answer bytes for"


async def storm_round(address: tuple[str, int], callers: int, relay_log: str) -> list[str]:
    """One round; the problems found (empty when every check held)."""

    def cuts() -> int:
        with open(relay_log, "rb") as log:
            return log.read().count(CUT)

    stream = _request("/v1/responses", json.dumps({"model": MODEL, "input": "hi", "stream": True}).encode())
    whole = _request("/v1/chat/completions", request_body(stream=False))
    tasks = [_read_then_leave(address, stream, 64 * 1024) for _ in range(callers)]
    tasks += [_send_then_leave(address, whole, random.uniform(0.05, 0.1)) for _ in range(callers)]
    # four answers pipelined on one connection: more than the kernel's socket buffers take (4 MiB here)
    expected = cuts() + 8
    tasks += [_never_read(address, whole * 4, cuts, expected) for _ in range(8)]
    await asyncio.gather(*tasks)
    problems = [] if cuts() >= expected else [f"{expected - cuts()} of 8 callers that never read were not cut"]
    statuses = await asyncio.gather(
        *(_status(address, _request("/v1/chat/completions", _hostile_body(a))) for a in HOSTILE_ARGUMENTS * 10)
    )
    if set(statuses) != {400}:
        problems.append(f"hostile tool-call arguments got {sorted(set(statuses))}, not 400")
    heads = await asyncio.gather(*(_status(address, _request(path, b"", "HEAD")) for path in HEAD_PATHS))
    if 0 in heads:
        problems.append(f"a HEAD got no status line: {dict(zip(HEAD_PATHS, heads, strict=True))}")
    return problems


def _wait_for_workers(relay: Server, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(health(relay.url)["workers"]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not connect: {health(relay.url)}")
        time.sleep(0.1)


def run(children: Children, tmp: str, args: argparse.Namespace) -> int:
    socket_path = os.path.join(tmp, "relay.sock")
    relay_args = ["-m", "relay", "--port", "0", "--socket", socket_path, "--backend", args.backend]
    relay = children.start_server("relay", [*relay_args, "--store-conversations", "0", "--send-timeout", "2"])
    relay_log = os.path.join(tmp, "relay-0.log")  # its stderr (bench._procs.Children names it)
    for n in range(2):
        log_path = os.path.join(tmp, f"client-{n}.log")
        with open(log_path, "wb") as log:
            client = children.spawn(["-m", "bench._instant_client", socket_path, str(args.answer_chars)], log)
        read_line(client, "bench._instant_client", log_path)
    _wait_for_workers(relay, 2)
    parts = urlsplit(relay.url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    start = rss_mib(relay.proc.pid)
    print(f"relay --backend {args.backend}: VmRSS at start {start:.1f} MiB (two workers connected)", flush=True)
    problems: list[str] = []
    for n in range(1, args.rounds + 1):
        began = time.monotonic()
        problems += asyncio.run(storm_round(address, args.callers, relay_log))
        busy = time.monotonic() - began
        time.sleep(args.idle)
        print(
            f"round {n}: {busy:.1f} s of traffic, then {args.idle:g} s idle: {rss_mib(relay.proc.pid):.1f} MiB",
            flush=True,
        )
    time.sleep(20)
    end = rss_mib(relay.proc.pid)
    print(f"after 20 s more idle: {end:.1f} MiB ({end - start:+.1f} MiB over the start)")
    if end - start > GIVE_BACK_MIB:
        problems.append(f"the idle relay holds {end - start:.1f} MiB over its start (at most {GIVE_BACK_MIB:g})")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


def main() -> int:
    args = parse_args()
    with temporary_children("mcptb-storm-") as (children, tmp):
        return run(children, tmp, args)


if __name__ == "__main__":
    sys.exit(main())
