"""Continuation affinity: which agent worker answered which conversation.

An agent keeps the conversations it served in its context, and is shown only the new turns of one it
saw before (``mcp_server._seen``). So the broker remembers, for each request an agent worker
answered, the digest of its whole message list and that worker; a later request whose messages start
with a remembered conversation prefers the same worker. The digests are
``shared_protocol._neutral.conversation_digests``, computed the same way on both sides. Bounded: the
newest :data:`REMEMBERED_CONVERSATIONS` are kept. How long such a request waits for its worker
(``--continuation-hold``), and where it goes then, are the broker's rules.
"""

from __future__ import annotations

from collections import OrderedDict

from shared_protocol import Message
from shared_protocol._neutral import conversation_digests

REMEMBERED_CONVERSATIONS = 4096
"""Conversations remembered for continuation affinity (a digest and a worker id each)."""


def conversation_of(messages: list[Message]) -> bytes | None:
    """The digest of a whole message list (None when it is empty)."""
    digests = conversation_digests(messages)
    return digests[-1] if digests else None


class Affinity:
    """The conversations agent workers answered, newest last."""

    def __init__(self) -> None:
        self._answered: OrderedDict[bytes, str] = OrderedDict()
        """Conversations agent workers answered (digest of the request's messages -> worker id), newest
        last, at most :data:`REMEMBERED_CONVERSATIONS`: a request whose messages start with one of them
        goes preferably to the same worker, whose agent has that conversation in its context."""

    def earlier_turns(self, messages: list[Message]) -> tuple[bytes | None, str | None]:
        """The digest of the whole conversation, and the worker that answered the longest earlier part
        of it (None if none did)."""
        digests = conversation_digests(messages)
        conversation = digests[-1] if digests else None
        for digest in reversed(digests[:-1]):
            worker_id = self._answered.get(digest)
            if worker_id is not None:
                return conversation, worker_id
        return conversation, None

    def remember(self, conversation: bytes, worker_id: str) -> None:
        """An agent worker answered this conversation (the digest of a request's whole message list)."""
        self._answered[conversation] = worker_id
        self._answered.move_to_end(conversation)
        while len(self._answered) > REMEMBERED_CONVERSATIONS:
            self._answered.popitem(last=False)
