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
    array,
    at,
    boolean,
    choice,
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


def _block(value: object, where: str) -> ContentBlock:
    d = obj(value, where)
    kind = choice(d, "type", where, _KINDS)
    only(d, _BLOCK_FIELDS[kind], where)
    if kind == "text":
        return TextBlock(text=string(d, "text", where))
    if kind == "image":
        return ImageBlock(data=string(d, "data", where), mime_type=string(d, "mime_type", where))
    if kind == "tool_use":
        return ToolUseBlock(
            id=string(d, "id", where), name=string(d, "name", where), input=json_object(d, "input", where)
        )
    inner = at(where, "content")
    return ToolResultBlock(
        tool_use_id=string(d, "tool_use_id", where),
        content=[_media(v, at(inner, i)) for i, v in enumerate(array(d, "content", where, required=True))],
        is_error=boolean(d, "is_error", where),
    )


def _media(value: object, where: str) -> TextBlock | ImageBlock:
    block = _block(value, where)
    if not isinstance(block, (TextBlock, ImageBlock)):
        raise Invalid(at(where, "type"), "must be one of text, image")
    return block


Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    role: Role
    content: list[ContentBlock]

    def to_wire(self) -> dict[str, Any]:
        return {"role": self.role, "content": [block.to_wire() for block in self.content]}

    @classmethod
    def from_wire(cls, value: object, where: str) -> Message:
        d = obj(value, where)
        only(d, frozenset({"role", "content"}), where)
        inner = at(where, "content")
        content = [_block(v, at(inner, i)) for i, v in enumerate(array(d, "content", where, required=True))]
        return cls(role=choice(d, "role", where, get_args(Role)), content=content)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    strict: bool = False
    """The caller marked the tool strict. Arguments are checked against ``input_schema`` either way."""

    def to_wire(self) -> dict[str, Any]:
        wire = {"name": self.name, "input_schema": self.input_schema, "strict": self.strict}
        if self.description is not None:
            wire["description"] = self.description
        return wire

    @classmethod
    def from_wire(cls, value: object, where: str) -> ToolSpec:
        d = obj(value, where)
        only(d, frozenset({"name", "description", "input_schema", "strict"}), where)
        return cls(
            name=string(d, "name", where),
            description=optional_string(d, "description", where),
            input_schema=json_object(d, "input_schema", where),
            strict=boolean(d, "strict", where),
        )


ToolMode = Literal["auto", "required", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolChoice:
    mode: ToolMode
    name: str | None = None
    """When set (with mode ``required``) the caller demands this one tool."""

    def to_wire(self) -> dict[str, Any]:
        return {"mode": self.mode} if self.name is None else {"mode": self.mode, "name": self.name}

    @classmethod
    def from_wire(cls, value: object, where: str) -> ToolChoice:
        d = obj(value, where)
        only(d, frozenset({"mode", "name"}), where)
        return cls(mode=choice(d, "mode", where, get_args(ToolMode)), name=optional_string(d, "name", where))


FormatType = Literal["json_object", "json_schema"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFormat:
    """The caller wants the answer as one JSON value: an object (``json_object``), or a value valid
    against ``json_schema`` (``json_schema``; ``name`` and ``strict`` as the caller gave them)."""

    type: FormatType
    name: str | None = None
    json_schema: dict[str, Any] | None = None
    strict: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "strict": self.strict}
        if self.name is not None:
            wire["name"] = self.name
        if self.json_schema is not None:
            wire["json_schema"] = self.json_schema
        return wire

    @classmethod
    def from_wire(cls, value: object, where: str) -> OutputFormat:
        d = obj(value, where)
        only(d, frozenset({"type", "name", "json_schema", "strict"}), where)
        return cls(
            type=choice(d, "type", where, get_args(FormatType)),
            name=optional_string(d, "name", where),
            json_schema=optional_json_object(d, "json_schema", where),
            strict=boolean(d, "strict", where),
        )


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
    def from_wire(cls, value: object, where: str) -> NeutralRequest:
        d = obj(value, where)
        only(d, _REQUEST_FIELDS, where)
        messages = at(where, "messages")
        tools = at(where, "tools")
        tool_choice = d.get("tool_choice")
        output_format = d.get("output_format")
        return cls(
            model=optional_string(d, "model", where),
            system=optional_string(d, "system", where),
            messages=[
                Message.from_wire(v, at(messages, i)) for i, v in enumerate(array(d, "messages", where, required=True))
            ],
            tools=[ToolSpec.from_wire(v, at(tools, i)) for i, v in enumerate(array(d, "tools", where))],
            tool_choice=None if tool_choice is None else ToolChoice.from_wire(tool_choice, at(where, "tool_choice")),
            max_tokens=integer(d, "max_tokens", where, low=1, high=2**63 - 1),
            temperature=optional_number(d, "temperature", where),
            top_p=optional_number(d, "top_p", where),
            stop_sequences=strings(d, "stop_sequences", where),
            output_format=(
                None if output_format is None else OutputFormat.from_wire(output_format, at(where, "output_format"))
            ),
        )

    def text_chars(self) -> int:
        """Characters of text in the prompt: the basis of our token estimates (images count as 0)."""
        total = len(self.system or "")
        for message in self.messages:
            for block in message.content:
                if isinstance(block, TextBlock):
                    total += len(block.text)
                elif isinstance(block, ToolUseBlock):
                    total += len(block.name) + len(str(block.input))
                elif isinstance(block, ToolResultBlock):
                    total += sum(len(b.text) for b in block.content if isinstance(b, TextBlock))
        for tool in self.tools:
            total += len(tool.name) + len(tool.description or "") + len(str(tool.input_schema))
        return total


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
