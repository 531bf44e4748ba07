"""What we know about the MCP client that started us, learned from whichever era's messages arrive.

2025 era: ``initialize`` carries client info and capabilities; after ``notifications/initialized``
the captured session can send server-initiated requests (background sampling). 2026-07-28 era: no
handshake; each request's ``_meta`` carries client info and capabilities, and server-initiated
requests do not exist, so sampling is never used there. A client that declares sampling and can fall
back is moved to the handshake before it gets here (``_era``); one that stays in 2026-07-28 (a pinned
version) is warned about, and the relay is told why it has no sampling. A middleware sees every inbound message
and updates this object, which calls its ``on_change`` listener (the worker) after every change.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession

from shared_protocol import WorkerInfo

from ._record import SESSION_ENV

log = logging.getLogger("mcptb.server")


def _is_handshake_era(version: str | None) -> bool:
    """Protocol versions before 2026 use ``initialize`` and allow server-initiated requests."""
    return bool(version) and str(version) < "2026-"


def model_id_for(client_name: str | None) -> str:
    """A model id derived from the client's name: ``Claude Code`` -> ``claude-code``."""
    slug = re.sub(r"[^a-z0-9.]+", "-", (client_name or "").lower()).strip("-")
    return slug or "mcp-client"


@dataclass(frozen=True)
class Settings:
    concurrency: int
    model_name: str | None
    mode: str
    tool_emulation: bool = True
    """Answer requests with tools on sampling slots of clients without ``sampling.tools`` (``_emulation``)."""
    repair_rounds: int = 1
    """Times a sampled answer that breaks its format or a tool's schema goes back to the model."""


class ClientState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name: str | None = None
        self.version: str | None = None
        self.protocol_version: str | None = None
        self.sampling = False
        self.sampling_tools = False
        self.session: ServerSession | None = None
        """Set once a 2025-era client finished its handshake: the channel for background sampling."""
        self.models_seen: list[str] = []
        self.on_change: Callable[[], None] = lambda: None
        self._warned_era = False

    # --- what the relay is told ---------------------------------------------------------------

    @property
    def can_sample(self) -> bool:
        return self.session is not None and self.sampling and self.settings.mode in ("auto", "sampling")

    @property
    def sampling_unavailable(self) -> str | None:
        """Why this client declares sampling but cannot be sampled: it speaks the 2026-07-28 era, where a
        server cannot send requests. None while sampling works, was not declared, or is not wanted."""
        era = self.protocol_version
        if not self.sampling or self.settings.mode == "agent" or not era or _is_handshake_era(era):
            return None
        client = " ".join(filter(None, [self.name or "this client", self.version]))
        return (
            f"{client} speaks MCP {era}, where background sampling is not available "
            "(a server cannot send it sampling requests in that era). Connect it with the 2025 handshake: "
            "drop a pinned 2026-07-28 version (the mcp SDK's and fastmcp's Client(mode='auto') fall back to "
            "the handshake for mcptb-server; mode='legacy' always uses it; fast-agent: protocol_mode auto or "
            "legacy), or have its agent serve with the next_request/reply tools (prompt 'serve')"
        )

    @property
    def model_id(self) -> str:
        """The id this worker serves under, and the model an agent's replies report."""
        return self.settings.model_name or model_id_for(self.name)

    def info(self) -> WorkerInfo:
        """What the relay should know (``session``: Claude Code tells the MCP servers it starts its session
        id in :data:`SESSION_ENV`)."""
        known = self.settings.model_name or self.name  # no "mcp-client" id before the client is known
        models = ([self.model_id] if known else []) + [m for m in self.models_seen if m != self.model_id]
        return WorkerInfo(
            client_name=self.name,
            client_version=self.version,
            protocol_version=self.protocol_version,
            modes=["sampling", "agent"] if self.can_sample else ["agent"],
            sampling_tools=self.sampling_tools,
            # a request with tools may land on a sampling slot: fine with sampling.tools, or emulated
            tools=self.sampling_tools or self.settings.tool_emulation or not self.can_sample,
            models=models,
            concurrency=self.settings.concurrency if self.can_sample else 0,
            sampling_unavailable=self.sampling_unavailable,
            pid=os.getpid(),
            session=os.environ.get(SESSION_ENV) or None,
        )

    @property
    def capacity(self) -> int:
        """Background-sampling requests we may run at once."""
        return self.settings.concurrency if self.can_sample else 0

    def _notify(self) -> None:
        self.on_change()

    def session_closed(self) -> None:
        """The client's connection is gone (a sampling request failed with "connection closed"): no
        more background sampling through it."""
        if self.session is not None:
            self.session = None
            self._notify()

    def saw_model(self, model: str) -> None:
        if model and model not in self.models_seen and len(self.models_seen) < 16:
            self.models_seen.append(model)
            self._notify()

    # --- learning -----------------------------------------------------------------------------

    def learn(self, ctx: ServerRequestContext[Any, Any]) -> None:
        session = ctx.session
        before = self._snapshot()
        params = session.client_params
        info: Any = params.client_info if params else None
        meta = ctx.meta or {}
        if info is None and isinstance(meta, dict):
            info = meta.get(types.CLIENT_INFO_META_KEY)
        if isinstance(info, dict):
            self.name, self.version = info.get("name") or self.name, info.get("version") or self.version
        elif info is not None:
            self.name, self.version = info.name, info.version
        self.protocol_version = ctx.protocol_version or session.protocol_version or self.protocol_version
        caps = session.client_capabilities
        if caps is not None:
            self.sampling = caps.sampling is not None
            self.sampling_tools = bool(caps.sampling and caps.sampling.tools is not None)
        if ctx.method == "notifications/initialized" and _is_handshake_era(session.protocol_version):
            self.session = session
        if self._snapshot() != before:
            if self.settings.mode == "sampling" and caps is not None and not self.sampling:
                log.warning(
                    "--mode sampling, but %s does not support MCP sampling: only its agent can answer "
                    "(next_request/reply)",
                    self.name or "this client",
                )
            unavailable = self.sampling_unavailable
            if unavailable is not None and not self._warned_era:
                self._warned_era = True
                log.warning("no background sampling: %s", unavailable)
            self._notify()

    def _snapshot(self) -> tuple[object, ...]:
        return (
            self.name,
            self.version,
            self.protocol_version,
            self.sampling,
            self.sampling_tools,
            self.session,
        )

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        self.learn(ctx)
        return result
