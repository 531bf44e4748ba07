"""The worker's side of the relay link: connect, say hello, grant slots, answer, reconnect.

Rules:
- The link is opened when the process starts (a 2026-era client never sends
  ``notifications/initialized``) and re-opened with exponential backoff (``--reconnect-max-delay``)
  whenever the relay goes away, without the MCP client noticing.
- Slots follow the pull rule: while the client can be sampled, the worker keeps ``concurrency``
  slots granted; each finished request grants its slot back. A request that arrives with no slot
  free (or that this worker can no longer answer) is handed back with ``release``.
- Each request runs in its own task with its own cancel scope; a ``cancel`` frame cancels it (the
  SDK then sends ``notifications/cancelled`` for the pending sampling request).
"""

from __future__ import annotations

import logging
import random

import anyio
import anyio.abc
from pydantic import BaseModel

from shared_protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ErrorFrame,
    Hello,
    ProtocolError,
    Ready,
    Refused,
    RelayFrameDecoder,
    Release,
    RequestFrame,
    Update,
    Welcome,
    WorkerInfo,
    encode,
)

from ._client import ClientState
from ._sampling import Send, answer_by_sampling

log = logging.getLogger("mcptb.server")

RECONNECT_MIN_DELAY = 0.1
WELCOME_TIMEOUT = 10.0


class RelayLink:
    def __init__(
        self, socket_path: str, client: ClientState, sampling_timeout: float, reconnect_max_delay: float
    ):
        self.socket_path = socket_path
        self.client = client
        self.sampling_timeout = sampling_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.connected = False
        self.last_error: str | None = None

    async def run(self) -> None:
        delay = RECONNECT_MIN_DELAY
        reported = False
        while True:
            try:
                stream = await anyio.connect_unix(self.socket_path)
            except OSError as exc:
                self.last_error = f"cannot reach the relay at {self.socket_path}: {exc.strerror or exc}"
                if not reported:
                    log.warning("%s; retrying until it starts (run: mcptb-relay)", self.last_error)
                    reported = True
            else:
                reported = False
                try:
                    welcomed = await self._serve(stream)
                except (
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                    anyio.EndOfStream,
                    OSError,
                ) as exc:
                    welcomed = False
                    log.debug("relay link error: %r", exc)
                self.connected = False
                if welcomed:
                    log.warning("lost the relay at %s; reconnecting", self.socket_path)
                    delay = RECONNECT_MIN_DELAY
            await anyio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.reconnect_max_delay)

    async def _serve(self, stream: anyio.abc.SocketStream) -> bool:
        """One connection; returns whether the relay welcomed us."""
        decoder = RelayFrameDecoder()
        lock = anyio.Lock()

        async def send(frame: BaseModel) -> None:
            async with lock:
                await stream.send(encode(frame))

        async with stream:
            hello = Hello(version=PROTOCOL_VERSION, worker=self.client.info())
            await stream.send(encode(hello))
            welcome = await self._await_welcome(stream, decoder)
            if welcome is None:
                return False
            self.connected = True
            self.last_error = None
            log.info("connected to the relay at %s as %s", self.socket_path, welcome.worker_id)
            async with anyio.create_task_group() as tg:
                session = _Session(self, send, tg.cancel_scope)
                tg.start_soon(session.follow_client, hello.worker)
                await self._read(stream, decoder, session, tg)
                tg.cancel_scope.cancel()
            return True

    async def _await_welcome(
        self, stream: anyio.abc.SocketStream, decoder: RelayFrameDecoder
    ) -> Welcome | None:
        with anyio.move_on_after(WELCOME_TIMEOUT):
            while True:
                data = await stream.receive()
                for frame in decoder.feed(data):
                    if isinstance(frame, Welcome):
                        return frame
                    if isinstance(frame, Refused):
                        self.last_error = f"the relay refused this server: {frame.message}"
                        log.error("%s", self.last_error)
                        return None
                    log.warning("unexpected frame before welcome: %s", frame)
        self.last_error = "the relay did not answer the hello"
        return None

    async def _read(
        self,
        stream: anyio.abc.SocketStream,
        decoder: RelayFrameDecoder,
        session: _Session,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        while True:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            for frame in decoder.feed(data):
                if isinstance(frame, ProtocolError):
                    log.warning("bad frame from the relay: %s", frame)
                elif isinstance(frame, RequestFrame):
                    await session.take(frame, tg)
                elif isinstance(frame, Cancel):
                    session.cancel(frame.id, frame.reason)
                elif isinstance(frame, ErrorFrame):
                    log.warning("the relay reports: %s", frame.message)


class _Session:
    """State of one relay connection: granted slots and running requests."""

    def __init__(self, link: RelayLink, send: Send, connection: anyio.CancelScope) -> None:
        self.link = link
        self.client = link.client
        self._raw_send = send
        self._connection = connection
        self.granted = 0
        self.running: dict[str, anyio.CancelScope] = {}

    async def _send(self, frame: BaseModel) -> None:
        """Send, or end the whole connection if the relay is gone (the reconnect loop takes over)."""
        try:
            await self._raw_send(frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._connection.cancel()

    async def _top_up(self) -> None:
        """Keep ``concurrency`` slots (granted + running) while the client can be sampled."""
        if not self.client.can_sample:
            return
        want = self.client.settings.concurrency - self.granted - len(self.running)
        if want > 0:
            self.granted += want
            await self._send(Ready(slots=want))

    async def follow_client(self, announced: WorkerInfo) -> None:
        """Tell the relay whenever we learn more about the client, and grant slots once we can."""
        while True:
            change = self.client.next_change
            info = self.client.info()
            if info != announced:
                await self._send(Update(worker=info))
                announced = info
            await self._top_up()
            await change.wait()

    async def take(self, frame: RequestFrame, tg: anyio.abc.TaskGroup) -> None:
        if self.granted <= 0 or not self.client.can_sample or frame.id in self.running:
            await self._send(Release(id=frame.id))
            return
        self.granted -= 1
        scope = anyio.CancelScope()
        self.running[frame.id] = scope
        tg.start_soon(self._answer, frame, scope)

    def cancel(self, request_id: str, reason: str) -> None:
        scope = self.running.get(request_id)
        if scope is not None:
            log.info("%s cancelled by the relay: %s", request_id, reason)
            scope.cancel()

    async def _answer(self, frame: RequestFrame, scope: anyio.CancelScope) -> None:
        session = self.client.session
        try:
            with scope:
                assert session is not None
                await answer_by_sampling(
                    session,
                    frame,
                    self._send,
                    self.link.sampling_timeout,
                    self.client.name or "unknown client",
                    self.client.saw_model,
                )
        except Exception as exc:
            log.exception("%s: failed", frame.id)
            await self._send(
                ErrorFrame(id=frame.id, code="internal", message=f"mcptb-server failed: {exc!r}")
            )
        finally:
            self.running.pop(frame.id, None)
        await self._top_up()
