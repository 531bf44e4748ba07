"""The frames the relay queues for one worker (relay/_worker_link.py's outbox): what was queued while
a write was under way goes out in one send, frames whole and in order, at most BATCH_BYTES unless a
frame alone is larger; more than OUTBOUND_BUFFER frames waiting is refused (the worker is then
dropped); a closed outbox ends the writer."""

from __future__ import annotations

import anyio
import pytest

from relay._worker_link import BATCH_BYTES, OUTBOUND_BUFFER, _Outbox

pytestmark = pytest.mark.anyio


def frame(i: int, size: int = 100) -> bytes:
    body = b"%d:" % i
    return body + b"x" * (size - len(body) - 1) + b"\n"


async def test_frames_queued_together_go_out_in_one_send_in_order_and_whole(backend):
    outbox = _Outbox()
    frames = [frame(i, 30_000) for i in range(5)] + [frame(5, BATCH_BYTES + 1), frame(6)]
    for f in frames:
        assert outbox.put(f)
    sends = []
    with anyio.fail_after(5):
        while outbox.lines:
            sends.append(await outbox.take())
    assert b"".join(sends) == b"".join(frames)
    assert [len(s) for s in sends] == [60_000, 60_000, 30_000, BATCH_BYTES + 1, 100]  # whole frames only


async def test_the_writer_waits_for_a_frame_and_a_close_ends_it(backend):
    outbox = _Outbox()
    taken = []

    async def writer() -> None:
        while (data := await outbox.take()) is not None:
            taken.append(data)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await anyio.sleep(0.01)
            outbox.put(frame(1))
            await anyio.sleep(0.01)
            assert taken == [frame(1)]
            outbox.close()
    assert not outbox.put(frame(2))


async def test_a_worker_that_reads_nothing_gets_at_most_the_buffer(backend):
    outbox = _Outbox()
    assert all(outbox.put(frame(i)) for i in range(OUTBOUND_BUFFER))
    assert not outbox.put(frame(OUTBOUND_BUFFER))
    assert len(outbox.lines) == OUTBOUND_BUFFER
