"""Anthropic ``/v1/messages``: request -> neutral request, answer -> JSON or SSE events.

Accepts everything Claude Code 2.1 sends (shared/reference/wire-contract.md §6-7). What we cannot
honour is ignored, never refused: ``thinking`` and ``output_config.effort`` (the MCP client picks its
own reasoning), ``context_management``, ``metadata``, ``cache_control`` marks, ``top_k``, earlier
``thinking``/``redacted_thinking`` blocks, and server tools (``web_search`` and kin, which have no
``input_schema`` and which only Anthropic's servers can run: named in the ``x-mcptb-ignored-tools``
response header). A ``system`` message inside ``messages`` (Claude Code's mid-conversation
reminders) becomes a user text block marked as a system note, in place. Structured output
(``output_config.format``, or the beta's top-level ``output_format``) and ``strict`` tools are
carried in the neutral request: the worker validates.

Message threads (the ``message-threads-2026-08-12`` beta, which the SDKs' tool runners use by
default: TypeScript ``@anthropic-ai/sdk`` 1.15, Python ``anthropic`` 2.15): ``thread: {"type":
"create"}`` asks the relay to keep the conversation under the answer's message id, and ``{"type":
"continue", "previous_message_id": ...}`` sends only the new messages, the thread supplying the rest
and its ``system`` and ``tools`` (a continue that repeats them must repeat them unchanged, else the
API's 400 ``thread_fingerprint_mismatch``). A thread the store no longer holds is the API's 404
``thread_not_found``, on which the SDKs replay the whole history under a new thread; with the store
off, ``thread`` is a 400 ``thread_unsupported_request``, on which a tool runner goes on without one.
Requests without ``thread`` are never stored. Unlike Anthropic's servers the relay lets two
requests continue the same message (a branch), instead of answering ``thread_already_continued``.

The answer, whole or streamed, and the error shape are ``_anthropic_answer``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared_protocol import (
    ContentBlock,
    ImageBlock,
    Message,
    NeutralRequest,
    OutputFormat,
    TextBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

from . import _sse
from ._adapter import Route
from ._anthropic_answer import MessagesStreamEncoder, error_json, message_json, new_id, token_count
from ._collect import Answer
from ._conversation import DEFAULT_MAX_TOKENS, Conversation, is_base64, is_web_url, remote_image, system_note
from ._errors import RelayError, bad_request, not_found
from ._fields import check_max_tokens, forced_tool, opt, opt_number, output_format, parse_json_object, tool_spec
from ._store import ConversationStore, Keep, Stored
from ._usage import Usage

STORE_KEY = "messages:"
"""The store's keys for threads: this prefix and the id of the message a thread continues from."""

_IGNORED_BLOCKS = ("thinking", "redacted_thinking")


# --- request ----------------------------------------------------------------------------------


def parse_request(body: bytes, store: ConversationStore | None = None) -> MessagesExchange:
    """The request; a ``thread`` continuation is looked up in ``store`` (None: no store)."""
    data = parse_json_object(body)
    threaded, earlier = _thread(data.get("thread"), store, len(body))
    model = opt(data, "model", str)
    stream = opt(data, "stream", bool) or False
    max_tokens = opt(data, "max_tokens", int) or DEFAULT_MAX_TOKENS
    check_max_tokens(max_tokens, "max_tokens")
    system = _system(data.get("system"))
    tools, ignored = _tools(data.get("tools"))
    if earlier is not None:
        system, tools = _thread_fields(data, earlier, system, tools)
    messages = _messages(data.get("messages"), earlier)
    stop = data.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(x, str) for x in stop)):
        raise bad_request("stop_sequences: must be a list of strings.", param="stop_sequences")
    request = NeutralRequest(
        output_format=_output_format(data),
        model=model,
        system=system,
        messages=messages,
        tools=tools,
        tool_choice=_tool_choice(data.get("tool_choice"), tools),
        max_tokens=max_tokens,
        temperature=opt_number(data, "temperature"),
        top_p=opt_number(data, "top_p"),
        stop_sequences=stop or [],
    )
    response_id = new_id()
    keep = Keep(STORE_KEY + response_id, system, tuple(messages), tuple(tools)) if threaded else None
    user = (opt(data, "metadata", dict) or {}).get("user_id")
    return MessagesExchange(request, stream, response_id, ignored, keep, user if isinstance(user, str) else None)


def _thread(raw: Any, store: ConversationStore | None, more: int) -> tuple[bool, Stored | None]:
    """Whether the request (of ``more`` bytes) is threaded, and the conversation of the thread it
    continues; the API's errors when the thread cannot be held or continued."""
    if raw is None:
        return False, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("create", "continue"):
        raise bad_request(
            'thread: must be {"type": "create"} or {"type": "continue", "previous_message_id": ...}.', param="thread"
        )
    previous = raw.get("previous_message_id") if kind == "continue" else None
    if kind == "continue" and not isinstance(previous, str):
        where = "thread.previous_message_id"
        raise bad_request(f"{where}: required to continue a thread.", param=where)
    if store is None or not store.enabled:
        raise RelayError(
            "bad_request",
            "thread: this relay keeps no threads (its conversation store is off: --store-conversations 0 or "
            "--store-bytes 0). Send the full conversation without `thread`.",
            param="thread",
            code="thread_unsupported_request",
        )
    if previous is None:
        return True, None
    earlier = store.get(STORE_KEY + previous)
    if earlier is None:
        raise not_found(
            f"thread.previous_message_id: no thread state found for {previous!r} (the relay keeps recent threads "
            'in memory only). Replay the full conversation with thread {"type": "create"} to start a new thread.',
            "thread_not_found",
            param="thread.previous_message_id",
        )
    if not store.fits(earlier, more):
        raise RelayError("body_too_large", store.too_long(earlier, more), param="thread.previous_message_id")
    return True, earlier


def _thread_fields(
    data: dict[str, Any], earlier: Stored, system: str | None, tools: list[ToolSpec]
) -> tuple[str | None, list[ToolSpec]]:
    """A continued thread's ``system`` and ``tools``: the thread's own, which the request may repeat but
    not change."""
    changed = [
        name
        for name, given, kept in (("system", system, earlier.system), ("tools", tools, list(earlier.tools)))
        if data.get(name) is not None and given != kept
    ]
    if changed:
        raise RelayError(
            "bad_request",
            f"{' and '.join(changed)}: differ from what this thread was created with. Send them unchanged or "
            'not at all, or replay the full conversation with thread {"type": "create"} to change them.',
            param=changed[0],
            code="thread_fingerprint_mismatch",
        )
    return earlier.system, list(earlier.tools)


def _text_blocks(raw: Any, where: str) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise bad_request(f"{where}: must be a string or a list of text blocks.", param=where)
    texts = []
    for i, block in enumerate(raw):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise bad_request(f"{where}.{i}: must be a text block.", param=f"{where}.{i}")
        texts.append(block["text"])
    return texts


def _system(raw: Any) -> str | None:
    if raw is None:
        return None
    return "\n\n".join(_text_blocks(raw, "system")) or None


def _messages(raw: Any, earlier: Stored | None = None) -> list[Message]:
    """The conversation: a continued thread's, then the request's messages."""
    if raw is None:
        raise bad_request("messages: Field required.", param="messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages: must be a non-empty list.", param="messages")
    conversation = Conversation(earlier.messages if earlier is not None else ())
    for i, message in enumerate(raw):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise bad_request(f"{where}: must be an object.", param=where)
        role = message.get("role")
        if role == "system":  # a mid-conversation system reminder: keep it in place, marked
            conversation.add("user", [system_note(_text_blocks(message.get("content"), f"{where}.content"))])
        elif role in ("user", "assistant"):
            conversation.add(role, _content(message.get("content"), f"{where}.content"))
        else:
            raise bad_request(f"{where}.role: must be user or assistant, got {role!r}.", param=f"{where}.role")
    messages = conversation.messages()
    if not messages:
        raise bad_request("messages: must contain at least one message with content.", param="messages")
    return messages


def _content(raw: Any, where: str) -> list[ContentBlock]:
    if isinstance(raw, str):
        return [TextBlock(text=raw)] if raw else []
    if not isinstance(raw, list):
        raise bad_request(f"{where}: must be a string or a list of content blocks.", param=where)
    blocks: list[ContentBlock] = []
    for j, block in enumerate(raw):
        at = f"{where}.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            blocks.append(TextBlock(text=block["text"]))
        elif kind == "image":
            blocks.append(_image(block.get("source"), f"{at}.source"))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise bad_request(f"{at}: tool_use needs an id and a name.", param=at)
            tool_input = block.get("input") or {}
            if not isinstance(tool_input, dict):
                raise bad_request(f"{at}.input: must be an object.", param=f"{at}.input")
            blocks.append(ToolUseBlock(id=block["id"], name=block["name"], input=tool_input))
        elif kind == "tool_result":
            blocks.append(_tool_result(block, at))
        elif kind in _IGNORED_BLOCKS:
            continue
        else:
            raise bad_request(
                f"{at}.type: content blocks of type {kind!r} are not supported "
                "(text, image, tool_use, tool_result and thinking are).",
                param=f"{at}.type",
            )
    return blocks


def _image(source: Any, where: str) -> ImageBlock:
    if isinstance(source, dict) and source.get("type") == "url":
        url = source.get("url")
        if not isinstance(url, str) or not is_web_url(url):
            raise bad_request(f"{where}.url: must be an https:// or http:// URL.", param=f"{where}.url")
        return remote_image(url, f"{where}.url")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise bad_request(f"{where}: image sources are base64 or url.", param=where)
    media_type, data = source.get("media_type"), source.get("data")
    if not isinstance(media_type, str) or not media_type.startswith("image/") or not isinstance(data, str):
        raise bad_request(f"{where}: needs media_type image/... and base64 data.", param=where)
    if not is_base64(data):
        raise bad_request(f"{where}.data: not valid base64.", param=f"{where}.data")
    return ImageBlock(data=data, mime_type=media_type)


def _tool_result(block: dict[str, Any], where: str) -> ToolResultBlock:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str):
        raise bad_request(f"{where}.tool_use_id: required.", param=f"{where}.tool_use_id")
    raw = block.get("content")
    content: list[TextBlock | ImageBlock] = []
    if isinstance(raw, str):
        content = [TextBlock(text=raw)]
    elif isinstance(raw, list):
        for k, part in enumerate(raw):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                content.append(TextBlock(text=part["text"]))
            elif kind == "image":
                content.append(_image(part.get("source"), f"{where}.content.{k}.source"))
            else:
                raise bad_request(f"{where}.content.{k}: must be a text or image block.", param=f"{where}.content.{k}")
    elif raw is not None:
        raise bad_request(f"{where}.content: must be a string or a list of blocks.", param=f"{where}.content")
    return ToolResultBlock(tool_use_id=tool_use_id, content=content, is_error=bool(block.get("is_error")))


def _tools(raw: Any) -> tuple[list[ToolSpec], tuple[str, ...]]:
    """The tools the model gets, and the names of those it cannot (server tools: web_search...)."""
    if raw is None:
        return [], ()
    if not isinstance(raw, list):
        raise bad_request("tools: must be a list.", param="tools")
    tools, ignored = [], []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise bad_request(f"tools.{i}.name: required.", param=f"tools.{i}.name")
        if "input_schema" not in tool and tool.get("type") not in (None, "custom"):
            ignored.append(tool["name"])  # a server tool (web_search...): only Anthropic can run those
            continue
        tools.append(
            tool_spec(
                tool["name"],
                tool.get("description"),
                tool.get("input_schema"),
                f"tools.{i}.input_schema",
                tool.get("strict"),
            )
        )
    return tools, tuple(ignored)


def _output_format(data: dict[str, Any]) -> OutputFormat | None:
    """``output_config.format`` (``{"type": "json_schema", "schema": ...}``), or the older top-level
    ``output_format`` of the structured-outputs beta. Other ``output_config`` keys (``effort``) stay ignored."""
    config = opt(data, "output_config", dict) or {}
    raw, where = config.get("format"), "output_config.format"
    if raw is None:
        raw, where = data.get("output_format"), "output_format"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request(f"{where}: must be an object.", param=where)
    return output_format(raw.get("type"), raw.get("schema"), None, True, where)


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> ToolChoice | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "auto":
        return ToolChoice(mode="auto")
    if kind == "any":
        return ToolChoice(mode="required")
    if kind == "none":
        return ToolChoice(mode="none")
    if kind == "tool":
        return forced_tool(raw.get("name"), tools, "tool_choice.name")
    raise bad_request("tool_choice: type must be auto, any, tool or none.", param="tool_choice")


# --- the exchange and the adapter ---------------------------------------------------------------


@dataclass(frozen=True)
class MessagesExchange:
    """A Messages request (an :class:`~relay._adapter.Exchange`)."""

    request: NeutralRequest
    stream: bool
    message_id: str
    """The id the answer carries, chosen while parsing to file a thread in the store under it."""
    ignored_tools: tuple[str, ...] = ()
    keep: Keep | None = None
    """Set for a ``thread`` request: the conversation a later request continues from this message."""
    session_key: str | None = None

    def stream_encoder(self, input_tokens: int) -> MessagesStreamEncoder:
        return MessagesStreamEncoder(input_tokens, self.message_id)

    def completion(self, answer: Answer, usage: Usage) -> dict[str, Any]:
        return message_json(answer, usage, self.message_id)


class MessagesAdapter:
    """Anthropic messages (and their token count) as an :class:`~relay._adapter.Adapter`."""

    routes: tuple[Route, ...] = (
        Route("POST", "/v1/messages"),
        Route("POST", "/v1/messages/count_tokens", count_tokens=token_count),
    )

    keepalive = _sse.PING

    def parse(self, body: bytes, store: ConversationStore) -> MessagesExchange:
        return parse_request(body, store)

    def error_json(self, error: RelayError) -> dict[str, Any]:
        return error_json(error)
