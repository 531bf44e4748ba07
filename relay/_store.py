"""The bounded, in-memory store of recent conversations behind continuations: OpenAI Responses'
``previous_response_id`` and Anthropic's message threads (``thread``).

An entry is a conversation as it stood after one answer, in neutral form: the system prompt the
continuation inherits, the messages *including the answer* (text and tool calls as neutral blocks,
so a ``function_call_output`` / ``tool_result`` that follows pairs with its call), and the tools
the continuation inherits (Anthropic threads keep theirs; Responses requests carry their own). A
continuation is that entry's messages followed by the new turn.

Rules, and why:

- Bounded twice: by entry count and by total size (each entry's conversation as JSON, in bytes);
  the least recently used entries (stored or continued) go first. Every entry holds its whole
  conversation, so a long thread stored turn after turn costs its size each time: the byte bound
  sees that and evicts the oldest turns, whose ids callers no longer continue.
- No entry is larger than one request may be (``max_entry_bytes``, the relay's body limit), and no
  continuation either (:meth:`ConversationStore.fits`): a conversation the caller could not send
  whole is not one the relay sends a worker, whose frames have a line limit of their own. An entry
  over that (or over the whole byte budget) is not stored at all.
- ``0`` for either bound switches the store off: nothing is kept, and adapters refuse
  continuations with the API's own words instead of silently dropping the history.
- Memory only: a relay restart forgets everything, and a caller continuing a forgotten id gets the
  API's "not found" error, after which SDKs that know how resend the whole history.
- Sans-I/O and synchronous, like the broker: the app calls it between awaits, so on one event loop
  it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared_protocol import ContentBlock, Message, TextBlock, ToolSpec, ToolUseBlock, wire_json

from ._collect import Answer
from ._conversation import Conversation, Role


@dataclass(frozen=True)
class Stored:
    """A conversation after one answer: what a continuation of that answer builds on."""

    system: str | None
    messages: tuple[Message, ...]
    """The conversation, its last assistant turn holding the answer."""
    tools: tuple[ToolSpec, ...] = ()
    size: int = field(init=False)
    """Bytes of the conversation as JSON: what the store's byte bound counts."""

    def __post_init__(self) -> None:
        size = len((self.system or "").encode())
        size += sum(len(wire_json(m.to_wire()).encode()) for m in self.messages)
        size += sum(len(wire_json(t.to_wire()).encode()) for t in self.tools)
        object.__setattr__(self, "size", size)


@dataclass(frozen=True)
class Keep:
    """What to store once a request is answered: its conversation, filed under ``key``."""

    key: str
    system: str | None
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()

    def answered(self, answer: Answer) -> Stored:
        return Stored(self.system, continued(self.messages, "assistant", answer_blocks(answer)), self.tools)


def answer_blocks(answer: Answer) -> list[ContentBlock]:
    """The answer as neutral blocks: its text, then its tool calls (ids kept, so results pair with them)."""
    blocks: list[ContentBlock] = [TextBlock(text=answer.content)] if answer.content else []
    blocks += [ToolUseBlock(id=c.call_id, name=c.name, input=c.arguments) for c in answer.tool_calls]
    return blocks


def continued(messages: Iterable[Message], role: Role, blocks: list[ContentBlock]) -> tuple[Message, ...]:
    """``messages`` and one more turn, merged with the last one if it has the same role."""
    conversation = Conversation(messages)
    conversation.add(role, blocks)
    return tuple(conversation.messages())


class ConversationStore:
    """Recent conversations by key, bounded by ``max_entries`` and ``max_bytes`` (LRU); 0 = off. None
    larger than ``max_entry_bytes``."""

    def __init__(self, max_entries: int, max_bytes: int, max_entry_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes if max_entry_bytes is None else min(max_entry_bytes, max_bytes)
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> Stored | None:
        """The entry, now the most recently used; None if it was never stored or has been evicted."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def fits(self, earlier: Stored, more: int) -> bool:
        """Whether continuing ``earlier`` with ``more`` bytes of new request stays within one entry."""
        return earlier.size + more <= self.max_entry_bytes

    def too_long(self, earlier: Stored, more: int) -> str:
        """Why a continuation that does not :meth:`fit <fits>` is refused."""
        return (
            f"The conversation this continues ({earlier.size} bytes) and this request ({more} bytes) are "
            f"together over the relay's request size limit ({self.max_entry_bytes} bytes, --max-body-bytes)."
        )

    def put(self, key: str, entry: Stored) -> bool:
        """Store ``entry`` as the most recently used, evicting the least recently used ones until both
        bounds hold again. False (and nothing stored) when the store is off or the entry alone is over
        ``max_entry_bytes``."""
        self.forget(key)
        if not self.enabled or entry.size > self.max_entry_bytes:
            return False
        self._entries[key] = entry
        self.bytes += entry.size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self.forget(next(iter(self._entries)))
        return True

    def forget(self, key: str) -> None:
        """Drop ``key``'s entry, if it is there."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
