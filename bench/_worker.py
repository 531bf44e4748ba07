"""The instant worker: ``python -m bench._worker <socket>``.

It speaks the relay <-> worker protocol directly (no MCP, no model): ``hello`` with 64 slots of
concurrency, then, for every ``request``, at once ``start``, one ``text`` with the whole answer,
``end`` and ``ready`` (the slot back), written together. So the relay's numbers measure the relay and
its socket hop, not a model. Prints one line on stdout once the relay has welcomed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from shared_protocol import (
    PROTOCOL_VERSION,
    End,
    Hello,
    ProtocolError,
    Ready,
    RelayFrameDecoder,
    RequestFrame,
    Start,
    TextDelta,
    Welcome,
    WorkerInfo,
    encode,
)

from ._payload import ANSWER, MODEL

SLOTS = 64


def answer(request_id: str) -> bytes:
    return b"".join(
        encode(frame)
        for frame in (
            Start(id=request_id, model=MODEL),
            TextDelta(id=request_id, text=ANSWER),
            End(id=request_id, stop_reason="endTurn"),
            Ready(slots=1),
        )
    )


async def serve(path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    decoder = RelayFrameDecoder()
    info = WorkerInfo(client_name="bench-worker", modes=["sampling"], models=[MODEL], concurrency=SLOTS)
    writer.write(encode(Hello(version=PROTOCOL_VERSION, worker=info)))
    welcomed = False
    while data := await reader.read(1 << 16):
        out = bytearray()
        for frame in decoder.feed(data):
            if isinstance(frame, RequestFrame):
                out += answer(frame.id)
            elif isinstance(frame, Welcome) and not welcomed:
                welcomed = True
                out += encode(Ready(slots=SLOTS))
                print(f"bench-worker connected as {frame.worker_id}", flush=True)
            elif isinstance(frame, ProtocolError) or frame.type in ("refused", "error"):
                print(f"bench-worker: relay sent {frame}", file=sys.stderr, flush=True)
            # a cancel needs nothing: every answer is complete before the next read
        if out:
            writer.write(out)
            await writer.drain()
    writer.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1]))
