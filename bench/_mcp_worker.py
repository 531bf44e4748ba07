"""mcptb-server with an instant model: ``python -m bench._mcp_worker <socket>``.

The real worker and MCP server of ``mcp_server`` (the core, the relay link, the sampling runner with
its schema check), their MCP client the ``mcp`` SDK's in-memory ``Client`` (2025 handshake) whose
sampling callback answers at once: :data:`~bench._payload.STRUCTURED_ANSWER` when the request asks
for a JSON format (the instruction is in the system prompt), else :data:`~bench._payload.ANSWER`.
So plain and structured requests through it differ only by what mcptb-server does for structured
output. Prints one line on stdout once its MCP client is connected (``/health`` then shows when the
relay holds its slots).
"""

from __future__ import annotations

import sys

import anyio
import mcp_types as types
from mcp import Client
from mcp.client import ClientRequestContext

from mcp_server._server import build_server
from mcp_server.cli import parse_args, worker_from_args

from ._payload import ANSWER, MODEL, STRUCTURED_ANSWER

CONCURRENCY = 64


async def sample(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
    structured = "JSON value" in (params.system_prompt or "")
    text = STRUCTURED_ANSWER if structured else ANSWER
    return types.CreateMessageResult(
        role="assistant", model=MODEL, stop_reason="endTurn", content=types.TextContent(text=text)
    )


async def serve(socket: str) -> None:
    worker = worker_from_args(parse_args(["--socket", socket, "--concurrency", str(CONCURRENCY)]))
    client_info = types.Implementation(name="bench-mcp-client", version="1")
    server = build_server(worker, "bench")
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        async with Client(server, mode="legacy", sampling_callback=sample, client_info=client_info):
            print("ready", flush=True)
            await anyio.sleep_forever()


if __name__ == "__main__":
    import warnings

    from mcp.shared.exceptions import MCPDeprecationWarning

    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    anyio.run(serve, sys.argv[1])
