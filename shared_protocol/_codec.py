"""Encoding and decoding of protocol lines, with no I/O (feed bytes in, get frames out).

A line is one UTF-8 JSON object followed by ``\\n``. A line longer than ``max_line_bytes`` is an error
for that line only: the decoder drops bytes until the next newline and reports one
:class:`LineTooLong`, so a bad peer costs bounded memory and the link survives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ._frames import RELAY_FRAMES, WORKER_FRAMES, Frame, RelayFrame, WorkerFrame
from ._wire import STRICT_JSON, Invalid, wire_json

MAX_LINE_BYTES = 48 * 1024 * 1024
"""Largest line either side sends or accepts: above the relay's default 32 MiB body limit plus the
growth of re-encoding (base64 images stay base64, so the neutral form is never much larger)."""

F = TypeVar("F")


class ProtocolError(Exception):
    """A line the other side sent that we cannot use. ``str()`` is fit for a log and for the peer: it
    says what is wrong and where, never what the line said. ``request_id``: the line was a ``request``
    whose ``id`` could be read, so the receiver can answer that request with an error instead of
    leaving its caller waiting."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class LineTooLong(ProtocolError):
    pass


class FrameTooLarge(Exception):
    """We were about to send a line over the limit (the caller should refuse the request instead)."""


def encode(frame: Frame, max_line_bytes: int = MAX_LINE_BYTES) -> bytes:
    line = wire_json(frame.to_wire()).encode() + b"\n"
    if len(line) > max_line_bytes:
        raise FrameTooLarge(f"frame of {len(line)} bytes exceeds the {max_line_bytes}-byte line limit")
    return line


class _Decoder(Generic[F]):
    """Splits a byte stream into lines and parses each into a frame (or a ProtocolError)."""

    def __init__(self, kinds: dict[str, Callable[[dict[str, Any]], F]], max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._kinds = kinds
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._scanned = 0
        """Bytes at the buffer's start known to hold no newline (a long line is searched once, not per feed)."""
        self._discarding = False

    def feed(self, data: bytes) -> Iterator[F | ProtocolError]:
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline < 0:
                self._scanned = len(self._buffer)
                if len(self._buffer) > self._max:
                    self._buffer.clear()
                    self._scanned = 0
                    if not self._discarding:
                        self._discarding = True
                        yield LineTooLong(f"line exceeds {self._max} bytes")
                return
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            self._scanned = 0
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > self._max:
                yield LineTooLong(f"line exceeds {self._max} bytes")
                continue
            if line.strip():
                yield self._parse(line)

    def _parse(self, line: bytes) -> F | ProtocolError:
        try:
            value = STRICT_JSON.decode(line.decode())
            if b"\\u" in line and _SURROGATE_ESCAPE.search(line):
                json.dumps(value, ensure_ascii=False).encode()  # raises on a lone surrogate
        except (ValueError, RecursionError) as exc:
            return ProtocolError(f"invalid frame (not JSON: {type(exc).__name__}; a line of {len(line)} bytes)")
        if type(value) is not dict:
            return ProtocolError(f"invalid frame (a frame must be a JSON object; a line of {len(line)} bytes)")
        kind = value.get("type")
        read = self._kinds.get(kind) if type(kind) is str else None
        try:
            if read is None:
                raise Invalid("type", f"must be one of {', '.join(self._kinds)}")
            return read(value)
        except Invalid as exc:
            # never the line itself: it may carry prompt or answer text, which is logged only on request
            request_id = value.get("id") if kind == "request" and type(value.get("id")) is str else None
            return ProtocolError(f"invalid frame ({exc}; a line of {len(line)} bytes)", request_id)

    @property
    def buffered(self) -> int:
        return len(self._buffer)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A JSON escape in the surrogate range: only then is a line checked for a lone surrogate (our
encoders write text as UTF-8, so escapes like this are rare)."""


class WorkerFrameDecoder(_Decoder[WorkerFrame]):
    """Used by the relay: decodes what workers send."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(WORKER_FRAMES, max_line_bytes)


class RelayFrameDecoder(_Decoder[RelayFrame]):
    """Used by a worker: decodes what the relay sends."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(RELAY_FRAMES, max_line_bytes)
