"""Encoding and decoding of protocol lines, with no I/O (feed bytes in, get frames out).

A line is one UTF-8 JSON object followed by ``\\n``. A line longer than ``max_line_bytes`` is an error
for that line only: the decoder drops bytes until the next newline and reports one
:class:`LineTooLong`, so a bad peer costs bounded memory and the link survives.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ._frames import RelayFrame, WorkerFrame

MAX_LINE_BYTES = 48 * 1024 * 1024
"""Largest line either side sends or accepts: above the relay's default 32 MiB body limit plus the
growth of re-encoding (base64 images stay base64, so the neutral form is never much larger)."""

F = TypeVar("F")


class ProtocolError(Exception):
    """A line the other side sent that we cannot use. ``str()`` is fit for a log and for the peer: it
    says what is wrong and where, never what the line said."""


class LineTooLong(ProtocolError):
    pass


class FrameTooLarge(Exception):
    """We were about to send a line over the limit (the caller should refuse the request instead)."""


def encode(frame: BaseModel, max_line_bytes: int = MAX_LINE_BYTES) -> bytes:
    line = frame.model_dump_json(exclude_none=True).encode() + b"\n"
    if len(line) > max_line_bytes:
        raise FrameTooLarge(f"frame of {len(line)} bytes exceeds the {max_line_bytes}-byte line limit")
    return line


class _Decoder(Generic[F]):
    """Splits a byte stream into lines and parses each into a frame (or a ProtocolError)."""

    def __init__(self, adapter: TypeAdapter[Any], max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._adapter = adapter
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
            frame: F = self._adapter.validate_json(line)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            # never the line itself: it may carry prompt or answer text, which is logged only on request
            return ProtocolError(f"invalid frame ({where}: {first['msg']}; a line of {len(line)} bytes)")
        return frame

    @property
    def buffered(self) -> int:
        return len(self._buffer)


@functools.cache
def _worker_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(WorkerFrame)


@functools.cache
def _relay_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(RelayFrame)


class WorkerFrameDecoder(_Decoder[Any]):
    """Used by the relay: decodes what workers send."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(_worker_adapter(), max_line_bytes)


class RelayFrameDecoder(_Decoder[Any]):
    """Used by a worker: decodes what the relay sends."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(_relay_adapter(), max_line_bytes)
