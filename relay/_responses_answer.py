"""OpenAI ``/v1/responses``: the answer as the response object, or as its stream of events.

Streams: ``event:`` + ``data:`` pairs, each with a ``sequence_number``; ``response.created`` and
``response.in_progress`` at once; per output item ``output_item.added`` ... ``output_item.done``;
then ``response.completed`` (or ``response.incomplete`` at the token limit) carrying ``output`` and
``usage``; ``response.failed`` on errors. No ``[DONE]``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from shared_protocol import NeutralRequest, OutputFormat, Start, TextDelta, ToolCall

from . import _sse
from ._collect import Answer, arguments_json
from ._errors import RelayError
from ._responses_tools import ToolSet, reported_tool
from ._usage import Usage


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


_FAILED_CODES = {429: "rate_limit_exceeded", 400: "invalid_prompt", 422: "invalid_prompt"}
"""``response.error.code`` by status: the openai types allow only their own codes there (a model that
declined, a request it could not take: ``invalid_prompt``); the relay's own code is in the ``error`` event."""


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status != "in_progress" else []
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
        self.tools = tools or ToolSet(reported=tuple(reported_tool(t, t.name) for t in request.tools))
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
    usage: Usage,
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

    def _close_text(self, status: str = "completed") -> bytes:
        """The open text item's closing events (``incomplete``: a stream that failed part way)."""
        if self._text_item is None:
            return b""
        item_id, text = self._text_item, "".join(self._text)
        self._text_item, self._text = None, []
        index = len(self._response.output)
        item = _message_item(item_id, text, status)
        self._response.output.append(item)
        part = {"type": "output_text", "text": text, "annotations": []}
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return (
            self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
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
                {
                    "item_id": self._text_item,
                    "output_index": index,
                    "content_index": 0,
                    "delta": event.text,
                    "logprobs": [],
                },
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

    def finish(self, answer: Answer, usage: Usage) -> bytes:
        out = self._close_text()
        status, incomplete = _status(answer)
        body = self._response.body(answer.model, status, _usage(usage), incomplete=incomplete)
        return out + self._event(f"response.{status}", {"response": body})

    def error(self, error: RelayError, answer: Answer) -> bytes:
        """As OpenAI ends a stream that fails: an ``error`` event whose ``error`` object the openai SDKs raise
        as an APIError (so ``llm`` and the Agents SDK report it) - with the same fields at its top level too,
        where the openai types (and its documentation) put them - then ``response.failed`` for a reader
        that follows the response's life (Codex), its code one of those the openai types allow."""
        code = error.code or error.shape.code or error.shape.openai_type
        nested = {"type": error.shape.openai_type, "code": code, "message": error.message, "param": error.param}
        failure = {"code": _FAILED_CODES.get(error.shape.status, "server_error"), "message": error.message}
        return (
            self._close_text("incomplete")
            + self._event("error", {"code": code, "message": error.message, "param": error.param, "error": nested})
            + self._event("response.failed", {"response": self._response.body(answer.model, "failed", error=failure)})
        )
