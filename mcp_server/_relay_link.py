"""The worker's side of the relay link: connect, say hello, keep slots balanced, answer, reconnect.

Rules:
- The link is opened when the process starts (a 2026-era client never sends
  ``notifications/initialized``) and re-opened with exponential backoff (``--reconnect-max-delay``)
  whenever the relay goes away, without the MCP client noticing.
- Slots follow the pull rule. The slots the relay holds for us should equal what we can take right
  now: free background-sampling capacity plus agents waiting in ``next_request``. :meth:`_Session.balance`
  grants (``ready``) or takes back (``withdraw``) the difference after every change.
- A request goes to a waiting agent first, else to background sampling; one that neither can take
  (a slot crossed a ``withdraw``) is handed back with ``release``.
- Each sampling request runs in its own task with its own cancel scope; ``cancel`` cancels it (the
  SDK then sends ``notifications/cancelled`` for the pending sampling request). A ``cancel`` for a
  request an agent holds closes it, so a late ``reply`` explains what happened.
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
    Withdraw,
    WorkerInfo,
    encode,
)

from ._agent import AgentDesk
from ._client import ClientState
from ._sampling import Send, answer_by_sampling

log = logging.getLogger("mcptb.server")

RECONNECT_MIN_DELAY = 0.1
WELCOME_TIMEOUT = 10.0


class RelayLink:
    def __init__(self, socket_path: str, client: ClientState, sampling_timeout: float, reconnect_max_delay: float):
        self.socket_path = socket_path
        self.client = client
        self.sampling_timeout = sampling_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.desk = AgentDesk(client, self)
        self.last_error: str | None = None
        self._session: _Session | None = None

    @property
    def connected(self) -> bool:
        return self._session is not None

    async def send(self, frame: BaseModel) -> bool:
        """Send on the current connection; False if there is none (or it just broke)."""
        session = self._session
        return session is not None and await session.send(frame)

    async def balance(self) -> None:
        if self._session is not None:
            await self._session.balance()

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
                finally:
                    self._session = None
                    self.desk.connection_lost()
                if welcomed:
                    self.last_error = "the connection to the relay was lost; reconnecting"
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
            log.info("connected to the relay at %s as %s", self.socket_path, welcome.worker_id)
            async with anyio.create_task_group() as tg:
                session = _Session(self, send, tg)
                self._session = session
                self.last_error = None
                tg.start_soon(session.follow_client, hello.worker)
                await self._read(stream, decoder, session)
                tg.cancel_scope.cancel()
            return True

    async def _await_welcome(self, stream: anyio.abc.SocketStream, decoder: RelayFrameDecoder) -> Welcome | None:
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

    async def _read(self, stream: anyio.abc.SocketStream, decoder: RelayFrameDecoder, session: _Session) -> None:
        while True:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            for frame in decoder.feed(data):
                if isinstance(frame, ProtocolError):
                    log.warning("bad frame from the relay: %s", frame)
                elif isinstance(frame, RequestFrame):
                    await session.take(frame)
                elif isinstance(frame, Cancel):
                    if not self.desk.cancel(frame.id, frame.reason):
                        session.cancel(frame.id, frame.reason)
                elif isinstance(frame, ErrorFrame):
                    log.warning("the relay reports: %s", frame.message)


class _Session:
    """State of one relay connection: the slots the relay holds for us, and running sampling tasks."""

    def __init__(self, link: RelayLink, send: Send, tg: anyio.abc.TaskGroup) -> None:
        self.link = link
        self.client = link.client
        self.desk = link.desk
        self._raw_send = send
        self._tg = tg
        self.slots = 0
        self.sampling: dict[str, anyio.CancelScope] = {}

    async def send(self, frame: BaseModel) -> bool:
        """Send, or end the whole connection if the relay is gone (the reconnect loop takes over)."""
        try:
            await self._raw_send(frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._tg.cancel_scope.cancel()
            return False
        return True

    def _wanted(self) -> int:
        free_sampling = self.client.settings.concurrency - len(self.sampling) if self.client.can_sample else 0
        return free_sampling + self.desk.waiting_count

    async def balance(self) -> None:
        """Grant or withdraw slots so the relay holds exactly as many as we can take now."""
        delta = self._wanted() - self.slots
        if delta == 0:
            return
        self.slots += delta  # before awaiting, so concurrent calls never double-count
        await self.send(Ready(slots=delta) if delta > 0 else Withdraw(slots=-delta))

    async def follow_client(self, announced: WorkerInfo) -> None:
        """Tell the relay whenever we learn more about the client, and rebalance slots."""
        while True:
            change = self.client.next_change
            info = self.client.info()
            if info != announced:
                await self.send(Update(worker=info))
                announced = info
            await self.balance()
            await change.wait()

    async def take(self, frame: RequestFrame) -> None:
        self.slots = max(0, self.slots - 1)
        if frame.id in self.sampling or self.desk.knows(frame.id):
            await self.send(Release(id=frame.id))
        elif self.desk.offer(frame):
            pass
        elif self.client.can_sample and len(self.sampling) < self.client.settings.concurrency:
            scope = anyio.CancelScope()
            self.sampling[frame.id] = scope
            self._tg.start_soon(self._sample, frame, scope)
        else:
            await self.send(Release(id=frame.id))
            await self.balance()

    def cancel(self, request_id: str, reason: str) -> None:
        scope = self.sampling.get(request_id)
        if scope is not None:
            log.info("%s cancelled by the relay: %s", request_id, reason)
            scope.cancel()

    async def _sample(self, frame: RequestFrame, scope: anyio.CancelScope) -> None:
        session = self.client.session
        try:
            with scope:
                assert session is not None
                await answer_by_sampling(
                    session,
                    frame,
                    self.send,
                    self.link.sampling_timeout,
                    self.client.name or "unknown client",
                    self.client.saw_model,
                    tool_emulation=self.client.settings.tool_emulation,
                )
        except Exception as exc:
            log.exception("%s: failed", frame.id)
            await self.send(ErrorFrame(id=frame.id, code="internal", message=f"mcptb-server failed: {exc!r}"))
        finally:
            self.sampling.pop(frame.id, None)
        await self.balance()
