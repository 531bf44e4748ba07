"""Tool use for sampling clients that cannot sample with tools (no ``sampling.tools``, e.g. VS Code Copilot).

MCP sampling without ``sampling.tools`` carries text and images only: no ``tools``, no ``tool_choice``,
no ``tool_use``/``tool_result`` blocks. So when a request offers tools (or its history holds tool calls)
and the client lacks that capability, the tools travel in the prompt and the calls come back as text:

- **The system prompt** is the caller's, followed by a section that lists the callable tools (one JSON
  object per line: ``name``, ``description``, ``parameters``) and the answer format below, and says
  what ``tool_choice`` asks: ``required`` -> "you must call at least one tool", a named tool -> only
  that tool is listed and it must be called, ``none`` -> no tool is listed and the model is told it
  cannot call any now.
- **Earlier turns** are rendered as text inside the messages, in the very format the model must use,
  so the history doubles as an example: an assistant ``tool_use`` becomes
  ``<tool_call id="call_1">{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>``; a user
  ``tool_result`` becomes ``<tool_result id="call_1" name="get_weather">`` + its text (images stay
  image blocks) + ``</tool_result>`` (``error="true"`` when it failed).
- **The answer format**: prose first if any, then one block per call, nothing after the last one::

      <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>

  Several blocks are parallel calls. Tags, not a Markdown fence, because a fence is ordinary prose
  (models fence JSON examples all the time) while ``<tool_call>`` is what tool-tuned models already
  emit (Hermes/Qwen style) and does not turn up in ordinary prose.

Parsing (:func:`parse_tool_calls`) is tolerant of the text around the calls and strict about the calls:
- no ``<tool_call`` opener: the whole answer is text;
- the text before the first opener is the answer's text (a dangling Markdown fence opener is
  dropped); text between and after the calls is dropped, and so is everything from a
  ``<tool_result>``/``<tool_response>`` the model invented after a call;
- attributes on the opener (``<tool_call id="...">``, imitating the history) are ignored, a JSON
  object wrapped in a Markdown fence inside the tags is accepted, a missing ``</tool_call>`` at the
  very end of the answer is accepted (the model stopped there);
- each block must hold exactly one JSON object with a ``name`` that is one of the callable tools and
  ``arguments`` that is a JSON object (absent means ``{}``); no other keys. Any violation in any block
  raises :class:`MalformedToolCall`, and the caller falls back to plain text (:func:`parse_answer`):
  all the calls or none, so a caller never runs half of what the model meant. When no tool is
  callable (``tool_choice`` none, or tools only in the history) any block makes the answer text.
Call ids are ours (``call_`` + 24 random hex digits); ids the model writes are ignored.

Limits: the model may ignore the format (its answer is then text); calls arrive only with the whole
answer (MCP sampling does not stream anyway); arguments are not checked against the tool's schema;
a ``</tool_result>`` inside a tool's output is not escaped.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Collection

import mcp_types as types

from shared_protocol import ImageBlock, NeutralRequest, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock

_OPEN = re.compile(r"<tool_call\b[^>]*>")
_CLOSE = "</tool_call>"
_INVENTED_RESULT = re.compile(r"<tool_(?:result|response)\b")
_FENCE_OPENER_AT_END = re.compile(r"(?:^|\n)[ \t]*```[\w+-]*[ \t]*\Z")
_FENCE_LINE = re.compile(r"```[\w+-]*[ \t]*(?:\n|\Z)")
_WS = re.compile(r"\s*")
_JSON = json.JSONDecoder()


class MalformedToolCall(ValueError):
    """The answer tried to call tools but a call is unusable. The message never quotes the answer."""


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


# --- request -> prompt -------------------------------------------------------------------------


def has_tool_history(request: NeutralRequest) -> bool:
    return any(isinstance(b, (ToolUseBlock, ToolResultBlock)) for m in request.messages for b in m.content)


def callable_tools(request: NeutralRequest) -> list[ToolSpec]:
    """The tools the model may call in this answer (``tool_choice`` applied)."""
    choice = request.tool_choice
    if choice is None:
        return list(request.tools)
    if choice.mode == "none":
        return []
    if choice.name:
        named = [t for t in request.tools if t.name == choice.name]
        return named or list(request.tools)
    return list(request.tools)


def _tool_line(tool: ToolSpec) -> str:
    spec: dict[str, object] = {"name": tool.name}
    if tool.description:
        spec["description"] = tool.description
    spec["parameters"] = tool.input_schema
    return json.dumps(spec, ensure_ascii=False)


def tool_instructions(request: NeutralRequest) -> str:
    """The section appended to the system prompt."""
    tools = callable_tools(request)
    if not tools:
        return (
            "# Tools\n\n"
            "Earlier turns of this conversation show tool calls as <tool_call> blocks and their results "
            "as <tool_result> blocks. You cannot call any tool now: answer in plain text only, without "
            "any <tool_call> or <tool_result> block."
        )
    choice = request.tool_choice
    if choice is not None and choice.name and len(tools) == 1:
        must = f"You must call the tool {tools[0].name} in this answer."
    elif choice is not None and choice.mode == "required":
        must = "You must call at least one tool in this answer."
    else:
        must = "Call a tool only when it helps; if no tool is needed, answer in plain text without any block."
    return "\n".join(
        [
            "# Tools",
            "",
            "You can call the tools listed below (one JSON object per line). The program reading your "
            "answer runs them and sends their results back in the next message.",
            "",
            "<tools>",
            *(_tool_line(t) for t in tools),
            "</tools>",
            "",
            "To call a tool, write one block per call, exactly in this form:",
            '<tool_call>{"name": "TOOL_NAME", "arguments": {...}}</tool_call>',
            "",
            "Rules:",
            '- Inside each block: one JSON object with exactly two keys, "name" (one of the tools listed '
            'above) and "arguments" (a JSON object that follows that tool\'s parameters schema).',
            "- You may write a short text before the first block. Write nothing after the last block: "
            "stop there and wait for the results.",
            "- To call several tools at once, write several blocks one after another.",
            "- Never write <tool_result> blocks yourself: results arrive in the next message as "
            '<tool_result id="..." name="...">...</tool_result>.',
            f"- {must}",
        ]
    )


def system_prompt(request: NeutralRequest) -> str:
    """The caller's system prompt followed by the tool section."""
    instructions = tool_instructions(request)
    return f"{request.system}\n\n{instructions}" if request.system else instructions


def render_call(block: ToolUseBlock) -> str:
    call = json.dumps({"name": block.name, "arguments": block.input}, ensure_ascii=False)
    return f"<tool_call id={json.dumps(block.id, ensure_ascii=False)}>{call}</tool_call>"


def _render_result(block: ToolResultBlock, name: str | None) -> list[str | ImageBlock]:
    attributes = f"id={json.dumps(block.tool_use_id, ensure_ascii=False)}"
    if name is not None:
        attributes += f" name={json.dumps(name, ensure_ascii=False)}"
    if block.is_error:
        attributes += ' error="true"'
    parts: list[str | ImageBlock] = [f"<tool_result {attributes}>"]
    for b in block.content:
        last = parts[-1]
        if isinstance(b, ImageBlock):
            parts.append(b)
        elif isinstance(last, str):
            parts[-1] = last + "\n" + b.text
        else:
            parts.append(b.text)
    last = parts[-1]
    if isinstance(last, str):
        parts[-1] = last + "\n</tool_result>"
    else:
        parts.append("</tool_result>")
    return parts


def _content(parts: list[str | ImageBlock]) -> list[types.SamplingMessageContentBlock]:
    """Adjacent text parts joined by a blank line; images kept as image blocks."""
    out: list[types.SamplingMessageContentBlock] = []
    for part in parts:
        if isinstance(part, ImageBlock):
            out.append(types.ImageContent(data=part.data, mime_type=part.mime_type))
        elif not part:
            continue
        elif out and isinstance(last := out[-1], types.TextContent):
            out[-1] = types.TextContent(text=last.text + "\n\n" + part)
        else:
            out.append(types.TextContent(text=part))
    return out


def sampling_messages(request: NeutralRequest) -> list[types.SamplingMessage]:
    """The conversation with tool calls and results written as text (roles and order kept)."""
    names = {b.id: b.name for m in request.messages for b in m.content if isinstance(b, ToolUseBlock)}
    out: list[types.SamplingMessage] = []
    for message in request.messages:
        parts: list[str | ImageBlock] = []
        for block in message.content:
            if isinstance(block, TextBlock):
                parts.append(block.text)
            elif isinstance(block, ImageBlock):
                parts.append(block)
            elif isinstance(block, ToolUseBlock):
                parts.append(render_call(block))
            else:
                parts += _render_result(block, names.get(block.tool_use_id))
        content = _content(parts)
        if content:
            out.append(types.SamplingMessage(role=message.role, content=content[0] if len(content) == 1 else content))
    return out


def render(request: NeutralRequest) -> tuple[str, list[types.SamplingMessage]]:
    """Neutral request -> (system prompt, sampling messages) for a client without ``sampling.tools``."""
    return system_prompt(request), sampling_messages(request)


# --- answer -> text and calls ------------------------------------------------------------------


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _skip_fence(text: str, pos: int) -> int:
    match = _FENCE_LINE.match(text, pos)
    return _skip_ws(text, match.end()) if match else pos


def _call(obj: object, number: int, tool_names: Collection[str], new_id: Callable[[], str]) -> ToolUseBlock:
    if not isinstance(obj, dict):
        raise MalformedToolCall(f"tool call {number} is not a JSON object")
    extra = set(obj) - {"name", "arguments"}
    if extra:
        raise MalformedToolCall(f"tool call {number} has keys other than name and arguments")
    name = obj.get("name")
    if not isinstance(name, str):
        raise MalformedToolCall(f"tool call {number} has no tool name")
    if name not in tool_names:
        raise MalformedToolCall(f"tool call {number} names a tool the caller did not offer")
    arguments = obj.get("arguments", {})
    if not isinstance(arguments, dict):
        raise MalformedToolCall(f"the arguments of tool call {number} are not a JSON object")
    return ToolUseBlock(id=new_id(), name=name, input=arguments)


def parse_tool_calls(
    answer: str, tool_names: Collection[str], new_id: Callable[[], str] = new_call_id
) -> tuple[str, list[ToolUseBlock]]:
    """Model answer -> (text, tool calls). Raises :class:`MalformedToolCall` if a call is unusable."""
    first = _OPEN.search(answer)
    if first is None:
        return answer, []
    text = _FENCE_OPENER_AT_END.sub("", answer[: first.start()].rstrip()).strip()
    calls: list[ToolUseBlock] = []
    opener: re.Match[str] | None = first
    while opener is not None:
        number = len(calls) + 1
        pos = _skip_fence(answer, _skip_ws(answer, opener.end()))
        try:
            obj, pos = _JSON.raw_decode(answer, pos)
        except json.JSONDecodeError as exc:
            raise MalformedToolCall(f"tool call {number} is not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise MalformedToolCall(f"tool call {number} is nested too deeply") from None
        pos = _skip_ws(answer, pos)
        if answer.startswith("```", pos):
            pos = _skip_ws(answer, pos + 3)
        if answer.startswith(_CLOSE, pos):
            pos += len(_CLOSE)
        elif pos != len(answer):
            raise MalformedToolCall(f"tool call {number} has text after its JSON object")
        calls.append(_call(obj, number, tool_names, new_id))
        opener = _OPEN.search(answer, pos)
        invented = _INVENTED_RESULT.search(answer, pos)
        if opener is not None and invented is not None and invented.start() < opener.start():
            opener = None
    return text, calls


def parse_answer(
    answer: str, tool_names: Collection[str], new_id: Callable[[], str] = new_call_id
) -> tuple[str, list[ToolUseBlock]]:
    """Like :func:`parse_tool_calls`, but an unusable call makes the whole answer plain text."""
    try:
        return parse_tool_calls(answer, tool_names, new_id)
    except MalformedToolCall:
        return answer, []
