"""Agent pull, as the MCP client sees it: the ``next_request`` and ``reply`` tools, the serve loop
the agent is told to follow, and the server's instructions (their text lives in ``_serve_text``, which
``mcptb-serve`` reads without the ``mcp`` SDK). What the tools do is decided in ``_core`` and carried
out by ``_worker``; this module only describes them.
"""

from __future__ import annotations

import mcp_types as types

from ._core import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS
from ._reply import FINISH_REASONS
from ._serve_text import INSTRUCTIONS as INSTRUCTIONS
from ._serve_text import SERVE_LOOP as SERVE_LOOP

# Annotations (MCP tool hints; Codex CLI runs a tool without asking only when it is readOnlyHint, or
# destructiveHint false with openWorldHint false, and otherwise refuses it in `codex exec`):
# - next_request is not read-only: a request it returns leaves the relay's queue and waits for this
#   agent's reply. It destroys nothing (a request not yet shown goes back to the queue when the call
#   ends), each call may return another request (not idempotent), and it talks only to the local relay
#   over a private socket (closed world).
# - reply hands an answer to the waiting program: a write, but additive (nothing is removed or
#   overwritten), idempotent (a request takes one reply; a repeat is refused and changes nothing), and
#   closed world (only the relay and the caller waiting on it).
# The default and range of wait_seconds are in the descriptions as words too: Codex drops "default",
# "minimum" and "maximum" from the schema it shows its model.
NEXT_REQUEST_TOOL = types.Tool(
    name="next_request",
    title="Next MCP Token Bridge request",
    description=(
        "Wait for the next request that a program sent to the MCP Token Bridge relay (an OpenAI- or "
        "Anthropic-style chat request) and return it as text, beginning with its request_id. Answer it "
        "as the assistant of that conversation with the reply tool, then call next_request again. "
        f"It waits {DEFAULT_WAIT_SECONDS} seconds by default (wait_seconds: 1 to {MAX_WAIT_SECONDS}) and then "
        "returns 'no request yet'; call it again. Keep the default unless you know your MCP client's tool "
        "timeout is longer than the wait (many clients stop a tool call after 60 seconds)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "wait_seconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_WAIT_SECONDS,
                "default": DEFAULT_WAIT_SECONDS,
                "description": (
                    f"Seconds to wait for a request before returning 'no request yet': {DEFAULT_WAIT_SECONDS} "
                    f"if omitted, from 1 to {MAX_WAIT_SECONDS}."
                ),
            }
        },
    },
    annotations=types.ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
    ),
)

REPLY_TOOL = types.Tool(
    name="reply",
    title="Reply to an MCP Token Bridge request",
    description=(
        "Deliver your answer to the request that next_request gave you. content is the assistant's "
        "message; tool_calls (optional) asks the caller to run its own tools (only tools the request "
        "lists). It is streamed back to the waiting program."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "description": "The request_id line of the request."},
            "content": {
                "type": "string",
                "description": "The assistant's message (may be empty with tool_calls).",
            },
            "tool_calls": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
                    "required": ["name", "arguments"],
                },
            },
            "finish_reason": {"type": "string", "enum": sorted(FINISH_REASONS)},
        },
        "required": ["request_id", "content"],
    },
    annotations=types.ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    ),
)

SHOW_REQUEST_TOOL = types.Tool(
    name="show_request",
    description=(
        "Show a request you were given and have not answered yet in full: its whole conversation, "
        "system prompt and tools. next_request shows parts you were shown before as references "
        '("as in request ...", "continues request ..."); call this when you no longer have those in view.'
    ),
    input_schema={
        "type": "object",
        "properties": {"request_id": {"type": "string", "description": "The request_id line of the request."}},
        "required": ["request_id"],
    },
    # a pure read of a request this agent holds (WorkerCore.show_again changes nothing): read-only, so
    # Codex runs it without asking like the other two
    annotations=types.ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    ),
)
