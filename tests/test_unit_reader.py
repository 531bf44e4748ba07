"""The HTTP connection's reader (relay/_reader.py) over a real socket pair, on both backends (on
asyncio it is handed what arrives from the event loop's callback, on trio its task receives): a peer
that sends ahead is held back by the kernel, not buffered in the relay - also while the app answers
each request it parsed - and what it sent is all parsed, in order, as the connection's task asks for
more."""

from __future__ import annotations

import socket

import anyio
import h11
import pytest

from relay._reader import READ_AHEAD, Reader
from shared_protocol._unix import wrap

pytestmark = pytest.mark.anyio

ONE_READ = 256 * 1024
"""The most one read of the event loop takes (asyncio's; trio's reader takes 64 KiB)."""


def _requests(count: int) -> bytes:
    return b"".join(b"GET /%d HTTP/1.1\r\nhost: x\r\nx-pad: %s\r\n\r\n" % (i, b"p" * 900) for i in range(count))


async def test_a_peer_sending_ahead_waits_in_the_kernel_and_every_request_is_parsed_in_order(backend):
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    ahead = _requests(2000)  # about 2 MB
    conn = h11.Connection(h11.SERVER)
    async with await wrap(ours) as stream, anyio.create_task_group() as tg:
        reader = Reader(stream, conn)
        tg.start_soon(reader.run)
        sent = 0
        with anyio.move_on_after(1):
            while sent < len(ahead):
                try:
                    sent += theirs.send(ahead[sent : sent + 65536])
                except BlockingIOError:
                    await anyio.sleep(0.01)
        held = len(conn.trailing_data[0])
        assert sent < len(ahead), "the kernel took it all: make the test send more"
        assert held <= READ_AHEAD + ONE_READ, held

        paths: list[bytes] = []
        with anyio.fail_after(20):
            while len(paths) < 2000:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if sent < len(ahead):
                        try:
                            sent += theirs.send(ahead[sent : sent + 65536])
                        except BlockingIOError:
                            pass
                    assert await reader.more()
                elif isinstance(event, h11.Request):
                    paths.append(event.target)
                    await anyio.sleep(0.0005)  # the app answers: the event loop reads meanwhile
                elif isinstance(event, h11.EndOfMessage):
                    conn.send(h11.Response(status_code=204, headers=[]))
                    conn.send(h11.EndOfMessage())
                    conn.start_next_cycle()
                    reader.parsed()
                assert len(conn.trailing_data[0]) <= READ_AHEAD + ONE_READ
        assert paths == [b"/%d" % i for i in range(2000)]
        theirs.close()
        with anyio.fail_after(5):
            assert not await reader.more()  # the peer's end
        assert reader.ended
        tg.cancel_scope.cancel()
