"""HTTP/1.1 over one connection, with h11: the only relay module that reads or writes TCP bytes.

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
- While the app works, a watcher reads the socket: if the peer closes it, the app's cancel scope is
  cancelled (its ``finally`` blocks then cancel the work) - that is how a caller that disconnects
  cancels its request all the way to the MCP client.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

import anyio
import anyio.abc
import h11

from ._admission import Admission, Connection, Phase
from ._config import Config
from ._errors import Kind, RelayError, error_headers

log = logging.getLogger("mcptb.relay")

_RECEIVE_SIZE = 65536
SEND_PIECE = 65536
"""Largest piece of an answer written at once; each must be taken within --send-timeout."""
LINGER = 2.0
"""Seconds unread input is drained after an early error, before the connection closes."""


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
        head = [*headers, ("x-request-id", self.record.request_id)]
        return h11.Response(status_code=status, headers=head, reason=_reason(status))

    async def _emit(self, *events: h11.Event) -> None:
        data = b"".join(self._conn.send(event) or b"" for event in events)
        if not data:
            return
        if self.record.first_byte is None:
            self.record.first_byte = time.perf_counter()
        try:
            if self.scope is None:
                for offset in range(0, len(data), SEND_PIECE):
                    with anyio.fail_after(self._send_timeout):
                        await self._stream.send(data[offset : offset + SEND_PIECE])
                return
            self.stalled = True
            for offset in range(0, len(data), SEND_PIECE):
                self.scope.deadline = anyio.current_time() + self._send_timeout
                await self._stream.send(data[offset : offset + SEND_PIECE])
            self.scope.deadline = math.inf
            self.stalled = False
        except TimeoutError as exc:
            self.send_timed_out()
            raise ClientGone() from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ClientGone() from exc

    def send_timed_out(self) -> None:
        log.info("%s: the caller took no answer bytes for %g s; closing", self.record.request_id, self._send_timeout)


class App(Protocol):
    def admit(self, head: RequestHead) -> RelayError | None:
        """Why this request is refused on its head alone (access, route, key), or None."""

    async def __call__(self, request: HttpRequest, responder: Responder) -> None: ...


ErrorPage = Callable[[RelayError, str], bytes]
"""(error, request path or "") -> an error body in the caller's API shape."""


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


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

_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@dataclass
class _Link:
    """One connection's socket, h11 state and place in the admission table."""

    stream: anyio.abc.ByteStream
    conn: h11.Connection
    config: Config
    admission: Admission
    slot: Connection
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
    access_log: Callable[[RequestLog], None],
    admission: Admission,
    slot: Connection,
) -> None:
    link = _Link(
        stream, h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_bytes), config, admission, slot
    )
    conn = link.conn
    async with stream:
        first = True
        while True:
            record = RequestLog()
            try:
                request = await _read_request(link, app, idle=not first)
            except _Refusal as refusal:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = refusal.error.shape.status
                    record.status = status
                    if link.head is not None:
                        record.method, record.path = link.head.method, link.head.path
                    responder = Responder(conn, stream, record, config.send_timeout)
                    body = error_page(refusal.error, refusal.path)
                    headers = [("connection", "close"), *error_headers(refusal.error)]
                    try:
                        await responder.send(status, body, "application/json", headers)
                        await _linger(stream)
                    except ClientGone:
                        pass
                    access_log(record)
                return
            finally:
                admission.body_received(slot)
            if request is None:
                return
            first = False
            record.started = time.perf_counter()  # not while the connection sat idle before it
            record.method, record.path = request.method, request.path
            responder = Responder(conn, stream, record, config.send_timeout)
            responder.head_only = request.method == "HEAD"
            admission.enter(slot, "busy")

            def answered() -> None:  # the response is whole: the slot may make room from now on
                admission.enter(slot, "head" if _has_partial(conn) else "idle")

            gone = await _run_app(app, request, responder, conn, stream, error_page, answered)
            access_log(record)
            if gone or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            try:
                conn.start_next_cycle()
            except h11.ProtocolError:
                return


async def _linger(stream: anyio.abc.ByteStream) -> None:
    """Shut our side, then read and drop what the peer still sends (see the module's rules)."""
    with contextlib.suppress(*_GONE):
        await stream.send_eof()
        with anyio.move_on_after(LINGER):
            while await stream.receive(_RECEIVE_SIZE):
                pass


async def _run_app(
    app: App,
    request: HttpRequest,
    responder: Responder,
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    error_page: ErrorPage,
    answered: Callable[[], None],
) -> bool:
    """Run the app while watching for the peer closing the connection; True if the connection must
    close (the peer left, or the app failed). ``answered`` is called as soon as the app has written
    its whole response (before the watcher is stopped)."""
    gone = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal gone
        try:
            data = await stream.receive(_RECEIVE_SIZE)
        except _GONE:
            data = b""
        if data:  # a pipelined next request: keep it for the next cycle, stop watching
            conn.receive_data(data)
            return
        gone = True
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        responder.scope = tg.cancel_scope
        try:
            await app(request, responder)
            if conn.our_state is h11.DONE:
                answered()
        except ClientGone:
            gone = True
        except Exception:
            log.exception("%s: internal error", responder.record.request_id)
            gone = True
            if not responder.started:
                error = RelayError("relay_bug", "Internal relay error (see the relay's log).")
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
        tg.cancel_scope.cancel()
    responder.scope = None
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
        with contextlib.suppress(*_GONE):
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
            if event is h11.PAUSED:
                return None
            return event  # type: ignore[return-value]
        await _receive_more(link)


async def _receive_more(link: _Link) -> bool:
    """Feed h11 what the peer sends next; False when the peer has closed. While a request is read,
    the wait counts against its phase's deadline."""
    if link.scope is not None and link.deadline is None:
        link.deadline = link.scope.deadline = anyio.current_time() + link.timeout
    try:
        data = await link.stream.receive(_RECEIVE_SIZE)
    except _GONE:
        data = b""
    link.conn.receive_data(data)
    return bool(data)


def _has_partial(conn: h11.Connection) -> bool:
    return bool(conn.trailing_data[0])
