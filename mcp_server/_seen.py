"""What this server's agents were already shown, so a request is handed over as what is new.

HTTP APIs resend the whole conversation every turn, and Claude Code as a caller resends a system
prompt and a tool list of tens of thousands of characters with each request: rendered in full, the
serving agent's context would grow with the square of a conversation's length. So the server
remembers digests (never the text) of what it showed, and ``_render`` puts references in their place:
- a request whose messages start with all of a shown request's messages: "continues request req_…",
  then only the turns after those; when the next one is the agent's own reply to it, exactly as it
  was delivered (text, then tool calls with their ids), that one is left out too;
- a system prompt or a tool (name, description, schema) the agent was shown: "as in request req_…".
Only parts of at least :data:`MIN_REFERENCED` characters are replaced (a reference costs about
that much). References name only requests this server showed; ``show_request`` hands the agent the
whole request again (after its client compacted its context, or whenever in doubt). Memory: the
digests of the last :data:`REMEMBERED` requests, nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field

from shared_protocol import Message, RequestFrame, ToolSpec
from shared_protocol._neutral import conversation_digests

REMEMBERED = 256
MIN_REFERENCED = 200


@dataclass(frozen=True)
class Continues:
    request_id: str
    turns: int
    """How many of this request's messages that request and (``with_reply``) the reply to it account for."""
    with_reply: bool = False


@dataclass(frozen=True)
class Refs:
    """Which parts of a request the agent was shown before, and where."""

    continues: Continues | None = None
    system: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    """Tool name -> the request that showed it."""

    def __bool__(self) -> bool:
        return self.continues is not None or self.system is not None or bool(self.tools)


NO_REFS = Refs()


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _tool_text(tool: ToolSpec) -> str:
    return json.dumps(tool.to_wire(), sort_keys=True, ensure_ascii=False)


class _Memory(OrderedDict[bytes, str]):
    def remember(self, key: bytes, request_id: str) -> None:
        """Keep the request that showed it first (in full); a later one only makes it recent again."""
        self.setdefault(key, request_id)
        self.move_to_end(key)
        while len(self) > REMEMBERED:
            self.popitem(last=False)


class Seen:
    def __init__(self) -> None:
        self._conversations = _Memory()
        self._replied = _Memory()
        """Digests of shown conversations followed by the agent's reply, as the caller passes it back."""
        self._systems = _Memory()
        self._tools = _Memory()

    def refs(self, frame: RequestFrame) -> Refs:
        """What of ``frame`` may be rendered as references."""
        request = frame.request
        continues = None
        digests = conversation_digests(request.messages)
        for k in range(len(digests) - 2, -1, -1):  # the longest earlier conversation, leaving a new turn
            replied = self._replied.get(digests[k])
            if replied is not None:
                continues = Continues(replied, k + 1, with_reply=True)
                break
            earlier = self._conversations.get(digests[k])
            if earlier is not None:
                continues = Continues(earlier, k + 1)
                break
        system = None
        if len(request.system or "") >= MIN_REFERENCED:
            system = self._systems.get(_digest(request.system or ""))
        tools = {}
        for tool in request.tools:
            text = _tool_text(tool)
            seen = self._tools.get(_digest(text)) if len(text) >= MIN_REFERENCED else None
            if seen is not None:
                tools[tool.name] = seen
        return Refs(continues, system, tools)

    def note(self, frame: RequestFrame) -> None:
        """``frame`` was shown to an agent (in full or with references to what it had seen)."""
        request = frame.request
        digests = conversation_digests(request.messages)
        if digests:
            self._conversations.remember(digests[-1], frame.id)
        if request.system:
            self._systems.remember(_digest(request.system), frame.id)
        for tool in request.tools:
            self._tools.remember(_digest(_tool_text(tool)), frame.id)

    def replied(self, frame: RequestFrame, reply: Message) -> None:
        """The agent's reply to ``frame`` was delivered; ``reply`` is it as an assistant message."""
        digests = conversation_digests([*frame.request.messages, reply])
        self._replied.remember(digests[-1], frame.id)
