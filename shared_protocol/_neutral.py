"""The neutral request: what every HTTP API is converted into before it reaches a worker.

It is shaped like an MCP ``sampling/createMessage`` request (messages of content blocks, a system
prompt, tools, limits) so the sampling path maps it one to one, and so an API adapter only has to
solve "my JSON -> these models" once. Field names are snake_case on the wire of our own protocol.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextBlock(_Model):
    type: Literal["text"] = "text"
    text: str


class ImageBlock(_Model):
    type: Literal["image"] = "image"
    data: str
    """Base64, without the ``data:`` URL prefix."""
    mime_type: str


class ToolUseBlock(_Model):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Model):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]]
    is_error: bool = False


ContentBlock = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class Message(_Model):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class ToolSpec(_Model):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    strict: bool = False
    """The caller marked the tool strict. Arguments are checked against ``input_schema`` either way."""


class ToolChoice(_Model):
    mode: Literal["auto", "required", "none"]
    name: str | None = None
    """When set (with mode ``required``) the caller demands this one tool."""


class OutputFormat(_Model):
    """The caller wants the answer as one JSON value: an object (``json_object``), or a value valid
    against ``json_schema`` (``json_schema``; ``name`` and ``strict`` as the caller gave them)."""

    type: Literal["json_object", "json_schema"]
    name: str | None = None
    json_schema: dict[str, Any] | None = None
    strict: bool = False


class NeutralRequest(_Model):
    model: str | None = None
    """The model name the caller asked for (a hint for the worker, a routing key for the relay)."""
    system: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = []
    tool_choice: ToolChoice | None = None
    max_tokens: int = Field(gt=0)
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] = []
    output_format: OutputFormat | None = None
    """Structured output: the worker tells the model, validates the answer and sends only a valid one."""

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
        running.update(message.model_dump_json().encode())
        running.update(b"\n")
        digests.append(running.copy().digest())
    return digests
