"""Characters an agent is handed when it serves (issue 11's lean context), computed by the worker's
own core: each request goes through ``WorkerCore.show`` (what ``next_request`` returns) and is
answered through ``WorkerCore.reply``, as an agent does; the caller's next request carries that reply
back, as HTTP callers do. "Full" renders the same requests without the memory of what was shown.

Two sessions of 10 requests: a chat (a 500-character system prompt, 300-character questions,
800-character answers), and one shaped like Claude Code as a caller (a 25,000-character system prompt
and 18 tools of about 1,500 characters each, resent every time; each turn the model calls a tool and
the caller adds a 2,000-character tool result).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from mcp_server._core import WorkerCore
from mcp_server._effects import Delivery, Waiting
from mcp_server._render import render_request
from shared_protocol import (
    ContentBlock,
    Message,
    NeutralRequest,
    RequestFrame,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    WorkerInfo,
)

TURNS = 10


@dataclass(frozen=True)
class Session:
    first: NeutralRequest
    reply: Callable[[int], dict[str, object]]
    """The agent's reply arguments to request n."""
    after: Callable[[int, Message], list[Message]]
    """What the caller's request n+1 adds: the reply passed back, then its new turn."""


def _text(size: int, tag: str) -> list[ContentBlock]:
    return [TextBlock(text=(tag + " ") * (size // (len(tag) + 1)))]


def chat() -> Session:
    system = "You are a helpful assistant for a small software team. " * 9
    return Session(
        NeutralRequest(
            system=system, messages=[Message(role="user", content=_text(300, "question0"))], max_tokens=1024
        ),
        lambda n: {"content": " ".join(["answer"] * 114)},
        lambda n, reply: [reply, Message(role="user", content=_text(300, f"question{n + 1}"))],
    )


def claude_code() -> Session:
    system = "You are Claude Code, an interactive command line tool for software engineering. " * 312
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Absolute path of the file to work on. " * 10},
            "content": {"type": "string", "description": "What to write, exactly as it should end up. " * 10},
        },
        "required": ["path"],
    }
    description = "Performs one kind of operation on the workspace. " * 10
    tools = [ToolSpec(name=f"Tool{i}", description=description, input_schema=schema) for i in range(18)]

    def after(n: int, reply: Message) -> list[Message]:
        call = next(b for b in reply.content if isinstance(b, ToolUseBlock))
        result = ToolResultBlock(tool_use_id=call.id, content=[TextBlock(text="x = 1\n" * 333)])
        return [reply, Message(role="user", content=[result])]

    return Session(
        NeutralRequest(
            system=system, messages=[Message(role="user", content=_text(400, "task"))], tools=tools, max_tokens=32000
        ),
        lambda n: {
            "content": "Reading the next file.",
            "tool_calls": [{"name": f"Tool{n % 18}", "arguments": {"path": f"/src/module{n}.py"}}],
        },
        after,
    )


def _echoed(delivery: Delivery) -> Message:
    """The reply as the caller passes it back: its text, then its tool calls with their ids."""
    blocks: list[ContentBlock] = [TextBlock(text=f.text) for f in delivery.frames if isinstance(f, TextDelta)]
    blocks += [
        ToolUseBlock(id=f.call_id, name=f.name, input=f.arguments) for f in delivery.frames if isinstance(f, ToolCall)
    ]
    return Message(role="assistant", content=blocks)


def handed(session: Session) -> tuple[int, int]:
    """(characters rendered in full, characters the core hands the agent) over one agent's session."""
    core = WorkerCore("/bench", WorkerInfo(modes=["agent"], tools=True))
    core.link_up(core.described())
    request = session.first
    full = lean = 0
    for n in range(TURNS):
        frame = RequestFrame(id=f"req_{n}", timeout=60, request=request)
        step, _ = core.agent_waits({"wait_seconds": 5})
        assert isinstance(step, Waiting)
        core.request(frame)
        shown, _ = core.show(step.waiter)
        assert shown is not None
        full += len(render_request(frame))
        lean += len(shown.text)
        delivery = core.reply({"request_id": frame.id, **session.reply(n)})
        assert isinstance(delivery, Delivery)
        core.reply_written(frame.id, written=True)
        request = replace(request, messages=[*request.messages, *session.after(n, _echoed(delivery))])
    return full, lean


def measure() -> dict[str, tuple[int, int]]:
    return {f"{TURNS}-request chat": handed(chat()), f"{TURNS} Claude-Code-shaped requests": handed(claude_code())}
