"""Frames of the relay <-> worker protocol (one JSON object per line, see docs/protocol.md).

Rules worth knowing:
- The first frame of a worker is ``hello``; the relay answers ``welcome`` or ``refused`` (then closes).
  ``version`` must equal :data:`PROTOCOL_VERSION`; there is no negotiation, a mismatch is refused with a
  message telling the user which side to upgrade.
- Dispatch is pull-based: a worker grants slots with ``ready`` (and takes back unused ones with
  ``withdraw``); the relay sends a ``request`` only against a granted slot. A ``request`` that arrives
  when the worker has no slot any more is handed back with ``release`` and re-queued by the relay.
- A worker answers a request with ``start`` (the model that answers), any number of ``text`` and
  ``tool_call`` frames, then exactly one ``end`` or ``error``. After ``start`` a request is never
  re-queued: output may already have reached the caller.
- ``cancel`` (relay -> worker) means the caller has gone or timed out; the worker stops and sends
  nothing more for that id (an ``error`` or ``end`` that crosses the cancel is ignored by the relay).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._neutral import NeutralRequest

PROTOCOL_VERSION = 2
"""2: the neutral request carries ``output_format`` and ``tools[].strict``; ``error`` has the code
``invalid_answer``; ``accepted``."""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- worker -> relay --------------------------------------------------------------------------


class WorkerInfo(BaseModel):
    """What a worker tells the relay about itself and the MCP client behind it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    client_name: str | None = None
    client_version: str | None = None
    protocol_version: str | None = None
    """The MCP protocol version the client speaks (``2025-11-25``, ``2026-07-28``...); None until known."""
    modes: list[Literal["sampling", "agent"]] = []
    """How this worker answers: background sampling, agent pull, both, or (not yet known) neither."""
    sampling_tools: bool = False
    """The client declared ``sampling.tools``: tools can be passed natively."""
    tools: bool = False
    """This worker can answer requests that offer tools."""
    models: list[str] = []
    """Model ids this worker serves under (``/v1/models``); a request naming one goes to its workers."""
    concurrency: int = 0
    """Background-sampling requests it runs at once (0 if it does not sample; agents add their own slots)."""
    agent: Literal["serving", "away"] | None = None
    """Agent pull: ``serving`` while an agent waits in ``next_request`` or works on a request it was
    shown, ``away`` otherwise; None from a worker that does not say (it counts as serving)."""
    sampling_unavailable: str | None = None
    """Why a client that declares sampling cannot be sampled (it speaks the 2026-07-28 era), in words for
    the caller's error and the relay's log; None when sampling works or was never declared."""
    pid: int | None = None
    session: str | None = None
    """The agent session this worker's MCP client runs, when it says (Claude Code's session id, which its
    requests carry as ``x-claude-code-session-id``): lets the relay tell a session that waits for itself."""


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    version: int
    worker: WorkerInfo


class Update(_Frame):
    type: Literal["update"] = "update"
    worker: WorkerInfo


class Ready(_Frame):
    type: Literal["ready"] = "ready"
    slots: int = Field(default=1, ge=1, le=1024)


class Withdraw(_Frame):
    type: Literal["withdraw"] = "withdraw"
    slots: int = Field(default=1, ge=1, le=1024)


class Release(_Frame):
    type: Literal["release"] = "release"
    id: str


class Accepted(_Frame):
    """A model (an agent) is working on this request: the relay does not move it to another worker
    for being slow to start. Nothing has reached the caller yet."""

    type: Literal["accepted"] = "accepted"
    id: str


class Start(_Frame):
    type: Literal["start"] = "start"
    id: str
    model: str


class TextDelta(_Frame):
    type: Literal["text"] = "text"
    id: str
    text: str


class ToolCall(_Frame):
    type: Literal["tool_call"] = "tool_call"
    id: str
    call_id: str
    name: str
    arguments: dict[str, Any]


StopReason = Literal["endTurn", "stopSequence", "maxTokens", "toolUse"]


class End(_Frame):
    type: Literal["end"] = "end"
    id: str
    stop_reason: StopReason


ErrorCode = Literal[
    "timeout",  # the worker's own deadline for this request passed
    "refused",  # the MCP client (or its user) refused to answer
    "unsupported",  # the request asks for something this worker's client cannot do
    "client_error",  # the MCP client failed while answering
    "cancelled",  # the request was cancelled on the worker side
    "invalid_answer",  # the model's answer never matched the requested format or tool schema
    "bad_frame",  # the other side sent a line we could not use
    "internal",  # a bug on the sending side
]


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    id: str | None = None
    """The request this error ends; None for an error about the link itself (e.g. a bad frame)."""
    code: ErrorCode
    message: str


# --- relay -> worker --------------------------------------------------------------------------


class Welcome(_Frame):
    type: Literal["welcome"] = "welcome"
    version: int
    worker_id: str


class Refused(_Frame):
    type: Literal["refused"] = "refused"
    code: Literal["version", "busy", "forbidden", "bad_hello"]
    message: str


class RequestFrame(_Frame):
    type: Literal["request"] = "request"
    id: str
    request: NeutralRequest
    timeout: float
    """Seconds the relay will wait for this answer; the worker should give up (``error``/timeout) before."""


class Cancel(_Frame):
    type: Literal["cancel"] = "cancel"
    id: str
    reason: str


WorkerFrame = Annotated[
    Hello | Update | Ready | Withdraw | Release | Accepted | Start | TextDelta | ToolCall | End | ErrorFrame,
    Field(discriminator="type"),
]
RelayFrame = Annotated[
    Welcome | Refused | RequestFrame | Cancel | ErrorFrame,
    Field(discriminator="type"),
]
AnswerFrame = Start | TextDelta | ToolCall | End | ErrorFrame
