"""A socket stream for asyncio that reads all the time, with a bounded buffer.

anyio's asyncio socket stream turns reading on for each ``receive`` that has to wait and off again
after it (``resume_reading``/``pause_reading``: an epoll change and selector bookkeeping each time)
and adds a scheduling round to every ``send``. Every request of the relay waits in receives on its
HTTP connection and on the worker link, so those costs add up.
This stream keeps reading on while less than :data:`HIGH_WATER` bytes wait to be taken and turns it
off above (the peer then waits in the kernel's buffers), so a connection holds at most that much plus
one read of the event loop. Otherwise it keeps anyio's semantics: ``receive`` is a checkpoint
(it yields to the loop when it does not wait), ``EndOfStream`` at the peer's end, ``BrokenResourceError``
when the connection broke, ``ClosedResourceError`` after our own close; ``send`` hands bytes to the
transport with no write buffer allowed (``set_write_buffer_limits(0)``), so it returns once the kernel
took them all and a send deadline covers the peer's reading; ``aclose`` aborts (what is unsent is
dropped). Waiters are plain futures, resolved only while pending, so a cancelled wait is never
resolved afterwards. Only for asyncio: on trio anyio wraps trio's own stream, which has no such costs.

A reader that would only wake another task with what arrives can take it in the event loop's own
callback instead (:meth:`AsyncioSocketStream.push_to`): one task switch and one loop round fewer per
read. It then holds the peer back itself (``pause_reading``/``resume_reading``).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable

import anyio
import anyio.abc

HIGH_WATER = 65536
"""Bytes received and not yet taken above which reading stops until the receiver takes them."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.error: Exception | None = None
        self.reading = True
        self.transport: asyncio.Transport | None = None
        self.read_waiter = _Waiter("reading from")
        self.write_waiter = _Waiter("writing to")
        self.writing_paused = False
        self.push: Callable[[bytes], None] | None = None
        self.pushed_end = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(0)

    def data_received(self, data: bytes) -> None:
        if self.push is not None:
            self.push(data)
            return
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= HIGH_WATER:
            self.set_reading(False)
        self.read_waiter.wake()

    def eof_received(self) -> bool:
        self.eof = True
        self.push_end()
        self.read_waiter.wake()
        return True  # keep our side open for writing (a half-closed connection may still be answered)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self.push_end()
        self.read_waiter.wake()
        self.write_waiter.wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.write_waiter.wake()

    def push_end(self) -> None:
        if self.push is not None and not self.pushed_end:
            self.pushed_end = True
            self.push(b"")

    def set_reading(self, on: bool) -> None:
        if on != self.reading and not self.lost and self.transport is not None:
            self.reading = on
            if on:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def taken(self, size: int) -> None:
        self.buffered -= size
        if self.buffered < HIGH_WATER:
            self.set_reading(True)


class _Waiter:
    """The one task waiting to read, or to write: a plain future, resolved only while pending (so a
    cancelled wait is never resolved afterwards); a second waiter is refused, as anyio's streams do."""

    def __init__(self, doing: str) -> None:
        self._doing = doing
        self._future: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        if self._future is not None:
            raise anyio.BusyResourceError(self._doing)
        self._future = future = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            self._future = None

    def wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)


class AsyncioSocketStream(anyio.abc.SocketStream):
    def __init__(self, sock: socket.socket, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._sock = sock
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    @classmethod
    async def wrap(cls, sock: socket.socket) -> AsyncioSocketStream:
        """Take over a connected, non-blocking socket."""
        protocol = _Protocol()
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock)
        assert isinstance(transport, asyncio.Transport)
        return cls(sock, transport, protocol)

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    def push_to(self, receiver: Callable[[bytes], None] | None) -> None:
        """From now on hand every chunk to ``receiver`` as it arrives, from the event loop's callback,
        instead of keeping it for :meth:`receive`; ``b""`` once, at the peer's end or when the connection
        broke or was closed. What was kept meanwhile is handed over at once, unless the receiver stops
        (``push_to(None)``) on one of them: the rest stays for :meth:`receive`. None: keep chunks again."""
        protocol = self._protocol
        protocol.push, protocol.pushed_end = receiver, False
        while receiver is not None and protocol.push is receiver and protocol.chunks:  # (it may stop on one)
            chunk = protocol.chunks.popleft()
            protocol.taken(len(chunk))
            receiver(chunk)
        if (protocol.eof or protocol.lost) and not protocol.chunks:
            protocol.push_end()

    def pause_reading(self) -> None:
        """Stop reading (the peer waits in the kernel's buffers) until :meth:`resume_reading`."""
        self._protocol.set_reading(False)

    def resume_reading(self) -> None:
        self._protocol.set_reading(True)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self._protocol
        if protocol.chunks:
            await asyncio.sleep(0)  # a checkpoint, as anyio's receive is one
        while not protocol.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.error is not None:
                raise anyio.BrokenResourceError from protocol.error
            if protocol.eof or protocol.lost:
                raise anyio.EndOfStream
            await protocol.read_waiter.wait()
        if self._closed:
            raise anyio.ClosedResourceError
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.appendleft(rest)
        protocol.taken(len(chunk))
        return chunk

    async def send(self, item: bytes) -> None:
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.error
        self._transport.write(item)
        while protocol.writing_paused:
            await protocol.write_waiter.wait()
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.lost:
                raise anyio.BrokenResourceError from protocol.error

    async def send_eof(self) -> None:
        try:
            self._transport.write_eof()
        except OSError:
            pass

    async def aclose(self) -> None:
        self._closed = True
        self._transport.abort()
        await asyncio.sleep(0)
