"""The MCP server process: the SDK's low-level ``Server`` on stdio plus the relay link, in one task
group. Nothing but protocol goes to stdout (the SDK diverts fd 1 while it serves; we print nothing
before or after). The relay link starts with the process, not with the handshake."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from ._client import ClientState
from ._relay_link import RelayLink

log = logging.getLogger("mcptb.server")

INSTRUCTIONS = (
    "This server connects your MCP client's model to the MCP Token Bridge relay, so that programs on "
    "this machine can use it through an OpenAI-compatible HTTP API. When the client supports MCP "
    "sampling, requests are answered in the background and no action is needed."
)


async def _list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    # Clients list tools on connect (Claude Code's health check does); we offer none in sampling mode.
    return types.ListToolsResult(tools=[])


def build_server(client: ClientState, version: str) -> Server:
    server: Server = Server(
        "mcp-token-bridge", version=version, instructions=INSTRUCTIONS, on_list_tools=_list_tools
    )
    server.middleware.append(client.middleware)
    return server


async def run(client: ClientState, link: RelayLink, version: str) -> None:
    server = build_server(client, version)
    async with stdio_server() as (read_stream, write_stream), anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        await server.run(read_stream, write_stream, server.create_initialization_options())
        log.info("the MCP client closed the connection; exiting")
        tg.cancel_scope.cancel()
