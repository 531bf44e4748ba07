"""Agent pull, as the MCP client sees it: the ``next_request`` and ``reply`` tools, the serve loop
the agent is told to follow, and the server's instructions. What the tools do is decided in
``_core`` and carried out by ``_worker``; this module only describes them.
"""

from __future__ import annotations

import mcp_types as types

from ._core import DEFAULT_WAIT_SECONDS, FINISH_REASONS, MAX_WAIT_SECONDS

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

SERVE_LOOP = (
    "You are serving requests from the MCP Token Bridge: programs on this machine send chat requests to "
    "the relay, and you answer them. Loop: call next_request; read the request it returns; write the "
    "answer as the assistant of THAT conversation (follow its system prompt, answer only its last turn, "
    "add no remarks about yourself or this loop); call reply with its request_id and your answer; then "
    "call next_request again. Never mix two requests. Never run the caller's tools yourself: to use "
    "them, put tool_calls in reply. If next_request says there is no request yet, call it again; stop "
    "when the user asks you to."
)

INSTRUCTIONS = (
    "This server connects your model to the MCP Token Bridge relay, an OpenAI-compatible HTTP API for "
    "programs on this machine. Clients with MCP sampling are served in the background. Otherwise, when "
    "the user asks you to serve (prompt 'serve'): " + SERVE_LOOP
)
