"""The tests' one reader of server-sent events, for the three APIs' shapes: OpenAI chat (``data:`` only,
ending ``data: [DONE]``), Anthropic Messages and OpenAI Responses (``event:`` + ``data:`` whose JSON
``type`` is the event's name), and ``:`` comments (keep-alives). Strict: a line of any other kind fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Frame:
    raw: str
    event: str | None = None
    data: str | None = None

    @property
    def comment(self) -> bool:
        return self.raw.startswith(":")


def split(body: bytes | str) -> list[str]:
    """The frames as text, in order (CRLF read as LF)."""
    text = body.decode() if isinstance(body, bytes) else body
    return [frame for frame in text.replace("\r\n", "\n").split("\n\n") if frame]


def frames(body: bytes | str) -> list[Frame]:
    out = []
    for raw in split(body):
        fields: dict[str, str] = {}
        for line in raw.split("\n"):
            if line.startswith(":"):
                continue
            name, sep, value = line.partition(": ")
            assert sep and name in ("event", "data") and name not in fields, f"not an SSE line: {line!r} in {raw!r}"
            fields[name] = value
        out.append(Frame(raw, fields.get("event"), fields.get("data")))
    return out


def data_of(body: bytes | str, *, only_data: bool = False) -> list[str]:
    """The ``data:`` of every frame that has one (comments skipped); ``only_data``: every frame must be a
    bare ``data:`` frame (OpenAI chat never sends ``event:`` or comments there)."""
    parsed = frames(body)
    if only_data:
        assert all(f.event is None and f.data is not None for f in parsed), [f.raw for f in parsed]
    return [f.data for f in parsed if f.data is not None]


def named_events(body: bytes | str, *, comments: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """``(event, JSON data)`` of every named event (Anthropic, Responses); each data's ``type`` must be its
    event's name; ``comments=False``: a comment frame fails (Anthropic keeps alive with ``ping`` events)."""
    out = []
    for frame in frames(body):
        if frame.event is None and frame.data is None:
            assert comments and frame.comment, frame.raw
            continue
        assert frame.event is not None and frame.data is not None, frame.raw
        payload = json.loads(frame.data)
        assert payload.get("type") == frame.event, frame.raw
        out.append((frame.event, payload))
    return out
