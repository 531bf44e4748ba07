"""Errors the relay reports to HTTP callers, independent of the API shape they are written in."""

from __future__ import annotations

from dataclasses import dataclass

from ._config import server_command


@dataclass(frozen=True)
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    retry_after: int | None = None

    def __str__(self) -> str:
        return self.message


RETRYABLE = frozenset({429, 500})
"""Statuses a client may usefully retry at once. For every other error the relay sends
``x-should-retry: false``, which the openai and anthropic SDKs (and so Claude Code, which otherwise
retries ten times over minutes) obey: a bad request, a missing MCP server or a queue timeout does
not go away by asking again."""


def retry_headers(status: int) -> list[tuple[str, str]]:
    return [] if status in RETRYABLE else [("x-should-retry", "false")]


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


def no_worker(socket: str) -> ApiError:
    return ApiError(
        503,
        "No MCP server is connected to this relay, so there is no model to answer. Register the bridge's "
        "MCP server with your MCP client and start the client, e.g. for Claude Code: "
        f"`claude mcp add mcptb -- {server_command()} --socket {socket}` "
        "(VS Code: add it to .vscode/mcp.json). "
        "GET /health lists connected servers.",
        "service_unavailable",
        code="no_worker",
    )


def gateway_timeout(message: str) -> ApiError:
    return ApiError(504, message, "timeout", code="timeout")
