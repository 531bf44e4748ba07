"""A scripted sampling callback that plays a tool-using model: ask for one tool, then quote its result.

It is the ``model`` of :func:`conftest.mcp_worker` (the sampling callback of the MCP client that runs
``mcptb-server``) when an HTTP caller such as the real Claude Code CLI (``ANTHROPIC_BASE_URL`` = the
relay) or the litellm proxy drives a tool round trip through the bridge. Its policy looks at each
sampling request:

1. the last user turn (the user messages after the last assistant one) carries a tool result -> the
   text ``<answer_prefix><result text>`` (``BASH SAID: hi-from-bash``): the caller ran the tool, and
   this is the final answer;
2. otherwise, when the tool named ``tool`` is offered -> a call of it with ``tool_input``
   (``Bash {"command": "echo hi-from-bash"}``), after the short text ``intro``;
3. otherwise (a side request: no tools, or not that tool) -> the short text ``side_answer``.

It speaks both ways a sampling client can see tools:

- **native** (the client declares ``sampling.tools``): tools arrive in ``params.tools``, results as
  ``ToolResultContent`` blocks, and the call goes back as a ``ToolUseContent`` in a
  ``CreateMessageResultWithTools`` (``stop_reason="toolUse"``);
- **emulated** (no ``sampling.tools``; ``mcp_server/_emulation.py``): the tools are listed in the
  system prompt between ``<tools>`` and ``</tools>`` (one JSON object per line), results arrive as text
  ``<tool_result id="..." name="...">...</tool_result>``, and the call goes back as text in the format
  that module's docstring gives: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

Every request and the decision taken are recorded (``requests``, ``decisions``), so a test can check
what reached the model, e.g. that the second request of a round trip carried the tool result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import mcp_types as types

MODEL = "scripted-tool-model"
BASH_COMMAND = "echo hi-from-bash"
BASH_OUTPUT = "hi-from-bash"
ANSWER_PREFIX = "BASH SAID: "
SIDE_ANSWER = "OK"

_TOOLS_SECTION = re.compile(r"<tools>\n(.*?)\n</tools>", re.DOTALL)
_EMULATED_RESULT = re.compile(r"<tool_result\b([^>]*)>\n?(.*?)\n?</tool_result>", re.DOTALL)


@dataclass(frozen=True)
class Decision:
    kind: Literal["tool_use", "answer", "side"]
    way: Literal["native", "emulated", "none"]
    """How the request offered its tools (and so how the answer is written)."""
    offered: tuple[str, ...]
    """The names of the tools the request offered."""
    tool_results: tuple[str, ...]
    """The texts of the tool results in the last user turn."""
    text: str
    """The answer's text (for a tool_use: the text before the call)."""


def _texts(blocks: list[Any]) -> str:
    return "\n".join(b.text for b in blocks if isinstance(b, types.TextContent))


def offered_tools(
    params: types.CreateMessageRequestParams,
) -> tuple[Literal["native", "emulated", "none"], tuple[str, ...]]:
    """How the request offers tools, and their names."""
    if params.tools:
        return "native", tuple(t.name for t in params.tools)
    section = _TOOLS_SECTION.search(params.system_prompt or "")
    if section is not None:
        names = tuple(json.loads(line)["name"] for line in section.group(1).splitlines() if line.strip())
        return "emulated", names
    return "none", ()


def last_user_tool_results(params: types.CreateMessageRequestParams) -> tuple[str, ...]:
    """The texts of the tool results (native blocks or emulated text) in the last user turn: the user
    messages after the last assistant message (a turn of a tool result and text may arrive split in two)."""
    turn: list[types.SamplingMessage] = []
    for message in reversed(params.messages):
        if message.role != "user":
            break
        turn.insert(0, message)
    results: list[str] = []
    for block in (b for m in turn for b in m.content_as_list):
        if isinstance(block, types.ToolResultContent):
            results.append(_texts(list(block.content)))
        elif isinstance(block, types.TextContent):
            results += [match.group(2) for match in _EMULATED_RESULT.finditer(block.text)]
    return tuple(results)


@dataclass
class ToolThenAnswerModel:
    """The sampling callback (``model=`` of :func:`conftest.mcp_worker`); see the module docstring."""

    tool: str = "Bash"
    tool_input: dict[str, Any] = field(default_factory=lambda: {"command": BASH_COMMAND})
    intro: str = "Running it."
    answer_prefix: str = ANSWER_PREFIX
    side_answer: str = SIDE_ANSWER
    model: str = MODEL
    requests: list[types.CreateMessageRequestParams] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def decide(self, params: types.CreateMessageRequestParams) -> Decision:
        way, offered = offered_tools(params)
        results = last_user_tool_results(params)
        if results:
            text = self.answer_prefix + " | ".join(r.strip() for r in results)
            return Decision("answer", way, offered, results, text)
        if self.tool in offered:
            return Decision("tool_use", way, offered, results, self.intro)
        return Decision("side", way, offered, results, self.side_answer)

    @property
    def main_requests(self) -> list[tuple[types.CreateMessageRequestParams, Decision]]:
        """The requests that offered the tool or answered its result (not the side requests)."""
        return [(p, d) for p, d in zip(self.requests, self.decisions, strict=True) if d.kind != "side"]

    async def __call__(
        self, ctx: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools:
        decision = self.decide(params)
        self.requests.append(params)
        self.decisions.append(decision)
        if decision.kind == "tool_use" and decision.way == "native":
            call = types.ToolUseContent(
                id=f"toolu_scripted_{len(self.requests)}", name=self.tool, input=self.tool_input
            )
            return types.CreateMessageResultWithTools(
                role="assistant",
                model=self.model,
                stop_reason="toolUse",
                content=[types.TextContent(text=decision.text), call],
            )
        text = decision.text
        if decision.kind == "tool_use":  # emulated: the call written in _emulation's answer format
            call_json = json.dumps({"name": self.tool, "arguments": self.tool_input})
            text = f"{decision.text}\n<tool_call>{call_json}</tool_call>"
        return types.CreateMessageResult(
            role="assistant", model=self.model, stop_reason="endTurn", content=types.TextContent(text=text)
        )
