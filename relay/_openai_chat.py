"""OpenAI ``/v1/chat/completions``: request -> neutral request, answer -> JSON or SSE chunks.

Pure functions and a sans-I/O stream encoder; the wire rules come from the tested contract
(shared/reference/wire-contract.md). The ones that bite:
- every SSE event is ``data: <json>\\n\\n``; no ``event:``/``id:``/``retry:`` lines;
- every chunk has ``id``, ``object``, ``created``, ``model`` and ``choices[].index``; the first one
  ``delta.role``; one chunk carries a non-null ``finish_reason``;
- with ``stream_options.include_usage`` one ``choices: []`` usage chunk directly follows the finish
  chunk, then ``data: [DONE]`` - the three are written together, so no keep-alive comes between;
- a tool call's first delta has ``index``, ``id``, ``type``, ``function.name``; we send its whole
  arguments in that same delta (accepted by every client tested) so ``name`` is never repeated.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from shared_protocol import (
    ContentBlock,
    Message,
    NeutralRequest,
    OutputFormat,
    Start,
    StopReason,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

from . import _sse
from ._adapter import Route
from ._collect import Answer, arguments_json
from ._conversation import DEFAULT_MAX_TOKENS, Conversation, image_from_url, tool_arguments
from ._errors import RelayError, bad_request
from ._fields import check_max_tokens, openai_tool_choice, opt, opt_number, output_format, parse_json_object, tool_spec
from ._store import ConversationStore, Keep
from ._usage import Usage

FINISH_REASON: dict[StopReason, str] = {
    "endTurn": "stop",
    "stopSequence": "stop",
    "maxTokens": "length",
    "toolUse": "tool_calls",
}


# --- request ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatExchange:
    """A chat completion request (an :class:`~relay._adapter.Exchange`). Chat completions have no
    continuations: the caller sends the whole conversation each time, so nothing is kept."""

    request: NeutralRequest
    stream: bool
    include_usage: bool = False
    """``stream_options.include_usage``: a usage chunk before ``[DONE]``."""
    ignored_tools: tuple[str, ...] = ()
    keep: Keep | None = None
    session_key: str | None = None

    def stream_encoder(self, input_tokens: int) -> ChatStreamEncoder:
        return ChatStreamEncoder(self.include_usage)

    def completion(self, answer: Answer, usage: Usage) -> dict[str, Any]:
        return completion(answer, usage)


def parse_request(body: bytes) -> ChatExchange:
    data = parse_json_object(body)
    _refuse_unsupported(data)
    model = opt(data, "model", str)
    stream = opt(data, "stream", bool) or False
    options = opt(data, "stream_options", dict) or {}
    include_usage = bool(options.get("include_usage")) if stream else False
    system, messages = _messages(data.get("messages"))
    max_tokens = opt(data, "max_completion_tokens", int) or opt(data, "max_tokens", int) or DEFAULT_MAX_TOKENS
    check_max_tokens(max_tokens, "max_tokens")
    temperature = opt_number(data, "temperature")
    top_p = opt_number(data, "top_p")
    stop = data.get("stop")
    if stop is None:
        stop_sequences: list[str] = []
    elif isinstance(stop, str):
        stop_sequences = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop_sequences = stop
    else:
        raise bad_request("'stop' must be a string or a list of strings.", param="stop")
    tools = _tools(data.get("tools"))
    tool_choice = openai_tool_choice(data.get("tool_choice"), tools)
    request = NeutralRequest(
        output_format=_response_format(opt(data, "response_format", dict)),
        model=model,
        system=system,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop_sequences=stop_sequences,
    )
    # web_search_options asks OpenAI's search models to search the web: no MCP client can, so it is
    # accepted and named in the x-mcptb-ignored-tools response header
    ignored = ("web_search",) if data.get("web_search_options") is not None else ()
    key = opt(data, "prompt_cache_key", str)
    return ChatExchange(request, stream, include_usage, ignored_tools=ignored, session_key=key)


def _refuse_unsupported(data: dict[str, Any]) -> None:
    n = data.get("n")
    if n is not None and n != 1:
        raise bad_request("Only n=1 is supported: the MCP client answers once per request.", param="n")
    if data.get("logprobs"):
        raise bad_request("logprobs are not available through MCP.", param="logprobs")
    modalities = data.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise bad_request("Only text output is supported.", param="modalities")


def _response_format(raw: dict[str, Any] | None) -> OutputFormat | None:
    """``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` or ``json_object``."""
    if raw is None:
        return None
    spec = raw.get("json_schema")
    if raw.get("type") == "json_schema" and not isinstance(spec, dict):
        raise bad_request("'response_format.json_schema' must be an object.", param="response_format.json_schema")
    spec = spec if isinstance(spec, dict) else {}
    where = "response_format.json_schema" if raw.get("type") == "json_schema" else "response_format"
    return output_format(raw.get("type"), spec.get("schema"), spec.get("name"), spec.get("strict"), where)


def _messages(raw: Any) -> tuple[str | None, list[Message]]:
    if raw is None:
        raise bad_request("'messages' is required.", param="messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("'messages' must be a non-empty list.", param="messages")
    system: list[str] = []
    conversation = Conversation()
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"'{where}' must be an object.", param=where)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(_plain_text(content, f"{where}.content"))
        elif role == "user":
            conversation.add("user", _user_content(content, f"{where}.content"))
        elif role == "assistant":
            conversation.add("assistant", _assistant_content(message, where))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise bad_request(
                    f"'{where}.tool_call_id' is required for a tool message.", param=f"{where}.tool_call_id"
                )
            text = _plain_text(content, f"{where}.content")
            conversation.add("user", [ToolResultBlock(tool_use_id=call_id, content=[TextBlock(text=text)])])
        else:
            raise bad_request(
                f"'{where}.role' must be one of system, developer, user, assistant, tool; got {role!r}.",
                param=f"{where}.role",
            )
    messages = conversation.messages()
    if not messages:
        raise bad_request("'messages' must contain at least one user or assistant message.", param="messages")
    return ("\n\n".join(system) if system else None), messages


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(f"'{where}[{j}]' must be a content part object with a 'type'.", param=f"{where}[{j}]")
        return content
    raise bad_request(f"'{where}' must be a string or a list of content parts.", param=where)


def _plain_text(content: Any, where: str) -> str:
    texts = []
    for j, part in enumerate(_parts(content, where)):
        if part["type"] != "text" or not isinstance(part.get("text"), str):
            raise bad_request(f"'{where}[{j}]' must be a text part here.", param=f"{where}[{j}]")
        texts.append(part["text"])
    return "\n".join(texts)


def _user_content(content: Any, where: str) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    for j, part in enumerate(_parts(content, where)):
        kind = part["type"]
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise bad_request(f"'{where}[{j}].text' must be a string.", param=f"{where}[{j}].text")
            blocks.append(TextBlock(text=part["text"]))
        elif kind == "image_url":
            blocks.append(image_from_url(part.get("image_url"), f"{where}[{j}].image_url"))
        else:
            raise bad_request(
                f"Content part type {kind!r} is not supported (text and image_url are).",
                param=f"{where}[{j}].type",
            )
    return blocks


def _assistant_content(message: dict[str, Any], where: str) -> list[ContentBlock]:
    content = message.get("content")
    blocks: list[ContentBlock] = []
    if content is not None:
        parts = _parts(content, f"{where}.content")
        text = "".join(p.get("text", "") for p in parts if p["type"] in ("text", "refusal"))
        if text:
            blocks.append(TextBlock(text=text))
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise bad_request(f"'{where}.tool_calls' must be a list.", param=f"{where}.tool_calls")
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"'{at}.function.name' is required.", param=f"{at}.function.name")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise bad_request(f"'{at}.id' is required.", param=f"{at}.id")
        # body -> messages[] -> message -> tool_calls[] -> call -> function -> arguments: depth 6
        arguments = tool_arguments(function.get("arguments"), f"{at}.function.arguments", depth=6)
        blocks.append(ToolUseBlock(id=call_id, name=function["name"], input=arguments))
    return blocks


def _tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("'tools' must be a list.", param="tools")
    tools = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad_request(f"'{where}' must be a function tool.", param=where)
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"'{where}.function.name' is required.", param=f"{where}.function.name")
        tools.append(
            tool_spec(
                function["name"],
                function.get("description"),
                function.get("parameters"),
                f"{where}.function.parameters",
                function.get("strict"),
            )
        )
    return tools


# --- answer -----------------------------------------------------------------------------------


def finish_reason(answer: Answer) -> str:
    if answer.tool_calls:
        return "tool_calls"
    return FINISH_REASON.get(answer.stop_reason or "endTurn", "stop")


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments_json(call)},
    }


def completion(answer: Answer, usage: Usage) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content or None, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [_tool_call_json(c) for c in answer.tool_calls]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(answer)}],
        "usage": _usage_json(usage),
    }


def error_json(error: RelayError) -> dict[str, Any]:
    """OpenAI's error shape (the Responses API's too)."""
    shape = error.shape
    code = error.code or shape.code
    return {"error": {"message": error.message, "type": shape.openai_type, "param": error.param, "code": code}}


class ChatStreamEncoder:
    """Bytes for each step of a streamed chat completion. Sans-I/O; each step gets the answer so far."""

    def __init__(self, include_usage: bool) -> None:
        self.id = new_id()
        self.created = int(time.time())
        self.include_usage = include_usage
        self._tool_index = 0

    def _chunk(self, answer: Answer, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return _sse.data(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": answer.model,
                "choices": choices,
                **extra,
            }
        )

    def _delta(self, answer: Answer, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._chunk(answer, [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def first(self, answer: Answer) -> bytes:
        return self._delta(answer, {"role": "assistant", "content": ""})

    def event(self, event: Start | TextDelta | ToolCall, answer: Answer) -> bytes:
        if isinstance(event, TextDelta):
            return self._delta(answer, {"content": event.text}) if event.text else b""
        if isinstance(event, ToolCall):
            call = _tool_call_json(event)
            call["index"] = self._tool_index
            self._tool_index += 1
            return self._delta(answer, {"tool_calls": [call]})
        return b""

    def finish(self, answer: Answer, usage: Usage) -> bytes:
        out = self._delta(answer, {}, finish_reason(answer))
        if self.include_usage:
            out += self._chunk(answer, [], usage=_usage_json(usage))
        return out + _sse.DONE

    def error(self, error: RelayError, answer: Answer) -> bytes:
        return _sse.data(error_json(error)) + _sse.DONE


def new_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


class ChatAdapter:
    """OpenAI chat completions as an :class:`~relay._adapter.Adapter`."""

    routes: tuple[Route, ...] = (Route("POST", "/v1/chat/completions"),)

    keepalive = _sse.KEEPALIVE_COMMENT

    def parse(self, body: bytes, store: ConversationStore) -> ChatExchange:
        return parse_request(body)  # no continuations: the store is not read

    def error_json(self, error: RelayError) -> dict[str, Any]:
        return error_json(error)
