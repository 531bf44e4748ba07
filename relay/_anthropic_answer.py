"""Anthropic ``/v1/messages``: the answer as a message, or as its stream of events; the error shape.

Stream rules that bite (§6): every event has an ``event:`` line; ``message_start`` carries usage;
every block event carries ``index``; ``message_delta`` carries ``stop_reason`` and usage; a failure
after the start is ``event: error``. Keep-alives are ``ping`` events.
"""

from __future__ import annotations

import secrets
from typing import Any

from shared_protocol import Start, StopReason, TextDelta, ToolCall

from . import _sse
from ._collect import Answer, arguments_json
from ._errors import RelayError
from ._usage import Usage

STOP_REASON: dict[StopReason, str] = {
    "endTurn": "end_turn",
    "maxTokens": "max_tokens",
    "stopSequence": "stop_sequence",
    "toolUse": "tool_use",
}


def stop_reason(answer: Answer) -> str:
    if answer.tool_calls:
        return "tool_use"
    return STOP_REASON.get(answer.stop_reason or "endTurn", "end_turn")


def new_id() -> str:
    return "msg_" + secrets.token_hex(12)


def message_json(answer: Answer, usage: Usage, message_id: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": answer.content}] if answer.content else []
    content += [{"type": "tool_use", "id": c.call_id, "name": c.name, "input": c.arguments} for c in answer.tool_calls]
    return {
        "id": message_id or new_id(),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": stop_reason(answer),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
    }


def token_count(input_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens}


def error_json(error: RelayError) -> dict[str, Any]:
    """Anthropic's error shape; an error the API defines a code for names it in ``details.error_code``."""
    body: dict[str, Any] = {"type": error.shape.anthropic_type, "message": error.message}
    if error.code is not None:
        body["details"] = {"error_code": error.code}
    return {"type": "error", "error": body}


class MessagesStreamEncoder:
    """Bytes for each step of a streamed message. Sans-I/O; each step gets the answer so far."""

    def __init__(self, input_tokens: int, message_id: str | None = None) -> None:
        self.input_tokens = input_tokens
        self.message_id = message_id or new_id()
        self._index = -1
        self._open: str | None = None  # type of the content block being streamed

    def first(self, answer: Answer) -> bytes:
        return _sse.event(
            "message_start",
            {
                "message": {
                    "id": self.message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": answer.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": self.input_tokens,
                        "output_tokens": 1,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                }
            },
        )

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _sse.event("content_block_stop", {"index": self._index})

    def _open_block(self, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._index += 1
        self._open = block["type"]
        return out + _sse.event("content_block_start", {"index": self._index, "content_block": block})

    def event(self, event: Start | TextDelta | ToolCall, answer: Answer) -> bytes:
        if isinstance(event, TextDelta) and event.text:
            out = b"" if self._open == "text" else self._open_block({"type": "text", "text": ""})
            return out + _sse.event(
                "content_block_delta",
                {"index": self._index, "delta": {"type": "text_delta", "text": event.text}},
            )
        if isinstance(event, ToolCall):
            out = self._open_block({"type": "tool_use", "id": event.call_id, "name": event.name, "input": {}})
            out += _sse.event(
                "content_block_delta",
                {
                    "index": self._index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments_json(event)},
                },
            )
            return out + self._close_block()
        return b""

    def finish(self, answer: Answer, usage: Usage) -> bytes:
        return (
            self._close_block()
            + _sse.event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop_reason(answer), "stop_sequence": None},
                    "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
                },
            )
            + _sse.event("message_stop", {})
        )

    def error(self, error: RelayError, answer: Answer) -> bytes:
        return _sse.event("error", {"error": error_json(error)["error"]})
