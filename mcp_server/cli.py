"""``mcptb-server``: the stdio MCP server your MCP client starts (``claude mcp add mcptb -- mcptb-server``).

Imports of the ``mcp`` SDK happen after argument parsing, so ``--help`` and usage errors are instant."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version

from shared_protocol import default_socket_path


def _version() -> str:
    try:
        return version("mcp-token-bridge")
    except PackageNotFoundError:
        return "0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="mcptb-server",
        description="MCP server (stdio) that answers MCP Token Bridge relay requests with your MCP client's "
        "model. Started by the MCP client, not by hand. Flags also read MCPTB_<FLAG> environment variables.",
    )
    parser.add_argument(
        "--socket",
        default=default_socket_path(),
        help="the relay's Unix socket (default: the per-user path the relay uses) [env MCPTB_SOCKET]",
    )
    parser.add_argument(
        "--mode",
        choices=["auto", "sampling", "agent"],
        default=env("MCPTB_MODE", "auto"),
        help="auto/sampling: answer by background MCP sampling when the client supports it; agent: only "
        "through the next_request/reply tools (listed in every mode) [env MCPTB_MODE]",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=env("MCPTB_CONCURRENCY", "4"),
        help="sampling requests in flight at once (default 4) [env MCPTB_CONCURRENCY]",
    )
    parser.add_argument(
        "--sampling-timeout",
        type=float,
        default=env("MCPTB_SAMPLING_TIMEOUT", "300"),
        help="seconds to wait for one sampling answer (default 300) [env MCPTB_SAMPLING_TIMEOUT]",
    )
    parser.add_argument(
        "--tool-emulation",
        choices=["on", "off"],
        default=env("MCPTB_TOOL_EMULATION", "on"),
        help="on: a client that cannot sample with tools (no sampling.tools) still answers requests with "
        "tools, described in the prompt and parsed from the answer; off: the relay refuses such requests "
        "(default on) [env MCPTB_TOOL_EMULATION]",
    )
    parser.add_argument(
        "--model-name",
        default=env("MCPTB_MODEL_NAME"),
        help="model id this worker serves under in /v1/models (default: from the client's name, "
        "e.g. claude-code) [env MCPTB_MODEL_NAME]",
    )
    parser.add_argument(
        "--reconnect-max-delay",
        type=float,
        default=env("MCPTB_RECONNECT_MAX_DELAY", "5"),
        help="longest pause between attempts to reach the relay (default 5 s)",
    )
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default=env("MCPTB_BACKEND", "asyncio"),
        help="async backend [env MCPTB_BACKEND]",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=env("MCPTB_LOG_LEVEL", "info"),
        help="stderr log level [env MCPTB_LOG_LEVEL]",
    )
    args = parser.parse_args(argv)
    args.tool_emulation = str(args.tool_emulation).strip().lower()
    if args.tool_emulation not in ("on", "off"):  # argparse does not check a default from the environment
        parser.error(f"--tool-emulation must be on or off, got {args.tool_emulation!r}")
    for name in ("concurrency", "sampling_timeout", "reconnect_max_delay"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import anyio
    from mcp.shared.exceptions import MCPDeprecationWarning

    from ._client import ClientState, Settings
    from ._server import run
    from ._worker import Worker

    # Every sampling call warns that sampling is deprecated as of 2026-07-28; we know, and we only
    # sample 2025-era clients. The warning would otherwise land on the user's stderr once per call.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    settings = Settings(
        concurrency=args.concurrency,
        model_name=args.model_name,
        mode=args.mode,
        tool_emulation=args.tool_emulation == "on",
    )
    worker = Worker(ClientState(settings), args.socket, args.sampling_timeout, args.reconnect_max_delay)
    try:
        anyio.run(run, worker, _version(), backend=args.backend)
    except KeyboardInterrupt:
        pass
