"""Server-sent events as the relay writes them.

Each frame is one ``data:`` line, or an ``event:`` line and a ``data:`` line, then a blank line;
the JSON is the protocol's own spelling (``wire_json``: compact, not ASCII-escaped), so a frame is as small as its
content allows. Keep-alives are what clients ignore: an SSE comment for OpenAI's APIs, a ``ping``
event for Anthropic's.
"""

from __future__ import annotations

from typing import Any

from shared_protocol import wire_json


def data(value: Any) -> bytes:
    """``data: <json>``: the only frame of chat completions."""
    return b"data: " + wire_json(value).encode() + b"\n\n"


def event(name: str, fields: dict[str, Any]) -> bytes:
    """``event: <name>`` then ``data: {"type": <name>, ...fields}``: the frames of Anthropic messages and
    OpenAI responses, whose data repeat the event's name as their ``type``."""
    return f"event: {name}\ndata: {wire_json({'type': name, **fields})}\n\n".encode()


DONE = b"data: [DONE]\n\n"
"""The end of a chat-completions stream."""

KEEPALIVE_COMMENT = b": keep-alive\n\n"
PING = event("ping", {})
