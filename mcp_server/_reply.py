"""An agent's ``reply``, read: the answer frames it becomes, or what is wrong with it.

Schema-true: each tool call names a tool the caller offered, with arguments (an object, or a JSON
string of one) that the tool's input schema accepts; content asked for in a JSON format is that JSON
(``_structured.parse_answer``: it is delivered compact). What is wrong is said so that the agent can
correct it: the core (``_core``) leaves the request open for another reply. Which requests are open,
and when a reply counts as answered, are the core's.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from shared_protocol import (
    ContentBlock,
    End,
    Frame,
    Message,
    RequestFrame,
    Start,
    StopReason,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolUseBlock,
)

from ._structured import arguments_problem, parse_answer

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "endTurn",
    "end_turn": "endTurn",
    "length": "maxTokens",
    "max_tokens": "maxTokens",
    "tool_calls": "toolUse",
    "tool_use": "toolUse",
    "stop_sequence": "stopSequence",
}


@dataclass(frozen=True)
class Reply:
    """A reply that may be delivered."""

    frames: list[Frame]
    """``start``, the text (if any), the tool calls, ``end``: what is written to the relay."""
    summary: str
    """What was delivered, for the agent: characters and tool calls."""
    message: Message
    """The reply as the assistant turn a caller passes back next time (``Seen.replied``)."""


def read_reply(frame: RequestFrame, content: str, arguments: dict[str, Any], model_id: str) -> Reply | str:
    """The reply to ``frame``'s request, ``content`` and the rest of ``reply``'s ``arguments``, answered
    as ``model_id``; or what is wrong with it."""
    request_id = frame.id
    calls = _tool_calls(frame, arguments.get("tool_calls"))
    if isinstance(calls, str):
        return calls
    stop = _stop_reason(arguments.get("finish_reason"), bool(calls))
    if stop is None:
        return f"finish_reason must be one of {', '.join(sorted(FINISH_REASONS))}."
    if not content and not calls:
        return "Give content (the answer) or tool_calls, or both."
    wanted = frame.request.output_format
    if wanted is not None and content:
        content, errors = parse_answer(content, wanted)
        if errors:
            return (
                f"Not delivered: the caller of {request_id} asked for its answer as JSON in a given format, "
                "and content does not have it:\n- " + "\n- ".join(errors) + "\nThe request is still open: "
                "call reply again with content = only the corrected JSON value."
            )
    frames: list[Frame] = [Start(id=request_id, model=model_id)]
    if content:
        frames.append(TextDelta(id=request_id, text=content))
    tool_calls = [
        ToolCall(id=request_id, call_id="call_" + secrets.token_hex(12), name=name, arguments=args)
        for name, args in calls
    ]
    frames += [*tool_calls, End(id=request_id, stop_reason=stop)]
    summary = f"{len(content)} characters, {len(calls)} tool call{'' if len(calls) == 1 else 's'}"
    blocks: list[ContentBlock] = [TextBlock(text=content)] if content else []
    blocks += [ToolUseBlock(id=c.call_id, name=c.name, input=c.arguments) for c in tool_calls]
    return Reply(frames, summary, Message(role="assistant", content=blocks))


def _tool_calls(frame: RequestFrame, raw: Any) -> list[tuple[str, dict[str, Any]]] | str:
    """The reply's tool calls, each naming a tool the caller offered, with a JSON object of arguments
    (given as an object or as a JSON string); or what is wrong with them."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return "tool_calls must be a list of {name, arguments}."
    offered = {tool.name: tool for tool in frame.request.tools}
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
        problem = arguments_problem(name, arguments, offered[name].input_schema)
        if problem is not None:
            return (
                f"Not delivered: tool_calls[{i}]: {problem}\n"
                "The request is still open: call reply again with corrected arguments."
            )
        calls.append((name, arguments))
    return calls


def _stop_reason(raw: Any, has_calls: bool) -> StopReason | None:
    if raw is None:
        return "toolUse" if has_calls else "endTurn"
    return FINISH_REASONS.get(raw) if isinstance(raw, str) else None
