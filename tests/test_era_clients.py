"""Sampling clients that open with the 2026-07-28 era: the real fastmcp 4 ``Client`` (and the ``mcp`` SDK
``Client`` in ``mode="auto"``, which fast-agent wraps) spawn the real ``python -m mcp_server`` over stdio
and declare ``sampling``; an HTTP caller's request to the relay must come back answered by their
sampling handler (``mcp_server/_era.py``: mcptb-server refuses the opening ``server/discover`` so they
fall back to the 2025 handshake). A client pinned to 2026-07-28 cannot fall back: the server warns, and
the caller's error names the real cause instead of advising Claude Code.

fastmcp's Client runs on asyncio only, so it runs in a thread with its own asyncio loop
(:func:`on_asyncio`) while the relay serves in the test's loop (asyncio or trio) and mcptb-server runs
with ``--backend`` set to the test's backend.

fast-agent itself (fast-agent-mcp 0.10.44+, the releases built on mcp 2.3) needs Python 3.12+, which this
project's machines lack; its MCP connection is the SDK's ``mcp.client.Client(mode="auto")``
(``fast_agent/mcp/client_connection.py`` in 0.10.48), tested here directly.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import mcp_types as types
import pytest
from fastmcp import Client as FastMCPClient
from fastmcp import __version__ as fastmcp_version
from fastmcp.client.transports import StdioTransport
from mcp import Client, StdioServerParameters

from _eventually import eventually
from _http_client import Response, post
from _inprocess import relay_in_process
from _scripted import MODEL, ScriptedModel
from conftest import ROOT, chat_body, get_health, server_params, wait_for_workers

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"
T = TypeVar("T")


def _transport(socket: str, backend: str, *args: str, log_file: Path | None = None) -> StdioTransport:
    """mcptb-server as fastmcp starts a stdio server; ended when the client disconnects (no keep-alive)."""
    params = server_params(socket, backend, *args)
    return StdioTransport(
        command=sys.executable,
        args=params.args,
        env={"PYTHONUNBUFFERED": "1"},
        cwd=str(ROOT),
        keep_alive=False,
        log_file=log_file,
    )


async def on_asyncio(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario`` (the fastmcp client's side of a test) in a thread, on its own asyncio loop."""
    return await anyio.to_thread.run_sync(functools.partial(anyio.run, scenario, backend="asyncio"))


@asynccontextmanager
async def fastmcp_client(
    socket: str, backend: str, model: ScriptedModel, *args: str, transport: StdioTransport | None = None, **kw: Any
) -> AsyncIterator[Any]:
    """fastmcp 4's Client (default ``mode="auto"`` unless given) with a sampling handler that is ``model``."""

    async def handler(messages: Any, params: types.CreateMessageRequestParams, context: Any) -> Any:
        return await model(context, params)

    transport = transport or _transport(socket, backend, *args)
    async with FastMCPClient(transport, sampling_handler=handler, **kw) as client:
        yield client


async def _answered_by_sampling(relay: Any, model: ScriptedModel, client_name: str) -> None:
    health = await wait_for_workers(relay, 1, sampling=True)
    worker = health["workers"][0]
    assert worker["protocol_version"] == "2025-11-25" and worker["sampling_unavailable"] is None
    assert worker["client"]["name"] == client_name
    response = await post(relay.url, PATH, chat_body("hello from an HTTP caller"))
    assert response.status == 200, response.body
    answer = json.loads(response.body)
    assert answer["choices"][0]["message"]["content"] == "echo: hello from an HTTP caller"
    assert answer["model"] == MODEL
    assert len(model.requests) == 1


@pytest.mark.real
async def test_fastmcp4_client_falls_back_to_the_handshake_and_samples_in_the_background(relay, backend, tmp_path):
    assert fastmcp_version.startswith("4.")
    stderr = tmp_path / "server.log"

    async def scenario() -> None:
        model = ScriptedModel()
        transport = _transport(relay.socket, backend, log_file=stderr)
        async with fastmcp_client(relay.socket, backend, model, transport=transport) as client:
            assert client.protocol_version == "2025-11-25"  # it asked for 2026-07-28 first, and fell back
            await _answered_by_sampling(relay, model, "fastmcp")

    await on_asyncio(scenario)
    assert f"fastmcp {fastmcp_version} declares MCP sampling and opened with MCP 2026-07-28" in stderr.read_text()


@pytest.mark.real
async def test_sdk_auto_client_as_fast_agent_uses_it_falls_back_and_samples(relay, backend):
    model = ScriptedModel()
    params = server_params(relay.socket, backend)
    async with Client(
        StdioServerParameters(command=params.command, args=params.args, cwd=params.cwd, env=params.env),
        mode="auto",
        sampling_callback=model,
        sampling_capabilities=types.SamplingCapability(tools=types.SamplingToolsCapability()),  # as fast-agent
        client_info=types.Implementation(name="fast-agent-mcp", version="0.10.48"),
    ) as client:
        assert client.protocol_version == "2025-11-25"
        await _answered_by_sampling(relay, model, "fast-agent-mcp")


@pytest.mark.real
async def test_fastmcp4_client_with_mode_agent_keeps_the_2026_era(relay, backend):
    async def scenario() -> None:
        async with fastmcp_client(relay.socket, backend, ScriptedModel(), "--mode", "agent") as client:
            assert client.protocol_version == "2026-07-28"  # nothing to gain from the handshake: not refused
            await client.list_tools()
            health = await wait_for_workers(relay, 1, sampling=False)
            assert health["workers"][0]["sampling_unavailable"] is None  # --mode agent: sampling not wanted

    await on_asyncio(scenario)


@pytest.mark.real
async def test_fastmcp4_client_pinned_to_2026_is_warned_about_and_callers_get_the_real_cause(backend, tmp_path):
    stderr = tmp_path / "server.log"
    async with relay_in_process(keepalive_interval=0.5, agent_grace=0.5) as relay:

        async def scenario() -> tuple[Response, int]:
            model = ScriptedModel()
            transport = _transport(relay.socket, backend, log_file=stderr)  # mcptb-server's stderr
            async with fastmcp_client(relay.socket, backend, model, mode="2026-07-28", transport=transport) as client:
                assert client.protocol_version == "2026-07-28"
                await client.list_tools()  # the first request: the server learns the client from its _meta

                async def noted() -> dict[str, Any] | None:
                    workers = (await get_health(relay))["workers"]
                    return workers[0] if workers and workers[0]["sampling_unavailable"] else None

                worker = await eventually(noted, what="the worker reports why it cannot sample")
                assert worker["modes"] == ["agent"] and worker["protocol_version"] == "2026-07-28"
                return await post(relay.url, PATH, chat_body("hello")), len(model.requests)

        response, sampled = await on_asyncio(scenario)
        assert response.status == 503, response.body  # nobody serves it: failed after --agent-grace
        message = json.loads(response.body)["error"]["message"]
        assert message.startswith("No agent is serving: the connected MCP client (fastmcp) cannot sample")
        assert f"fastmcp {fastmcp_version} speaks MCP 2026-07-28, where background sampling is not available" in message
        assert "drop a pinned 2026-07-28 version" in message
        assert sampled == 0
        assert f"no background sampling: fastmcp {fastmcp_version}" in stderr.read_text()
        assert f"has no background sampling: fastmcp {fastmcp_version}" in relay.log
