"""An instant MCP client: ``python -m bench._instant_client <socket> [<answer characters>]``.

It starts the real mcptb-server the way an MCP client does - ``python -m mcp_server --socket <socket>
--concurrency 64`` with its stdin and stdout as pipes, newline-delimited JSON-RPC over them - and is
the cheapest client that makes it serve by background sampling: the 2025 handshake (``initialize``
with protocol version 2025-11-25 and capabilities ``{"sampling": {}}``, then
``notifications/initialized``), then every ``sampling/createMessage`` answered at once with
:data:`~bench._payload.ANSWER` (a ``CreateMessageResult``: role, text content, model, stop reason), or
with an answer length, that many characters of it repeated (the storm's large answers).
One thread, blocking reads of the pipe and one write for what one read brought, no SDK, no event loop: so what the
whole-path cell measures is the relay and mcptb-server, not this client. Any other request gets a
"method not found" error; notifications are ignored (a cancellation comes after the answer left).

Prints ``ready <pid of mcptb-server>`` on stdout once the handshake is done (the relay's ``/health``
then shows when it holds the worker's slots). On SIGTERM, SIGINT or the end of mcptb-server's output
it closes mcptb-server's stdin (an MCP server exits at the end of its input), waits a second, then
terminates it (and kills it a second later), so no mcptb-server outlives this client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from ._payload import ANSWER, MODEL

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 64
PROTOCOL_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "bench-instant-client", "version": "1"}


def result_tail(text: str) -> bytes:
    """The answer to every sampling request, after its id: b'{"jsonrpc":"2.0","id":' + id + this."""
    result = {"role": "assistant", "content": {"type": "text", "text": text}, "model": MODEL, "stopReason": "endTurn"}
    return b',"result":' + json.dumps(result, separators=(",", ":")).encode() + b"}\n"


_RESULT_TAIL = result_tail(ANSWER)


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def reply(message: dict[str, Any], tail: bytes = _RESULT_TAIL) -> bytes:
    """What to send back for one message from mcptb-server (nothing for a notification or a response)."""
    method, request_id = message.get("method"), message.get("id")
    if method is None or request_id is None:
        return b""
    if method == "sampling/createMessage":
        return b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + tail
    if method == "ping":
        return _line({"jsonrpc": "2.0", "id": request_id, "result": {}})
    error = {"code": -32601, "message": f"bench-instant-client does not implement {method}"}
    return _line({"jsonrpc": "2.0", "id": request_id, "error": error})


def batches(fd: int) -> Iterator[list[dict[str, Any]]]:
    """The JSON-RPC messages read from ``fd`` (one per line), as many at a time as one read brought,
    until the end of its input."""
    pending = b""
    while data := os.read(fd, 1 << 16):
        *lines, pending = (pending + data).split(b"\n")
        yield [json.loads(line) for line in lines if line.strip()]


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(server: subprocess.Popen[bytes], tail: bytes = _RESULT_TAIL) -> int:
    assert server.stdin is not None and server.stdout is not None
    pipe = server.stdin

    def send(data: bytes) -> None:
        if data:
            pipe.write(data)
            pipe.flush()

    initialize = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {"sampling": {}}, "clientInfo": CLIENT_INFO}
    send(_line({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize}))
    stream = batches(server.stdout.fileno())
    initialized = False
    while not initialized:
        batch = next(stream, None)
        if batch is None:
            break
        out = bytearray()
        for message in batch:
            if message.get("id") == 0 and "method" not in message:
                if message.get("result", {}).get("protocolVersion") != PROTOCOL_VERSION:
                    print(f"bench-instant-client: initialize answered {message}", file=sys.stderr, flush=True)
                    return 1
                out += _line({"jsonrpc": "2.0", "method": "notifications/initialized"})
                initialized = True
            else:
                out += reply(message, tail)
        send(bytes(out))
    if initialized:
        print(f"ready {server.pid}", flush=True)
        for batch in stream:  # one write for all the answers one read brought
            send(b"".join(reply(message, tail) for message in batch))
    print("bench-instant-client: mcptb-server closed its output", file=sys.stderr, flush=True)
    return 1


def stop(server: subprocess.Popen[bytes]) -> None:
    """Close mcptb-server's input (its signal to exit), then terminate it, then kill it."""
    if server.stdin is not None:
        try:
            server.stdin.close()
        except OSError:
            pass  # a broken pipe: it has gone already
    for step in (None, server.terminate, server.kill):
        if step is not None:
            step()
        try:
            server.wait(1.0)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_signal)
    command = [sys.executable, "-m", "mcp_server", "--socket", sys.argv[1], "--concurrency", str(CONCURRENCY)]
    server = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        chars = int(sys.argv[2]) if len(sys.argv) > 2 else len(ANSWER)
        return serve(server, result_tail((ANSWER * (chars // len(ANSWER) + 1))[:chars]))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        print("bench-instant-client: mcptb-server closed its input", file=sys.stderr, flush=True)
        return 1
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
