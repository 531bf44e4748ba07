"""What the worker core (``_core``) hands back: the effects its shells carry out, in order, and what a
tool call of the agent's gets.

Effects are for the worker (``_worker``): :class:`Send` a frame to the relay, :class:`Wake` a waiting
agent, :class:`StartSampling`, :class:`StopSampling`. The tool shells get the text a call answers with
(:class:`ToolText`), an agent to wait for a wake (:class:`Waiting`), frames to write before a reply is
settled (:class:`Delivery`), or a request to show (:class:`Shown`). Frozen records, no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_protocol import Frame, RequestFrame

# --- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Write this frame to the relay (dropped if the link is down by the time it is written)."""

    frame: Frame


@dataclass(frozen=True)
class Wake:
    """The agent waiting as ``waiter`` has a request to look at (:meth:`WorkerCore.show`)."""

    waiter: int


@dataclass(frozen=True)
class StartSampling:
    frame: RequestFrame


@dataclass(frozen=True)
class StopSampling:
    request_id: str
    reason: str


Effect = Send | Wake | StartSampling | StopSampling


# --- what the tool shells get back ------------------------------------------------------------


@dataclass(frozen=True)
class ToolText:
    """The text a tool call answers with (``error``: an MCP tool error the agent should correct)."""

    text: str
    error: bool = False


@dataclass(frozen=True)
class Waiting:
    """``next_request`` registered an agent: wait up to ``seconds`` for a :class:`Wake`."""

    waiter: int
    seconds: float


@dataclass(frozen=True)
class Delivery:
    """``reply`` accepted: write these frames, then report with :meth:`WorkerCore.reply_written`."""

    request_id: str
    frames: list[Frame]


@dataclass(frozen=True)
class Shown:
    """A request ``next_request`` returns: ``text`` is what the agent reads (with references to what
    it was shown before, see ``_seen``)."""

    frame: RequestFrame
    text: str
