"""The answer to one request, accumulated by the app from worker events, as it stands at each step of
a stream and whole at the end (also the basis of usage estimates). API-neutral: each adapter renders
it in its own JSON or frames."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared_protocol import End, Start, StopReason, TextDelta, TokenUsage, ToolCall, wire_json

from ._usage import Usage, text_tokens


@dataclass
class Answer:
    model: str
    text: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: StopReason | None = None
    keep_text: bool = True
    """False for a stream whose text nobody reads at the end (no store, no --log-content): the text
    is then only counted, so a long stream does not hold its whole answer in memory."""
    dropped: int = 0
    """Characters of text not kept (``keep_text`` off)."""
    started: bool = False
    """A worker said which model answers (its ``start``): a model worked on the request."""
    tokens: float = 0.0
    """The answer's estimated tokens, counted as it arrives (``relay._usage.text_tokens``)."""
    counted: TokenUsage | None = None
    """The tokens the model's side counted, if its worker said them at the end."""

    def add(self, event: Start | TextDelta | ToolCall | End) -> None:
        if isinstance(event, Start):
            self.model = event.model
            self.started = True
        elif isinstance(event, TextDelta):
            self.tokens += text_tokens(event.text)
            if self.keep_text:
                self.text.append(event.text)
            else:
                self.dropped += len(event.text)
        elif isinstance(event, ToolCall):
            self.tokens += text_tokens(event.name) + text_tokens(arguments_json(event))
            self.tool_calls.append(event)
        else:
            self.stop_reason = event.stop_reason
            self.counted = event.usage

    def release_text(self) -> None:
        """Let the text go once it is rendered (it is still counted in :attr:`chars`)."""
        self.dropped += sum(map(len, self.text))
        self.text = []

    @property
    def content(self) -> str:
        return "".join(self.text)

    def usage(self, input_tokens: int) -> Usage:
        """The answer's usage: as counted by the model's side, else estimated (``input_tokens``: the
        request's estimate)."""
        if self.counted is not None:
            return Usage(self.counted.input_tokens, self.counted.output_tokens, counted=True)
        return Usage(input_tokens, round(self.tokens))

    @property
    def chars(self) -> int:
        return (
            sum(map(len, self.text)) + self.dropped + sum(len(c.name) + len(arguments_json(c)) for c in self.tool_calls)
        )


def arguments_json(call: ToolCall) -> str:
    return wire_json(call.arguments)
