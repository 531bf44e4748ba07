"""The asyncio socket stream (shared_protocol._asyncio_stream) over real socket pairs: what it reads
ahead stays bounded, nothing is lost or reordered (also across a cancelled receive), and its ends
and failures are anyio's (EndOfStream, BrokenResourceError, ClosedResourceError). On trio the
streams are anyio's wrappers of trio's own, tested by everything else."""

from __future__ import annotations

import socket
from collections.abc import Callable

import anyio
import pytest

from shared_protocol._asyncio_stream import HIGH_WATER, AsyncioSocketStream
from shared_protocol._unix import wrap

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return ours, theirs


async def test_wrap_gives_this_stream_on_asyncio():
    ours, theirs = pair()
    async with await wrap(ours) as stream:
        assert isinstance(stream, AsyncioSocketStream)
        assert stream.extra(anyio.abc.SocketAttribute.raw_socket) is ours
    theirs.close()


async def test_a_peer_that_sends_more_than_is_read_fills_the_kernel_not_this_process():
    ours, theirs = pair()
    theirs.setblocking(False)
    sent = bytearray()
    async with await AsyncioSocketStream.wrap(ours) as stream:
        for i in range(50):  # the peer writes as long as the kernel takes it; we read nothing
            piece = bytes([i]) * 65536
            try:
                sent += piece[: theirs.send(piece)]
            except BlockingIOError:
                await anyio.sleep(0.01)
        assert len(sent) > 4 * HIGH_WATER
        held = stream._protocol.buffered
        assert held < HIGH_WATER + 512 * 1024, held  # the mark, plus at most one read of the loop
        received = bytearray()  # reading resumes as the buffer is taken: all of it arrives, in order
        with anyio.fail_after(10):
            while len(received) < len(sent):
                received += await stream.receive()
        assert received == sent
    theirs.close()


async def test_nothing_is_lost_across_a_cancelled_receive_and_large_chunks_are_split():
    ours, theirs = pair()
    async with await AsyncioSocketStream.wrap(ours) as stream:
        with anyio.move_on_after(0.05):
            await stream.receive()
        theirs.sendall(b"abcdef")
        with anyio.fail_after(5):
            assert await stream.receive(4) == b"abcd"
            assert await stream.receive(4) == b"ef"
    theirs.close()


async def test_a_send_returns_once_the_kernel_took_it_all_so_a_deadline_covers_a_slow_reader():
    ours, theirs = pair()
    theirs.setblocking(False)
    async with await AsyncioSocketStream.wrap(ours) as stream:
        with anyio.move_on_after(0.2) as scope:
            await stream.send(b"z" * 8_000_000)  # the peer reads nothing: the send waits
        assert scope.cancelled_caught
        taken = bytearray()

        async def peer_reads() -> None:
            while len(taken) < 8_000_001:
                await anyio.wait_readable(theirs)
                taken.extend(theirs.recv(1 << 20))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer_reads)
                await stream.send(b"!")  # what the cancelled send left goes first, nothing is lost
        assert taken == b"z" * 8_000_000 + b"!"
    theirs.close()


async def test_the_peers_end_a_reset_and_our_own_close_are_told_apart():
    ours, theirs = pair()
    stream = await AsyncioSocketStream.wrap(ours)
    theirs.sendall(b"last words")
    theirs.shutdown(socket.SHUT_WR)
    with anyio.fail_after(5):
        assert await stream.receive() == b"last words"
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.send(b"an answer after the peer's end")  # half-closed: we may still answer
        assert theirs.recv(100) == b"an answer after the peer's end"
    await stream.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"x")
    theirs.close()

    ours, theirs = pair()
    stream = await AsyncioSocketStream.wrap(ours)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    theirs.close()
    with anyio.fail_after(5):
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await stream.receive()
        with pytest.raises(anyio.BrokenResourceError):
            for _ in range(100):
                await stream.send(b"x" * 65536)
                await anyio.sleep(0.01)
    await stream.aclose()


async def _until(condition: Callable[[], object]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.005)


async def test_push_hands_over_what_was_kept_then_what_arrives_in_order_and_the_end_once():
    ours, theirs = pair()
    async with await AsyncioSocketStream.wrap(ours) as stream:
        theirs.sendall(b"kept")
        await _until(lambda: stream._protocol.buffered)
        pushed: list[bytes] = []
        stream.push_to(pushed.append)
        assert pushed == [b"kept"]  # at once, from the call
        theirs.sendall(b"live")
        await _until(lambda: len(pushed) == 2)
        theirs.shutdown(socket.SHUT_WR)
        await _until(lambda: len(pushed) == 3)
        assert pushed == [b"kept", b"live", b""]
        await stream.send(b"still answered")  # half-closed: our side may still write
        assert theirs.recv(100) == b"still answered"
        theirs.close()
        await anyio.sleep(0.05)
        assert pushed == [b"kept", b"live", b""]  # the connection's loss is not a second end


async def test_push_after_the_end_says_the_end_and_none_gives_chunks_back_to_receive():
    ours, theirs = pair()
    async with await AsyncioSocketStream.wrap(ours) as stream:
        pushed: list[bytes] = []
        stream.push_to(pushed.append)
        theirs.sendall(b"pushed")
        await _until(lambda: pushed)
        stream.push_to(None)
        theirs.sendall(b"received")
        with anyio.fail_after(5):
            assert await stream.receive() == b"received"
        theirs.shutdown(socket.SHUT_WR)
        with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
            await stream.receive()
        stream.push_to(pushed.append)  # the end already came: the receiver is told at once
        assert pushed == [b"pushed", b""]
    theirs.close()


async def test_paused_reading_leaves_a_pushing_peer_in_the_kernel_and_resuming_delivers_it_all():
    ours, theirs = pair()
    theirs.setblocking(False)
    async with await AsyncioSocketStream.wrap(ours) as stream:
        pushed = bytearray()
        stream.push_to(pushed.extend)
        stream.pause_reading()
        sent = bytearray()
        for i in range(50):
            piece = bytes([i]) * 65536
            try:
                sent += piece[: theirs.send(piece)]
            except BlockingIOError:
                break
            await anyio.sleep(0.001)
        await anyio.sleep(0.05)
        assert len(sent) > 65536 and not pushed  # nothing read while paused: the kernel holds it
        stream.resume_reading()
        await _until(lambda: len(pushed) == len(sent))
        assert pushed == sent
    theirs.close()
