"""The worker's connection to the relay: connect, say hello, read frames, write frames, reconnect.

A thin shell: it decides nothing about requests or slots (that is ``_core``), it reports what happens
to its :class:`LinkEvents` and writes what it is given. Rules:
- The link is opened when the process starts (a 2026-era client never sends
  ``notifications/initialized``) and re-opened with exponential backoff (``--reconnect-max-delay``)
  whenever the relay goes away, without the MCP client noticing. While an agent waits in
  ``next_request`` the pause is at most :data:`HURRIED_DELAY`, and an agent that starts waiting ends
  the current pause (:meth:`RelayLink.hurry`): a relay that starts during the wait serves that agent.
- Frames are encoded when they are queued and written by one writer task per connection, so a frame
  is written whole or not at all: nobody who queues a frame can be cancelled halfway through its write.
  The frames queued while it was writing go out together in its next send; a frame queued with
  :meth:`RelayLink.deliver` counts as written once the send that carries it is done.
- Without ``--socket`` every connection attempt tries the candidate paths of ``_discovery`` in order
  (the path a default relay recorded under ``$HOME``, then the relay's default paths), so a relay
  started in another environment (a desktop session's ``XDG_RUNTIME_DIR``) is found; the first that
  answers and passes the checks below wins.
- Before it says hello, it checks that the socket's directory is ours, private and not a symlink,
  and that the process listening runs under our uid (``shared_protocol._trust``): anything else could
  feed prompts to the user's agent or take the user's model. A relay that fails the check is refused
  (and reported, once per reason) like an unreachable one.
"""

from __future__ import annotations

import logging
import math
import os
import random
from typing import Protocol

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shared_protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ErrorFrame,
    Frame,
    Hello,
    ProtocolError,
    Refused,
    RelayFrameDecoder,
    RequestFrame,
    Welcome,
    WorkerInfo,
    encode,
)
from shared_protocol._trust import directory_problem, peer_uid
from shared_protocol._unix import STREAM_GONE, connect_unix, receive_each

from ._discovery import candidates
from ._render import SAME_SOCKET

log = logging.getLogger("mcptb.server")

RECONNECT_MIN_DELAY = 0.1
HURRIED_DELAY = 1.0
"""Longest pause between attempts to reach the relay while an agent waits for a request."""
WELCOME_TIMEOUT = 10.0
SEND_BATCH_BYTES = 64 * 1024
"""Frames queued while the writer was busy join one send until it is this long (a frame stays whole)."""


class LinkEvents(Protocol):
    """What the link reports (all synchronous: the worker turns each into core events)."""

    def hello_info(self) -> WorkerInfo: ...

    def link_up(self, hello: WorkerInfo) -> None: ...

    def link_failed(self, error: str) -> None: ...

    def link_lost(self) -> None: ...

    def agents_waiting(self) -> bool: ...

    def frame(self, frame: RequestFrame | Cancel) -> None: ...

    def unreadable(self, request_id: str, problem: str) -> None: ...


_Item = tuple[bytes, anyio.Event | None]


class RelayLink:
    def __init__(self, socket_path: str | None, reconnect_max_delay: float, events: LinkEvents) -> None:
        self.explicit = socket_path
        """The path given with --socket / MCPTB_SOCKET; None: look where a default relay listens."""
        self.socket_path = socket_path or candidates()[0]
        """The path of the current (or last tried) connection, for logs."""
        self.reconnect_max_delay = reconnect_max_delay
        self.events = events
        self._outbound: MemoryObjectSendStream[_Item] | None = None
        self._closed = anyio.Event()
        """Set when the current connection ends (a fresh one per connection)."""
        self._hurry = anyio.Event()
        """Set to end the pause between two connection attempts now."""

    def hurry(self) -> None:
        """An agent started waiting for a request while the relay is unreachable: try again now."""
        self._hurry.set()

    def send_nowait(self, frame: Frame) -> None:
        """Queue a frame on the current connection; dropped when there is none."""
        if self._outbound is not None:
            self._outbound.send_nowait((encode(frame), None))

    async def deliver(self, frames: list[Frame]) -> bool:
        """Queue frames and wait until they are written; False if the connection ended first."""
        outbound, closed = self._outbound, self._closed
        if outbound is None:
            return False
        written = anyio.Event()
        for frame in frames[:-1]:
            outbound.send_nowait((encode(frame), None))
        outbound.send_nowait((encode(frames[-1]), written))
        async with anyio.create_task_group() as tg:

            async def until_closed() -> None:
                await closed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until_closed)
            await written.wait()
            tg.cancel_scope.cancel()
        return written.is_set()

    async def run(self) -> None:
        delay = RECONNECT_MIN_DELAY
        reported: str | None = None
        while True:
            stream, error = await self._open()
            if stream is None:
                self.events.link_failed(error)
                if reported != error:
                    hint = f"; {SAME_SOCKET}" if error.startswith("cannot reach") else ""
                    log.warning("%s; retrying until it is fixed or the relay starts (run: mcptb-relay)%s", error, hint)
                    reported = error
            else:
                reported = None
                if await self._connection(stream):
                    log.warning("lost the relay at %s; reconnecting", self.socket_path)
                    delay = RECONNECT_MIN_DELAY
            pause = min(delay, HURRIED_DELAY) if self.events.agents_waiting() else delay
            with anyio.move_on_after(pause * (0.5 + random.random() / 2)):
                await self._hurry.wait()
            self._hurry = anyio.Event()
            delay = min(delay * 2, self.reconnect_max_delay)

    async def _open(self) -> tuple[anyio.abc.SocketStream | None, str]:
        """A trusted connection to the relay, or why there is none. Without --socket every candidate
        (``_discovery``) is tried in order; the first that is trusted and answers wins."""
        paths = [self.explicit] if self.explicit else candidates()
        errors: list[str] = []
        refusals: list[str] = []
        for path in paths:
            distrust = directory_problem(os.path.dirname(os.path.abspath(path)))
            if distrust is not None:
                refusals.append(f"refusing the relay's socket {path}: {distrust}")
                continue
            try:
                stream = await connect_unix(path)
            except OSError as exc:
                errors.append(f"cannot reach the relay at {path}: {exc.strerror or exc}")
                continue
            refused = self._distrust_peer(stream, path)
            if refused is not None:
                await stream.aclose()
                refusals.append(refused)
                continue
            self.socket_path = path
            return stream, ""
        if refusals:  # someone else's directory or process where ours should be: say so first
            return None, "; ".join(refusals)
        if len(errors) > 1:
            return None, f"{errors[0]} (also looked in {', '.join(paths[1:])})"
        return None, errors[0]

    def _distrust_peer(self, stream: anyio.abc.SocketStream, path: str) -> str | None:
        uid = peer_uid(stream.extra(anyio.abc.SocketAttribute.raw_socket))
        if uid is None or uid == os.getuid():
            return None
        return (
            f"refusing the relay at {path}: the process listening there runs as uid {uid}, not as "
            f"you (uid {os.getuid()}), so it is not your relay. Stop it (as that user or root) and start "
            "mcptb-relay yourself, or use another --socket on both sides"
        )

    async def _connection(self, stream: anyio.abc.SocketStream) -> bool:
        """One connection; returns whether the relay welcomed us."""
        decoder = RelayFrameDecoder()
        welcomed = False
        try:
            async with stream:
                hello = Hello(version=PROTOCOL_VERSION, worker=self.events.hello_info())
                await stream.send(encode(hello))
                welcome = await self._await_welcome(stream, decoder)
                if welcome is None:
                    return False
                log.info("connected to the relay at %s as %s", self.socket_path, welcome.worker_id)
                # Frames may be queued at any time by synchronous code; the writer drains them at once.
                outbound, queued = anyio.create_memory_object_stream[_Item](math.inf)
                self._outbound, self._closed = outbound, anyio.Event()
                welcomed = True
                self.events.link_up(hello.worker)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, stream, queued, tg.cancel_scope)
                    await self._read(stream, decoder)
                    tg.cancel_scope.cancel()
        except STREAM_GONE as exc:
            log.debug("relay link error: %r", exc)
        finally:
            if welcomed:
                assert self._outbound is not None
                self._outbound.close()
                self._outbound = None
                self._closed.set()
                self.events.link_lost()
        return welcomed

    async def _await_welcome(self, stream: anyio.abc.SocketStream, decoder: RelayFrameDecoder) -> Welcome | None:
        with anyio.move_on_after(WELCOME_TIMEOUT):
            while True:
                data = await stream.receive()
                for frame in decoder.feed(data):
                    if isinstance(frame, Welcome):
                        return frame
                    if isinstance(frame, Refused):
                        error = f"the relay refused this server: {frame.message}"
                        log.error("%s", error)
                        self.events.link_failed(error)
                        return None
                    log.warning("unexpected frame before welcome: %s", frame)
        self.events.link_failed("the relay did not answer the hello")
        return None

    async def _write(
        self,
        stream: anyio.abc.SocketStream,
        queued: MemoryObjectReceiveStream[_Item],
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async for first in queued:
                batch = [first]
                size = len(first[0])
                while size < SEND_BATCH_BYTES:  # what was queued meanwhile goes in the same send
                    try:
                        batch.append(queued.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    size += len(batch[-1][0])
                await stream.send(b"".join(data for data, _ in batch))
                for _, written in batch:
                    if written is not None:
                        written.set()
        except STREAM_GONE:
            pass
        scope.cancel()  # the socket broke: the connection is over

    async def _read(self, stream: anyio.abc.SocketStream, decoder: RelayFrameDecoder) -> None:
        def take(data: bytes) -> bool:
            for frame in decoder.feed(data):
                if isinstance(frame, ProtocolError):
                    log.warning("bad frame from the relay: %s", frame)
                    if frame.request_id is not None:
                        self.events.unreadable(frame.request_id, str(frame))
                elif isinstance(frame, (RequestFrame, Cancel)):
                    self.events.frame(frame)
                elif isinstance(frame, ErrorFrame):
                    log.warning("the relay reports: %s", frame.message)
            return True

        await receive_each(stream, take, 1 << 16)
