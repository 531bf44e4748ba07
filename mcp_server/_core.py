"""The worker's decisions, in one synchronous core: slots, waiting agents, requests shown to an agent,
requests being sampled, replies.

No I/O, no awaiting, no ``mcp`` import (like the relay's broker and h11's ``Connection``): the shells
report what happened by calling a method, and each method returns the effects to carry out, in order
(:class:`Send` a frame to the relay, :class:`Wake` a waiting agent, :class:`StartSampling`,
:class:`StopSampling`). Every state change is one call, so it is atomic on both backends, and every
race is a sequence of calls a unit test can replay.

Rules:
- Pull: the relay holds exactly as many of our slots as we can take right now, free sampling capacity
  plus agents waiting in ``next_request`` with nothing delivered yet (:meth:`WorkerCore._balance`,
  after every event). A slot is only announced while the link is up; a new link starts from zero.
  With the slots goes whether an agent is serving (waiting, or working on a request it was shown):
  the relay fails requests fast when nobody is.
- A request goes to the longest-waiting agent first, else to background sampling; one that neither can
  take (a slot crossed a ``withdraw``) is handed back with ``release``.
- A request delivered to an agent whose call ends before it returned the request (timeout, cancel) goes
  back with ``release``: nobody saw it. Once shown, it stays open until ``reply``, the relay's
  ``cancel``, or a lost link; it is never handed back by us. (If this MCP server exits before the
  reply, the relay re-queues it like any request that has no answer frame yet: see docs/protocol.md.)
- A reply is accepted once. Its request counts as answered only when its frames were written; a link
  that breaks during the delivery leaves it closed as "link lost", which a retried reply is told.
- ``next_request`` waits its ``wait_seconds`` whether or not the relay is reachable: a relay that
  comes back (or starts) during the wait serves it a request; one that does not is reported at the
  end of the wait with what to run. So an agent that calls it in a loop makes at most one call per
  wait, never a spin of paid model turns against a relay that is down.
- A serving session's tally (:class:`Tally`: ``next_request`` calls, requests shown and characters
  handed to its agent, replies delivered) is kept here; past ``budget`` characters handed,
  ``next_request`` takes no more requests and tells the agent to end its turn, so that ``mcptb-serve``
  starts a fresh session whose context is small again.
- Schema-true: a request whose answer format or tool schemas cannot be used is answered with an
  ``unsupported`` error at once; a reply whose content breaks the requested format, or whose tool
  call arguments break the tool's schema, is refused with the validation errors and the request
  stays open for a corrected reply.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from shared_protocol import (
    Accepted,
    ErrorFrame,
    Frame,
    Message,
    NeutralRequest,
    Ready,
    Release,
    RequestFrame,
    Update,
    Withdraw,
    WorkerInfo,
)

from ._effects import Delivery, Effect, Send, Shown, StartSampling, StopSampling, ToolText, Waiting, Wake
from ._record import Tally
from ._render import BUDGET_SPENT, NO_REQUEST, RELAY_DOWN, render_request
from ._reply import read_reply
from ._seen import Seen
from ._structured import schema_problem

DEFAULT_WAIT_SECONDS = 25
"""How long ``next_request`` waits when the agent does not say: under half of the shortest common MCP
client tool timeout (the TypeScript SDK's 60 s; Codex CLI 0.171 allows 300 s, Gemini CLI 600 s, Claude
Code far more), so an idle wait ends with "no request yet" rather than a client-side timeout, even with
the client's own latency on top. An idle agent then polls about twice a minute."""
MAX_WAIT_SECONDS = 600
CLOSED_MEMORY = 1000
"""How many answered or abandoned request ids are remembered, to explain a late reply."""
MAX_GRANT = 1024
"""Most slots one ``ready`` or ``withdraw`` may carry (the protocol's bound)."""


@dataclass(frozen=True)
class _Replying:
    frame: RequestFrame
    summary: str
    message: Message
    """The reply as the assistant turn a caller passes back next time (``Seen.replied``)."""
    failed: str | None = None
    """Set when the caller left or the link broke while the frames were being written."""


LinkState = Literal["connecting", "up", "down"]


class WorkerCore:
    def __init__(
        self, socket_path: str, info: WorkerInfo, capacity: int = 0, model_id: str = "mcp-client", budget: int = 0
    ) -> None:
        self.socket_path = socket_path
        self.info = info
        """What we know about our MCP client now (sent as ``hello``, then as ``update`` on changes)."""
        self.capacity = capacity
        """Background-sampling requests we may run at once (0 when the client cannot sample)."""
        self.model_id = model_id
        """The model an agent's replies report."""
        self.link: LinkState = "connecting"
        self.link_error: str | None = None
        self._announced: WorkerInfo | None = None
        self._granted = 0
        self._next_waiter = 0
        self._waiters: dict[int, RequestFrame | None] = {}
        """Agents in ``next_request``, oldest first, each with the request delivered to it (if any)."""
        self._sampling: set[str] = set()
        self._stopped: set[str] = set()
        """Sampling requests told to stop: whatever they still produce is dropped."""
        self._shown: dict[str, RequestFrame] = {}
        self._replying: dict[str, _Replying] = {}
        self._closed: OrderedDict[str, str] = OrderedDict()
        self._seen = Seen()
        self.budget = budget
        """Characters handed to the agent after which it is told to end its turn (0: no budget)."""
        self.tally = Tally()

    # --- the client -------------------------------------------------------------------------

    def client_changed(self, info: WorkerInfo, capacity: int, model_id: str) -> list[Effect]:
        self.info, self.capacity, self.model_id = info, capacity, model_id
        return self._balance()

    # --- the relay link ---------------------------------------------------------------------

    def link_up(self, hello: WorkerInfo) -> list[Effect]:
        """The relay welcomed us; ``hello`` is the description our hello carried."""
        self.link, self.link_error = "up", None
        self._announced, self._granted = hello, 0
        return self._balance()

    def link_failed(self, error: str) -> list[Effect]:
        """A connection attempt failed (agents already waiting keep waiting: it may come back)."""
        self.link, self.link_error = "down", error
        return []

    def link_lost(self) -> list[Effect]:
        """The connection ended: everything the relay had given us is void (it re-queues or fails it)."""
        self.link, self.link_error = "down", "the connection to the relay was lost; reconnecting"
        self._announced, self._granted = None, 0
        for waiter, frame in self._waiters.items():
            if frame is not None:
                self._waiters[waiter] = None
        for request_id in list(self._shown):
            self._close(request_id, "the connection to the relay was lost before the reply")
        for request_id, replying in self._replying.items():
            self._replying[request_id] = dataclasses.replace(replying, failed="link lost")
        return self._stop_all("the connection to the relay was lost")

    def request(self, frame: RequestFrame) -> list[Effect]:
        self._granted = max(0, self._granted - 1)
        if self._holds(frame.id):
            return [Send(Release(id=frame.id)), *self._balance()]  # a duplicate: never answer twice
        problem = request_problem(frame.request)
        if problem is not None:
            return [Send(ErrorFrame(id=frame.id, code="unsupported", message=problem)), *self._balance()]
        waiter = next((w for w, delivered in self._waiters.items() if delivered is None), None)
        if waiter is not None:
            self._waiters[waiter] = frame
            return [Wake(waiter), *self._balance()]
        if len(self._sampling) < self.capacity:
            self._sampling.add(frame.id)
            return [StartSampling(frame), *self._balance()]
        return [Send(Release(id=frame.id)), *self._balance()]

    def unreadable(self, request_id: str, problem: str) -> list[Effect]:
        """The relay sent a request this worker cannot read (a newer or broken relay): it took a slot, so
        answer it with an error at once, which frees the caller and lets the slot be granted again."""
        self._granted = max(0, self._granted - 1)
        message = f"mcptb-server could not read this request from the relay: {problem}"
        return [Send(ErrorFrame(id=request_id, code="bad_frame", message=message)), *self._balance()]

    def cancel(self, request_id: str, reason: str) -> list[Effect]:
        """The relay cancelled a request (its caller left or timed out)."""
        if request_id in self._shown:
            self._close(request_id, f"its caller is gone ({reason})")
        elif request_id in self._replying:
            replying = self._replying[request_id]
            self._replying[request_id] = dataclasses.replace(replying, failed=f"its caller is gone ({reason})")
        elif request_id in self._sampling and request_id not in self._stopped:
            self._stopped.add(request_id)
            return [StopSampling(request_id, reason)]
        else:
            for waiter, frame in self._waiters.items():
                if frame is not None and frame.id == request_id:
                    self._waiters[waiter] = None  # not shown yet: that agent simply waits on
                    return self._balance()
        return []

    # --- background sampling ----------------------------------------------------------------

    def sampling_done(self, request_id: str, frames: list[Frame]) -> list[Effect]:
        """A sampling task ended with these answer frames (none if it was stopped)."""
        self._sampling.discard(request_id)
        stopped = request_id in self._stopped
        self._stopped.discard(request_id)
        sends: list[Effect] = [] if stopped or self.link != "up" else [Send(f) for f in frames]
        return sends + self._balance()

    # --- agent pull: next_request -----------------------------------------------------------

    def agent_waits(self, arguments: dict[str, Any]) -> tuple[ToolText | Waiting, list[Effect]]:
        """An agent called ``next_request``: register it (its slot is announced), or answer at once."""
        wait = arguments.get("wait_seconds", DEFAULT_WAIT_SECONDS)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 1 <= wait <= MAX_WAIT_SECONDS:
            return ToolText(f"wait_seconds must be a number from 1 to {MAX_WAIT_SECONDS}.", error=True), []
        if self.budget and self.tally.handed >= self.budget:
            self.tally = dataclasses.replace(self.tally, spent=True)
            return ToolText(BUDGET_SPENT.format(handed=self.tally.handed, budget=self.budget)), []
        self.tally = dataclasses.replace(self.tally, waits=self.tally.waits + 1)
        waiter = self._next_waiter
        self._next_waiter += 1
        self._waiters[waiter] = None
        return Waiting(waiter, float(wait)), self._balance()

    def show(self, waiter: int) -> tuple[Shown | None, list[Effect]]:
        """The woken agent's call is about to return its request, which from now on counts as shown
        (the relay is told an agent works on it: ``accepted``); None if the request was taken back
        meanwhile (its caller left), so the agent waits on."""
        frame = self._waiters.get(waiter)
        if frame is None:
            return None, []
        del self._waiters[waiter]
        self._shown[frame.id] = frame
        text = render_request(frame, self._seen.refs(frame))
        self._seen.note(frame)
        self.tally = dataclasses.replace(self.tally, shown=self.tally.shown + 1, handed=self.tally.handed + len(text))
        return Shown(frame, text), [Send(Accepted(id=frame.id, handed=len(text)))]

    def show_again(self, arguments: dict[str, Any]) -> ToolText:
        """``show_request``: an open request in full, references resolved."""
        request_id = arguments.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            return ToolText("request_id is required: copy it from the first line of the request.", error=True)
        frame = self._shown.get(request_id)
        if frame is None:
            return ToolText(self._not_open(request_id), error=True)
        return ToolText(render_request(frame))

    def agent_gives_up(self, waiter: int, seconds: float) -> tuple[ToolText, list[Effect]]:
        """The agent's call ended without a request shown (its wait ran out, or it was cancelled)."""
        frame = self._waiters.pop(waiter, None)
        effects: list[Effect] = [Send(Release(id=frame.id))] if frame is not None and self.link == "up" else []
        text = NO_REQUEST.format(seconds=seconds) if self.link == "up" else self._relay_down(seconds)
        return ToolText(text), effects + self._balance()

    # --- agent pull: reply ------------------------------------------------------------------

    def reply(self, arguments: dict[str, Any]) -> ToolText | Delivery:
        request_id = arguments.get("request_id")
        content = arguments.get("content", "")
        if not isinstance(request_id, str) or not request_id:
            return ToolText("request_id is required: copy it from the first line of the request.", error=True)
        if not isinstance(content, str):
            return ToolText("content must be a string (the assistant's message).", error=True)
        frame = self._shown.get(request_id)
        if frame is None:
            return ToolText(self._not_open(request_id), error=True)
        reply = read_reply(frame, content, arguments, self.model_id)
        if isinstance(reply, str):
            return ToolText(reply, error=True)
        del self._shown[request_id]
        self._replying[request_id] = _Replying(frame, reply.summary, reply.message)
        # counted as it goes out (taken back if it cannot be): a session stopped the moment its caller
        # has the answer has it in its record
        self.tally = dataclasses.replace(self.tally, served=self.tally.served + 1)
        return Delivery(request_id, reply.frames)

    def reply_written(self, request_id: str, written: bool) -> tuple[ToolText, list[Effect]]:
        """The shell wrote a :class:`Delivery`'s frames (``written``) or the link ended first."""
        replying = self._replying.pop(request_id)
        return self._reply_result(request_id, replying, written), self._balance()

    def _reply_result(self, request_id: str, replying: _Replying, written: bool) -> ToolText:
        failed = replying.failed or (None if written else "link lost")
        if failed is None:
            self._close(request_id, "it was already answered")
            self._seen.replied(replying.frame, replying.message)
            return ToolText(
                f"Delivered the reply to {request_id} ({replying.summary}). Call next_request for the next request."
            )
        self.tally = dataclasses.replace(self.tally, served=self.tally.served - 1)  # not delivered after all
        if failed == "link lost":
            self._close(request_id, "the connection to the relay was lost before the reply")
            return ToolText(
                f"Request {request_id} cannot be answered: the connection to the relay was lost; its caller got "
                "an error. Call next_request for the next one.",
                error=True,
            )
        self._close(request_id, failed)
        return ToolText(
            f"Request {request_id} cannot be answered: {failed}. Call next_request for the next one.", error=True
        )

    # --- views --------------------------------------------------------------------------------

    @property
    def granted(self) -> int:
        """Slots the relay holds for us."""
        return self._granted

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def is_open(self, request_id: str) -> bool:
        """Shown to an agent and waiting for its reply."""
        return request_id in self._shown

    # --- internals ----------------------------------------------------------------------------

    def _holds(self, request_id: str) -> bool:
        return (
            request_id in self._sampling
            or request_id in self._shown
            or request_id in self._replying
            or any(f is not None and f.id == request_id for f in self._waiters.values())
        )

    def described(self) -> WorkerInfo:
        """What the relay should know of us now: the client's info and whether an agent is serving."""
        serving = bool(self._waiters or self._shown or self._replying)
        return dataclasses.replace(self.info, agent="serving" if serving else "away")

    def _announce(self) -> list[Effect]:
        info = self.described()
        if self.link != "up" or info == self._announced:
            return []
        self._announced = info
        return [Send(Update(worker=info))]

    def _balance(self) -> list[Effect]:
        """Slots (and, first, whether an agent is serving) as the relay should see them now."""
        if self.link != "up":
            return []
        announce = self._announce()
        idle_agents = sum(1 for delivered in self._waiters.values() if delivered is None)
        wanted = max(0, self.capacity - len(self._sampling)) + idle_agents
        effects: list[Effect] = []
        while wanted != self._granted:
            delta = max(-MAX_GRANT, min(MAX_GRANT, wanted - self._granted))
            self._granted += delta
            effects.append(Send(Ready(slots=delta) if delta > 0 else Withdraw(slots=-delta)))
        return announce + effects

    def _stop_all(self, reason: str) -> list[Effect]:
        effects: list[Effect] = []
        for request_id in sorted(self._sampling - self._stopped):
            self._stopped.add(request_id)
            effects.append(StopSampling(request_id, reason))
        return effects

    def _close(self, request_id: str, why: str) -> None:
        self._shown.pop(request_id, None)
        self._closed[request_id] = why
        while len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)

    def _not_open(self, request_id: str) -> str:
        if request_id in self._replying:
            return f"A reply to {request_id} is being delivered; wait for its result instead of replying again."
        why = self._closed.get(request_id)
        if why is not None:
            return f"Request {request_id} cannot be answered: {why}. Call next_request for the next one."
        return (
            f"No request {request_id} is waiting for a reply from this server; use the request_id that "
            "next_request returned."
        )

    def _relay_down(self, seconds: float) -> str:
        return RELAY_DOWN.format(socket=self.socket_path, seconds=seconds, error=self.link_error or "not connected yet")


def request_problem(request: NeutralRequest) -> str | None:
    """Why this request's answer format or tool schemas cannot be used, or None."""
    wanted = request.output_format
    if wanted is not None and wanted.json_schema is not None:
        problem = schema_problem(wanted.json_schema, "the response format's schema")
        if problem is not None:
            return problem
    for tool in request.tools:
        problem = schema_problem(tool.input_schema, f"the schema of tool {tool.name}")
        if problem is not None:
            return problem
    return None
