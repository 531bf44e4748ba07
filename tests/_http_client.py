"""A tiny HTTP/1.1 client on h11 + anyio for wire-level checks: it returns the exact bytes the relay
sent (status, headers, de-chunked body, and each received data piece), works on both backends, and
can hang up in the middle of a response."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import h11

from _sse import split


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    pieces: list[bytes] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def sse_events(self) -> list[str]:
        """The SSE events (text between blank lines), in order."""
        return split(self.body)


async def request(
    url: str,
    method: str = "GET",
    path: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    raw_head: bytes | None = None,
    stop_after: bytes | None = None,
    head_received: anyio.Event | None = None,
) -> Response:
    """Send one request; with ``stop_after``, hang up as soon as the body contains those bytes;
    ``head_received`` is set when the response's status line and headers are in."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "") + path or "/"
    conn = h11.Connection(h11.CLIENT)
    async with await anyio.connect_tcp(host, port) as stream:
        if raw_head is not None:
            await stream.send(raw_head + body)
        else:
            head = {
                "host": f"{host}:{port}",
                "content-length": str(len(body)),
                "content-type": "application/json",
            }
            head.update(headers or {})
            await stream.send(conn.send(h11.Request(method=method, target=target, headers=list(head.items()))))
            await stream.send(conn.send(h11.Data(data=body)) or b"")
            await stream.send(conn.send(h11.EndOfMessage()))
        status, response_headers, received, pieces = 0, {}, bytearray(), []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                if head_received is not None:
                    head_received.set()
            elif isinstance(event, h11.Data):
                received += event.data
                pieces.append(bytes(event.data))
                if stop_after is not None and stop_after in received:
                    break
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return Response(status, response_headers, bytes(received), pieces)


async def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    return (await request(url, headers=headers)).json()


async def post(
    url: str,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    stop_after: bytes | None = None,
    head_received: anyio.Event | None = None,
) -> Response:
    return await request(url, "POST", path, body, headers, stop_after=stop_after, head_received=head_received)
