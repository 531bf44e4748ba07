"""Continuation affinity: which agent worker answered which conversation.

An agent keeps the conversations it served in its context, and is shown only the new turns of one it
saw before (``mcp_server._seen``). So the broker remembers, for each request an agent worker
answered, which worker it was, under two keys:
- the digest of the whole message list: a later request whose messages start with a remembered
  conversation prefers the worker that answered its longest earlier part - the first choice, since it
  is what that agent has in context. The digests are ``shared_protocol._neutral.conversation_digests``,
  computed the same way on both sides;
- the caller's own session key, when it sends one (:func:`session_key`: Claude Code's
  ``x-claude-code-session-id``, Codex's ``session-id``, ``prompt_cache_key``, Anthropic's
  ``metadata.user_id``): when no earlier part matches (Claude Code compacted the conversation, Codex
  sent only what is new), the session's request goes to the worker that last served its main line. A
  session's side requests (a subagent's, a title) are not remembered under its key (the broker decides).
Keys are kept as digests (no caller text in memory). Bounded: the newest
:data:`REMEMBERED_CONVERSATIONS` of each are kept. How long such a request waits for its worker
(``--continuation-hold``), and where it goes then, are the broker's rules.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from shared_protocol import Message
from shared_protocol._neutral import conversation_digests

REMEMBERED_CONVERSATIONS = 4096
"""Conversations remembered for continuation affinity (a digest and a worker id each)."""


SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id")
"""Headers that name the caller's session: Claude Code's; Codex's (``session-id`` since 0.171, before it
``session_id``)."""


def session_key(headers: dict[str, str], body_key: str | None) -> bytes | None:
    """The caller's session or conversation key - the first of :data:`SESSION_HEADERS` it sends, else
    the body's (``prompt_cache_key``, ``metadata.user_id``) - as a digest; None without one."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return hashlib.blake2b(f"{name}\0{value}".encode(errors="replace"), digest_size=16).digest()
    if body_key:
        return hashlib.blake2b(b"body\0" + body_key.encode(errors="replace"), digest_size=16).digest()
    return None


def conversation_of(messages: list[Message]) -> bytes | None:
    """The digest of a whole message list (None when it is empty)."""
    digests = conversation_digests(messages)
    return digests[-1] if digests else None


class Affinity:
    """The conversations agent workers answered, newest last."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[bytes, str] = OrderedDict()
        """Session keys (digests) -> the agent worker that last answered one of their requests."""
        self._answered: OrderedDict[bytes, str] = OrderedDict()
        """Conversations agent workers answered (digest of the request's messages -> worker id), newest
        last, at most :data:`REMEMBERED_CONVERSATIONS`: a request whose messages start with one of them
        goes preferably to the same worker, whose agent has that conversation in its context."""

    def earlier_turns(self, messages: list[Message], session: bytes | None) -> tuple[bytes | None, str | None]:
        """The digest of the whole conversation, and the worker that answered the longest earlier part of
        it, else the one that last served the caller's session (None if neither is known)."""
        digests = conversation_digests(messages)
        conversation = digests[-1] if digests else None
        for digest in reversed(digests[:-1]):
            worker_id = self._answered.get(digest)
            if worker_id is not None:
                return conversation, worker_id
        return conversation, None if session is None else self._sessions.get(session)

    def remember(self, conversation: bytes | None, worker_id: str, session: bytes | None) -> None:
        """An agent worker answered this conversation (the digest of a request's whole message list) of
        this session (either may be None)."""
        for key, table in ((conversation, self._answered), (session, self._sessions)):
            if key is not None:
                table[key] = worker_id
                table.move_to_end(key)
                if len(table) > REMEMBERED_CONVERSATIONS:
                    table.popitem(last=False)
