"""What an HTTP API adapter provides, so one request flow serves every API (see ``_app.App.answer``).

An adapter declares its routes, turns its request JSON into a :class:`Call` (the neutral request
plus how to answer, and for an API with continuations what to store once answered) and turns the
answer into its own JSON or SSE bytes, and failures into its own error JSON. Adding an API is one
module implementing :class:`Adapter` and one line in ``_api.APIS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared_protocol import NeutralRequest, Start, TextDelta, ToolCall

from ._collect import Answer
from ._errors import RelayError
from ._store import ConversationStore, Keep
from ._usage import UsageEstimate


@dataclass(frozen=True)
class Call:
    request: NeutralRequest
    stream: bool
    include_usage: bool = True
    ignored_tools: tuple[str, ...] = ()
    """Tools the caller offered that cannot reach the MCP client's model (hosted tools such as web
    search, which only the API vendor's servers run): accepted, and named in a response header."""
    response_id: str | None = None
    """The id the answer will carry, when the adapter chose it while parsing (to file it in the store)."""
    previous_id: str | None = None
    """The stored response or message this request continues."""
    keep: Keep | None = None
    """Where the app stores the conversation once it is answered, for a later continuation."""


@dataclass(frozen=True)
class Route:
    """A method and path an adapter answers. The request goes to the model, unless the route has
    ``count_tokens``: then the relay answers at once with the request's estimated input tokens, as
    the JSON ``count_tokens`` makes of them."""

    method: str
    path: str
    count_tokens: Callable[[int], dict[str, Any]] | None = None


class StreamEncoder(Protocol):
    """The bytes of a streamed answer, step by step. It formats and keeps no answer of its own: each
    step gets the answer accumulated so far (by the app, which adds each event before asking for its
    bytes)."""

    def first(self, answer: Answer) -> bytes:
        """Bytes sent as soon as the response starts (before the model answers)."""

    def event(self, event: Start | TextDelta | ToolCall, answer: Answer) -> bytes: ...

    def finish(self, answer: Answer, usage: UsageEstimate) -> bytes:
        """Everything after the last content: the stop reason, usage, the end-of-stream marker."""

    def error(self, error: RelayError, answer: Answer) -> bytes:
        """A failure after the response started, then a clean end of the stream."""


class Adapter(Protocol):
    routes: tuple[Route, ...]
    """The paths this API answers; errors on any path that starts with one of them take its shape."""

    keepalive: bytes
    """An SSE comment or event that keeps the connection alive and that clients ignore."""

    def parse(self, body: bytes, store: ConversationStore) -> Call:
        """The request as a :class:`Call`; a continuation is read from ``store``, which the app writes."""

    def stream_encoder(self, call: Call) -> StreamEncoder: ...

    def completion(self, call: Call, answer: Answer, usage: UsageEstimate) -> dict[str, Any]: ...

    def error_json(self, error: RelayError) -> dict[str, Any]: ...
