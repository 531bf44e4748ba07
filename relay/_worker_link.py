"""One connected worker (an ``mcptb-server`` process) on the relay's Unix socket.

Reads frames and hands them to the broker; writes what the broker queues for it. Limits: the
``hello`` must come within :data:`HELLO_TIMEOUT`; at most :data:`MAX_BAD_FRAMES` unusable lines are
answered (with an ``error`` frame each) before the link is dropped; a worker that does not read its
frames fast enough to keep :data:`OUTBOUND_BUFFER` from filling up is dropped at once (even while a
write to it is stuck). Frames queued while a write is under way go out together in the next one (up
to :data:`BATCH_BYTES`), each whole.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import replace

import anyio
import anyio.abc

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
from shared_protocol._unix import receive_each

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
        outbox = _Outbox()
        link = anyio.CancelScope()

        def queue(line: bytes) -> bool:
            if outbox.put(line):
                return True
            if not outbox.closed:
                log.warning("worker %s is not reading its frames; dropping it", worker.id)
                outbox.close()
                link.cancel()  # its writer may be stuck in a send: the link ends now, its jobs move or fail
            return False

        worker = broker.add_worker(hello.worker, queue)
        info = hello.worker
        log.info("worker %s connected: %s", worker.id, describe(info))
        _warn_no_sampling(worker.id, None, info)
        try:
            with link:
                await stream.send(encode(Welcome(version=PROTOCOL_VERSION, worker_id=worker.id)))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_write_frames, stream, outbox, tg.cancel_scope)
                    await receive_each(stream, _FrameReader(decoder, broker, worker), _RECEIVE_SIZE)
                    tg.cancel_scope.cancel()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            outbox.close()
            broker.remove_worker(worker)
            log.info("worker %s disconnected", worker.id)


class _Outbox:
    """The frames queued for the worker (at most :data:`OUTBOUND_BUFFER`) and the writer's wake-up."""

    def __init__(self) -> None:
        self.lines: deque[bytes] = deque()
        self.closed = False
        self._waiter: anyio.Event | None = None

    def put(self, line: bytes) -> bool:
        """Queue a frame: False when the link is closed or the worker has too many unread."""
        if self.closed or len(self.lines) >= OUTBOUND_BUFFER:
            return False
        self.lines.append(line)
        self._wake()
        return True

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def take(self) -> bytes | None:
        """What is queued, as one send (frames whole, up to :data:`BATCH_BYTES` unless the first is
        larger); None once closed."""
        lines = self.lines
        while not lines:
            if self.closed:
                return None
            self._waiter = anyio.Event()
            await self._waiter.wait()
        if self.closed:
            return None
        first = lines.popleft()
        if not lines:
            return first
        batch, size = [first], len(first)
        while lines and size + len(lines[0]) <= BATCH_BYTES:
            size += len(lines[0])
            batch.append(lines.popleft())
        return b"".join(batch)

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None


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


async def _write_frames(stream: anyio.abc.SocketStream, outbox: _Outbox, scope: anyio.CancelScope) -> None:
    try:
        while (data := await outbox.take()) is not None:
            await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    scope.cancel()  # the outbox closed or the socket broke: the link is over


class _FrameReader:
    """Each chunk the worker sends, decoded and handed to the broker; False once the link must end."""

    def __init__(self, decoder: WorkerFrameDecoder, broker: Broker, worker: Worker) -> None:
        self.decoder = decoder
        self.broker = broker
        self.worker = worker
        self.bad = 0

    def __call__(self, data: bytes) -> bool:
        broker, worker = self.broker, self.worker
        for frame in self.decoder.feed(data):
            if isinstance(frame, ProtocolError):
                self.bad += 1
                log.warning("worker %s sent a bad frame (%d/%d): %s", worker.id, self.bad, MAX_BAD_FRAMES, frame)
                worker.send(encode(ErrorFrame(code="bad_frame", message=str(frame)[:1000])))
                if self.bad >= MAX_BAD_FRAMES:
                    log.warning("worker %s dropped after %d bad frames", worker.id, self.bad)
                    return False
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
        return True
