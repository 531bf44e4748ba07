"""Agent pull, as the MCP client sees it: the ``next_request`` and ``reply`` tools, the serve loop
the agent is told to follow, and the server's instructions (their text lives in ``_serve_text``, which
``mcptb-serve`` reads without the ``mcp`` SDK). What the tools do is decided in ``_core`` and carried
out by ``_worker``; this module only describes them.
"""

from __future__ import annotations

import mcp_types as types

from ._core import DEFAULT_WAIT_SECONDS, FINISH_REASONS, MAX_WAIT_SECONDS
from ._serve_text import INSTRUCTIONS as INSTRUCTIONS
from ._serve_text import SERVE_LOOP as SERVE_LOOP

NEXT_REQUEST_TOOL = types.Tool(
    name="next_request",
    description=(
        "Wait for the next request that a program sent to the MCP Token Bridge relay (an OpenAI- or "
        "Anthropic-style chat request) and return it as text, beginning with its request_id. Answer it "
        "as the assistant of that conversation with the reply tool, then call next_request again."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "wait_seconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_WAIT_SECONDS,
                "default": DEFAULT_WAIT_SECONDS,
                "description": "How long to wait for a request before returning 'no request yet'.",
            }
        },
    },
)

REPLY_TOOL = types.Tool(
    name="reply",
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
)
