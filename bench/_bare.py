"""The limit to compare with: ``python -m bench._bare``, a bare h11 + anyio (asyncio) HTTP server.

It answers ``POST /v1/chat/completions`` in-process with the same :data:`~bench._payload.ANSWER`,
in the relay's JSON and SSE shapes, with no worker and no socket hop. It parses the JSON body (to
read ``stream``) but validates nothing, routes nothing and logs nothing. A stream is written in the
same pieces the relay writes (head, role chunk, text chunk, finish chunk + ``[DONE]``, end of
chunked body), so the two differ by the relay's work and the hop, not by the number of sends.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

import anyio
import anyio.abc
import h11

from ._payload import ANSWER

# The relay estimates 4 characters per token: "hi" -> 1, the 1,000-character answer -> 250.
_USAGE = {"prompt_tokens": 1, "completion_tokens": 250, "total_tokens": 251}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def completion(model: str) -> bytes:
    message = {"role": "assistant", "content": ANSWER, "refusal": None}
    return _dumps(
        {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": _USAGE,
        }
    )


def stream_pieces(model: str) -> list[bytes]:
    base = {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + _dumps({**base, "choices": [choice]}) + b"\n\n"

    first = chunk({"role": "assistant", "content": ""})
    return [first, chunk({"content": ANSWER}), chunk({}, "stop") + b"data: [DONE]\n\n"]


async def _next_event(conn: h11.Connection, stream: anyio.abc.ByteStream) -> Any:
    while (event := conn.next_event()) is h11.NEED_DATA:
        try:
            conn.receive_data(await stream.receive(65536))
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            conn.receive_data(b"")
    return event


async def _respond(conn: h11.Connection, stream: anyio.abc.ByteStream, body: bytes) -> None:
    request = json.loads(body)
    model = request.get("model") or "unknown"
    if request.get("stream"):
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        await stream.send(conn.send(h11.Response(status_code=200, headers=headers)))
        for piece in stream_pieces(model):
            await stream.send(conn.send(h11.Data(data=piece)) or b"")
    else:
        data = completion(model)
        headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
        await stream.send(conn.send(h11.Response(status_code=200, headers=headers)))
        await stream.send(conn.send(h11.Data(data=data)) or b"")
    await stream.send(conn.send(h11.EndOfMessage()) or b"")


async def handle(stream: anyio.abc.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        try:
            while isinstance(await _next_event(conn, stream), h11.Request):
                body = bytearray()
                while isinstance(event := await _next_event(conn, stream), h11.Data):
                    body += event.data
                if not isinstance(event, h11.EndOfMessage):
                    return
                await _respond(conn, stream, bytes(body))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, anyio.BrokenResourceError, OSError):
            return  # a broken peer ends its connection, never the server


async def main() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    print(f"bench-bare listening on http://127.0.0.1:{port}", flush=True)
    await listener.serve(handle)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
