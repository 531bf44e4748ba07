"""A relay request written as text for an agent to answer (the result of ``next_request``).

Rules: the first line is ``request_id: <id>`` (tests and agents parse it); every section has a plain
heading; parts the agent was shown before (``_seen``) are references ("as in request req_...",
"continues request req_..."), with a line saying how to get the whole request (``show_request``);
turns start with ``[user]`` / ``[assistant]`` on a line of their own and the last one is followed by
the line ``(end of conversation)``; images become
placeholders (the agent cannot see them through a tool result); tool calls and results keep their
ids so the agent can follow the thread; the last line says exactly how to answer.
"""

from __future__ import annotations

import base64
import json

from shared_protocol import ImageBlock, Message, RequestFrame, TextBlock, ToolResultBlock, ToolUseBlock

from ._seen import NO_REFS, Refs
from ._structured import instruction


def _image(block: ImageBlock) -> str:
    size = len(base64.b64decode(block.data, validate=False)) if block.data else 0
    return f"[image: {block.mime_type}, {size} bytes - not visible through this tool]"


def _turn_lines(messages: list[Message]) -> list[str]:
    lines: list[str] = []
    for message in messages:
        lines.append(f"[{message.role}]")
        for block in message.content:
            if isinstance(block, TextBlock):
                lines.append(block.text)
            elif isinstance(block, ImageBlock):
                lines.append(_image(block))
            elif isinstance(block, ToolUseBlock):
                lines.append(f"(tool call {block.id}) {block.name} {json.dumps(block.input, ensure_ascii=False)}")
            elif isinstance(block, ToolResultBlock):
                status = " (error)" if block.is_error else ""
                lines.append(f"(tool result for {block.tool_use_id}{status})")
                lines += [b.text if isinstance(b, TextBlock) else _image(b) for b in block.content]
    return lines


def render_request(frame: RequestFrame, refs: Refs = NO_REFS) -> str:
    """The request as the agent reads it; ``refs``: what to render as references to earlier requests."""
    request = frame.request
    limits = [f"max_tokens {request.max_tokens}"]
    if request.stop_sequences:
        limits.append("stop sequences " + json.dumps(request.stop_sequences, ensure_ascii=False))
    if request.temperature is not None:
        limits.append(f"temperature {request.temperature:g}")
    lines = [
        f"request_id: {frame.id}",
        f"model requested: {request.model or '(none)'}",
        "limits: " + "; ".join(limits),
    ]
    if refs:
        lines.append(f'Parts "as in request ..." are as you saw them there; show_request("{frame.id}") shows all.')
    lines.append("")
    if refs.system is not None:
        lines += [f"system prompt: as in request {refs.system} ({len(request.system or '')} characters)", ""]
    else:
        lines += ["system prompt:", request.system if request.system else "(none)", ""]
    messages = request.messages
    if refs.continues is not None:
        turns, earlier = refs.continues.turns, refs.continues.request_id
        known = f"request {earlier} and your reply to it" if refs.continues.with_reply else f"request {earlier}"
        lines.append(f"conversation: continues {known} ({turns} turn{'' if turns == 1 else 's'}), then:")
        messages = messages[turns:]
    else:
        lines.append("conversation:")
    lines += [*_turn_lines(messages), "(end of conversation)", ""]
    if request.tools:
        lines.append("tools the caller offers (call them only through reply's tool_calls, never yourself):")
        for tool in request.tools:
            if tool.name in refs.tools:
                lines.append(f"- {tool.name}: as in request {refs.tools[tool.name]}")
                continue
            lines.append(f"- {tool.name}: {tool.description or '(no description)'}")
            lines.append("  arguments schema: " + json.dumps(tool.input_schema, ensure_ascii=False))
        choice = request.tool_choice
        if choice is not None:
            wanted = (
                f"you must call {choice.name}"
                if choice.name
                else {
                    "auto": "call tools only if they help",
                    "required": "you must call at least one tool",
                    "none": "do not call any tool",
                }[choice.mode]
            )
            lines.append(f"tool choice: {choice.mode} ({wanted})")
        lines.append("")
    if request.output_format is not None:
        lines += ["answer format (the caller's program parses your answer; it is checked before delivery):"]
        lines += [instruction(request.output_format), ""]
    how = (
        f"To answer: write the assistant's next message in this conversation and call reply with "
        f'request_id "{frame.id}" and content = that message'
    )
    if request.output_format is not None:
        how += " - content must be exactly that one JSON value"
    if request.tools:
        how += ' (and tool_calls = [{"name": ..., "arguments": {...}}] to call the caller\'s tools)'
    lines.append(how + ". Answer only this request; then call next_request again.")
    return "\n".join(lines)


BUDGET_SPENT = (
    "This serving session has used its budget ({handed} characters of requests handed to you; mcptb-serve "
    "--session-budget {budget}). Take no more requests: end your turn now, without calling next_request. A "
    "fresh session takes over."
)

NO_REQUEST = (
    "No request yet (waited {seconds:g} s). Call next_request again to keep serving, or stop if the user asked you to."
)

SAME_SOCKET = (
    "if the relay is running, it listens on another socket (its start banner names it): give the relay and "
    "this server the same --socket (or MCPTB_SOCKET)"
)
"""What to do when the relay is not at this server's socket path (the log line and RELAY_DOWN say it)."""

RELAY_DOWN = (
    "The MCP Token Bridge relay was not reachable at {socket} during this wait ({seconds:g} s; {error}). Ask "
    "the user to start it with `mcptb-relay` (or `just relay` in the mcp-token-bridge checkout); this server "
    "connects by itself within a second. Then call next_request again (it waits for the relay). Tell the user "
    "too: " + SAME_SOCKET + "."
)
