"""HTTP/1.1 over one connection, with h11 (its socket read by ``_reader``, answers written by ``_responder``).

``serve_connection`` reads requests, hands each one to the app together with a :class:`Responder`,
and keeps the connection alive between requests. Rules:
- Deadlines are whole, never restarted by a byte: a head has ``--head-timeout`` from its first byte
  (or from the connection's start), a body ``--read-timeout``, an idle connection ``--idle-timeout``
  until the next request's first byte; every piece of an answer must be taken by the caller within
  ``--send-timeout`` (pieces of at most :data:`SEND_PIECE` bytes, so at most one piece waits in this
  process per connection). A dripping head is also what ``_admission`` closes first.
- The app admits a request on its head alone (access, route, key: ``App.admit``), before any body
  byte is read, and the body then takes its share of ``--max-body-memory``.
- An error answered before the request was read whole closes the connection gracefully: our side is
  shut, and what the peer still sends is read and dropped for up to :data:`LINGER` seconds, so the
  peer reads the answer instead of a reset.
- One task per connection reads its socket (``_reader``); while the app works, the peer closing the
  connection cancels the app's scope (its ``finally`` blocks then cancel the work) - that is how a
  caller that disconnects cancels its request all the way to the MCP client.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.abc
import h11

from shared_protocol._unix import STREAM_GONE

from ._admission import Admission, Connection, Phase
from ._config import Config
from ._errors import Kind, RelayError, error_headers
from ._reader import Reader
from ._responder import ClientGone, HttpRequest, RequestHead, RequestLog, Responder

log = logging.getLogger("mcptb.relay")

LINGER = 2.0
"""Seconds unread input is drained after an early error, before the connection closes."""


class App(Protocol):
    def admit(self, head: RequestHead) -> RelayError | None:
        """Why this request is refused on its head alone (access, route, key), or None."""

    async def __call__(self, request: HttpRequest, responder: Responder) -> None: ...


ErrorPage = Callable[[RelayError, str], bytes]
"""(error, request path or "") -> an error body in the caller's API shape."""


class _Refusal(Exception):
    """A request answered with an error page before it was read whole; then the connection closes."""

    def __init__(self, error: RelayError, path: str = "") -> None:
        super().__init__(error.message)
        self.error = error
        self.path = path


def _protocol(kind: Kind, message: str, path: str = "") -> _Refusal:
    return _Refusal(RelayError(kind, message), path)


_H11_ERRORS: dict[int, Kind] = {431: "head_too_large", 501: "unsupported_http"}
"""The error kind for each status h11 suggests for a request it cannot parse (others: bad_http)."""


@dataclass
class _Link:
    """One connection's socket, h11 state and place in the admission table."""

    stream: anyio.abc.ByteStream
    conn: h11.Connection
    config: Config
    admission: Admission
    slot: Connection
    reader: Reader
    head: RequestHead | None = None
    """The head of the request being read, once it is whole."""
    scope: anyio.CancelScope | None = None
    """The cancel scope of the request being read (see ``_read_request``)."""
    phase: Phase = "head"
    timeout: float = 0.0
    """The phase's time limit, counted from when it first waits for bytes ..."""
    deadline: float | None = None
    """... which is then its deadline (None: it has not waited yet)."""


async def serve_connection(
    stream: anyio.abc.ByteStream,
    app: App,
    error_page: ErrorPage,
    config: Config,
    finished: Callable[[RequestLog], None],
    admission: Admission,
    slot: Connection,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_bytes)
    link = _Link(stream, conn, config, admission, slot, Reader(stream, conn))
    async with stream, anyio.create_task_group() as tg:
        tg.start_soon(link.reader.run)
        await _serve_requests(link, app, error_page, finished)
        tg.cancel_scope.cancel()


async def _serve_requests(link: _Link, app: App, error_page: ErrorPage, finished: Callable[[RequestLog], None]) -> None:
    conn, config, admission, slot = link.conn, link.config, link.admission, link.slot
    first = True
    while True:
        record = RequestLog()
        try:
            request = await _read_request(link, app, idle=not first)
        except _Refusal as refusal:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = refusal.error.shape.status
                record.status, record.kind = status, refusal.error.kind
                if link.head is not None:
                    record.method, record.path = link.head.method, link.head.path
                responder = Responder(conn, link.stream, record, config.send_timeout)
                responder.head_only = record.method == "HEAD"  # its error too: headers, no body
                body = error_page(refusal.error, refusal.path)
                headers = [("connection", "close"), *error_headers(refusal.error)]
                try:
                    await responder.send(status, body, "application/json", headers)
                    with contextlib.suppress(*STREAM_GONE):  # see the module's rules
                        await link.stream.send_eof()
                    await link.reader.linger(LINGER)
                except ClientGone:
                    pass
                finished(record)
            return
        finally:
            admission.body_received(slot)
        if request is None:
            return
        first = False
        record.started = time.perf_counter()  # not while the connection sat idle before it
        record.method, record.path = request.method, request.path
        responder = Responder(conn, link.stream, record, config.send_timeout)
        responder.head_only = request.method == "HEAD"
        admission.enter(slot, "busy")
        gone = await _run_app(app, request, responder, link, error_page)
        finished(record)
        if gone or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        try:
            conn.start_next_cycle()
        except h11.ProtocolError:
            return


async def _run_app(app: App, request: HttpRequest, responder: Responder, link: _Link, error_page: ErrorPage) -> bool:
    """Run the app; True if the connection must close (the peer left, the caller took no bytes within
    the send deadline, or the app failed). The peer closing the connection cancels the app."""
    gone = False
    with anyio.CancelScope() as scope:
        responder.scope = scope
        link.reader.answering(scope)
        try:
            await app(request, responder)
            if link.conn.our_state is h11.DONE:  # the response is whole: the slot may make room from now on
                link.admission.enter(link.slot, "head" if _has_partial(link.conn) else "idle")
        except ClientGone:
            gone = True
        except Exception:
            log.exception("%s: internal error", responder.record.request_id)
            gone = True
            if not responder.started:
                error = RelayError("relay_bug", "Internal relay error (see the relay's log).")
                responder.record.kind = error.kind
                with anyio.move_on_after(5):
                    try:
                        await responder.send(
                            error.shape.status,
                            error_page(error, request.path),
                            "application/json",
                            error_headers(error),
                        )
                    except ClientGone:
                        pass
        finally:
            link.reader.answering(None)
    responder.scope = None
    gone = gone or link.reader.gone
    if responder.stalled and not gone:  # cancelled by the send deadline, not by the peer leaving
        responder.send_timed_out()
        gone = True
    if gone and responder.record.status == 0:
        responder.record.status = 499  # nginx's "client closed request", for the log only
    return gone


async def _read_request(link: _Link, app: App, idle: bool) -> HttpRequest | None:
    """Read one request; None when the peer closed (or left idle) a connection between requests.
    Raises _Refusal for a request answered with an error before it is read whole.

    One cancel scope covers the whole read; each phase (idle, head, body) sets its deadline when it
    first has to wait for bytes, so a request that arrives in one piece waits only while idle."""
    link.head = None
    with anyio.CancelScope() as scope:
        link.scope = scope
        request = await _read_phases(link, app, idle)
    link.scope = None
    if not scope.cancelled_caught:
        return request
    config, conn = link.config, link.conn
    if link.phase == "idle" and _has_partial(conn):  # its first bytes came as the idle time ran out
        return await _read_request(link, app, idle=False)
    if link.phase == "idle" or (conn.their_state is h11.IDLE and not _has_partial(conn)):
        return None  # idle timeout, or a connection that never sent a byte: close quietly
    if link.phase == "head":
        raise _protocol("read_timeout", f"Request head not received within {config.head_timeout:g} s.")
    path = link.head.path if link.head is not None else ""
    raise _protocol("read_timeout", f"Request body not received within {config.read_timeout:g} s.", path)


async def _read_phases(link: _Link, app: App, idle: bool) -> HttpRequest | None:
    conn, config = link.conn, link.config
    if idle and not _has_partial(conn):  # else a pipelined request is here already
        _enter(link, "idle", config.idle_timeout)
        if not await _receive_more(link):
            return None
    _enter(link, "head", config.head_timeout)
    event = await _next_event(link)
    if event is None or isinstance(event, h11.ConnectionClosed):
        return None
    assert isinstance(event, h11.Request)
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    head_size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
    if head_size > config.max_header_bytes:  # h11 only checks heads that arrive incomplete
        raise _protocol(
            "head_too_large", f"Request head exceeds {config.max_header_bytes} bytes (relay --max-header-bytes).", path
        )
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
    head = link.head = RequestHead(event.method.decode("ascii"), path, query, headers)
    refused = app.admit(head)
    if refused is not None:
        raise _Refusal(refused, path)
    length = headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else 0
    if declared > config.max_body_bytes:
        raise _protocol(
            "body_too_large",
            f"Request body is {length} bytes; this relay accepts at most "
            f"{config.max_body_bytes} (relay --max-body-bytes).",
            path,
        )
    _take_body(link, declared, path)
    if conn.they_are_waiting_for_100_continue:  # curl waits a second for this before sending a large body
        with contextlib.suppress(*STREAM_GONE):
            await link.stream.send(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
    _enter(link, "body", config.read_timeout)
    body = bytearray()
    while True:
        part = await _next_event(link)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > config.max_body_bytes:
                raise _protocol(
                    "body_too_large",
                    f"Request body exceeds {config.max_body_bytes} bytes (relay --max-body-bytes).",
                    path,
                )
            if len(body) > declared:  # chunked: each part takes its share as it comes
                _take_body(link, len(body) - declared, path)
                declared = len(body)
        elif isinstance(part, h11.EndOfMessage):
            break
        else:
            return None
    return HttpRequest(head.method, path, query, headers, bytes(body))


def _enter(link: _Link, phase: Phase, timeout: float) -> None:
    """A new phase of reading a request: its deadline is set when it first waits (``_receive_more``)."""
    if link.deadline is not None and link.scope is not None:  # the last phase's deadline ends with it
        link.scope.deadline = math.inf
    link.phase = phase
    link.timeout = timeout
    link.deadline = None
    link.admission.enter(link.slot, phase)


def _take_body(link: _Link, size: int, path: str) -> None:
    if size and not link.admission.take_body(link.slot, size):
        raise _Refusal(
            RelayError(
                "body_memory_full",
                f"The relay is receiving {link.admission.body_memory} bytes of request bodies already; "
                f"this one does not fit (relay --max-body-memory {link.config.max_body_memory}). Retry shortly.",
                retry_after=1,
            ),
            path,
        )


async def _next_event(link: _Link) -> h11.Event | None:
    conn = link.conn
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            kind = _H11_ERRORS.get(exc.error_status_hint, "bad_http")
            raise _protocol(kind, f"Malformed HTTP request: {exc}") from None
        if event is not h11.NEED_DATA:
            link.reader.parsed()
            if event is h11.PAUSED:
                return None
            return event  # type: ignore[return-value]
        await _receive_more(link)


async def _receive_more(link: _Link) -> bool:
    """Wait until the reader fed h11 more bytes; False when the peer has closed. While a request is
    read, the wait counts against its phase's deadline."""
    if link.scope is not None and link.deadline is None:
        link.deadline = link.scope.deadline = anyio.current_time() + link.timeout
    return await link.reader.more()


def _has_partial(conn: h11.Connection) -> bool:
    return bool(conn.trailing_data[0])
