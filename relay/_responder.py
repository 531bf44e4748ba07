"""One HTTP request as the app sees it, and the writer of its response.

:class:`RequestHead` and :class:`HttpRequest` are what ``_http`` read; :class:`RequestLog` is what the
access log line says of it (the app fills in what it learns); :class:`Responder` writes the response
through h11, in pieces of at most :data:`SEND_PIECE` bytes, each of which the caller must take within
``--send-timeout``. While the app answers, that deadline is the answering scope's (set only while a
piece is being written); an early refusal, written outside any app, gets a scope per piece.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

import anyio
import anyio.abc
import h11

log = logging.getLogger("mcptb.relay")

SEND_PIECE = 65536
"""Largest piece of an answer written at once; each must be taken within --send-timeout."""


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True)
class HttpRequest(RequestHead):
    body: bytes = b""


@dataclass
class RequestLog:
    """What the access log line says about one request; the app fills in what it learns."""

    request_id: str = field(default_factory=lambda: "req_" + secrets.token_hex(12))
    method: str = "-"
    path: str = "-"
    model: str = "-"
    worker: str = "-"
    status: int = 0
    bytes_sent: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_byte: float | None = None
    outcome: str = ""
    """How a stream really ended when that is not its status (an error after the 200 was sent)."""
    api: str = "-"
    """The relay's route that answered (an API's path, ``/health``...); ``-`` for a path it does not serve."""
    kind: str = ""
    """The kind of error answered, if one was (``relay._errors.Kind``)."""
    answered_by: str = "-"
    """The model that answered, as its worker said."""
    client: str = "-"
    """The MCP client of the worker that took the request."""
    queue_wait: float | None = None
    """Seconds a model request waited for a worker (None if no worker took it)."""
    tokens_in: int | None = None
    """A model request: its input tokens (None for any other request)."""
    tokens_out: int = 0
    tokens_counted: bool = False
    """The token figures were reported by the model's side, not estimated."""
    handed: int | None = None
    """A model request an agent served: characters of it handed to the agent (None: none said)."""
    request_class: str = ""
    """Claude Code's ``x-claude-code-request-class`` for a model request, when it sent one."""

    @property
    def first_byte_seconds(self) -> float | None:
        """Seconds from the request's start to the first byte answered (None if none was)."""
        return None if self.first_byte is None else self.first_byte - self.started

    @property
    def result(self) -> str:
        """How the request ended, in a word: ``ok``, the kind of error answered (also one that came after a
        stream's 200), or ``caller_gone`` (it left before its status line)."""
        if self.outcome:
            return self.outcome.split(":", 1)[1]
        if self.status in (0, 499):
            return "caller_gone"
        return "ok" if self.status < 400 else self.kind or str(self.status)


class ClientGone(Exception):
    """The peer closed the connection or stopped accepting bytes."""


class Responder:
    """Writes one response: either :meth:`send` (a complete body) or :meth:`start` + :meth:`write` *
    + :meth:`end` (chunked, for streams)."""

    def __init__(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, record: RequestLog, send_timeout: float
    ) -> None:
        self._conn = conn
        self._stream = stream
        self.record = record
        self._send_timeout = send_timeout
        self.started = False
        self.head_only = False
        """A HEAD request: headers as for GET, no body (h11 refuses one)."""
        self.scope: anyio.CancelScope | None = None
        """The scope of the app answering (``_run_app``): while a piece is being written its deadline
        is --send-timeout away, else none. Without it (an early refusal) each piece gets a scope."""
        self.stalled = False
        """True while a write waits: the scope's deadline, if it passes then, is the caller's fault."""

    async def send(self, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        """A complete response, in one write."""
        head = [("content-type", content_type), ("content-length", str(len(body))), *headers]
        self._begin(status)
        body = b"" if self.head_only else body
        events = [self._head(status, head), *([h11.Data(data=body)] if body else []), h11.EndOfMessage()]
        self.record.bytes_sent += len(body)
        await self._emit(*events)

    async def start(self, status: int, headers: Iterable[tuple[str, str]], first: bytes = b"") -> None:
        """The head of a chunked response, and optionally its first body bytes in the same write."""
        self._begin(status)
        self.record.bytes_sent += len(first)
        await self._emit(self._head(status, headers), *([h11.Data(data=first)] if first else []))

    async def write(self, data: bytes) -> None:
        await self._emit(h11.Data(data=data))
        self.record.bytes_sent += len(data)

    async def end(self) -> None:
        await self._emit(h11.EndOfMessage())

    def _begin(self, status: int) -> None:
        self.record.status = status
        self.started = True

    def _head(self, status: int, headers: Iterable[tuple[str, str]]) -> h11.Response:
        rid = self.record.request_id  # x-request-id for the openai SDK's _request_id, request-id for anthropic's
        head = [*headers, ("x-request-id", rid), ("request-id", rid)]
        return h11.Response(status_code=status, headers=head, reason=_reason(status))

    async def _emit(self, *events: h11.Event) -> None:
        pieces = [bytes(piece) for event in events for piece in self._conn.send_with_data_passthrough(event) or ()]
        size = sum(map(len, pieces))
        if not size:
            return
        if self.record.first_byte is None:
            self.record.first_byte = time.perf_counter()
        if size <= SEND_PIECE:  # the usual case: one write
            pieces = [b"".join(pieces)]
        try:
            if self.scope is None:
                for piece in _pieces(pieces):
                    with anyio.fail_after(self._send_timeout):
                        await self._stream.send(piece)
                return
            self.stalled = True
            for piece in _pieces(pieces):
                self.scope.deadline = anyio.current_time() + self._send_timeout
                await self._stream.send(piece)
            self.scope.deadline = math.inf
            self.stalled = False
        except TimeoutError as exc:
            self.send_timed_out()
            raise ClientGone() from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ClientGone() from exc

    def send_timed_out(self) -> None:
        log.info("%s: the caller took no answer bytes for %g s; closing", self.record.request_id, self._send_timeout)


def _pieces(parts: list[bytes]) -> Iterator[bytes]:
    """``parts`` cut in writes of at most :data:`SEND_PIECE` bytes. A body is passed through by h11 as
    it is, never joined to its head: while a large answer is written, its encoded bytes are the one
    copy held (each write is a slice of them)."""
    for part in parts:
        for offset in range(0, len(part), SEND_PIECE):
            yield part[offset : offset + SEND_PIECE] if len(part) > SEND_PIECE else part


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
