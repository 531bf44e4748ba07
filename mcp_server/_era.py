"""Which protocol era a sampling client gets: the 2025 handshake, when it can fall back to it.

Background sampling needs server-initiated requests, which exist only in the 2025 handshake era
(``initialize``). Clients built on the ``mcp`` SDK's ``mode="auto"`` (fastmcp 4's ``Client``,
fast-agent) open with ``server/discover`` at 2026-07-28 and declare ``sampling`` in its ``_meta``;
answered, they stay in 2026-07-28 and can never be sampled. Refused with ``-32022`` naming only
handshake versions, they fall back to ``initialize`` with 2025-11-25 (the SDK's ``negotiate_auto``:
every discover error falls back except a ``-32022`` whose versions are all 2026-era).

Rules, and why this sits in front of the SDK instead of in a ``server/discover`` handler:

- The SDK settles a connection's era on the client's *first request*: an enveloped
  ``server/discover`` opens a 2026 connection even when its handler raises, and the ``initialize``
  that follows is then refused. So the gate answers that first discover itself, before the SDK's
  era router sees it, and the SDK's first request is the ``initialize``.
- Only a client that declares ``sampling`` is refused, and only when background sampling is wanted
  (``--mode auto``/``sampling``). Claude Code, Codex and other agent clients declare no sampling and
  keep the 2026 era.
- Only the opening discover is refused, once. A client that sends another discover anyway insists on
  2026-07-28 (or cannot fall back): it gets the era it asks for, with agent pull only, and
  :class:`~mcp_server._client.ClientState` warns. Once any other request has passed, the era is
  settled and the gate lets everything through.

:class:`EraGate` is sans-I/O (message in, refusal or nothing out); :func:`gate_stream` is the shell.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

if TYPE_CHECKING:  # the SDK's stream protocols (what a transport yields) live in a private module
    from mcp.shared._stream_protocols import ReadStream, WriteStream

log = logging.getLogger("mcptb.server")

DISCOVER = "server/discover"


def _client_meta(params: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], Mapping[str, Any], str]:
    """(capabilities, client info, protocol version) from a 2026-era request's ``_meta``."""
    meta = (params or {}).get("_meta")
    if not isinstance(meta, Mapping):
        return {}, {}, ""
    caps = meta.get(types.CLIENT_CAPABILITIES_META_KEY)
    info = meta.get(types.CLIENT_INFO_META_KEY)
    version = meta.get(types.PROTOCOL_VERSION_META_KEY)
    return (
        caps if isinstance(caps, Mapping) else {},
        info if isinstance(info, Mapping) else {},
        version if isinstance(version, str) else "",
    )


def _client_label(info: Mapping[str, Any]) -> str:
    name, version = info.get("name"), info.get("version")
    if not isinstance(name, str) or not name:
        return "the client"
    return f"{name} {version}" if isinstance(version, str) and version else name


class EraGate:
    """Decides, for each message from the client before the SDK sees it, whether to answer it here."""

    def __init__(self, wants_sampling: bool) -> None:
        self.wants_sampling = wants_sampling
        """``--mode auto``/``sampling``: a client that declares sampling should get the 2025 handshake."""
        self.settled = not wants_sampling
        """The SDK has seen the connection's first request (or the gate has nothing to do)."""
        self.refused = 0

    def inbound(self, message: types.JSONRPCMessage) -> types.JSONRPCError | None:
        """The refusal to send back instead of passing ``message`` on, or None to pass it on."""
        if self.settled or not isinstance(message, types.JSONRPCRequest):
            return None  # notifications and responses never decide the era
        caps, info, version = _client_meta(message.params)
        if message.method != DISCOVER or self.refused or "sampling" not in caps:
            self.settled = True
            return None
        self.refused += 1
        log.info(
            "%s declares MCP sampling and opened with MCP %s (server/discover): refusing that era so that it "
            "falls back to the %s handshake, where mcptb-server can answer requests by background sampling",
            _client_label(info),
            version or "2026-07-28",
            LATEST_HANDSHAKE_VERSION,
        )
        data = types.UnsupportedProtocolVersionErrorData(
            supported=list(HANDSHAKE_PROTOCOL_VERSIONS), requested=version or "unknown"
        )
        return types.JSONRPCError(
            jsonrpc="2.0",
            id=message.id,
            error=types.ErrorData(
                code=types.UNSUPPORTED_PROTOCOL_VERSION,
                message=(
                    f"mcptb-server answers a client that declares sampling over the {LATEST_HANDSHAKE_VERSION} "
                    "handshake (initialize): MCP 2026-07-28 has no server-initiated requests, so no background "
                    "sampling. Connect with initialize, or start mcptb-server with --mode agent to use "
                    "2026-07-28 (agent pull only)."
                ),
                data=data.model_dump(by_alias=True, mode="json"),
            ),
        )


async def gate_stream(
    gate: EraGate,
    read_stream: ReadStream[SessionMessage | Exception],
    write_stream: WriteStream[SessionMessage],
    forward: anyio.abc.ObjectSendStream[SessionMessage | Exception],
) -> None:
    """Pass the client's messages on to ``forward`` (the SDK's read stream), answering refusals on
    ``write_stream`` directly. Closes ``forward`` at the end of input, so the SDK sees EOF."""
    async with forward:
        try:
            async for item in read_stream:
                refusal = gate.inbound(item.message) if isinstance(item, SessionMessage) else None
                if refusal is None:
                    await forward.send(item)
                else:
                    await write_stream.send(SessionMessage(message=refusal))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.debug("the MCP session ended while a client message was on its way to it")
