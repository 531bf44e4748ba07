"""The in-process harness: the relay's ``serve`` in the test's own event loop (port 0, a temporary
socket), and ``mcptb-server``'s worker and MCP server driven by the ``mcp`` SDK's in-memory ``Client``
(2025 handshake, as VS Code and Claude Code 2025 speak it). Same code as the real processes, minus the
process boundary: argv parsing and stdio are covered by the tests that start real processes
(``relay_process``, ``mcp_worker_process`` in conftest).

Everything runs on the test's backend, so every test using it runs on asyncio and on trio. Blocking
calls (sync SDKs, subprocesses) must run in a thread (``anyio.to_thread``), or the relay stalls.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp import Client

from mcp_server._server import build_server
from mcp_server.cli import parse_args, worker_from_args
from relay._config import Config
from relay._server import serve

from _scripted import ScriptedModel


class LogLines(logging.Handler):
    """Collects the records of one logger (and its children) as formatted lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + "\n")

    @property
    def text(self) -> str:
        return "".join(self.lines)


@contextmanager
def capture_logs(name: str, level: int = logging.INFO) -> Any:
    logger = logging.getLogger(name)
    handler, before = LogLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


@dataclass
class InProcessRelay:
    url: str
    socket: str
    config: Config
    logs: LogLines

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def log(self) -> str:
        return self.logs.text

    @property
    def api_key(self) -> str | None:
        return self.config.api_key


@asynccontextmanager
async def relay_in_process(socket: str | None = None, **settings: Any) -> AsyncIterator[InProcessRelay]:
    """A relay serving in this event loop; ``settings`` are :class:`relay._config.Config` fields. Its socket
    is in a fresh temporary directory unless ``socket`` says where (that directory is then left alone)."""
    directory = tempfile.mkdtemp(prefix="mcptb-")  # short: Unix socket paths must stay under ~100 bytes
    config = Config(port=0, socket=socket or os.path.join(directory, "relay.sock"), **settings)
    started: dict[str, str] = {}
    listening = anyio.Event()

    def on_ready(url: str, socket: str) -> None:
        started["url"] = url
        listening.set()

    try:
        with capture_logs("mcptb.relay") as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve, config, on_ready)
                with anyio.fail_after(10):
                    await listening.wait()
                yield InProcessRelay(started["url"], config.socket, config, logs)
                tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class InProcessWorker:
    session: Client
    model: ScriptedModel
    logs: LogLines
    instructions: str | None = None

    @property
    def stderr(self) -> str:
        """What ``mcptb-server`` would have logged on its stderr."""
        return self.logs.text


@asynccontextmanager
async def worker_in_process(
    socket: str,
    *args: str,
    model: Any = None,
    sampling: bool = True,
    sampling_tools: bool = False,
    client_name: str = "pytest-client",
) -> AsyncIterator[InProcessWorker]:
    """``mcptb-server`` with these command-line ``args``, its MCP client an in-memory ``Client``."""
    model = model or ScriptedModel()
    worker = worker_from_args(parse_args(["--socket", socket, "--reconnect-max-delay", "0.5", *args]))
    server = build_server(worker, "test")
    capabilities = types.SamplingCapability(tools=types.SamplingToolsCapability()) if sampling_tools else None
    with capture_logs("mcptb.server") as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            async with Client(
                server,
                mode="legacy",
                sampling_callback=model if sampling else None,
                sampling_capabilities=capabilities,
                client_info=types.Implementation(name=client_name, version="1.0"),
                read_timeout_seconds=30,
            ) as client:
                yield InProcessWorker(client, model, logs, client.instructions)
            tg.cancel_scope.cancel()
