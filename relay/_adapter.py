"""What an HTTP API provides, so one request flow serves every API (see ``_app.App.answer``).

An :class:`Adapter` declares its routes, parses its request JSON into its own :class:`Exchange` and
shapes its errors. The exchange is that API's request, typed as the API needs it (chat's
``include_usage``, a response's id and tool set, a message's id): the app reads only its common face
- the neutral request, whether it streams, the tools left out, what to store once answered - and
asks it for the answer's bytes (its stream encoder, its whole completion). No API-only field lives in
a shared type. Adding an API is one module implementing both and one line in ``_api.APIS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared_protocol import NeutralRequest, Start, TextDelta, ToolCall

from ._collect import Answer
from ._errors import RelayError
from ._store import ConversationStore, Keep
from ._usage import Usage


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

    def finish(self, answer: Answer, usage: Usage) -> bytes:
        """Everything after the last content: the stop reason, usage, the end-of-stream marker."""

    def error(self, error: RelayError, answer: Answer) -> bytes:
        """A failure after the response started, then a clean end of the stream."""


class Exchange(Protocol):
    """One parsed request of one API: the face the app reads, and the answer in that API's shape."""

    @property
    def request(self) -> NeutralRequest: ...

    @property
    def stream(self) -> bool: ...

    @property
    def ignored_tools(self) -> tuple[str, ...]:
        """Tools the caller offered that cannot reach the MCP client's model (hosted tools such as web
        search, which only the API vendor's servers run): accepted, and named in a response header."""

    @property
    def keep(self) -> Keep | None:
        """Where the app stores the conversation once it is answered, for a later continuation."""

    @property
    def session_key(self) -> str | None:
        """The caller's own key for the conversation or session, from the body (``prompt_cache_key``,
        Anthropic's ``metadata.user_id``): a continuation goes to the agent that served the key before."""

    def stream_encoder(self, input_tokens: int) -> StreamEncoder:
        """The stream's encoder; ``input_tokens``: the request's estimated input (Anthropic's first event
        carries it)."""

    def completion(self, answer: Answer, usage: Usage) -> dict[str, Any]:
        """The whole answer as this API's JSON."""


class Adapter(Protocol):
    routes: tuple[Route, ...]
    """The paths this API answers; errors on any path that starts with one of them take its shape."""

    keepalive: bytes
    """An SSE comment or event that keeps the connection alive and that clients ignore."""

    def parse(self, body: bytes, store: ConversationStore) -> Exchange:
        """The request as this API's exchange; a continuation is read from ``store``, which the app writes."""

    def error_json(self, error: RelayError) -> dict[str, Any]: ...
