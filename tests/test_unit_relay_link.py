"""mcptb-server's relay link writer (mcp_server/_relay_link.py), in process over a real socket pair:
the frames queued while it was busy go out in one send, whole, and a delivery is acknowledged only
once the send that carries it is done."""

from __future__ import annotations

import math
import socket

import anyio
import anyio.abc
import pytest

from mcp_server._relay_link import SEND_BATCH_BYTES, RelayLink
from shared_protocol import End, Ready, TextDelta, WorkerFrameDecoder, encode

pytestmark = pytest.mark.anyio


class RecordingStream:
    """A real socket stream that takes its time to send, and keeps what each ``send`` carried and
    when it returned."""

    def __init__(self, inner: anyio.abc.SocketStream, log: list[str]) -> None:
        self.inner, self.log, self.sends = inner, log, []

    async def send(self, data: bytes) -> None:
        await anyio.sleep(0.02)
        await self.inner.send(data)
        self.sends.append(data)
        self.log.append("sent")


def received(relay_end: socket.socket) -> bytes:
    """All the relay's end received, once the link's end is closed."""
    data = b""
    while chunk := relay_end.recv(1 << 20):
        data += chunk
    return data


async def write_queued(frames_before: list, frames_delivered: list) -> tuple[list[bytes], list[str], bytes]:
    """Queue ``frames_before`` with ``send_nowait`` and ``frames_delivered`` with ``deliver`` (which
    must return True), then let the link's writer run: (what each send carried, the log of sends and
    the delivery, the bytes the relay's end received)."""
    link = RelayLink(socket_path="unused", reconnect_max_delay=1.0, events=None)
    ours, relay_end = socket.socketpair()
    log: list[str] = []
    with relay_end:
        stream = RecordingStream(await anyio.abc.UNIXSocketStream.from_socket(ours), log)
        outbound, queued = anyio.create_memory_object_stream(math.inf)
        link._outbound, link._closed = outbound, anyio.Event()
        for frame in frames_before:
            link.send_nowait(frame)

        async def deliver() -> None:
            assert await link.deliver(frames_delivered)
            log.append("delivered")

        async with stream.inner, anyio.create_task_group() as tg:
            tg.start_soon(deliver)
            with anyio.fail_after(10):
                while queued.statistics().current_buffer_used < len(frames_before) + len(frames_delivered):
                    await anyio.sleep(0.001)
                tg.start_soon(link._write, stream, queued, tg.cancel_scope)
                while "delivered" not in log:
                    await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
        return stream.sends, log, received(relay_end)


async def test_frames_queued_meanwhile_go_in_one_send_and_the_delivery_is_acknowledged_after_it():
    before = [Ready(slots=1), Ready(slots=2)]
    delivered = [TextDelta(id="r1", text="Hello"), End(id="r1", stop_reason="endTurn")]
    sends, log, on_the_wire = await write_queued(before, delivered)
    assert sends == [b"".join(encode(frame) for frame in before + delivered)]
    assert log == ["sent", "delivered"]
    assert list(WorkerFrameDecoder().feed(on_the_wire)) == before + delivered


async def test_a_send_stops_growing_at_the_batch_size_and_frames_stay_whole():
    text = "x" * (SEND_BATCH_BYTES // 2)
    delivered = [TextDelta(id="r1", text=text), TextDelta(id="r1", text=text), TextDelta(id="r1", text=text)]
    sends, log, on_the_wire = await write_queued([], delivered)
    assert sends == [encode(delivered[0]) + encode(delivered[1]), encode(delivered[2])]
    assert log == ["sent", "sent", "delivered"]
    assert list(WorkerFrameDecoder().feed(on_the_wire)) == delivered
