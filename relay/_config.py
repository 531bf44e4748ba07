"""The relay's settings: every limit and timeout in one frozen object, each with a CLI flag and an
environment variable (``MCPTB_<NAME>``); see ``mcptb-relay --help``."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from dataclasses import dataclass, fields

from shared_protocol import default_socket_path


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    socket: str = ""
    api_key: str | None = None
    backend: str = "asyncio"
    log_level: str = "info"
    log_content: bool = False
    # limits
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 32 * 1024 * 1024
    max_connections: int = 256
    max_queue: int = 256
    max_workers: int = 64
    # timeouts, seconds
    queue_timeout: float = 300.0
    request_timeout: float = 600.0
    keepalive_interval: float = 15.0
    read_timeout: float = 60.0
    idle_timeout: float = 75.0

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


_HELP = {
    "host": "address to bind (default 127.0.0.1; a non-loopback address needs --api-key)",
    "port": "TCP port (default 8000; 0 = let the OS pick one, printed at start)",
    "socket": "Unix socket the MCP servers connect to (default: a private per-user path mcptb-server finds by itself)",
    "api_key": "require this key (Authorization: Bearer ... or x-api-key) on every API request",
    "backend": "async backend: asyncio or trio",
    "log_level": "debug, info, warning or error",
    "log_content": "also log prompt and answer text (off by default)",
    "max_header_bytes": "largest request head accepted (431 above)",
    "max_body_bytes": "largest request body accepted (413 above); default 32 MiB, room for images",
    "max_connections": "simultaneous HTTP connections (503 above)",
    "max_queue": "requests waiting for a worker (429 above)",
    "max_workers": "simultaneously connected MCP servers",
    "queue_timeout": "seconds a request may wait for a free worker (then 504)",
    "request_timeout": "seconds a worker may take to answer once it took a request (then 504)",
    "keepalive_interval": "seconds between SSE keep-alive comments while the model thinks",
    "read_timeout": "seconds to receive a request's head and body",
    "idle_timeout": "seconds an idle keep-alive connection stays open",
}


_KINDS: dict[str, type] = {"str": str, "str | None": str, "int": int, "float": float, "bool": bool}
_CHOICES = {"backend": ["asyncio", "trio"], "log_level": ["debug", "info", "warning", "error"]}


def server_command() -> str:
    """How to start ``mcptb-server`` from anywhere: the script installed beside this Python, if any."""
    beside = os.path.join(os.path.dirname(sys.executable), "mcptb-server")
    return beside if os.path.exists(beside) else "mcptb-server"


def _env_name(field: str) -> str:
    return "MCPTB_" + field.upper()


def parse_args(argv: list[str] | None = None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="mcptb-relay",
        description="OpenAI-compatible HTTP API answered by the model behind your MCP client. "
        "Every flag can also be set as an environment variable MCPTB_<FLAG> (e.g. MCPTB_PORT).",
    )
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        env = os.environ.get(_env_name(f.name))
        default = getattr(defaults, f.name)
        if f.name == "socket":
            default = default_socket_path()
        help_text = f"{_HELP[f.name]} [env {_env_name(f.name)}]"
        kind = _KINDS[str(f.type)]
        if kind is bool:
            on = env.lower() in ("1", "true", "yes", "on") if env is not None else default
            parser.add_argument(flag, action="store_true", default=on, help=help_text)
            continue
        parser.add_argument(
            flag,
            type=kind,
            default=env if env is not None else default,  # argparse converts (and reports) strings
            choices=_CHOICES.get(f.name),
            help=help_text,
        )
    ns = parser.parse_args(argv)
    config = Config(**vars(ns))
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
    positive = [f.name for f in fields(Config) if f.type in ("int", "float") and getattr(config, f.name) <= 0]
    positive = [name for name in positive if name != "port"]
    if positive:
        return f"--{positive[0].replace('_', '-')} must be positive"
    if len(os.fsencode(config.socket)) > 100:
        return f"--socket path is too long for a Unix socket ({len(config.socket)} bytes; keep it under 100)"
    return None
