"""Building the neutral conversation: the rules every API adapter shares.

- Consecutive turns of one role become one neutral :class:`Message` (a tool result is a user turn,
  so it joins the user's text around it); turns without content are dropped.
- A system message in the middle of a conversation stays in place, as a user text block that
  starts with ``System note: `` (only leading ones can become the system prompt).
- Images travel inline as base64, never as a URL the relay would have to fetch: OpenAI's APIs send
  them as ``data:`` URLs, Anthropic's as base64 sources; either way the data must be valid base64.
- OpenAI's APIs give a tool call's arguments as a JSON string or as an object; both become a dict.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, Literal

from shared_protocol import ContentBlock, ImageBlock, Message, TextBlock

from ._errors import bad_request
from ._fields import parse_json

DEFAULT_MAX_TOKENS = 4096
"""MCP sampling requires a limit; callers may omit one."""

Role = Literal["user", "assistant"]


class Conversation:
    """The turns read so far, merged by role; it may start from earlier ``messages`` (a stored
    conversation being continued), which it never changes."""

    def __init__(self, messages: Iterable[Message] = ()) -> None:
        self._turns: list[tuple[Role, list[ContentBlock]]] = [(m.role, list(m.content)) for m in messages]

    def __len__(self) -> int:
        return len(self._turns)

    def add(self, role: Role, blocks: list[ContentBlock]) -> None:
        if not blocks:
            return
        if self._turns and self._turns[-1][0] == role:
            self._turns[-1][1].extend(blocks)
        else:
            self._turns.append((role, list(blocks)))

    def messages(self) -> list[Message]:
        return [Message(role=role, content=blocks) for role, blocks in self._turns]


def system_note(texts: list[str]) -> TextBlock:
    return TextBlock(text="System note: " + "\n".join(texts))


def is_base64(data: str) -> bool:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


REMOTE = "x-mcptb/url;"
"""The media type of an image block that is still a URL, ``REMOTE + where`` (its field, for an error),
with the URL as its data: the parsers leave it so and the app fetches it (``relay._remote_images``)
before the request goes anywhere."""


def is_web_url(url: str) -> bool:
    """An ``https://`` or ``http://`` URL (any case), which the app fetches; the scheme rules are
    ``--fetch-images``'s, applied there."""
    return url[:8].lower().startswith(("https://", "http://"))


def remote_image(url: str, where: str) -> ImageBlock:
    """An image the caller named by an http(s) URL, to be fetched (see :data:`REMOTE`)."""
    return ImageBlock(data=url, mime_type=REMOTE + where)


def image_from_url(raw: Any, where: str) -> ImageBlock:
    """An OpenAI ``image_url`` (object or string): a data: URL, or an http(s) URL the app fetches."""
    url = raw.get("url") if isinstance(raw, dict) else raw
    field = f"{where}.url" if isinstance(raw, dict) else where  # {"url": ...} in chat; a string in Responses
    if not isinstance(url, str):
        raise bad_request(f"'{field}' must be a string.", param=field)
    if is_web_url(url):
        return remote_image(url, field)
    if not url.startswith("data:"):
        raise bad_request(
            "Image URLs must be data:, https:// or http:// URLs (data:image/png;base64,... inline).", param=field
        )
    meta, _, data = url[5:].partition(",")
    mime, _, encoding = meta.partition(";")
    if encoding != "base64" or not mime.startswith("image/"):
        raise bad_request("Image data URLs must look like data:image/<type>;base64,<data>.", param=field)
    if not is_base64(data):
        raise bad_request("Image data is not valid base64.", param=field)
    return ImageBlock(data=data, mime_type=mime)


def tool_arguments(raw: Any, param: str, depth: int) -> dict[str, Any]:
    """OpenAI tool-call arguments (a JSON string or an object; missing means none); ``param`` names the
    field in the 400, ``depth`` is where it sits in the body (a string is checked as the body is)."""
    arguments = raw or "{}"
    parsed = parse_json(arguments, param, depth) if isinstance(arguments, str) else arguments
    if not isinstance(parsed, dict):
        raise bad_request(f"'{param}' must encode a JSON object.", param=param)
    return parsed
