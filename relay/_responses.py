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

Tools (``_responses_tools``): ``function`` tools and the function tools of a ``namespace`` reach the
model; hosted tools are accepted and left out, named in the ``x-mcptb-ignored-tools`` response header.
The answer, whole or streamed, is ``_responses_answer``'s.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from shared_protocol import (
    ContentBlock,
    ImageBlock,
    Message,
    NeutralRequest,
    OutputFormat,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)

from . import _sse
from ._adapter import Route
from ._collect import Answer
from ._conversation import DEFAULT_MAX_TOKENS, Conversation, image_from_url, system_note, tool_arguments
from ._errors import RelayError, bad_request
from ._fields import check_max_tokens, opt, opt_number, output_format, parse_json_object
from ._openai_chat import error_json
from ._responses_answer import ResponsesStreamEncoder, response_json
from ._responses_tools import ToolSet, flat_name, tool_choice, tool_set
from ._store import ConversationStore, Keep, Stored
from ._usage import Usage

STORE_KEY = "responses:"
"""The store's keys for responses: this prefix and the response id."""

# --- request ----------------------------------------------------------------------------------


def parse_request(body: bytes, store: ConversationStore | None = None) -> ResponsesExchange:
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
    check_max_tokens(max_tokens, "max_output_tokens")
    instructions = opt(data, "instructions", str)
    system, messages = _input(data.get("input"), earlier)
    system_text = "\n\n".join(filter(None, [instructions, *system])) or None
    keep_it = opt(data, "store", bool) is not False
    tools = tool_set(data.get("tools"))
    request = NeutralRequest(
        output_format=_text_format(opt(data, "text", dict)),
        model=model,
        system=system_text,
        messages=messages,
        tools=list(tools.specs),
        tool_choice=tool_choice(data.get("tool_choice"), tools),
        max_tokens=max_tokens,
        temperature=opt_number(data, "temperature"),
        top_p=opt_number(data, "top_p"),
    )
    response_id = "resp_" + secrets.token_hex(12)
    keep = None
    if keep_it and store is not None and store.enabled:
        # what a continuation inherits: the conversation and its input's system items, not the instructions
        keep = Keep(STORE_KEY + response_id, "\n\n".join(system) or None, tuple(messages))
    key = opt(data, "prompt_cache_key", str)
    return ResponsesExchange(request, stream, tools, response_id, previous, keep, key)


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
    arguments = tool_arguments(item.get("arguments"), f"{where}.arguments", depth=3)  # body -> input[] -> item
    return ToolUseBlock(id=call_id, name=name, input=arguments)


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


def _text_format(text: dict[str, Any] | None) -> OutputFormat | None:
    """``text.format``: ``{"type": "json_schema", "name", "schema", "strict"}``, ``json_object`` or ``text``."""
    raw = (text or {}).get("format")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("'text.format' must be an object.", param="text.format")
    return output_format(raw.get("type"), raw.get("schema"), raw.get("name"), raw.get("strict"), "text.format")


# --- the exchange and the adapter ---------------------------------------------------------------


def input_token_count(tokens: int) -> dict[str, Any]:
    """``POST /v1/responses/input_tokens`` (the openai SDK's ``responses.input_tokens.count``): the same
    estimate as Anthropic's ``count_tokens``, marked so by its ``x-mcptb-usage: estimated`` header."""
    return {"object": "response.input_tokens", "input_tokens": tokens}


@dataclass(frozen=True)
class ResponsesExchange:
    """A Responses request (an :class:`~relay._adapter.Exchange`)."""

    request: NeutralRequest
    stream: bool
    tools: ToolSet
    """The request's tools as read: how calls go back (namespaces), what the response reports."""
    response_id: str
    """The id the answer carries, chosen while parsing to file it in the store."""
    previous_id: str | None = None
    """The stored response this request continues (``previous_response_id``)."""
    keep: Keep | None = None
    session_key: str | None = None

    @property
    def ignored_tools(self) -> tuple[str, ...]:
        return self.tools.ignored

    def stream_encoder(self, input_tokens: int) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(
            self.request, self.tools, self.response_id, self.previous_id, self.keep is not None
        )

    def completion(self, answer: Answer, usage: Usage) -> dict[str, Any]:
        return response_json(
            self.request,
            answer,
            usage,
            self.tools,
            response_id=self.response_id,
            previous_id=self.previous_id,
            stored=self.keep is not None,
        )


class ResponsesAdapter:
    """OpenAI responses as an :class:`~relay._adapter.Adapter`."""

    routes: tuple[Route, ...] = (
        Route("POST", "/v1/responses"),
        Route("POST", "/v1/responses/input_tokens", count_tokens=input_token_count),
    )

    keepalive = _sse.KEEPALIVE_COMMENT

    def parse(self, body: bytes, store: ConversationStore) -> ResponsesExchange:
        return parse_request(body, store)

    def error_json(self, error: RelayError) -> dict[str, Any]:
        return error_json(error)
