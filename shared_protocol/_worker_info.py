"""What a worker tells the relay about itself and the MCP client behind it (``hello`` and ``update``
carry it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ._wire import (
    Invalid,
    boolean,
    choice,
    each,
    inner,
    integer,
    obj,
    optional_count,
    optional_integer,
    optional_string,
    strings,
    without_none,
)

Mode = Literal["sampling", "agent"]
AgentState = Literal["serving", "away"]
_MODES: tuple[Mode, ...] = get_args(Mode)
_AGENT_STATES: tuple[AgentState, ...] = get_args(AgentState)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLimits:
    """What a worker knows of one model's limits, in tokens (None: not known)."""

    context_length: int | None = None
    max_output_tokens: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return without_none({"context_length": self.context_length, "max_output_tokens": self.max_output_tokens})

    @classmethod
    def from_wire(cls, value: object) -> ModelLimits:
        d = obj(value)
        return cls(
            context_length=optional_count(d, "context_length"),
            max_output_tokens=optional_count(d, "max_output_tokens"),
        )


def _limits(value: object) -> dict[str, ModelLimits]:
    if value is None:
        return {}
    return {model: inner(obj(value), model, ModelLimits.from_wire) for model in obj(value)}


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """What a worker tells the relay about itself and the MCP client behind it."""

    client_name: str | None = None
    client_version: str | None = None
    protocol_version: str | None = None
    """The MCP protocol version the client speaks (``2025-11-25``, ``2026-07-28``...); None until known."""
    modes: list[Mode] = field(default_factory=list)
    """How this worker answers: background sampling, agent pull, both, or (not yet known) neither."""
    sampling_tools: bool = False
    """The client declared ``sampling.tools``: tools can be passed natively."""
    tools: bool = False
    """This worker can answer requests that offer tools."""
    models: list[str] = field(default_factory=list)
    """Model ids this worker serves under (``/v1/models``); a request naming one goes to its workers."""
    concurrency: int = 0
    """Background-sampling requests it runs at once (0 if it does not sample; agents add their own slots)."""
    agent: AgentState | None = None
    """Agent pull: ``serving`` while an agent waits in ``next_request`` or works on a request it was
    shown, ``away`` otherwise; None from a worker that does not say (it counts as serving)."""
    sampling_unavailable: str | None = None
    """Why a client that declares sampling cannot be sampled (it speaks the 2026-07-28 era), in words for
    the caller's error and the relay's log; None when sampling works or was never declared."""
    pid: int | None = None
    session: str | None = None
    """The agent session this worker's MCP client runs, when it says (Claude Code's session id, which its
    requests carry as ``x-claude-code-session-id``): lets the relay tell a session that waits for itself."""
    limits: dict[str, ModelLimits] = field(default_factory=dict)
    """Limits of the models it serves, where its client says them (``/v1/models`` shows them; never guessed)."""

    def to_wire(self) -> dict[str, Any]:
        return without_none(
            {
                "client_name": self.client_name,
                "client_version": self.client_version,
                "protocol_version": self.protocol_version,
                "modes": self.modes,
                "sampling_tools": self.sampling_tools,
                "tools": self.tools,
                "models": self.models,
                "concurrency": self.concurrency,
                "agent": self.agent,
                "sampling_unavailable": self.sampling_unavailable,
                "pid": self.pid,
                "session": self.session,
                "limits": {model: limits.to_wire() for model, limits in self.limits.items()} or None,
            }
        )

    @classmethod
    def from_wire(cls, value: object) -> WorkerInfo:
        d = obj(value)
        agent = d.get("agent")
        return cls(
            client_name=optional_string(d, "client_name"),
            client_version=optional_string(d, "client_version"),
            protocol_version=optional_string(d, "protocol_version"),
            modes=each(d, "modes", _mode),
            sampling_tools=boolean(d, "sampling_tools"),
            tools=boolean(d, "tools"),
            models=strings(d, "models"),
            concurrency=integer(d, "concurrency", default=0, low=-(2**63), high=2**63 - 1),
            agent=None if agent is None else choice(d, "agent", _AGENT_STATES),
            sampling_unavailable=optional_string(d, "sampling_unavailable"),
            pid=optional_integer(d, "pid"),
            session=optional_string(d, "session"),
            limits=inner(d, "limits", _limits),
        )


def _mode(value: object) -> Mode:
    if value not in _MODES:
        raise Invalid(None, f"must be one of {', '.join(_MODES)}")
    return value
