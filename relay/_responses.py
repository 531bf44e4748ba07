"""OpenAI ``/v1/responses``: request -> neutral request, answer -> the response object or its events.

This is the endpoint litellm's proxy uses for Claude Code traffic routed to an ``openai/`` deployment
(wire contract rule 16, §4.4). Input items: ``message`` (roles user/assistant, and system/developer:
leading ones become the system prompt after ``instructions``, later ones a user note), its parts
``input_text``/``output_text``/``input_image`` (data: URLs only), ``function_call`` and
``function_call_output``; ``reasoning`` items are dropped. Hosted tools (web search and kin) are
ignored, visibly (see Tools). ``include``, ``reasoning``, ``metadata``, ``user``, ``truncation`` are
accepted and ignored. ``text.format`` (``json_schema``, ``json_object``) is carried in the neutral
request and reported back in the response object's ``text.format``.

Continuations (``_store``): every answered response is stored unless the request says
``store: false`` (OpenAI's default is to store) or the relay's store is off. ``previous_response_id``
continues a stored response: its conversation (input items and output, tool calls included, and
the system/developer items of its input) comes first, then the new ``input``. As in OpenAI's API,
``instructions`` are not carried over, and neither are ``tools`` or ``text``: each request gives its
own. An id the store does not hold (never stored, evicted, or from before a restart) gets OpenAI's
400 ``previous_response_not_found``; with the store off, ``previous_response_id`` is a 400 that says
so. Never silently dropped.

Streams: ``event:`` + ``data:`` pairs, each with a ``sequence_number``; ``response.created`` and
``response.in_progress`` at once; per output item ``output_item.added`` ... ``output_item.done``;
then ``response.completed`` (or ``response.incomplete`` at the token limit) carrying ``output`` and
``usage``; ``response.failed`` on errors. No ``[DONE]``.

Tools: ``function`` tools, and the function tools of a ``namespace`` (the Codex CLI groups its
sub-agent and MCP tools so), which the model sees as ``<namespace>__<name>`` (Codex's own flat form)
and whose calls go back as the bare ``name`` plus ``namespace``, the shape Codex dispatches (a
function_call input item carrying a ``namespace`` is read back the same way). Other tools
(web_search, file_search, code_interpreter...: hosted tools that only OpenAI's servers can run, and
kinds the relay cannot offer a model, such as freeform ``custom`` tools) are accepted and left out,
named in the ``x-mcptb-ignored-tools`` response header.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared_protocol import (
    ContentBlock,
    ImageBlock,
    Message,
    NeutralRequest,
    OutputFormat,
    Start,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

from . import _sse
from ._adapter import Call, Route
from ._collect import Answer, arguments_json
from ._conversation import DEFAULT_MAX_TOKENS, Conversation, image_from_url, system_note, tool_arguments
from ._errors import RelayError, bad_request
from ._fields import openai_tool_choice, opt, opt_number, output_format, parse_json_object, tool_spec
from ._openai_chat import error_json
from ._store import ConversationStore, Keep, Stored
from ._usage import UsageEstimate

STORE_KEY = "responses:"
"""The store's keys for responses: this prefix and the response id."""

# --- request ----------------------------------------------------------------------------------


def parse_request(body: bytes, store: ConversationStore | None = None) -> Call:
    """The request; a ``previous_response_id`` is looked up in ``store`` (None: no store)."""
    data = parse_json_object(body)
    if data.get("conversation") is not None:
        raise bad_request(
            "'conversation' (the Conversations API) is not supported: this relay keeps no conversation objects. "
            "Continue with previous_response_id, or send the whole conversation in 'input'.",
            param="conversation",
        )
    previous = opt(data, "previous_response_id", str)
    earlier = _earlier(previous, store, len(body))
    model = opt(data, "model", str)
    stream = opt(data, "stream", bool) or False
    max_tokens = opt(data, "max_output_tokens", int) or DEFAULT_MAX_TOKENS
    if max_tokens <= 0:
        raise bad_request("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
    instructions = opt(data, "instructions", str)
    system, messages = _input(data.get("input"), earlier)
    system_text = "\n\n".join(filter(None, [instructions, *system])) or None
    keep_it = opt(data, "store", bool) is not False
    tools = _tools(data.get("tools"))
    request = NeutralRequest(
        output_format=_text_format(opt(data, "text", dict)),
        model=model,
        system=system_text,
        messages=messages,
        tools=list(tools.specs),
        tool_choice=_tool_choice(data.get("tool_choice"), tools),
        max_tokens=max_tokens,
        temperature=opt_number(data, "temperature"),
        top_p=opt_number(data, "top_p"),
    )
    response_id = "resp_" + secrets.token_hex(12)
    keep = None
    if keep_it and store is not None and store.enabled:
        # what a continuation inherits: the conversation and its input's system items, not the instructions
        keep = Keep(STORE_KEY + response_id, "\n\n".join(system) or None, tuple(messages))
    return ResponsesCall(
        request,
        stream,
        ignored_tools=tools.ignored,
        response_id=response_id,
        previous_id=previous,
        keep=keep,
        tools=tools,
    )


def _earlier(previous: str | None, store: ConversationStore | None, more: int) -> Stored | None:
    """The stored response ``previous_response_id`` continues (with ``more`` bytes of new request), or
    the error saying why there is none."""
    if previous is None:
        return None
    if store is None or not store.enabled:
        raise bad_request(
            "previous_response_id needs the relay's conversation store, which is off (--store-conversations 0 "
            "or --store-bytes 0). Send the whole conversation in 'input', or run the relay with the store on.",
            param="previous_response_id",
        )
    earlier = store.get(STORE_KEY + previous)
    if earlier is None:  # OpenAI's own error, word for word: SDKs and agents recover by resending the history
        raise RelayError(
            "bad_request",
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    if not store.fits(earlier, more):
        raise RelayError("body_too_large", store.too_long(earlier, more), param="previous_response_id")
    return earlier


def _parts(raw: Any, where: str, role: str) -> list[ContentBlock]:
    if isinstance(raw, str):
        return [TextBlock(text=raw)] if raw else []
    if not isinstance(raw, list):
        raise bad_request(f"'{where}' must be a string or a list of content parts.", param=where)
    blocks: list[ContentBlock] = []
    for j, part in enumerate(raw):
        kind = part.get("type") if isinstance(part, dict) else None
        at = f"{where}[{j}]"
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            blocks.append(TextBlock(text=part["text"]))
        elif kind == "refusal" and role == "assistant":
            blocks.append(TextBlock(text=str(part.get("refusal", ""))))
        elif kind == "input_image":
            blocks.append(image_from_url(part.get("image_url"), f"{at}.image_url"))
        else:
            raise bad_request(
                f"'{at}' has unsupported type {kind!r} (input_text, output_text and input_image are supported).",
                param=f"{at}.type",
            )
    return blocks


def _input(raw: Any, earlier: Stored | None = None) -> tuple[list[str], list[Message]]:
    """The system texts (leading system/developer items) and the conversation: ``earlier``'s, if this
    continues a stored response, then the input's items."""
    if raw is None:
        raise bad_request("'input' is required.", param="input")
    system: list[str] = [earlier.system] if earlier is not None and earlier.system else []
    conversation = Conversation(earlier.messages if earlier is not None else ())
    if isinstance(raw, str):
        conversation.add("user", [TextBlock(text=raw)])
        raw = []
    elif not isinstance(raw, list) or not raw:
        raise bad_request("'input' must be a string or a non-empty list of items.", param="input")
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad_request(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                texts = [
                    b.text for b in _parts(item.get("content"), f"{where}.content", role) if isinstance(b, TextBlock)
                ]
                if conversation:
                    conversation.add("user", [system_note(texts)])
                else:
                    system.extend(texts)
            elif role in ("user", "assistant"):
                conversation.add(role, _parts(item.get("content"), f"{where}.content", role))
            else:
                raise bad_request(
                    f"'{where}.role' must be user, assistant, system or developer; got {role!r}.", param=f"{where}.role"
                )
        elif kind == "function_call":
            conversation.add("assistant", [_function_call(item, where)])
        elif kind == "function_call_output":
            conversation.add("user", [_function_output(item, where)])
        elif kind != "reasoning":
            raise bad_request(
                f"'{where}.type' {kind!r} is not supported (message, function_call, function_call_output).",
                param=f"{where}.type",
            )
    messages = conversation.messages()
    if not messages:
        raise bad_request("'input' must contain at least one user or assistant item.", param="input")
    return system, [Message(role=m.role, content=_text_first(m.content)) for m in messages]


def _text_first(blocks: list[ContentBlock]) -> list[ContentBlock]:
    """litellm sends an assistant turn's function_call items before its text; models expect the text first."""
    return [b for b in blocks if not isinstance(b, ToolUseBlock)] + [b for b in blocks if isinstance(b, ToolUseBlock)]


def _function_call(item: dict[str, Any], where: str) -> ToolUseBlock:
    call_id, name, namespace = item.get("call_id"), item.get("name"), item.get("namespace")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise bad_request(f"'{where}' needs call_id and name.", param=where)
    if isinstance(namespace, str) and namespace:  # a call of a namespace's tool, as Codex sends it back
        name = flat_name(namespace, name)
    return ToolUseBlock(id=call_id, name=name, input=tool_arguments(item.get("arguments"), f"{where}.arguments"))


def _function_output(item: dict[str, Any], where: str) -> ToolResultBlock:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        raise bad_request(f"'{where}.call_id' is required.", param=f"{where}.call_id")
    output = item.get("output", "")
    if isinstance(output, str):
        content: list[Any] = [TextBlock(text=output)]
    else:
        content = [b for b in _parts(output, f"{where}.output", "user") if isinstance(b, TextBlock | ImageBlock)]
    return ToolResultBlock(tool_use_id=call_id, content=content)


NAMESPACE_DELIMITER = "__"


def flat_name(namespace: str, name: str) -> str:
    """The one name a namespaced tool has for the model: Codex's own flattening (``ToolName::
    canonical_flat_name``: ``multi_agent_v1`` + ``close_agent`` -> ``multi_agent_v1__close_agent``,
    stray underscores around the delimiter trimmed), the form OpenAI's models see too."""
    return namespace.rstrip("_") + NAMESPACE_DELIMITER + name.lstrip("_")


@dataclass(frozen=True)
class ToolSet:
    """A request's ``tools`` as read: what reaches the model, how calls go back, what was left out."""

    specs: tuple[ToolSpec, ...] = ()
    """Every function tool, a namespace's under its flat name."""
    namespaced: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """flat name -> (namespace, name), for the calls that go back to the caller."""
    ignored: tuple[str, ...] = ()
    """Tools no MCP client can run (hosted ones: web_search, file_search...), by name or else by type."""
    reported: tuple[dict[str, Any], ...] = ()
    """The ``tools`` a response reports: those the model got, in the caller's shape."""

    def call_fields(self, flat: str) -> dict[str, str]:
        """``name`` (and ``namespace``) of a function_call item: a namespaced tool's call carries its
        bare name and its namespace, as Codex expects (its flat name would be an unsupported call)."""
        if flat in self.namespaced:
            namespace, name = self.namespaced[flat]
            return {"name": name, "namespace": namespace}
        return {"name": flat}


@dataclass(frozen=True)
class ResponsesCall(Call):
    tools: ToolSet = ToolSet()


def _function(tool: dict[str, Any], name: str, where: str) -> ToolSpec:
    return tool_spec(name, tool.get("description"), tool.get("parameters"), f"{where}.parameters", tool.get("strict"))


def _reported(spec: ToolSpec, name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "description": spec.description,
        "parameters": spec.input_schema,
        "strict": spec.strict,
    }


def _tools(raw: Any) -> ToolSet:
    """Function tools, and the function tools of a ``namespace`` (Codex groups its sub-agent and MCP
    tools so: ``{"type": "namespace", "name", "description", "tools": [...]}``), flattened. Anything
    else (web_search, file_search, code_interpreter, custom...) is accepted and left out, by name."""
    if raw is None:
        return ToolSet()
    if not isinstance(raw, list):
        raise bad_request("'tools' must be a list.", param="tools")
    specs: dict[str, ToolSpec] = {}
    namespaced: dict[str, tuple[str, str]] = {}
    ignored: list[str] = []
    reported: list[dict[str, Any]] = []

    def add(spec: ToolSpec, where: str) -> None:
        if spec.name in specs:
            raise bad_request(
                f"'{where}' is a second tool named {spec.name!r} (a namespace's tools are named "
                f"<namespace>{NAMESPACE_DELIMITER}<name>).",
                param=where,
            )
        specs[spec.name] = spec

    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise bad_request(f"'{where}' must be an object.", param=where)
        kind = tool.get("type")
        if kind == "function":
            if not isinstance(tool.get("name"), str):
                raise bad_request(f"'{where}.name' is required.", param=f"{where}.name")
            spec = _function(tool, tool["name"], where)
            add(spec, where)
            reported.append(_reported(spec, spec.name))
        elif kind == "namespace":
            namespace, members = tool.get("name"), tool.get("tools")
            if not isinstance(namespace, str) or not namespace:
                raise bad_request(f"'{where}.name' is required.", param=f"{where}.name")
            if not isinstance(members, list):
                raise bad_request(f"'{where}.tools' must be a list.", param=f"{where}.tools")
            group: list[dict[str, Any]] = []
            for j, member in enumerate(members):
                at = f"{where}.tools[{j}]"
                if not isinstance(member, dict):
                    raise bad_request(f"'{at}' must be an object.", param=at)
                if member.get("type") != "function":
                    label = member.get("name") if isinstance(member.get("name"), str) else member.get("type")
                    ignored.append(flat_name(namespace, str(label)))
                    continue
                if not isinstance(member.get("name"), str):
                    raise bad_request(f"'{at}.name' is required.", param=f"{at}.name")
                flat = flat_name(namespace, member["name"])
                spec = _function(member, flat, at)
                add(spec, at)
                namespaced[flat] = (namespace, member["name"])
                group.append(_reported(spec, member["name"]))
            if group:
                description = tool.get("description")
                reported.append({"type": "namespace", "name": namespace, "description": description, "tools": group})
        else:  # web_search, file_search...: only OpenAI's servers run them
            label = tool.get("name") if isinstance(tool.get("name"), str) else kind
            ignored.append(str(label))
    return ToolSet(tuple(specs.values()), namespaced, tuple(ignored), tuple(reported))


def _tool_choice(raw: Any, tools: ToolSet) -> ToolChoice | None:
    """``tool_choice``; a function in a namespace (``{"type": "function", "name", "namespace"}``) by its flat name."""
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("namespace"), str):
        raw = {**raw, "name": flat_name(raw["namespace"], str(raw.get("name")))}
    return openai_tool_choice(raw, list(tools.specs))


def _text_format(text: dict[str, Any] | None) -> OutputFormat | None:
    """``text.format``: ``{"type": "json_schema", "name", "schema", "strict"}``, ``json_object`` or ``text``."""
    raw = (text or {}).get("format")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("'text.format' must be an object.", param="text.format")
    return output_format(raw.get("type"), raw.get("schema"), raw.get("name"), raw.get("strict"), "text.format")


def format_json(wanted: OutputFormat | None) -> dict[str, Any]:
    """The ``text.format`` a response reports: the one it honoured."""
    if wanted is None:
        return {"type": "text"}
    if wanted.type == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "name": wanted.name or "response",
        "schema": wanted.json_schema,
        "strict": wanted.strict,
        "description": None,
    }


# --- answer -----------------------------------------------------------------------------------


def _usage(usage: UsageEstimate) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, call: ToolCall, status: str, tools: ToolSet) -> dict[str, Any]:
    arguments = arguments_json(call) if status == "completed" else ""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.call_id,
        **tools.call_fields(call.name),
        "arguments": arguments,
    }


def _status(answer: Answer) -> tuple[str, dict[str, str] | None]:
    if answer.stop_reason == "maxTokens" and not answer.tool_calls:
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


class _Response:
    """The response object, filled in as the answer arrives."""

    def __init__(
        self,
        request: NeutralRequest,
        tools: ToolSet | None = None,
        response_id: str | None = None,
        previous_id: str | None = None,
        stored: bool = False,
    ) -> None:
        self.id = response_id or "resp_" + secrets.token_hex(12)
        self.created = int(time.time())
        self.request = request
        self.tools = tools or ToolSet(reported=tuple(_reported(t, t.name) for t in request.tools))
        self.previous_id = previous_id
        self.stored = stored
        self.output: list[dict[str, Any]] = []

    def body(
        self,
        model: str,
        status: str,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        choice = self.request.tool_choice
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "model": model,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": self.request.system,
            "metadata": {},
            "parallel_tool_calls": True,
            "previous_response_id": self.previous_id,
            "store": self.stored,
            "temperature": self.request.temperature,
            "top_p": self.request.top_p,
            "tool_choice": choice.mode if choice else "auto",
            "tools": list(self.tools.reported),
            "text": {"format": format_json(self.request.output_format)},
            "truncation": "disabled",
            "reasoning": {"effort": None, "summary": None},
            "max_output_tokens": self.request.max_tokens,
            "output": list(self.output),
            "usage": usage,
        }


def response_json(
    request: NeutralRequest,
    answer: Answer,
    usage: UsageEstimate,
    tools: ToolSet | None = None,
    *,
    response_id: str | None = None,
    previous_id: str | None = None,
    stored: bool = False,
) -> dict[str, Any]:
    """The response object; ``tools`` (the request's as read, by default its function tools) says
    how calls go back and what ``tools`` the response reports; ``response_id`` is the id it is stored
    under (if ``stored``), ``previous_id`` the one it continues."""
    response = _Response(request, tools, response_id, previous_id, stored)
    if answer.content:
        response.output.append(_message_item("msg_" + secrets.token_hex(12), answer.content, "completed"))
    for call in answer.tool_calls:
        response.output.append(_call_item("fc_" + secrets.token_hex(12), call, "completed", response.tools))
    status, incomplete = _status(answer)
    return response.body(answer.model, status, _usage(usage), incomplete=incomplete)


class ResponsesStreamEncoder:
    """Bytes for each step of a streamed response. Sans-I/O; each step gets the answer so far."""

    def __init__(
        self,
        request: NeutralRequest,
        tools: ToolSet | None = None,
        response_id: str | None = None,
        previous_id: str | None = None,
        stored: bool = False,
    ) -> None:
        self._response = _Response(request, tools, response_id, previous_id, stored)
        self._sequence = 0
        self._text_item: str | None = None  # id of the open message item
        self._text: list[str] = []

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        frame = _sse.event(kind, {"sequence_number": self._sequence, **data})
        self._sequence += 1
        return frame

    def first(self, answer: Answer) -> bytes:
        snapshot = self._response.body(answer.model, "in_progress")
        return self._event("response.created", {"response": snapshot}) + self._event(
            "response.in_progress", {"response": snapshot}
        )

    def _close_text(self) -> bytes:
        if self._text_item is None:
            return b""
        item_id, text = self._text_item, "".join(self._text)
        self._text_item, self._text = None, []
        index = len(self._response.output)
        item = _message_item(item_id, text, "completed")
        self._response.output.append(item)
        part = {"type": "output_text", "text": text, "annotations": []}
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return (
            self._event("response.output_text.done", {**where, "text": text})
            + self._event("response.content_part.done", {**where, "part": part})
            + self._event("response.output_item.done", {"output_index": index, "item": item})
        )

    def event(self, event: Start | TextDelta | ToolCall, answer: Answer) -> bytes:
        index = len(self._response.output)
        if isinstance(event, TextDelta) and event.text:
            out = b""
            if self._text_item is None:
                self._text_item = "msg_" + secrets.token_hex(12)
                out += self._event(
                    "response.output_item.added",
                    {"output_index": index, "item": _message_item(self._text_item, "", "in_progress")},
                )
                out += self._event(
                    "response.content_part.added",
                    {
                        "item_id": self._text_item,
                        "output_index": index,
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []},
                    },
                )
            self._text.append(event.text)
            return out + self._event(
                "response.output_text.delta",
                {"item_id": self._text_item, "output_index": index, "content_index": 0, "delta": event.text},
            )
        if isinstance(event, ToolCall):
            out = self._close_text()
            index = len(self._response.output)
            item_id = "fc_" + secrets.token_hex(12)
            arguments = arguments_json(event)
            tools = self._response.tools
            done = _call_item(item_id, event, "completed", tools)
            self._response.output.append(done)
            where = {"item_id": item_id, "output_index": index}
            return out + (
                self._event(
                    "response.output_item.added",
                    {"output_index": index, "item": _call_item(item_id, event, "in_progress", tools)},
                )
                + self._event("response.function_call_arguments.delta", {**where, "delta": arguments})
                + self._event("response.function_call_arguments.done", {**where, "arguments": arguments})
                + self._event("response.output_item.done", {"output_index": index, "item": done})
            )
        return b""

    def finish(self, answer: Answer, usage: UsageEstimate) -> bytes:
        out = self._close_text()
        status, incomplete = _status(answer)
        body = self._response.body(answer.model, status, _usage(usage), incomplete=incomplete)
        return out + self._event(f"response.{status}", {"response": body})

    def error(self, error: RelayError, answer: Answer) -> bytes:
        failure = {"code": error.shape.code or error.shape.openai_type, "message": error.message}
        return self._close_text() + self._event(
            "response.failed", {"response": self._response.body(answer.model, "failed", error=failure)}
        )


def _tool_set(call: Call) -> ToolSet | None:
    return call.tools if isinstance(call, ResponsesCall) else None


class ResponsesAdapter:
    """OpenAI responses as an :class:`~relay._adapter.Adapter`."""

    routes: tuple[Route, ...] = (Route("POST", "/v1/responses"),)

    keepalive = _sse.KEEPALIVE_COMMENT

    def parse(self, body: bytes, store: ConversationStore) -> Call:
        return parse_request(body, store)

    def stream_encoder(self, call: Call) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(
            call.request, _tool_set(call), call.response_id, call.previous_id, call.keep is not None
        )

    def completion(self, call: Call, answer: Answer, usage: UsageEstimate) -> dict[str, Any]:
        return response_json(
            call.request,
            answer,
            usage,
            _tool_set(call),
            response_id=call.response_id,
            previous_id=call.previous_id,
            stored=call.keep is not None,
        )

    def error_json(self, error: RelayError) -> dict[str, Any]:
        return error_json(error)
