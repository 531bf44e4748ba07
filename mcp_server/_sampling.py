"""Answering a relay request with MCP ``sampling/createMessage`` (2025-era clients that declare it).

The neutral request maps one to one onto sampling, with three adjustments the spec forces:
- a user turn holding tool results and other content is split in two (tool results only, then the
  rest), because a message with ``tool_result`` blocks must contain nothing else;
- a ``tool_choice`` naming one tool becomes ``required`` with only that tool offered (MCP has no
  "this tool" choice);
- ``top_p`` has no sampling field and is dropped; the caller's model name goes as a model hint.

A client that does not declare ``sampling.tools`` cannot take tools, tool choices or tool blocks at
all. For such a client a request that offers tools (or whose history holds tool calls) is *emulated*
(``_emulation``): the tools go into the system prompt, tool calls and results are written as text,
and the model's text answer is parsed back into tool calls (plain text if it does not parse). With
``--tool-emulation off`` the relay never sends such a worker a request with tools (its ``tools`` is
false), and a history-only request goes out natively as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
import mcp_types as types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError

from shared_protocol import (
    MAX_COUNT,
    AnswerFrame,
    End,
    ErrorFrame,
    ImageBlock,
    Message,
    NeutralRequest,
    Release,
    RequestFrame,
    Start,
    StopReason,
    TextBlock,
    TextDelta,
    TokenUsage,
    ToolCall,
    ToolResultBlock,
    ToolUseBlock,
)

from . import _emulation, _structured

log = logging.getLogger("mcptb.server")

_STOP_REASONS: tuple[StopReason, ...] = ("endTurn", "stopSequence", "maxTokens", "toolUse")


def _block(block: object) -> types.SamplingMessageContentBlock:
    if isinstance(block, TextBlock):
        return types.TextContent(text=block.text)
    if isinstance(block, ImageBlock):
        return types.ImageContent(data=block.data, mime_type=block.mime_type)
    if isinstance(block, ToolUseBlock):
        return types.ToolUseContent(id=block.id, name=block.name, input=block.input)
    if isinstance(block, ToolResultBlock):
        content: list[types.ContentBlock] = [
            types.TextContent(text=b.text)
            if isinstance(b, TextBlock)
            else types.ImageContent(data=b.data, mime_type=b.mime_type)
            for b in block.content
        ]
        return types.ToolResultContent(tool_use_id=block.tool_use_id, content=content, is_error=block.is_error)
    raise TypeError(f"unknown block {block!r}")


def to_sampling_messages(messages: list[Message]) -> list[types.SamplingMessage]:
    out: list[types.SamplingMessage] = []
    for message in messages:
        results = [b for b in message.content if isinstance(b, ToolResultBlock)]
        others = [b for b in message.content if not isinstance(b, ToolResultBlock)]
        for group in (results, others):
            if group:
                out.append(types.SamplingMessage(role=message.role, content=[_block(b) for b in group]))
    return out


def _tools(request: NeutralRequest) -> tuple[list[types.Tool] | None, types.ToolChoice | None]:
    if not request.tools:
        return None, None
    choice = request.tool_choice
    tools = request.tools
    if choice is not None and choice.name:
        tools = [t for t in tools if t.name == choice.name]
    mcp_tools = [types.Tool(name=t.name, description=t.description, input_schema=t.input_schema) for t in tools]
    return mcp_tools, types.ToolChoice(mode=choice.mode) if choice else None


def client_has_sampling_tools(session: ServerSession) -> bool:
    caps = session.client_capabilities
    return bool(caps is not None and caps.sampling is not None and caps.sampling.tools is not None)


def emulates_tools(request: NeutralRequest, sampling_tools: bool, tool_emulation: bool = True) -> bool:
    """Whether this request goes through tool emulation rather than native sampling.

    A request that offers tools is always emulated for a client without ``sampling.tools`` (with
    emulation off the relay does not send one; if it ever arrives, emulating beats failing); one whose
    only tool content is in its history is emulated only when emulation is on.
    """
    if sampling_tools:
        return False
    return bool(request.tools) or (tool_emulation and _emulation.has_tool_history(request))


async def _sample(
    session: ServerSession, request: NeutralRequest, emulate: bool, repairs: list[types.SamplingMessage]
) -> types.CreateMessageResult | types.CreateMessageResultWithTools:
    """One sampling round: the request, then the turns of earlier repair rounds (``repairs``)."""
    hints = types.ModelPreferences(hints=[types.ModelHint(name=request.model)]) if request.model else None
    common: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop_sequences": request.stop_sequences or None,
        "model_preferences": hints,
    }
    system: str | None
    if emulate:
        system, messages = _emulation.render(request)
    else:
        system, messages = request.system, to_sampling_messages(request.messages)
    if request.output_format is not None:
        system = "\n\n".join(filter(None, [system, _structured.instruction(request.output_format)]))
    messages += repairs
    if emulate:
        emulated: types.CreateMessageResult = await session.create_message(messages, system_prompt=system, **common)
        return emulated
    common["system_prompt"] = system
    tools, tool_choice = _tools(request)
    if tools is None:
        plain: types.CreateMessageResult = await session.create_message(messages, **common)
        return plain
    return await session.create_message(messages, tools=tools, tool_choice=tool_choice, **common)


def _emulated_answer(
    request_id: str, request: NeutralRequest, answer: str, stop: StopReason
) -> tuple[list[types.SamplingMessageContentBlock], StopReason]:
    """The model's text answer -> its text and the tool calls written in it, and the stop reason.

    An answer whose calls do not parse is plain text, ``endTurn`` (``maxTokens`` stays: a call cut
    off by the token limit is reported as truncated, not as a finished answer)."""
    names = [t.name for t in _emulation.callable_tools(request)]
    try:
        text, calls = _emulation.parse_tool_calls(answer, names)
    except _emulation.MalformedToolCall as exc:
        log.warning("%s: the model's emulated tool call is unusable (%s); answering with its text", request_id, exc)
        return [types.TextContent(text=answer)], "maxTokens" if stop == "maxTokens" else "endTurn"
    out: list[types.SamplingMessageContentBlock] = [types.TextContent(text=text)]
    out += [types.ToolUseContent(id=c.id, name=c.name, input=c.input) for c in calls]
    if calls:
        return out, "toolUse"
    return out, "endTurn" if stop == "toolUse" else stop


async def answer_by_sampling(
    session: ServerSession,
    frame: RequestFrame,
    timeout: float,
    client_name: str,
    on_model: Callable[[str], None],
    tool_emulation: bool = True,
    repair_rounds: int = 1,
) -> Sequence[AnswerFrame | Release]:
    """Sample the client's model for one relay request; the answer frames (or one error frame, or a
    ``release`` when the client's connection closed before it answered).

    An answer that breaks the requested format or a tool's schema is sent back to the model with what
    is wrong, up to ``repair_rounds`` times; one still wrong after that is an ``invalid_answer`` error,
    never a wrong answer. ``timeout`` covers all rounds."""
    emulate = emulates_tools(frame.request, client_has_sampling_tools(session), tool_emulation)
    repairs: list[types.SamplingMessage] = []
    limit = min(timeout, frame.timeout)
    problem = ""
    try:
        with anyio.fail_after(limit):
            spent: TokenUsage | None = TokenUsage(input_tokens=0, output_tokens=0)
            for round_ in range(repair_rounds + 1):
                result = await _sample(session, frame.request, emulate, repairs)
                on_model(result.model)
                spent = _plus(spent, reported_usage(result))
                checked = _checked_answer(frame.id, frame.request, result, emulate)
                if not isinstance(checked, _Wrong):
                    end = checked[-1]
                    return [*checked[:-1], replace(end, usage=spent)] if isinstance(end, End) else checked
                problem = checked.problem
                log.info("%s: answer round %d does not fit: %s", frame.id, round_ + 1, problem)
                repairs += checked.turns
    except TimeoutError:
        message = (
            f"The MCP client ({client_name}) did not answer the sampling request within "
            f"{limit:g} s (mcptb-server --sampling-timeout)."
        )
        return [ErrorFrame(id=frame.id, code="timeout", message=message)]
    except MCPError as exc:
        if exc.code == types.CONNECTION_CLOSED:  # the client is gone before any answer: let another worker
            return [Release(id=frame.id)]
        return [_client_error(frame.id, exc, client_name)]
    except ValueError as exc:  # the SDK's own checks of tool_use/tool_result pairing
        message = f"Cannot send this conversation through MCP sampling: {exc}."
        return [ErrorFrame(id=frame.id, code="unsupported", message=message)]
    rounds = f"{repair_rounds} repair round{'' if repair_rounds == 1 else 's'}"
    message = f"The model's answer does not fit what the request asks for, after {rounds}: {problem}"
    return [ErrorFrame(id=frame.id, code="invalid_answer", message=message)]


def reported_usage(result: types.CreateMessageResult | types.CreateMessageResultWithTools) -> TokenUsage | None:
    """The tokens the client says this result cost, from its ``_meta``: ``{"usage": {"inputTokens": n,
    "outputTokens": m}}``. MCP has no field for them and no client we know sends them yet; without them
    (or with anything else there) the relay estimates."""
    usage = (result.meta or {}).get("usage")
    if not isinstance(usage, dict):
        return None
    tokens_in, tokens_out = usage.get("inputTokens"), usage.get("outputTokens")
    if type(tokens_in) is not int or type(tokens_out) is not int:
        return None
    if min(tokens_in, tokens_out) < 0 or max(tokens_in, tokens_out) > MAX_COUNT:
        return None
    return TokenUsage(input_tokens=tokens_in, output_tokens=tokens_out)


def _plus(spent: TokenUsage | None, more: TokenUsage | None) -> TokenUsage | None:
    """Tokens of every round (a repair round costs too); None once a round's are unknown."""
    if spent is None or more is None:
        return None
    return TokenUsage(
        input_tokens=spent.input_tokens + more.input_tokens, output_tokens=spent.output_tokens + more.output_tokens
    )


@dataclass(frozen=True)
class _Wrong:
    problem: str
    turns: list[types.SamplingMessage]
    """What the model is shown next: its answer, and what is wrong with it."""


def _checked_answer(
    request_id: str,
    request: NeutralRequest,
    result: types.CreateMessageResult | types.CreateMessageResultWithTools,
    emulate: bool,
) -> list[AnswerFrame] | _Wrong:
    blocks: list[types.SamplingMessageContentBlock] = (
        list(result.content_as_list) if isinstance(result, types.CreateMessageResultWithTools) else [result.content]
    )
    stop: StopReason = result.stop_reason if result.stop_reason in _STOP_REASONS else "endTurn"
    texts = [b.text for b in blocks if isinstance(b, types.TextContent)]
    raw_text = "".join(texts)
    if emulate and len(texts) == len(blocks):
        blocks, stop = _emulated_answer(request_id, request, raw_text, stop)
    calls = [b for b in blocks if isinstance(b, types.ToolUseContent)]
    schemas = {t.name: t.input_schema for t in request.tools}
    bad = {
        c.id: problem
        for c in calls
        if c.name in schemas and (problem := _structured.arguments_problem(c.name, dict(c.input), schemas[c.name]))
    }
    if bad:
        return _Wrong("; ".join(bad.values()), _tool_repair(blocks, calls, bad, raw_text, emulate))
    if request.output_format is not None and not calls:
        answer, errors = _structured.parse_answer(raw_text, request.output_format)
        if errors:
            turns = [
                types.SamplingMessage(role="assistant", content=types.TextContent(text=raw_text)),
                types.SamplingMessage(role="user", content=types.TextContent(text=_structured.repair_request(errors))),
            ]
            return _Wrong("; ".join(errors), turns)
        blocks = [types.TextContent(text=answer)]
    frames: list[AnswerFrame] = [Start(id=request_id, model=result.model)]
    for block in blocks:
        if isinstance(block, types.TextContent):
            if block.text:
                frames.append(TextDelta(id=request_id, text=block.text))
        elif isinstance(block, types.ToolUseContent):
            frames.append(ToolCall(id=request_id, call_id=block.id, name=block.name, arguments=dict(block.input)))
        else:
            message = f"The model answered with {block.type} content, which the HTTP APIs cannot carry."
            return [ErrorFrame(id=request_id, code="unsupported", message=message)]
    frames.append(End(id=request_id, stop_reason=stop))
    return frames


def _tool_repair(
    blocks: list[types.SamplingMessageContentBlock],
    calls: list[types.ToolUseContent],
    bad: dict[str, str],
    raw_text: str,
    emulate: bool,
) -> list[types.SamplingMessage]:
    """The model's answer and, for each of its calls, why it was not run: natively as tool results
    (every tool_use needs one), as text when tools are emulated."""
    not_run = "Not run: another call in this answer has invalid arguments. Call it again with the others."
    if emulate:
        problems = "\n- ".join(bad.values())
        text = f"Your tool calls were not run:\n- {problems}\nWrite all the calls again, corrected."
        return [
            types.SamplingMessage(role="assistant", content=types.TextContent(text=raw_text)),
            types.SamplingMessage(role="user", content=types.TextContent(text=text)),
        ]
    results: list[types.SamplingMessageContentBlock] = [
        types.ToolResultContent(
            tool_use_id=c.id, content=[types.TextContent(text=bad.get(c.id, not_run))], is_error=True
        )
        for c in calls
    ]
    return [
        types.SamplingMessage(role="assistant", content=blocks),
        types.SamplingMessage(role="user", content=results),
    ]


def _client_error(request_id: str, exc: MCPError, client_name: str) -> ErrorFrame:
    if exc.code == types.INVALID_PARAMS and "tools" in exc.message:
        return ErrorFrame(
            id=request_id,
            code="unsupported",
            message=(f"The MCP client ({client_name}) cannot use tools in sampling: {exc.message}."),
        )
    if exc.code in (types.METHOD_NOT_FOUND, types.INVALID_REQUEST) or (
        exc.code < 0 and "reject" in exc.message.lower()
    ):
        return ErrorFrame(
            id=request_id,
            code="refused",
            message=(
                f"The MCP client ({client_name}) refused the sampling request: {exc.message} (MCP error {exc.code})."
            ),
        )
    return ErrorFrame(
        id=request_id,
        code="client_error",
        message=(f"The MCP client ({client_name}) failed to answer: {exc.message} (MCP error {exc.code})."),
    )
