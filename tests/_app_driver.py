"""The relay's app alone, driven directly by unit tests: no socket, no ``serve``, no ``mcptb-server``
(for the whole relay and worker in the test's loop, see _inprocess.py).

:class:`FakeResponder` records what ``relay._app.App`` writes, as ``relay._responder.Responder`` would send
it (each ``write`` is one chunk on the wire). :class:`ScriptedWorker` sits on a real broker and
answers every request with canned frames, the way an ``mcptb-server`` would over the socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio

from relay._api import error_page
from relay._app import App
from relay._broker import Broker
from relay._config import Config
from relay._errors import error_headers
from relay._jobs import Timing
from relay._responder import ClientGone, HttpRequest, RequestLog
from relay._timer import Timer
from shared_protocol import AnswerFrame, NeutralRequest, RelayFrameDecoder, RequestFrame, WorkerInfo

from _sse import split


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    writes: list[bytes]
    """The body as the app wrote it: the whole of it for JSON, the first bytes then each write for a stream."""

    @property
    def body(self) -> bytes:
        return b"".join(self.writes)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def sse_events(self) -> list[str]:
        return split(self.body)


class FakeResponder:
    def __init__(self, gone_at: bytes | None = None) -> None:
        self.gone_at = gone_at
        """The caller hangs up as the app writes bytes containing this: the write raises ClientGone."""
        self.record = RequestLog()
        self.started = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.writes: list[bytes] = []

    async def send(self, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        await self.start(status, [("content-type", content_type), *headers], body)

    async def start(self, status: int, headers: Iterable[tuple[str, str]], first: bytes = b"") -> None:
        assert not self.started, "a response was started twice"
        self._check(first)
        self.started = True
        self.status = status
        self.headers = list(headers)
        self.writes.append(first)

    async def write(self, data: bytes) -> None:
        self._check(data)
        self.writes.append(data)

    def _check(self, data: bytes) -> None:
        if self.gone_at is not None and self.gone_at in data:
            raise ClientGone()

    async def end(self) -> None:
        pass

    def result(self) -> Result:
        return Result(self.status, {k.lower(): v for k, v in self.headers}, self.writes)


class ScriptedWorker:
    """Answers each request with ``script``: frames (their ``id`` is replaced by the request's), a number
    of seconds to wait, or ``"hold"`` (never answer)."""

    def __init__(self, broker: Broker, script: list[Any], slots: int, info: WorkerInfo) -> None:
        self.broker = broker
        self.script = script
        self.frames: list[Any] = []
        """Every frame the relay sent this worker."""
        self._inbox, self._outbox = anyio.create_memory_object_stream[Any](1000)
        self.handle = broker.add_worker(info, self._send)
        broker.grant(self.handle, slots)

    @property
    def requests(self) -> list[NeutralRequest]:
        return [f.request for f in self.frames if isinstance(f, RequestFrame)]

    def _send(self, line: bytes) -> bool:
        for frame in RelayFrameDecoder().feed(line):
            self.frames.append(frame)
            self._inbox.send_nowait(frame)
        return True

    async def serve(self) -> None:
        async for frame in self._outbox:
            if isinstance(frame, RequestFrame):
                await self._answer(frame.id)

    async def _answer(self, job_id: str) -> None:
        for step in self.script:
            if step == "hold":
                return
            if isinstance(step, (int, float)):
                await anyio.sleep(step)
                continue
            frame: AnswerFrame = replace(step, id=job_id)
            self.broker.on_answer(self.handle, frame)
        self.broker.grant(self.handle, 1)


@dataclass
class Relay:
    app: App
    broker: Broker
    worker: ScriptedWorker | None

    async def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: str = "",
        responder: FakeResponder | None = None,
    ) -> Result:
        head = {"host": "127.0.0.1:8000", "content-type": "application/json", **(headers or {})}
        responder = responder or FakeResponder()
        request = HttpRequest(method, path, query, head, body)
        refused = self.app.admit(request)  # as serve_connection does, on the head alone
        if refused is not None:
            page = error_page(refused, path)
            await responder.send(refused.shape.status, page, "application/json", error_headers(refused))
        else:
            await self.app(request, responder)  # type: ignore[arg-type]
        return responder.result()

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None, responder: FakeResponder | None = None
    ) -> Result:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.call("POST", path, data, headers, responder=responder)


@asynccontextmanager
async def in_process(
    script: list[Any] | None = None, *, slots: int = 100, info: WorkerInfo | None = None, **settings: Any
) -> AsyncIterator[Relay]:
    """The app on a real broker; with a ``script``, one worker that answers with it (see :class:`ScriptedWorker`)."""
    config = Config(socket="/tmp/mcptb-test/relay.sock", **settings)
    timer = Timer()
    broker = Broker(
        max_queue=config.max_queue,
        socket_path=config.socket,
        max_unread=config.max_unread,
        timing=Timing.of(config),
        on_earlier=timer.earlier,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(timer.run, broker)
        worker = None
        if script is not None:
            worker = ScriptedWorker(broker, script, slots, info or WorkerInfo(client_name="fake", tools=True))
            tg.start_soon(worker.serve)
        yield Relay(App(config, broker), broker, worker)
        tg.cancel_scope.cancel()
