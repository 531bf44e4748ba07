"""Agent pull: the MCP client's own agent answers relay requests through two tools.

``next_request`` opens one slot at the relay for as long as the agent waits in it; the relay assigns
a request against that slot and the tool returns it rendered as text. ``reply`` turns the agent's
answer into answer frames. Rules that keep requests from being lost or doubled:
- A waiting call that ends without a request (timeout, or the user cancels it) takes its slot back
  (``withdraw``). A request that reached a call which is cancelled before returning goes back to the
  relay (``release``): it was never shown to anyone.
- A request shown to the agent stays open until ``reply`` or until the relay cancels it (the caller
  left or timed out) or the relay link drops; ``reply`` then says which.
- Each request is answered at most once; tool calls must name a tool the caller offered and carry a
  JSON object.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import mcp_types as types
from mcp.server.context import ServerRequestContext

from shared_protocol import End, Release, RequestFrame, Start, StopReason, TextDelta, ToolCall

from ._render import NO_REQUEST, RELAY_DOWN, render_request

if TYPE_CHECKING:
    from ._client import ClientState
    from ._relay_link import RelayLink

log = logging.getLogger("mcptb.server")

DEFAULT_WAIT_SECONDS = 300
MAX_WAIT_SECONDS = 600
PROGRESS_INTERVAL = 15.0
"""While an agent waits, a progress notification this often (when the call has a progress token)."""
CLOSED_MEMORY = 1000
"""How many answered or abandoned request ids ``reply`` remembers, to explain a late reply."""

_FINISH: dict[str, StopReason] = {
    "stop": "endTurn",
    "end_turn": "endTurn",
    "length": "maxTokens",
    "max_tokens": "maxTokens",
    "tool_calls": "toolUse",
    "tool_use": "toolUse",
    "stop_sequence": "stopSequence",
}

NEXT_REQUEST_TOOL = types.Tool(
    name="next_request",
    description=(
        "Wait for the next request that a program sent to the MCP Token Bridge relay (an OpenAI- or "
        "Anthropic-style chat request) and return it as text, beginning with its request_id. Answer it "
        "as the assistant of that conversation with the reply tool, then call next_request again."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "wait_seconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_WAIT_SECONDS,
                "default": DEFAULT_WAIT_SECONDS,
                "description": "How long to wait for a request before returning 'no request yet'.",
            }
        },
    },
)

REPLY_TOOL = types.Tool(
    name="reply",
    description=(
        "Deliver your answer to the request that next_request gave you. content is the assistant's "
        "message; tool_calls (optional) asks the caller to run its own tools (only tools the request "
        "lists). It is streamed back to the waiting program."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "description": "The request_id line of the request."},
            "content": {
                "type": "string",
                "description": "The assistant's message (may be empty with tool_calls).",
            },
            "tool_calls": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
                    "required": ["name", "arguments"],
                },
            },
            "finish_reason": {"type": "string", "enum": sorted(_FINISH)},
        },
        "required": ["request_id", "content"],
    },
)

SERVE_LOOP = (
    "You are serving requests from the MCP Token Bridge: programs on this machine send chat requests to "
    "the relay, and you answer them. Loop: call next_request; read the request it returns; write the "
    "answer as the assistant of THAT conversation (follow its system prompt, answer only its last turn, "
    "add no remarks about yourself or this loop); call reply with its request_id and your answer; then "
    "call next_request again. Never mix two requests. Never run the caller's tools yourself: to use "
    "them, put tool_calls in reply. If next_request says there is no request yet, call it again; stop "
    "when the user asks you to."
)

INSTRUCTIONS = (
    "This server connects your model to the MCP Token Bridge relay, an OpenAI-compatible HTTP API for "
    "programs on this machine. Clients with MCP sampling are served in the background. Otherwise, when "
    "the user asks you to serve (prompt 'serve'): " + SERVE_LOOP
)


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)])


@dataclass(eq=False)
class _Waiter:
    arrived: anyio.Event = field(default_factory=anyio.Event)
    frame: RequestFrame | None = None


class AgentDesk:
    def __init__(self, client: ClientState, link: RelayLink) -> None:
        self.client = client
        self.link = link
        self.waiting: deque[_Waiter] = deque()
        self.open: dict[str, RequestFrame] = {}
        self.closed: OrderedDict[str, str] = OrderedDict()

    # --- called by the relay link -------------------------------------------------------------

    def offer(self, frame: RequestFrame) -> bool:
        """Give a request to the longest-waiting agent; False if none waits."""
        if not self.waiting:
            return False
        waiter = self.waiting.popleft()
        waiter.frame = frame
        waiter.arrived.set()
        return True

    def knows(self, request_id: str) -> bool:
        return request_id in self.open

    def cancel(self, request_id: str, reason: str) -> bool:
        if request_id not in self.open:
            return False
        self._close(request_id, f"its caller is gone ({reason})")
        return True

    def connection_lost(self) -> None:
        for request_id in list(self.open):
            self._close(request_id, "the connection to the relay was lost before the reply")

    # --- tools --------------------------------------------------------------------------------

    async def next_request(
        self, ctx: ServerRequestContext[Any, Any], arguments: dict[str, Any]
    ) -> types.CallToolResult:
        wait = arguments.get("wait_seconds", DEFAULT_WAIT_SECONDS)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 1 <= wait <= MAX_WAIT_SECONDS:
            return _error(f"wait_seconds must be a number from 1 to {MAX_WAIT_SECONDS}.")
        if not self.link.connected:
            return _text(RELAY_DOWN.format(socket=self.link.socket_path, error=self.link.last_error or "not connected"))
        waiter = _Waiter()
        self.waiting.append(waiter)
        shown = False
        try:
            await self.link.balance()
            with anyio.move_on_after(wait):
                await self._wait_with_progress(ctx, waiter, float(wait))
            if waiter.frame is None:
                return _text(NO_REQUEST.format(seconds=wait))
            text = render_request(waiter.frame)
            await anyio.lowlevel.checkpoint()  # a cancel that raced the arrival surfaces here
            self.open[waiter.frame.id] = waiter.frame
            shown = True
            log.info("%s handed to the agent", waiter.frame.id)
            return _text(text)
        finally:
            if waiter in self.waiting:
                self.waiting.remove(waiter)
            if waiter.frame is not None and not shown:  # cancelled between arrival and return
                log.info("%s handed back: the agent's next_request was cancelled", waiter.frame.id)
                with anyio.CancelScope(shield=True):
                    await self.link.send(Release(id=waiter.frame.id))
            with anyio.CancelScope(shield=True):
                await self.link.balance()

    async def _wait_with_progress(self, ctx: ServerRequestContext[Any, Any], waiter: _Waiter, wait: float) -> None:
        """Wait; report progress now and then (the SDK sends it only if the call asked for progress)."""
        waited = 0.0
        while not waiter.arrived.is_set():
            with anyio.move_on_after(PROGRESS_INTERVAL):
                await waiter.arrived.wait()
            if waiter.arrived.is_set():
                return
            waited += PROGRESS_INTERVAL
            try:
                await ctx.session.report_progress(min(waited, wait), wait, "waiting for a request")
            except Exception:  # progress is a courtesy; never let it end the wait
                log.debug("progress notification failed", exc_info=True)

    async def reply(self, arguments: dict[str, Any]) -> types.CallToolResult:
        request_id = arguments.get("request_id")
        content = arguments.get("content", "")
        if not isinstance(request_id, str) or not request_id:
            return _error("request_id is required: copy it from the first line of the request.")
        if not isinstance(content, str):
            return _error("content must be a string (the assistant's message).")
        frame = self.open.get(request_id)
        if frame is None:
            why = self.closed.get(request_id)
            if why is not None:
                return _error(f"Request {request_id} cannot be answered: {why}. Call next_request for the next one.")
            return _error(
                f"No request {request_id} is waiting for a reply from this server; use the "
                "request_id that next_request returned."
            )
        calls = self._tool_calls(frame, arguments.get("tool_calls"))
        if isinstance(calls, str):
            return _error(calls)
        stop = self._stop_reason(arguments.get("finish_reason"), bool(calls))
        if stop is None:
            return _error(f"finish_reason must be one of {', '.join(sorted(_FINISH))}.")
        if not content and not calls:
            return _error("Give content (the answer) or tool_calls, or both.")
        frames: list[Any] = [Start(id=request_id, model=self.client.model_id)]
        if content:
            frames.append(TextDelta(id=request_id, text=content))
        frames += [
            ToolCall(id=request_id, call_id="call_" + secrets.token_hex(12), name=name, arguments=args)
            for name, args in calls
        ]
        frames.append(End(id=request_id, stop_reason=stop))
        self._close(request_id, "it was already answered")
        for answer in frames:
            if not await self.link.send(answer):
                return _error(
                    f"Request {request_id} cannot be answered: the connection to the relay was lost; "
                    "its caller got an error. Call next_request for the next one."
                )
        log.info("%s answered by the agent", request_id)
        return _text(
            f"Delivered the reply to {request_id} ({len(content)} characters, {len(calls)} tool "
            f"call{'' if len(calls) == 1 else 's'}). Call next_request for the next request."
        )

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _tool_calls(frame: RequestFrame, raw: Any) -> list[tuple[str, dict[str, Any]]] | str:
        if raw is None:
            return []
        if not isinstance(raw, list):
            return "tool_calls must be a list of {name, arguments}."
        offered = {tool.name for tool in frame.request.tools}
        calls = []
        for i, call in enumerate(raw):
            name = call.get("name") if isinstance(call, dict) else None
            if not isinstance(name, str) or name not in offered:
                have = ", ".join(sorted(offered)) or "none"
                return f"tool_calls[{i}] names {name!r}, which the caller did not offer (offered: {have})."
            arguments = call.get("arguments", {})
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    return f"tool_calls[{i}].arguments is not valid JSON."
            if not isinstance(arguments, dict):
                return f"tool_calls[{i}].arguments must be a JSON object."
            calls.append((name, arguments))
        return calls

    @staticmethod
    def _stop_reason(raw: Any, has_calls: bool) -> StopReason | None:
        if raw is None:
            return "toolUse" if has_calls else "endTurn"
        return _FINISH.get(raw) if isinstance(raw, str) else None

    def _close(self, request_id: str, why: str) -> None:
        self.open.pop(request_id, None)
        self.closed[request_id] = why
        while len(self.closed) > CLOSED_MEMORY:
            self.closed.popitem(last=False)

    @property
    def waiting_count(self) -> int:
        return len(self.waiting)
