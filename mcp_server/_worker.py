"""The worker: :class:`~mcp_server._core.WorkerCore` wired to its shells.

Everything here is thin: events from the relay link, the MCP client's state and the two agent tools go
into the core, and the effects it returns are carried out at once (:meth:`Worker.apply`, synchronous:
a frame is queued on the link, a waiting agent is woken, a sampling task is started or cancelled).
The only waiting is the agent's (``next_request``) and the delivery of a reply.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp.server.context import ServerRequestContext

from shared_protocol import Cancel, ErrorFrame, Frame, Release, RequestFrame, WorkerInfo

from . import _record as record
from ._client import ClientState
from ._core import WorkerCore
from ._effects import Effect, Send, StartSampling, StopSampling, ToolText, Waiting, Wake
from ._relay_link import RelayLink
from ._sampling import answer_by_sampling

log = logging.getLogger("mcptb.server")

PROGRESS_INTERVAL = 15.0
"""While an agent waits, a progress notification this often (when the call has a progress token)."""


def _result(text: ToolText) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text.text)], is_error=text.error)


class Worker:
    def __init__(
        self,
        client: ClientState,
        socket_path: str | None,
        sampling_timeout: float,
        reconnect_max_delay: float,
        budget: int = 0,
        record_dir: str | None = None,
    ):
        """``socket_path`` None: find the relay where a default one listens (``_discovery``). With
        ``record_dir`` (``mcptb-serve``'s sessions), the core's tally is written there after every tool
        call that changed it, named by the session's key (``_record.session_key``)."""
        self.client = client
        self.sampling_timeout = sampling_timeout
        self.link = RelayLink(socket_path, reconnect_max_delay, self)
        self.core = WorkerCore(self.link.socket_path, client.info(), client.capacity, client.model_id, budget)
        session = record.session_key(os.environ, os.environ.get(record.SESSION_ENV))
        self._record = (record_dir, session) if record_dir and session else None
        if self._record is not None:  # restarted within the session: count on from its record
            self.core.tally = record.read(*self._record, record.Tally) or self.core.tally
        self._recorded = self.core.tally
        self._wakeups: dict[int, anyio.Event] = {}
        self._sampling: dict[str, anyio.CancelScope] = {}
        self._tasks: anyio.abc.TaskGroup | None = None
        client.on_change = self._client_changed

    async def run(self) -> None:
        """The relay link and the sampling tasks, until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            await self.link.run()

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.link.send_nowait(effect.frame)
            elif isinstance(effect, Wake):
                wakeup = self._wakeups.get(effect.waiter)
                if wakeup is not None:
                    wakeup.set()
            elif isinstance(effect, StartSampling):
                scope = self._sampling[effect.frame.id] = anyio.CancelScope()
                assert self._tasks is not None
                self._tasks.start_soon(self._sample, effect.frame, scope)
            elif isinstance(effect, StopSampling):
                log.info("%s cancelled: %s", effect.request_id, effect.reason)
                self._sampling[effect.request_id].cancel()

    # --- events from the client and the link --------------------------------------------------

    def _client_changed(self) -> None:
        self.apply(self.core.client_changed(self.client.info(), self.client.capacity, self.client.model_id))

    def hello_info(self) -> WorkerInfo:
        return self.core.described()

    def link_up(self, hello: WorkerInfo) -> None:
        self.apply(self.core.link_up(hello))

    def link_failed(self, error: str) -> None:
        self.apply(self.core.link_failed(error))

    def link_lost(self) -> None:
        self.apply(self.core.link_lost())

    def agents_waiting(self) -> bool:
        return self.core.waiting > 0

    def unreadable(self, request_id: str, problem: str) -> None:
        self.apply(self.core.unreadable(request_id, problem))

    def frame(self, frame: RequestFrame | Cancel) -> None:
        if isinstance(frame, RequestFrame):
            self.apply(self.core.request(frame))
        else:
            self.apply(self.core.cancel(frame.id, frame.reason))

    # --- background sampling ------------------------------------------------------------------

    async def _sample(self, frame: RequestFrame, scope: anyio.CancelScope) -> None:
        frames: list[Frame] = []
        try:
            with scope:
                session = self.client.session
                if session is None:
                    raise RuntimeError("no sampling session")
                frames = list(
                    await answer_by_sampling(
                        session,
                        frame,
                        self.sampling_timeout,
                        self.client.name or "unknown client",
                        self.client.saw_model,
                        tool_emulation=self.client.settings.tool_emulation,
                        repair_rounds=self.client.settings.repair_rounds,
                    )
                )
        except Exception as exc:
            log.exception("%s: failed", frame.id)
            frames = [ErrorFrame(id=frame.id, code="internal", message=f"mcptb-server failed: {exc!r}")]
        finally:
            del self._sampling[frame.id]
            if any(isinstance(f, Release) for f in frames):
                log.info("%s handed back: the MCP client's connection closed before it answered", frame.id)
                self.client.session_closed()  # first: our sampling slots go, so it cannot come back here
            self.apply(self.core.sampling_done(frame.id, frames))

    # --- agent pull: the two tools ------------------------------------------------------------

    def _write_record(self) -> None:
        """The serving record, when this server has one and the tally changed."""
        if self._record is None or self.core.tally == self._recorded:
            return
        self._recorded = self.core.tally
        try:
            record.write(*self._record, self._recorded)
        except OSError as exc:
            log.warning("cannot write the serving record in %s: %s", self._record[0], exc)

    async def next_request(
        self, ctx: ServerRequestContext[Any, Any], arguments: dict[str, Any]
    ) -> types.CallToolResult:
        try:
            return await self._next_request(ctx, arguments)
        finally:
            self._write_record()

    async def _next_request(
        self, ctx: ServerRequestContext[Any, Any], arguments: dict[str, Any]
    ) -> types.CallToolResult:
        step, effects = self.core.agent_waits(arguments)
        self.apply(effects)
        self._write_record()
        if not isinstance(step, Waiting):
            return _result(step)
        if self.core.link == "down":
            self.link.hurry()
        wakeup = self._wakeups[step.waiter] = anyio.Event()
        shown = False
        ended: ToolText | None = None
        try:
            with anyio.move_on_after(step.seconds):
                while True:
                    await self._wait_with_progress(ctx, wakeup, step.seconds)
                    await anyio.lowlevel.checkpoint()  # a cancel that raced the arrival surfaces here
                    request, effects = self.core.show(step.waiter)
                    self.apply(effects)
                    if request is not None:
                        shown = True
                        log.info("%s handed to the agent (%d characters)", request.frame.id, len(request.text))
                        return _result(ToolText(request.text))
                    wakeup = self._wakeups[step.waiter] = anyio.Event()  # taken back meanwhile: wait on
        finally:
            del self._wakeups[step.waiter]
            if not shown:  # the wait ran out, or the call was cancelled
                ended, effects = self.core.agent_gives_up(step.waiter, step.seconds)
                self.apply(effects)
        assert ended is not None
        return _result(ended)

    def show_request(self, arguments: dict[str, Any]) -> types.CallToolResult:
        return _result(self.core.show_again(arguments))

    async def _wait_with_progress(self, ctx: ServerRequestContext[Any, Any], wakeup: anyio.Event, wait: float) -> None:
        """Wait; report progress now and then (the SDK sends it only if the call asked for progress)."""
        waited = 0.0
        while not wakeup.is_set():
            with anyio.move_on_after(PROGRESS_INTERVAL):
                await wakeup.wait()
            if wakeup.is_set():
                return
            waited += PROGRESS_INTERVAL
            try:
                await ctx.session.report_progress(min(waited, wait), wait, "waiting for a request")
            except Exception:  # progress is a courtesy; never let it end the wait
                log.debug("progress notification failed", exc_info=True)

    async def reply(self, arguments: dict[str, Any]) -> types.CallToolResult:
        step = self.core.reply(arguments)
        if isinstance(step, ToolText):
            return _result(step)
        self._write_record()  # the reply is counted as it goes out
        with anyio.CancelScope(shield=True):  # once accepted, the reply is delivered or reported lost
            written = await self.link.deliver(step.frames)
        result, effects = self.core.reply_written(step.request_id, written)
        self.apply(effects)
        self._write_record()
        log.info("%s %s", step.request_id, "answered by the agent" if not result.error else "reply not delivered")
        return _result(result)
