"""The MCP server process: the SDK's low-level ``Server`` on stdio plus the relay link, in one task
group. Nothing but protocol goes to stdout (the transport, ``_stdio``, diverts fd 1 while it serves;
we print nothing before or after). The relay link starts with the process, not with the handshake.
The agent-pull tools and the ``serve`` prompt are listed in every mode: a sampling client's agent may
pull too."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from ._agent import INSTRUCTIONS, NEXT_REQUEST_TOOL, REPLY_TOOL, SHOW_REQUEST_TOOL
from ._era import EraGate, gate_stream
from ._serve_text import SERVE_START
from ._stdio import stdio_transport
from ._worker import Worker

log = logging.getLogger("mcptb.server")

SERVE_PROMPT = types.Prompt(
    name="serve",
    description="Answer requests from the MCP Token Bridge relay in a loop (next_request, reply, repeat).",
)


def build_server(worker: Worker, version: str) -> Server:
    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[NEXT_REQUEST_TOOL, REPLY_TOOL, SHOW_REQUEST_TOOL])

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        if params.name == NEXT_REQUEST_TOOL.name:
            return await worker.next_request(ctx, arguments)
        if params.name == REPLY_TOOL.name:
            return await worker.reply(arguments)
        if params.name == SHOW_REQUEST_TOOL.name:
            return worker.show_request(arguments)
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool {params.name!r}")

    async def list_prompts(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[SERVE_PROMPT])

    async def get_prompt(
        ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        if params.name != SERVE_PROMPT.name:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt {params.name!r}")
        return types.GetPromptResult(
            description=SERVE_PROMPT.description,
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=SERVE_START))],
        )

    server: Server = Server(
        "mcp-token-bridge",
        version=version,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )
    server.middleware.append(worker.client.middleware)
    return server


async def run(worker: Worker, version: str) -> None:
    server = build_server(worker, version)
    # a sampling client that opens with 2026-07-28 is asked to fall back to the handshake (see _era)
    gate = EraGate(wants_sampling=worker.client.settings.mode in ("auto", "sampling"))
    forward, gated = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    async with stdio_transport() as (read_stream, write_stream), anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        tg.start_soon(gate_stream, gate, read_stream, write_stream, forward)
        await server.run(gated, write_stream, server.create_initialization_options())
        log.info("the MCP client closed the connection; exiting")
        tg.cancel_scope.cancel()
