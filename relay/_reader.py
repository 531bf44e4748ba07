"""The one task that reads an HTTP connection's socket.

It feeds h11 what arrives and wakes the connection's task, which waits in :meth:`Reader.more` when
h11 needs more bytes. One task per connection, for its whole life, rather than a watcher task per
request. Rules:
- It reads ahead only while h11 holds less than :data:`READ_AHEAD` bytes not yet parsed; then it
  waits until the connection's task has parsed them (:meth:`Reader.parsed`), so a peer that sends
  ahead (pipelining) is held back by the kernel, not buffered here.
- While the app answers (:meth:`Reader.answering`), the peer closing the connection (also before the
  app started, and a half-close) cancels the app's scope: that is how a caller that disconnects cancels
  its request all the way to the MCP client. Requests sent ahead are answered first.
- After an early refusal (:meth:`Reader.linger`) what still arrives is dropped, not parsed, until the
  peer closes or the time is up.
- A stream that can hand over what arrives from the event loop's callback (``push_to``: the relay's
  asyncio stream) is read that way: the connection's task is woken straight from the callback, and
  the reading task only sleeps until the connection ends. On trio the task reads.
"""

from __future__ import annotations

import anyio
import anyio.abc
import h11

from shared_protocol._unix import STREAM_GONE, pushing

READ_SIZE = 65536
READ_AHEAD = 65536
"""Bytes h11 may hold unparsed before the reader stops reading (the kernel's buffers hold the rest)."""


class Reader:
    def __init__(self, stream: anyio.abc.ByteStream, conn: h11.Connection) -> None:
        self._stream = stream
        self._conn = conn
        self.ended = False
        """The peer closed the connection (or it broke); h11 has been told."""
        self.gone = False
        """The peer closed it while the app was answering (which was then cancelled)."""
        self._fed = False
        self._dropping = False
        self._arrived: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self._app: anyio.CancelScope | None = None
        self._push = pushing(stream)
        self._paused = False

    async def run(self) -> None:
        """Read until the peer closes (or this task is cancelled with its connection)."""
        if self._push is not None:
            self._push.push_to(self._received)
            try:
                await anyio.sleep_forever()
            finally:
                self._push.push_to(None)
        while True:
            # (when h11 waits for bytes, it gets them whatever it holds)
            if self._arrived is None and not self._dropping and self._ahead():
                self._room = anyio.Event()
                await self._room.wait()
                continue
            try:
                data = await self._stream.receive(READ_SIZE)
            except STREAM_GONE:
                data = b""
            self._received(data)
            if self.ended:
                return

    def _received(self, data: bytes) -> None:
        """What arrived (b"": the peer's end): to h11, and wake the connection's task."""
        if self.ended:
            return
        if not data:
            self.ended = True
            if not self._dropping:
                self._conn.receive_data(b"")
            self._hang_up()
            self._wake()
            return
        if not self._dropping:
            self._conn.receive_data(data)
            self._fed = True
        self._wake()
        if self._push is not None and not self._dropping and self._ahead():
            self._paused = True  # until the connection's task has parsed it, or asks for more
            self._push.pause_reading()

    def _ahead(self) -> bool:
        """h11 holds as much as the reader may take ahead, unparsed."""
        return len(self._conn.trailing_data[0]) >= READ_AHEAD

    async def more(self) -> bool:
        """Wait until more bytes reached h11: True, or False when the peer closed instead."""
        self._fed = False
        while not self._fed and not self.ended:
            self._arrived = anyio.Event()
            self.parsed()
            await self._arrived.wait()
        return self._fed

    def parsed(self) -> None:
        """The connection's task parsed what h11 held: reading ahead may go on."""
        if self._room is not None:
            self._room.set()
            self._room = None
        if self._paused and (self._arrived is not None or self._dropping or not self._ahead()):
            self._paused = False
            assert self._push is not None
            self._push.resume_reading()

    def answering(self, scope: anyio.CancelScope | None) -> None:
        """The app answers within ``scope`` (None: it is done): the peer closing, now or before, cancels it."""
        self._app = scope
        if scope is not None and self.ended:
            self._hang_up()

    def _hang_up(self) -> None:
        """The peer closed: cancel the app answering, unless requests it sent ahead wait to be read (each
        of those is answered in turn; the peer's end then cancels the last one, as it would a single
        request followed by a half-close)."""
        if self._app is not None and not self._conn.trailing_data[0]:
            self.gone = True
            self._app.cancel()

    async def linger(self, seconds: float) -> None:
        """Drop what the peer still sends until it closes, for at most ``seconds``."""
        self._dropping = True
        self.parsed()
        with anyio.move_on_after(seconds):
            while not self.ended:
                await self.more()

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None
