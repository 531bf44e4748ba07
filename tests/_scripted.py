"""A deterministic stand-in for an MCP client's model: the sampling callback the tests' MCP client uses.

What it answers depends on the last user text:
- contains ``SLOW``: waits (until cancelled) and records the cancellation in ``ScriptedModel.cancelled``
  (unless ``honour_slow`` is off);
- contains ``LATE``: first waits ``LATE_SECONDS`` (longer than the test relays' keep-alive interval, so
  a stream has started when the answer comes), then goes on as below;
- contains ``REFUSE``: refuses like a user declining the sampling request;
- contains ``FAIL``: fails like a client whose model failed (MCP error -32603, internal error);
- contains ``LONG``: answers 1,000 characters;
- the request offers tools: calls the first tool with arguments that fit its schema: ``{"city": "Paris"}``
  where the schema has a ``city`` or no required property, else each required property set to a value
  of its type (strings ``"Paris"``);
- otherwise: ``echo: <text>``.
It records every request it gets (``.requests``).

:class:`FixedAnswerModel` answers fixed strings instead, in order (the last one repeats): a model
writing emulated tool calls as text for a client without ``sampling.tools``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import mcp_types as types

from shared_protocol import (
    PROTOCOL_VERSION,
    End,
    ErrorFrame,
    Hello,
    Ready,
    RelayFrameDecoder,
    RequestFrame,
    Start,
    TextDelta,
    WorkerInfo,
    encode,
)

MODEL = "scripted-model-1"
LONG_ANSWER = ("The quick brown fox jumps over the lazy dog. " * 23)[:1000]
LATE_SECONDS = 1.0


def last_user_text(params: types.CreateMessageRequestParams) -> str:
    for message in reversed(params.messages):
        if message.role == "user":
            texts = [b.text for b in message.content_as_list if isinstance(b, types.TextContent)]
            if texts:
                return " ".join(texts)
    return ""


_SAMPLES: dict[str, Any] = {"string": "Paris", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}


def arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that fit a tool's input schema (the scripted model's tool calls are schema-true)."""
    properties, required = schema.get("properties", {}), schema.get("required", [])
    if "city" in properties or not required:
        return {"city": "Paris"} if "city" in properties or schema.get("additionalProperties") is not False else {}
    return {name: _SAMPLES.get(properties.get(name, {}).get("type", "string"), "Paris") for name in required}


@dataclass
class ScriptedModel:
    requests: list[types.CreateMessageRequestParams] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    started: anyio.Event = field(default_factory=anyio.Event)
    honour_slow: bool = True

    async def __call__(self, ctx: Any, params: types.CreateMessageRequestParams) -> Any:
        self.requests.append(params)
        self.started.set()
        text = last_user_text(params)
        if "SLOW" in text and self.honour_slow:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(text)
                raise
        if "LATE" in text:
            await anyio.sleep(LATE_SECONDS)
        if "REFUSE" in text:
            return types.ErrorData(code=-1, message="User rejected sampling request")
        if "FAIL" in text:
            return types.ErrorData(code=types.INTERNAL_ERROR, message="The model failed on this input")
        if params.tools:
            return types.CreateMessageResultWithTools(
                role="assistant",
                model=MODEL,
                stop_reason="toolUse",
                content=[
                    types.TextContent(text="Let me check."),
                    types.ToolUseContent(
                        id="call_scripted_1",
                        name=params.tools[0].name,
                        input=arguments_for(params.tools[0].input_schema),
                    ),
                ],
            )
        answer = LONG_ANSWER if "LONG" in text else f"echo: {text}"
        return types.CreateMessageResult(
            role="assistant", model=MODEL, stop_reason="endTurn", content=types.TextContent(text=answer)
        )


@dataclass
class FixedAnswerModel(ScriptedModel):
    """Answers ``answers`` in order, as plain text (the last one repeats once they run out)."""

    answers: list[str] = field(default_factory=lambda: ["fixed answer"])
    stop_reason: str = "endTurn"

    async def __call__(self, ctx: Any, params: types.CreateMessageRequestParams) -> Any:
        self.requests.append(params)
        self.started.set()
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return types.CreateMessageResult(
            role="assistant", model=MODEL, stop_reason=self.stop_reason, content=types.TextContent(text=answer)
        )


async def half_then_fail(socket: str, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """A worker of its own, speaking the protocol on the relay's ``socket``: it answers every request with
    "Half an answer", then ends it - or, when the last message says FAIL, fails it (a stream that breaks
    off after it started)."""
    async with await anyio.connect_unix(socket) as link:
        await link.send(
            encode(
                Hello(
                    version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="half", modes=["sampling"], concurrency=1)
                )
            )
        )
        decoder = RelayFrameDecoder()
        list(decoder.feed(await link.receive()))  # welcome
        await link.send(encode(Ready(slots=1)))
        task_status.started()
        while True:
            for frame in decoder.feed(await link.receive()):
                if not isinstance(frame, RequestFrame):
                    continue
                text = str(frame.request.messages[-1].content[0].text)  # type: ignore[union-attr]
                frames = [Start(id=frame.id, model="half-model"), TextDelta(id=frame.id, text="Half an answer")]
                if "FAIL" in text:
                    frames.append(ErrorFrame(id=frame.id, code="client_error", message="the model broke off"))
                else:
                    frames.append(End(id=frame.id, stop_reason="endTurn"))
                await link.send(b"".join(encode(f) for f in frames) + encode(Ready(slots=1)))
