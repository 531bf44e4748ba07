"""HTTP/1.1 over one connection, with h11: the only relay module that reads or writes TCP bytes.

``serve_connection`` reads requests (bounded head, bounded body, read and idle timeouts), hands each
one to the app together with a :class:`Responder`, and keeps the connection alive between requests.
While the app works, a watcher reads the socket: if the peer closes it, the app's cancel scope is
cancelled (its ``finally`` blocks then cancel the work) - that is how a caller that disconnects
cancels its request all the way to the MCP client.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

import anyio
import anyio.abc
import h11

from ._config import Config
from ._errors import Kind, RelayError, error_headers

log = logging.getLogger("mcptb.relay")

_RECEIVE_SIZE = 65536


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


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

    def __init__(self, conn: h11.Connection, stream: anyio.abc.ByteStream, record: RequestLog) -> None:
        self._conn = conn
        self._stream = stream
        self.record = record
        self.started = False
        self.head_only = False
        """A HEAD request: headers as for GET, no body (h11 refuses one)."""

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
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ClientGone() from exc


App = Callable[[HttpRequest, Responder], Awaitable[None]]
ErrorPage = Callable[[RelayError, str], bytes]
"""(error, request path or "") -> an error body in the caller's API shape."""


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _Protocol(Exception):
    """A request that is not acceptable HTTP: answered with an error page, then the connection closes."""

    def __init__(self, kind: Kind, message: str, path: str = "") -> None:
        super().__init__(message)
        self.error = RelayError(kind, message)
        self.path = path


_H11_ERRORS: dict[int, Kind] = {431: "head_too_large", 501: "unsupported_http"}
"""The error kind for each status h11 suggests for a request it cannot parse (others: bad_http)."""


async def serve_connection(
    stream: anyio.abc.ByteStream,
    app: App,
    error_page: ErrorPage,
    config: Config,
    access_log: Callable[[RequestLog], None],
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_bytes)
    async with stream:
        first = True
        while True:
            record = RequestLog()
            try:
                request = await _read_request(conn, stream, config, idle=not first)
            except _Protocol as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error.shape.status
                    record.status = status
                    responder = Responder(conn, stream, record)
                    body = error_page(exc.error, exc.path)
                    try:
                        await responder.send(
                            status, body, "application/json", [("connection", "close"), *error_headers(exc.error)]
                        )
                    except ClientGone:
                        pass
                    access_log(record)
                return
            if request is None:
                return
            first = False
            record.started = time.perf_counter()  # not while the connection sat idle before it
            record.method, record.path = request.method, request.path
            responder = Responder(conn, stream, record)
            responder.head_only = request.method == "HEAD"
            gone = await _run_app(app, request, responder, conn, stream, error_page)
            access_log(record)
            if gone or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            try:
                conn.start_next_cycle()
            except h11.ProtocolError:
                return


async def _run_app(
    app: App,
    request: HttpRequest,
    responder: Responder,
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    error_page: ErrorPage,
) -> bool:
    """Run the app while watching for the peer closing the connection; True if the connection must
    close (the peer left, or the app failed)."""
    gone = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal gone
        try:
            data = await stream.receive(_RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            data = b""
        if data:  # a pipelined next request: keep it for the next cycle, stop watching
            conn.receive_data(data)
            return
        gone = True
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        try:
            await app(request, responder)
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
    if gone and responder.record.status == 0:
        responder.record.status = 499  # nginx's "client closed request", for the log only
    return gone


async def _read_request(
    conn: h11.Connection, stream: anyio.abc.ByteStream, config: Config, idle: bool
) -> HttpRequest | None:
    """Read one request; None when the peer closed an idle connection. Raises _Protocol for bad input."""
    head_timeout = config.idle_timeout if idle else config.read_timeout
    event = await _next_event(conn, stream, head_timeout, waiting_for_head=True)
    if event is None or isinstance(event, h11.ConnectionClosed):
        return None
    assert isinstance(event, h11.Request)
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    head_size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
    if head_size > config.max_header_bytes:  # h11 only checks heads that arrive incomplete
        raise _Protocol(
            "head_too_large", f"Request head exceeds {config.max_header_bytes} bytes (relay --max-header-bytes).", path
        )
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
        raise _Protocol(
            "body_too_large",
            f"Request body is {length} bytes; this relay accepts at most "
            f"{config.max_body_bytes} (relay --max-body-bytes).",
            path,
        )
    if conn.they_are_waiting_for_100_continue:  # curl waits a second for this before sending a large body
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await stream.send(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
    body = bytearray()
    with anyio.move_on_after(config.read_timeout) as scope:
        while True:
            part = await _next_event(conn, stream, None, waiting_for_head=False)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > config.max_body_bytes:
                    raise _Protocol(
                        "body_too_large",
                        f"Request body exceeds {config.max_body_bytes} bytes (relay --max-body-bytes).",
                        path,
                    )
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
    if scope.cancelled_caught:
        raise _Protocol("read_timeout", f"Request body not received within {config.read_timeout:g} s.", path)
    return HttpRequest(event.method.decode("ascii"), path, query, headers, bytes(body))


async def _next_event(
    conn: h11.Connection, stream: anyio.abc.ByteStream, timeout: float | None, waiting_for_head: bool
) -> h11.Event | None:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            kind = _H11_ERRORS.get(exc.error_status_hint, "bad_http")
            raise _Protocol(kind, f"Malformed HTTP request: {exc}") from None
        if event is not h11.NEED_DATA:
            if event is h11.PAUSED:
                return None
            return event  # type: ignore[return-value]
        data = b""
        with anyio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                data = b""
        if scope.cancelled_caught:
            if waiting_for_head and conn.their_state is h11.IDLE and not _has_partial(conn):
                return None  # idle keep-alive connection: close quietly
            raise _Protocol("read_timeout", "Request head not received in time.")
        conn.receive_data(data)


def _has_partial(conn: h11.Connection) -> bool:
    return bool(conn.trailing_data[0])
