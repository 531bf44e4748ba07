"""``shared_protocol._unix.receive_each`` over real socket pairs, on both backends (on asyncio the
stream hands chunks over from the event loop's callback, on trio the task receives them): chunks in
order until the taker says stop or the peer ends, and what the taker raises comes out of the call."""

from __future__ import annotations

import contextlib
import socket

import anyio
import pytest

from shared_protocol._unix import receive_each, wrap

pytestmark = pytest.mark.anyio


async def _pair() -> tuple[anyio.abc.SocketStream, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return await wrap(ours), theirs


async def test_chunks_arrive_in_order_until_the_peer_ends(backend):
    stream, theirs = await _pair()
    taken = bytearray()

    def take(data: bytes) -> bool:
        taken.extend(data)
        return True

    async with stream:
        for i in range(20):
            theirs.sendall(b"%d," % i)
        theirs.shutdown(socket.SHUT_WR)
        with anyio.fail_after(5):
            await receive_each(stream, take, 1 << 16)
    assert taken == b"".join(b"%d," % i for i in range(20))
    theirs.close()


async def test_the_taker_stops_it_and_the_stream_is_received_from_again_after(backend):
    stream, theirs = await _pair()
    taken: list[bytes] = []

    def take(data: bytes) -> bool:
        taken.append(data)
        return False

    async with stream:
        theirs.sendall(b"first")
        with anyio.fail_after(5):
            await receive_each(stream, take, 1 << 16)
            assert taken == [b"first"]
            theirs.sendall(b"second")
            assert await stream.receive() == b"second"
    theirs.close()


async def test_what_the_taker_raises_is_raised_by_the_call(backend):
    stream, theirs = await _pair()

    def take(data: bytes) -> bool:
        raise ValueError(data.decode())

    async with stream:
        theirs.sendall(b"boom")
        with anyio.fail_after(5), pytest.raises(ValueError, match="boom"):
            await receive_each(stream, take, 1 << 16)
    theirs.close()


async def test_a_cancelled_call_takes_nothing_more(backend):
    stream, theirs = await _pair()
    taken: list[bytes] = []

    def take(data: bytes) -> bool:
        taken.append(data)
        return True

    async with stream:
        with anyio.move_on_after(0.05):
            await receive_each(stream, take, 1 << 16)
        theirs.sendall(b"after")
        with anyio.fail_after(5):
            assert await stream.receive() == b"after"
        assert taken == []
    theirs.close()


@pytest.mark.parametrize("stop", ["returns False", "raises"])
async def test_chunks_that_arrived_before_the_call_and_after_the_stop_stay_in_the_stream(backend, stop):
    stream, theirs = await _pair()
    taken: list[bytes] = []

    def take(data: bytes) -> bool:
        taken.append(data)
        if stop == "raises":
            raise ValueError("stop")
        return False

    async with stream:
        theirs.sendall(b"first")
        await anyio.sleep(0.05)  # read by the event loop (on asyncio) as a chunk of its own
        theirs.sendall(b"second")
        await anyio.sleep(0.05)
        with anyio.fail_after(5):
            try:
                await receive_each(stream, take, 1 << 16)
            except ValueError:
                assert stop == "raises"
            theirs.sendall(b"third")
            theirs.shutdown(socket.SHUT_WR)
            rest = bytearray()
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    rest += await stream.receive()
    assert len(taken) == 1  # on asyncio b"first", on trio what the kernel held by then
    assert taken[0] + rest == b"firstsecondthird"  # nothing lost, nothing twice
    theirs.close()


async def test_a_second_call_after_the_end_returns_too(backend):
    stream, theirs = await _pair()
    async with stream:
        theirs.sendall(b"a")
        theirs.shutdown(socket.SHUT_WR)
        with anyio.fail_after(5):
            await receive_each(stream, lambda data: True, 1 << 16)
            await receive_each(stream, lambda data: True, 1 << 16)
    theirs.close()
