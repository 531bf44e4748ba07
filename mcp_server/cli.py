"""``mcptb-server``: the stdio MCP server your MCP client starts (``claude mcp add mcptb -- mcptb-server``).

Imports of the ``mcp`` SDK happen after argument parsing, so ``--help`` and usage errors are instant."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared_protocol._paths import DEFAULT_SOCKET_HELP, POINTER_HELP
from shared_protocol._settings import package_version, parse_settings, setting

if TYPE_CHECKING:
    from ._worker import Worker


@dataclass(frozen=True)
class ServerOptions:
    socket: str = field(
        default="",
        metadata=setting(
            f"the relay's Unix socket (default: found by itself; it tries the path the last relay started with "
            f"defaults recorded in {POINTER_HELP}, then where such a relay listens in this environment "
            f"({DEFAULT_SOCKET_HELP}), /run/user/<uid>/mcp-token-bridge/relay.sock and "
            "/tmp/mcp-token-bridge-<uid>/relay.sock)",
            shown_default="found by itself",
        ),
    )
    mode: str = field(
        default="auto",
        metadata=setting(
            "auto/sampling: answer by background MCP sampling when the client supports it; agent: only "
            "through the next_request/reply tools (listed in every mode)",
            choices=["auto", "sampling", "agent"],
        ),
    )
    concurrency: int = field(
        default=4, metadata=setting("sampling requests in flight at once (default 4)", positive=True)
    )
    sampling_timeout: float = field(
        default=300.0, metadata=setting("seconds to wait for one sampling answer (default 300)", positive=True)
    )
    tool_emulation: str = field(
        default="on",
        metadata=setting(
            "on: a client that cannot sample with tools (no sampling.tools) still answers requests with "
            "tools, described in the prompt and parsed from the answer; off: the relay refuses such requests "
            "(default on)",
            choices=["on", "off"],
        ),
    )
    repair_rounds: int = field(
        default=1,
        metadata=setting(
            "times a sampled answer that breaks the requested JSON format or a tool's schema is sent back to "
            "the model with the errors before the caller gets an error (default 1; 0: never)",
            minimum=0,
        ),
    )
    model_name: str | None = field(
        default=None,
        metadata=setting(
            "model id this worker serves under in /v1/models (default: from the client's name, e.g. claude-code)",
            shown_default="from the client's name",
        ),
    )
    reconnect_max_delay: float = field(
        default=5.0, metadata=setting("longest pause between attempts to reach the relay (default 5 s)", positive=True)
    )
    session_state: str = field(
        default="",
        metadata=setting(
            "directory where this server keeps its Claude Code session's serving record (requests, characters "
            "handed to the agent) for mcptb-serve's Stop hook and supervisor; set by mcptb-serve (default: none)"
        ),
    )
    session_budget: int = field(
        default=0,
        metadata=setting(
            "characters of requests handed to the agent after which next_request tells it to end its turn, so "
            "that mcptb-serve starts a fresh session; set by mcptb-serve (default 0: no budget)",
            minimum=0,
        ),
    )
    backend: str = field(default="asyncio", metadata=setting("async backend", choices=["asyncio", "trio"]))
    log_level: str = field(
        default="info", metadata=setting("stderr log level", choices=["debug", "info", "warning", "error"])
    )


def parse_args(argv: list[str] | None = None) -> ServerOptions:
    options, _ = parse_settings(
        ServerOptions,
        argv,
        os.environ,
        prog="mcptb-server",
        description="MCP server (stdio) that answers MCP Token Bridge relay requests with your MCP client's "
        "model. Started by the MCP client, not by hand. Every flag can also be set as an environment "
        "variable MCPTB_<FLAG>.",
        version=package_version,
    )
    return options


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from ._terminal import refuse_terminal

    status = refuse_terminal(sys.stdin, sys.stderr, args.socket)
    if status is not None:
        sys.exit(status)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import anyio
    from mcp.shared.exceptions import MCPDeprecationWarning

    from ._server import run

    # Every sampling call warns that sampling is deprecated as of 2026-07-28; we know, and we only
    # sample 2025-era clients. The warning would otherwise land on the user's stderr once per call.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    try:
        anyio.run(run, worker_from_args(args), package_version(), backend=args.backend)
    except KeyboardInterrupt:
        pass


def worker_from_args(args: ServerOptions) -> Worker:
    """The worker these settings describe (not yet connected: run it with ``Worker.run``)."""
    from ._client import ClientState, Settings
    from ._worker import Worker

    settings = Settings(
        concurrency=args.concurrency,
        model_name=args.model_name,
        mode=args.mode,
        tool_emulation=args.tool_emulation == "on",
        repair_rounds=args.repair_rounds,
    )
    return Worker(
        ClientState(settings),
        args.socket or None,
        args.sampling_timeout,
        args.reconnect_max_delay,
        budget=args.session_budget,
        record_dir=args.session_state or None,
    )
