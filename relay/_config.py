"""The relay's settings: every limit and timeout in one frozen object, each field declaring its CLI
flag and environment variable (``MCPTB_<NAME>``) through ``shared_protocol._settings``; see
``mcptb-relay --help``."""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from shared_protocol import MAX_LINE_BYTES, default_socket_path
from shared_protocol._paths import DEFAULT_SOCKET_HELP, POINTER_HELP
from shared_protocol._settings import package_version, parse_settings, setting

from ._ledger import default_path as default_usage_db

MAX_BODY_BYTES = MAX_LINE_BYTES * 3 // 4
"""The largest --max-body-bytes: a body's neutral form must fit one worker-link line, with room for
what conversion adds (field names, a rare escape). A request that still grows past the line limit is
refused at submit (413), never sent: a too-large frame can never drop the link."""


def _limit(help: str) -> Any:
    return setting(help, positive=True)


@dataclass(frozen=True)
class Config:
    host: str = field(
        default="127.0.0.1",
        metadata=setting("address to bind (default 127.0.0.1; a non-loopback address needs --api-key)"),
    )
    port: int = field(
        default=8000, metadata=setting("TCP port (default 8000; 0 = let the OS pick one, printed at start)")
    )
    socket: str = field(
        default="",
        metadata=setting(
            f"Unix socket the MCP servers connect to (default: {DEFAULT_SOCKET_HELP}; that path is recorded in "
            f"{POINTER_HELP}, where mcptb-server finds it)",
            shown_default="a per-user private path",
        ),
    )
    api_key: str | None = field(
        default=None,
        metadata=setting(
            "require this key (Authorization: Bearer ... or x-api-key) on every API request; without it, /health "
            "shows only its status"
        ),
    )
    usage_db: str = field(
        default="",
        metadata=setting(
            "the usage ledger: one row per model request (no content) in this SQLite file, read by "
            "`mcptb-relay usage`; '' = off (default: $XDG_STATE_HOME/mcp-token-bridge/usage.sqlite3)"
        ),
    )
    usage_days: int = field(default=90, metadata=setting("days of rows the usage ledger keeps", minimum=1))
    metrics_public: bool = field(
        default=False,
        metadata=setting("with --api-key, let GET /metrics through without the key (for a scraper on loopback)"),
    )
    backend: str = field(default="asyncio", metadata=setting("async backend", choices=["asyncio", "trio"]))
    log_level: str = field(default="info", metadata=setting("log level", choices=["debug", "info", "warning", "error"]))
    log_content: bool = field(default=False, metadata=setting("also log prompt and answer text (off by default)"))
    fetch_images: str = field(
        default="public",
        metadata=setting(
            "image URLs in requests: 'public' fetches https:// images from public addresses only, 'local' also "
            "http:// and loopback or private addresses (your own network), 'off' refuses them (400)",
            choices=["public", "local", "off"],
        ),
    )
    # limits
    max_header_bytes: int = field(default=64 * 1024, metadata=_limit("largest request head accepted (431 above)"))
    max_body_bytes: int = field(
        default=32 * 1024 * 1024,
        metadata=_limit(
            f"largest request body accepted (413 above); default 32 MiB, room for images; at most "
            f"{MAX_BODY_BYTES >> 20} MiB, so that a request fits one line of the link to the MCP servers"
        ),
    )
    max_connections: int = field(
        default=256,
        metadata=_limit(
            "simultaneous HTTP connections; at the limit an idle or dripping one is closed to make room, else "
            "503 (lowered at start to fit the open-file limit)"
        ),
    )
    max_queue: int = field(default=256, metadata=_limit("requests waiting for a worker (429 above)"))
    max_workers: int = field(
        default=64, metadata=_limit("connections on the worker socket (MCP servers, counted before their hello)")
    )
    max_body_memory: int = field(
        default=128 * 1024 * 1024,
        metadata=_limit(
            "memory all request bodies being received may take together (503 above); at least --max-body-bytes"
        ),
    )
    max_unread: int = field(
        default=8 * 1024 * 1024,
        metadata=_limit("characters of a streamed answer a caller may leave unread before its request fails"),
    )
    # continuations (previous_response_id, Anthropic threads): recent conversations, in memory only
    store_conversations: int = field(
        default=256,
        metadata=setting(
            "recent conversations kept in memory so Responses previous_response_id and Anthropic threads "
            "can continue them; the least recently used go first (0 = off: continuations are refused)",
            minimum=0,
        ),
    )
    image_max_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=_limit("largest image the relay fetches for an image URL (default 10 MiB; 400 above)"),
    )
    store_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata=setting(
            "total size of the kept conversations, as JSON (default 64 MiB; 0 = off)",
            minimum=0,
        ),
    )
    # timeouts, seconds
    queue_timeout: float = field(
        default=300.0, metadata=_limit("seconds a request may wait for a free worker (then 504)")
    )
    request_timeout: float = field(
        default=600.0, metadata=_limit("seconds a worker may take to answer once it took a request (then 504)")
    )
    start_timeout: float = field(
        default=30.0,
        metadata=_limit(
            "seconds a worker may hold a request without starting to answer it before it moves to another "
            "worker with a free slot (one waiting for a consent click, say)"
        ),
    )
    worker_grace: float = field(
        default=10.0,
        metadata=setting(
            "seconds a request waits for an MCP server to connect when none is (a serving session that is "
            "starting or restarting), then 503 saying how to connect one (0 = the 503 at once)",
            minimum=0,
        ),
    )
    agent_grace: float = field(
        default=15.0,
        metadata=_limit(
            "seconds a request may wait when the only MCP servers it could go to answer through an agent and "
            "none is serving (then 503 saying how to start one)"
        ),
    )
    continuation_hold: float = field(
        default=3.0,
        metadata=setting(
            "seconds a continued conversation waits for the agent that answered its earlier turns (it has "
            "them in context) before it goes to another one with a free slot (0 = never waits)",
            minimum=0,
        ),
    )
    image_fetch_timeout: float = field(
        default=10.0, metadata=_limit("seconds to fetch all the image URLs of one request, redirects included")
    )
    drain_timeout: float = field(
        default=5.0,
        metadata=_limit(
            "seconds open answers get on SIGTERM or Ctrl-C to be ended with their API's error event before "
            "the relay exits"
        ),
    )
    keepalive_interval: float = field(
        default=15.0, metadata=_limit("seconds between SSE keep-alive comments while the model thinks")
    )
    head_timeout: float = field(
        default=10.0,
        metadata=_limit("seconds a request head may take to arrive, from its first byte (or the connection's start)"),
    )
    read_timeout: float = field(default=60.0, metadata=_limit("seconds a request body may take to arrive, in all"))
    send_timeout: float = field(
        default=30.0,
        metadata=_limit(
            "seconds a caller may take to accept the next piece of its answer (then the connection closes)"
        ),
    )
    idle_timeout: float = field(default=75.0, metadata=_limit("seconds an idle keep-alive connection stays open"))

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def server_command(name: str = "mcptb-server") -> str:
    """How to start ``mcptb-server`` (or another of our commands) from anywhere: the script installed
    beside this Python, if any."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else name


def parse_args(argv: list[str] | None = None) -> Config:
    config, parser = parse_settings(
        Config,
        argv,
        os.environ,
        prog="mcptb-relay",
        description="OpenAI- and Anthropic-compatible HTTP API answered by the model behind your MCP client. "
        "Every flag can also be set as an environment variable MCPTB_<FLAG> (e.g. MCPTB_PORT).",
        defaults={"socket": default_socket_path(), "usage_db": default_usage_db()},
        version=package_version,
    )
    problem = check(config)
    if problem:
        parser.error(problem)
    return config


def check(config: Config) -> str | None:
    """A reason the settings cannot work, or None."""
    if not config.is_loopback and not config.api_key:
        return (
            f"refusing to bind {config.host} without --api-key: anyone on your network could use your "
            "model. Set --api-key (or MCPTB_API_KEY), or bind 127.0.0.1."
        )
    if not 0 <= config.port <= 65535:
        return f"--port must be 0..65535, not {config.port}"
    if config.max_body_bytes > MAX_BODY_BYTES:
        return (
            f"--max-body-bytes must be at most {MAX_BODY_BYTES} ({MAX_BODY_BYTES >> 20} MiB): a request has to fit, "
            f"converted, in one {MAX_LINE_BYTES >> 20} MiB line of the link to the MCP servers"
        )
    if config.max_body_memory < config.max_body_bytes:
        return (
            f"--max-body-memory ({config.max_body_memory}) must be at least --max-body-bytes "
            f"({config.max_body_bytes}), or the largest body could never be received"
        )
    if len(os.fsencode(config.socket)) > 100:
        return f"--socket path is too long for a Unix socket ({len(config.socket)} bytes; keep it under 100)"
    return None
