"""Bytes and frames on the wire for one request: a blocking h11 client that keeps the raw bytes.

``response bytes`` = everything the server sent for the response (status line, headers, body with
its chunked framing); ``body bytes`` = the body after de-chunking; an SSE frame is one event (text
up to a blank line) whose first line starts with ``data:``.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._client import ClientConnection
from ._payload import request_body


@dataclass(frozen=True)
class Wire:
    response_bytes: int
    head_bytes: int
    body_bytes: int
    data_frames: int
    text_frames: int
    """``data:`` frames whose delta carries some answer text."""
    comment_frames: int


def probe(url: str, stream: bool, structured: bool = False) -> Wire:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    client = ClientConnection(f"{host}:{port}")
    raw = bytearray()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(client.request(request_body(stream, structured)))
        while True:
            data = sock.recv(65536)
            raw += data
            response = client.feed(data)
            if response is not None:
                break
    if response.status != 200:
        raise RuntimeError(f"wire probe of {url}: status {response.status}: {response.body[:300]!r}")
    events = [e for e in response.body.split(b"\n\n") if e] if stream else []
    data_frames = [e[len(b"data:") :].strip() for e in events if e.startswith(b"data:")]
    return Wire(
        response_bytes=len(raw),
        head_bytes=raw.index(b"\r\n\r\n") + 4,
        body_bytes=len(response.body),
        data_frames=len(data_frames),
        text_frames=sum(1 for d in data_frames if _has_text(d)),
        comment_frames=sum(1 for e in events if e.startswith(b":")),
    )


def _has_text(data: bytes) -> bool:
    if data == b"[DONE]":
        return False
    choices = json.loads(data).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))
