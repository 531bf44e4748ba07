"""The answer to one request, accumulated by the app from worker events, as it stands at each step of
a stream and whole at the end (also the basis of usage estimates). API-neutral: each adapter renders
it in its own JSON or frames."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared_protocol import End, Start, StopReason, TextDelta, ToolCall

from ._sse import compact_json


@dataclass
class Answer:
    model: str
    text: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: StopReason | None = None

    def add(self, event: Start | TextDelta | ToolCall | End) -> None:
        if isinstance(event, Start):
            self.model = event.model
        elif isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ToolCall):
            self.tool_calls.append(event)
        else:
            self.stop_reason = event.stop_reason

    @property
    def content(self) -> str:
        return "".join(self.text)

    @property
    def chars(self) -> int:
        return sum(map(len, self.text)) + sum(len(c.name) + len(arguments_json(c)) for c in self.tool_calls)


def arguments_json(call: ToolCall) -> str:
    return compact_json(call.arguments)
