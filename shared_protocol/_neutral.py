"""The neutral request: what every HTTP API is converted into before it reaches a worker.

It is shaped like an MCP ``sampling/createMessage`` request (messages of content blocks, a system
prompt, tools, limits) so the sampling path maps it one to one, and so an API adapter only has to
solve "my JSON -> these types" once. Field names are snake_case on the wire of our own protocol.

The types are frozen dataclasses: built by our own code without checks, read from the wire by
``from_wire`` with every field checked (an unknown field is refused: both ends are ours), written by
``to_wire`` (fields that are None are left out).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from ._wire import (
    Invalid,
    boolean,
    choice,
    each,
    inner,
    integer,
    json_object,
    obj,
    only,
    optional_json_object,
    optional_number,
    optional_string,
    string,
    strings,
    wire_json,
    without_none,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TextBlock:
    type: ClassVar[Literal["text"]] = "text"
    text: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageBlock:
    type: ClassVar[Literal["image"]] = "image"
    data: str
    """Base64, without the ``data:`` URL prefix."""
    mime_type: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "image", "data": self.data, "mime_type": self.mime_type}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolUseBlock:
    type: ClassVar[Literal["tool_use"]] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": self.input}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultBlock:
    type: ClassVar[Literal["tool_result"]] = "tool_result"
    tool_use_id: str
    content: list[TextBlock | ImageBlock]
    is_error: bool = False

    def to_wire(self) -> dict[str, Any]:
        content = [block.to_wire() for block in self.content]
        return {"type": "tool_result", "tool_use_id": self.tool_use_id, "content": content, "is_error": self.is_error}


ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock
_BLOCK_FIELDS = {
    "text": frozenset({"type", "text"}),
    "image": frozenset({"type", "data", "mime_type"}),
    "tool_use": frozenset({"type", "id", "name", "input"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error"}),
}
_KINDS = tuple(_BLOCK_FIELDS)


def _block(value: object) -> ContentBlock:
    d = obj(value)
    kind = choice(d, "type", _KINDS)
    only(d, _BLOCK_FIELDS[kind])
    if kind == "text":
        return TextBlock(text=string(d, "text"))
    if kind == "image":
        return ImageBlock(data=string(d, "data"), mime_type=string(d, "mime_type"))
    if kind == "tool_use":
        return ToolUseBlock(id=string(d, "id"), name=string(d, "name"), input=json_object(d, "input"))
    return ToolResultBlock(
        tool_use_id=string(d, "tool_use_id"),
        content=each(d, "content", _media, required=True),
        is_error=boolean(d, "is_error"),
    )


def _media(value: object) -> TextBlock | ImageBlock:
    block = _block(value)
    if not isinstance(block, (TextBlock, ImageBlock)):
        raise Invalid("type", "must be one of text, image")
    return block


Role = Literal["user", "assistant"]
_ROLES: tuple[Role, ...] = get_args(Role)
_MESSAGE_FIELDS = frozenset({"role", "content"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    role: Role
    content: list[ContentBlock]

    def to_wire(self) -> dict[str, Any]:
        return {"role": self.role, "content": [block.to_wire() for block in self.content]}

    @classmethod
    def from_wire(cls, value: object) -> Message:
        d = obj(value)
        only(d, _MESSAGE_FIELDS)
        return cls(role=choice(d, "role", _ROLES), content=each(d, "content", _block, required=True))


_TOOL_FIELDS = frozenset({"name", "description", "input_schema", "strict"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    strict: bool = False
    """The caller marked the tool strict. Arguments are checked against ``input_schema`` either way."""

    def to_wire(self) -> dict[str, Any]:
        return without_none(
            {
                "name": self.name,
                "input_schema": self.input_schema,
                "strict": self.strict,
                "description": self.description,
            }
        )

    @classmethod
    def from_wire(cls, value: object) -> ToolSpec:
        d = obj(value)
        only(d, _TOOL_FIELDS)
        return cls(
            name=string(d, "name"),
            description=optional_string(d, "description"),
            input_schema=json_object(d, "input_schema"),
            strict=boolean(d, "strict"),
        )


ToolMode = Literal["auto", "required", "none"]
_TOOL_MODES: tuple[ToolMode, ...] = get_args(ToolMode)
_CHOICE_FIELDS = frozenset({"mode", "name"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolChoice:
    mode: ToolMode
    name: str | None = None
    """When set (with mode ``required``) the caller demands this one tool."""

    def to_wire(self) -> dict[str, Any]:
        return {"mode": self.mode} if self.name is None else {"mode": self.mode, "name": self.name}

    @classmethod
    def from_wire(cls, value: object) -> ToolChoice:
        d = obj(value)
        only(d, _CHOICE_FIELDS)
        return cls(mode=choice(d, "mode", _TOOL_MODES), name=optional_string(d, "name"))


FormatType = Literal["json_object", "json_schema"]
_FORMAT_TYPES: tuple[FormatType, ...] = get_args(FormatType)
_FORMAT_FIELDS = frozenset({"type", "name", "json_schema", "strict"})


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFormat:
    """The caller wants the answer as one JSON value: an object (``json_object``), or a value valid
    against ``json_schema`` (``json_schema``; ``name`` and ``strict`` as the caller gave them)."""

    type: FormatType
    name: str | None = None
    json_schema: dict[str, Any] | None = None
    strict: bool = False

    def to_wire(self) -> dict[str, Any]:
        return without_none(
            {"type": self.type, "strict": self.strict, "name": self.name, "json_schema": self.json_schema}
        )

    @classmethod
    def from_wire(cls, value: object) -> OutputFormat:
        d = obj(value)
        only(d, _FORMAT_FIELDS)
        return cls(
            type=choice(d, "type", _FORMAT_TYPES),
            name=optional_string(d, "name"),
            json_schema=optional_json_object(d, "json_schema"),
            strict=boolean(d, "strict"),
        )


MAX_TOKENS = 2**31 - 1
"""The largest ``max_tokens`` a request may carry (the relay refuses more with a 400)."""
_REQUEST_FIELDS = frozenset(
    {
        "model",
        "system",
        "messages",
        "tools",
        "tool_choice",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "output_format",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NeutralRequest:
    model: str | None = None
    """The model name the caller asked for (a hint for the worker, a routing key for the relay)."""
    system: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int
    """Positive (the adapters refuse anything else; the wire checks it)."""
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] = field(default_factory=list)
    output_format: OutputFormat | None = None
    """Structured output: the worker tells the model, validates the answer and sends only a valid one."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "messages": [message.to_wire() for message in self.messages],
            "max_tokens": self.max_tokens,
        }
        if self.tools:
            wire["tools"] = [tool.to_wire() for tool in self.tools]
        if self.stop_sequences:
            wire["stop_sequences"] = self.stop_sequences
        for key in ("model", "system", "temperature", "top_p"):
            value = getattr(self, key)
            if value is not None:
                wire[key] = value
        if self.tool_choice is not None:
            wire["tool_choice"] = self.tool_choice.to_wire()
        if self.output_format is not None:
            wire["output_format"] = self.output_format.to_wire()
        return wire

    @classmethod
    def from_wire(cls, value: object) -> NeutralRequest:
        d = obj(value)
        only(d, _REQUEST_FIELDS)
        tool_choice = d.get("tool_choice")
        output_format = d.get("output_format")
        return cls(
            model=optional_string(d, "model"),
            system=optional_string(d, "system"),
            messages=each(d, "messages", Message.from_wire, required=True),
            tools=each(d, "tools", ToolSpec.from_wire),
            tool_choice=None if tool_choice is None else inner(d, "tool_choice", ToolChoice.from_wire),
            max_tokens=integer(d, "max_tokens", low=1, high=MAX_TOKENS),
            temperature=optional_number(d, "temperature"),
            top_p=optional_number(d, "top_p"),
            stop_sequences=strings(d, "stop_sequences"),
            output_format=None if output_format is None else inner(d, "output_format", OutputFormat.from_wire),
        )


def conversation_digests(messages: list[Message]) -> list[bytes]:
    """``digests[k]`` identifies ``messages[: k + 1]``: a request whose messages start with those of an
    earlier one shares its digests up to there. Both sides use it to recognise a continued
    conversation (the relay to send it back to the worker that answered it, the worker to show its
    agent only what is new)."""
    running = hashlib.sha256()
    digests = []
    for message in messages:
        running.update(wire_json(message.to_wire()).encode())
        running.update(b"\n")
        digests.append(running.copy().digest())
    return digests
