"""One connected worker (an ``mcptb-server`` process) on the relay's Unix socket.

Reads frames and hands them to the broker; writes what the broker queues for it. Limits: the
``hello`` must come within :data:`HELLO_TIMEOUT`; at most :data:`MAX_BAD_FRAMES` unusable lines are
answered (with an ``error`` frame each) before the link is dropped; a worker that does not read its
frames fast enough to keep :data:`OUTBOUND_BUFFER` from filling up is dropped. Frames queued while
a write is under way go out together in the next one (up to :data:`BATCH_BYTES`), each whole.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from shared_protocol import (
    PROTOCOL_VERSION,
    Accepted,
    End,
    ErrorFrame,
    Hello,
    ProtocolError,
    Ready,
    Refused,
    Release,
    Start,
    TextDelta,
    ToolCall,
    Update,
    Welcome,
    Withdraw,
    WorkerFrameDecoder,
    WorkerInfo,
    encode,
)

from ._broker import Broker
from ._config import Config
from ._jobs import Worker
from ._socket import stream_peer_uid

log = logging.getLogger("mcptb.relay")

HELLO_TIMEOUT = 10.0
MAX_BAD_FRAMES = 20
OUTBOUND_BUFFER = 1024
BATCH_BYTES = 65536
"""Frames queued together are written in one send up to this size (a larger frame goes alone)."""
_RECEIVE_SIZE = 1 << 20


async def serve_worker(stream: anyio.abc.SocketStream, broker: Broker, config: Config) -> None:
    async with stream:
        uid = stream_peer_uid(stream)
        if uid is not None and uid != os.getuid():
            await refuse_worker(
                stream, "forbidden", f"uid {uid} may not serve this relay (it runs as uid {os.getuid()})"
            )
            return
        decoder = WorkerFrameDecoder()
        hello = await _read_hello(stream, decoder)
        if hello is None:
            return
        if hello.version != PROTOCOL_VERSION:
            newer = "relay" if hello.version > PROTOCOL_VERSION else "MCP server"
            await refuse_worker(
                stream,
                "version",
                f"protocol version mismatch: relay speaks {PROTOCOL_VERSION}, "
                f"the MCP server {hello.version}; upgrade the {newer} side (pip install -U mcp-token-bridge)",
            )
            return
        outbound_in, outbound = anyio.create_memory_object_stream[bytes](OUTBOUND_BUFFER)

        def queue(line: bytes) -> bool:
            try:
                outbound_in.send_nowait(line)
            except anyio.WouldBlock:
                log.warning("worker %s is not reading its frames; dropping it", worker.id)
                outbound_in.close()
                return False
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return False
            return True

        worker = broker.add_worker(hello.worker, queue)
        info = hello.worker
        log.info("worker %s connected: %s", worker.id, describe(info))
        _warn_no_sampling(worker.id, None, info)
        try:
            await stream.send(encode(Welcome(version=PROTOCOL_VERSION, worker_id=worker.id)))
            async with anyio.create_task_group() as tg:
                tg.start_soon(_write_frames, stream, outbound, tg.cancel_scope)
                await _read_frames(stream, decoder, broker, worker)
                tg.cancel_scope.cancel()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            outbound_in.close()
            broker.remove_worker(worker)
            log.info("worker %s disconnected", worker.id)


def _warn_no_sampling(worker_id: str, before: WorkerInfo | None, info: WorkerInfo) -> None:
    """Say once per change that a client declaring sampling cannot be sampled (2026-07-28 era)."""
    if info.sampling_unavailable and (before is None or before.sampling_unavailable != info.sampling_unavailable):
        log.warning("worker %s has no background sampling: %s", worker_id, info.sampling_unavailable)


def _log_info(worker_id: str, verb: str, info: WorkerInfo) -> None:
    log.info("worker %s %s %s", worker_id, verb, describe(info))


def describe(info: WorkerInfo) -> str:
    """A worker for the log: ``claude-code 2.1.197 (MCP 2025-11-25), modes agent, models claude-code``."""
    client = " ".join(filter(None, [info.client_name, info.client_version])) or "a client not known yet"
    era = f"MCP {info.protocol_version}" if info.protocol_version else "MCP era not known yet"
    models = f", models {','.join(info.models)}" if info.models else ""
    return f"{client} ({era}), modes {','.join(info.modes) or 'none'}{models}"


async def _read_hello(stream: anyio.abc.SocketStream, decoder: WorkerFrameDecoder) -> Hello | None:
    with anyio.move_on_after(HELLO_TIMEOUT):
        while True:
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return None
            for item in decoder.feed(data):
                if isinstance(item, Hello):
                    return item
                await refuse_worker(stream, "bad_hello", f"the first frame must be a hello, got: {item}")
                return None
    await refuse_worker(stream, "bad_hello", f"no hello within {HELLO_TIMEOUT:g} s")
    return None


async def refuse_worker(stream: anyio.abc.SocketStream, code: str, message: str) -> None:
    log.warning("refusing a worker: %s", message)
    try:
        await stream.send(encode(Refused(code=code, message=message)))  # type: ignore[arg-type]
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


async def _write_frames(
    stream: anyio.abc.SocketStream,
    outbound: MemoryObjectReceiveStream[bytes],
    scope: anyio.CancelScope,
) -> None:
    carried: bytes | None = None  # a frame that did not fit the last write: it starts the next
    try:
        while True:
            line = carried if carried is not None else await outbound.receive()
            carried = None
            lines, size = [line], len(line)
            while size < BATCH_BYTES:  # what was queued meanwhile goes in the same send, frames whole
                try:
                    more = outbound.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                if size + len(more) > BATCH_BYTES:
                    carried = more
                    break
                lines.append(more)
                size += len(more)
            await stream.send(line if len(lines) == 1 else b"".join(lines))
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    scope.cancel()  # outbound closed or the socket broke: the link is over


async def _read_frames(
    stream: anyio.abc.SocketStream, decoder: WorkerFrameDecoder, broker: Broker, worker: Worker
) -> None:
    bad = 0
    while True:
        try:
            data = await stream.receive(_RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        for frame in decoder.feed(data):
            if isinstance(frame, ProtocolError):
                bad += 1
                log.warning("worker %s sent a bad frame (%d/%d): %s", worker.id, bad, MAX_BAD_FRAMES, frame)
                worker.send(encode(ErrorFrame(code="bad_frame", message=str(frame)[:1000])))
                if bad >= MAX_BAD_FRAMES:
                    log.warning("worker %s dropped after %d bad frames", worker.id, bad)
                    return
            elif isinstance(frame, Ready):
                broker.grant(worker, frame.slots)
            elif isinstance(frame, Withdraw):
                broker.withdraw(worker, frame.slots)
            elif isinstance(frame, Release):
                broker.release(worker, frame.id)
            elif isinstance(frame, Accepted):
                broker.accept(worker, frame.id, frame.handed)
            elif isinstance(frame, Update):
                if replace(frame.worker, agent=worker.info.agent) != worker.info:
                    _log_info(worker.id, "is", frame.worker)
                    _warn_no_sampling(worker.id, worker.info, frame.worker)
                elif frame.worker.agent != worker.info.agent:
                    log.debug("worker %s: agent %s", worker.id, frame.worker.agent)
                broker.update_worker(worker, frame.worker)
            elif isinstance(frame, (Start, TextDelta, ToolCall, End, ErrorFrame)):
                if isinstance(frame, ErrorFrame) and frame.id is None:
                    log.warning("worker %s reports: %s", worker.id, frame.message)
                else:
                    broker.on_answer(worker, frame)
            else:  # a second hello
                worker.send(encode(ErrorFrame(code="bad_frame", message=f"unexpected {frame.type} frame")))
