"""What can go wrong for a caller, and the one table that says how each API shows it.

The code that finds a failure says *what* happened: it raises (or, in the broker, emits) a
:class:`RelayError` of some :data:`Kind`, with a message for people. The broker, the answer
follower and the adapters' parsers know no HTTP status. :data:`TABLE` is the only place that
does: for each kind, the HTTP status, the error ``type`` in OpenAI's shape and in Anthropic's, the
``code`` (OpenAI's shape), and whether retrying can help. An error the caller's API defines a code
for carries that code itself (:attr:`RelayError.code`): the kind still gives status and type.

Retrying (docs/apis.md#errors-and-retries has the table for users): a retry is worth it only when
nothing the user pays for was spent and asking again may work now - a full queue, a relay that is
stopping or out of connections or body memory, a bug. Every answer says so in
``x-should-retry`` (``true``/``false``), which the openai and anthropic SDKs and Claude Code obey.
litellm's Router ignores that header and retries 408, 409, 429 and every 5xx, so an error where the
model already worked on this input (the MCP client failed: 424; its answer never fit: 422; declined:
422; cancelled on the client's side: 424) has a 4xx status too: no client asks the model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared_protocol import ErrorCode

Kind = (
    Literal[
        # the request, as the app and the adapters' parsers find it
        "bad_request",
        "invalid_json",
        "forbidden_origin",
        "forbidden_host",
        "invalid_api_key",
        "unknown_path",
        "unknown_model",
        "method_not_allowed",
        "websocket_unsupported",
        # the broker
        "tools_unsupported",
        "queue_full",
        "no_worker",
        "no_agent",
        "waiting_for_itself",
        "worker_lost",
        "protocol_violation",
        "relay_stopping",
        # following the answer
        "queue_timeout",
        "answer_timeout",
        "answer_cut",
        # HTTP, before the app runs
        "bad_http",
        "unsupported_http",
        "read_timeout",
        "body_too_large",
        "head_too_large",
        "too_many_connections",
        "body_memory_full",
        "relay_bug",
    ]
    | ErrorCode  # a worker's error frame: its code is the kind
)


@dataclass(frozen=True)
class RelayError(Exception):
    kind: Kind
    message: str
    param: str | None = None
    """The request field at fault."""
    retry_after: int | None = None
    """Seconds after which asking again may work."""
    code: str | None = None
    """The caller's API's own code for this very error, where that API defines one (OpenAI's ``code``,
    Anthropic's ``details.error_code``: ``previous_response_not_found``, ``thread_not_found``...), so
    SDKs that branch on it recover; else the table's code for the kind."""
    allow: tuple[str, ...] = ()
    """The methods a path does take (``method_not_allowed``: the ``Allow`` header)."""

    def __str__(self) -> str:
        return self.message

    @property
    def shape(self) -> Shape:
        return TABLE[self.kind]


@dataclass(frozen=True)
class Shape:
    """How one kind of error looks to callers."""

    status: int
    openai_type: str
    anthropic_type: str
    code: str | None = None
    retryable: bool = False


# fmt: off
TABLE: dict[Kind, Shape] = {
    # kind                  status, OpenAI type, Anthropic type, code, retryable
    "bad_request":          Shape(400, "invalid_request_error", "invalid_request_error"),
    "invalid_json":         Shape(400, "invalid_request_error", "invalid_request_error", "invalid_json"),
    "forbidden_origin":     Shape(403, "permission_error", "permission_error", "forbidden_origin"),
    "forbidden_host":       Shape(403, "permission_error", "permission_error", "forbidden_host"),
    "invalid_api_key":      Shape(401, "authentication_error", "authentication_error", "invalid_api_key"),
    "unknown_path":         Shape(404, "not_found_error", "not_found_error", "unknown_url"),  # or an id it names
    "unknown_model":        Shape(404, "invalid_request_error", "not_found_error", "model_not_found"),
    "method_not_allowed":   Shape(405, "invalid_request_error", "invalid_request_error", "method_not_allowed"),
    # Codex falls back to HTTP at once on a 426, retries 405/404/5xx seven times first (docs/apis.md)
    "websocket_unsupported": Shape(426, "invalid_request_error", "invalid_request_error", "websocket_unsupported"),
    "tools_unsupported":    Shape(400, "invalid_request_error", "invalid_request_error", "tools_unsupported"),
    "queue_full":           Shape(429, "rate_limit_error", "rate_limit_error", "queue_full", retryable=True),
    "no_worker":            Shape(503, "service_unavailable", "overloaded_error", "no_worker"),
    "no_agent":             Shape(503, "service_unavailable", "overloaded_error", "no_agent"),
    "waiting_for_itself":   Shape(503, "service_unavailable", "overloaded_error", "waiting_for_itself"),
    "worker_lost":          Shape(502, "upstream_error", "api_error", "worker_lost"),
    "protocol_violation":   Shape(502, "upstream_error", "api_error", "protocol_violation"),
    "relay_stopping":       Shape(503, "service_unavailable", "overloaded_error", "relay_stopping", retryable=True),
    "queue_timeout":        Shape(504, "timeout", "api_error", "timeout"),
    "answer_timeout":       Shape(504, "timeout", "api_error", "timeout"),
    "answer_cut":           Shape(502, "upstream_error", "api_error"),
    "timeout":              Shape(504, "timeout", "api_error", "timeout"),
    # the user declined: a 4xx that no client retries (litellm's Router retries a 403, as a generic APIError)
    "refused":              Shape(422, "permission_error", "permission_error", "refused"),
    "unsupported":          Shape(400, "invalid_request_error", "invalid_request_error", "unsupported"),
    "client_error":         Shape(424, "upstream_error", "api_error", "client_error"),
    "cancelled":            Shape(424, "upstream_error", "api_error", "cancelled"),
    "invalid_answer":       Shape(422, "upstream_error", "api_error", "invalid_answer"),
    "bad_frame":            Shape(502, "upstream_error", "api_error", "bad_frame"),
    "internal":             Shape(500, "server_error", "api_error", "internal", retryable=True),
    "bad_http":             Shape(400, "invalid_request_error", "invalid_request_error"),
    "unsupported_http":     Shape(501, "server_error", "api_error"),
    "read_timeout":         Shape(408, "timeout", "invalid_request_error"),
    "body_too_large":       Shape(413, "invalid_request_error", "request_too_large"),
    "head_too_large":       Shape(431, "invalid_request_error", "invalid_request_error"),
    "too_many_connections": Shape(503, "service_unavailable", "overloaded_error", retryable=True),
    "body_memory_full":     Shape(503, "service_unavailable", "overloaded_error", retryable=True),
    "relay_bug":            Shape(500, "server_error", "api_error", retryable=True),
}
# fmt: on


def error_headers(error: RelayError) -> list[tuple[str, str]]:
    headers = [("x-should-retry", "true" if error.shape.retryable else "false")]
    if error.retry_after is not None:
        headers.append(("retry-after", str(error.retry_after)))
    if error.allow:
        headers.append(("allow", ", ".join(error.allow)))
    if error.kind == "websocket_unsupported":  # a 426 names the protocol to use (RFC 9110)
        headers.append(("upgrade", "HTTP/1.1"))
    return headers


def bad_request(message: str, param: str | None = None) -> RelayError:
    return RelayError("bad_request", message, param)


def not_found(message: str, code: str, param: str | None = None) -> RelayError:
    """Something the request names, not its path, is not held here (a continued thread): a 404 with the
    API's own ``code``."""
    return RelayError("unknown_path", message, param, code=code)
