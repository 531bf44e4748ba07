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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from ._neutral import NeutralRequest
from ._wire import (
    choice,
    count,
    inner,
    integer,
    json_object,
    number,
    obj,
    optional_count,
    optional_string,
    string,
    without_none,
)
from ._worker_info import WorkerInfo

PROTOCOL_VERSION = 2
"""2: the neutral request carries ``output_format`` and ``tools[].strict``; ``error`` has the code
``invalid_answer``; ``accepted``."""

_ANY_INT = {"low": -(2**63), "high": 2**63 - 1}


# --- worker -> relay --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    type: ClassVar[Literal["hello"]] = "hello"
    version: int
    worker: WorkerInfo

    def to_wire(self) -> dict[str, Any]:
        return {"type": "hello", "version": self.version, "worker": self.worker.to_wire()}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Hello:
        return cls(version=integer(d, "version", **_ANY_INT), worker=inner(d, "worker", WorkerInfo.from_wire))


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    type: ClassVar[Literal["update"]] = "update"
    worker: WorkerInfo

    def to_wire(self) -> dict[str, Any]:
        return {"type": "update", "worker": self.worker.to_wire()}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Update:
        return cls(worker=inner(d, "worker", WorkerInfo.from_wire))


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    type: ClassVar[Literal["ready"]] = "ready"
    slots: int = 1
    """1 to 1024."""

    def to_wire(self) -> dict[str, Any]:
        return {"type": "ready", "slots": self.slots}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Ready:
        return cls(slots=integer(d, "slots", default=1, low=1, high=1024))


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw:
    type: ClassVar[Literal["withdraw"]] = "withdraw"
    slots: int = 1
    """1 to 1024."""

    def to_wire(self) -> dict[str, Any]:
        return {"type": "withdraw", "slots": self.slots}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Withdraw:
        return cls(slots=integer(d, "slots", default=1, low=1, high=1024))


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    type: ClassVar[Literal["release"]] = "release"
    id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "release", "id": self.id}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Release:
        return cls(id=string(d, "id"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """A model (an agent) is working on this request: the relay does not move it to another worker
    for being slow to start. Nothing has reached the caller yet."""

    type: ClassVar[Literal["accepted"]] = "accepted"
    id: str
    handed: int | None = None
    """Characters of the request as handed to the agent: what it reads, the user's cost (None: not said)."""

    def to_wire(self) -> dict[str, Any]:
        return without_none({"type": "accepted", "id": self.id, "handed": self.handed})

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Accepted:
        return cls(id=string(d, "id"), handed=optional_count(d, "handed"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    type: ClassVar[Literal["start"]] = "start"
    id: str
    model: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "start", "id": self.id, "model": self.model}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Start:
        return cls(id=string(d, "id"), model=string(d, "model"))


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    type: ClassVar[Literal["text"]] = "text"
    id: str
    text: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "text", "id": self.id, "text": self.text}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> TextDelta:
        return cls(id=string(d, "id"), text=string(d, "text"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    type: ClassVar[Literal["tool_call"]] = "tool_call"
    id: str
    call_id: str
    name: str
    arguments: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "tool_call",
            "id": self.id,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ToolCall:
        return cls(
            id=string(d, "id"),
            call_id=string(d, "call_id"),
            name=string(d, "name"),
            arguments=json_object(d, "arguments"),
        )


StopReason = Literal["endTurn", "stopSequence", "maxTokens", "toolUse"]
_STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenUsage:
    """Tokens the model's side counted for one answer (MCP has no field for them: a client may say them in
    its sampling result's ``_meta``)."""

    input_tokens: int
    output_tokens: int

    def to_wire(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}

    @classmethod
    def from_wire(cls, value: object) -> TokenUsage:
        d = obj(value)
        return cls(input_tokens=count(d, "input_tokens"), output_tokens=count(d, "output_tokens"))


@dataclass(frozen=True, slots=True, kw_only=True)
class End:
    type: ClassVar[Literal["end"]] = "end"
    id: str
    stop_reason: StopReason
    usage: TokenUsage | None = None
    """The tokens counted by the model's side, when it said them (else the relay estimates)."""

    def to_wire(self) -> dict[str, Any]:
        wire = {"type": "end", "id": self.id, "stop_reason": self.stop_reason}
        return wire if self.usage is None else {**wire, "usage": self.usage.to_wire()}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> End:
        usage = None if d.get("usage") is None else inner(d, "usage", TokenUsage.from_wire)
        return cls(id=string(d, "id"), stop_reason=choice(d, "stop_reason", _STOP_REASONS), usage=usage)


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
_ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorFrame:
    type: ClassVar[Literal["error"]] = "error"
    id: str | None = None
    """The request this error ends; None for an error about the link itself (e.g. a bad frame)."""
    code: ErrorCode
    message: str

    def to_wire(self) -> dict[str, Any]:
        return without_none({"type": "error", "id": self.id, "code": self.code, "message": self.message})

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ErrorFrame:
        return cls(
            id=optional_string(d, "id"),
            code=choice(d, "code", _ERROR_CODES),
            message=string(d, "message"),
        )


# --- relay -> worker --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    type: ClassVar[Literal["welcome"]] = "welcome"
    version: int
    worker_id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "welcome", "version": self.version, "worker_id": self.worker_id}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Welcome:
        return cls(version=integer(d, "version", **_ANY_INT), worker_id=string(d, "worker_id"))


RefusalCode = Literal["version", "busy", "forbidden", "bad_hello"]
_REFUSAL_CODES: tuple[RefusalCode, ...] = get_args(RefusalCode)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    type: ClassVar[Literal["refused"]] = "refused"
    code: RefusalCode
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "refused", "code": self.code, "message": self.message}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Refused:
        return cls(code=choice(d, "code", _REFUSAL_CODES), message=string(d, "message"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFrame:
    type: ClassVar[Literal["request"]] = "request"
    id: str
    request: NeutralRequest
    timeout: float
    """Seconds the relay will wait for this answer; the worker should give up (``error``/timeout) before."""

    def to_wire(self) -> dict[str, Any]:
        return {"type": "request", "id": self.id, "request": self.request.to_wire(), "timeout": self.timeout}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> RequestFrame:
        return cls(
            id=string(d, "id"),
            request=inner(d, "request", NeutralRequest.from_wire),
            timeout=number(d, "timeout"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    type: ClassVar[Literal["cancel"]] = "cancel"
    id: str
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "cancel", "id": self.id, "reason": self.reason}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Cancel:
        return cls(id=string(d, "id"), reason=string(d, "reason"))


WorkerFrame = Hello | Update | Ready | Withdraw | Release | Accepted | Start | TextDelta | ToolCall | End | ErrorFrame
RelayFrame = Welcome | Refused | RequestFrame | Cancel | ErrorFrame
AnswerFrame = Start | TextDelta | ToolCall | End | ErrorFrame
Frame = WorkerFrame | RelayFrame

WORKER_FRAMES: dict[str, Callable[[dict[str, Any]], WorkerFrame]] = {
    kind.type: kind.from_wire
    for kind in (Hello, Update, Ready, Withdraw, Release, Accepted, Start, TextDelta, ToolCall, End, ErrorFrame)
}
"""What a worker may send, by ``type``. Fields a frame does not declare are ignored (a newer peer)."""
RELAY_FRAMES: dict[str, Callable[[dict[str, Any]], RelayFrame]] = {
    kind.type: kind.from_wire for kind in (Welcome, Refused, RequestFrame, Cancel, ErrorFrame)
}
"""What the relay may send, by ``type``."""
