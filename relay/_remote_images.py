"""Image URLs in a request, fetched by the relay before the request goes anywhere (``--fetch-images``).

Rules worth knowing:
- The parsers leave each http(s) image URL as a placeholder image block (``relay._conversation.REMOTE``);
  the app hands the parsed exchange to :func:`fetch_remote_images` before it queues it, so a worker and
  the conversation store only ever see image data.
- ``--fetch-images public`` (the default): https only, from public addresses only; ``local`` adds
  http and loopback or private addresses (images on your own network); ``off`` refuses image URLs. How a
  URL is fetched - addresses checked, redirects, what is sent, types, sizes - is ``relay._image_fetch``.
- Nothing is fetched for a request the broker would refuse at once (no worker, a full queue, tools
  nobody can take): that answer comes first.
- The URLs of one request are fetched one after another, within ``--image-fetch-timeout`` in all; each
  image at most ``--image-max-bytes``; the body plus the images as base64 at most ``--max-body-bytes``
  (a request whose images were fetched is no larger than one that sent them inline). The same URL is
  fetched once.
- A URL that cannot be fetched is a 400 naming its field and why (never the URL's path or query).
  ``relay._image_fetch`` (and with it ``ssl``) is imported at the first image URL, not at the start.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import anyio

from shared_protocol import ImageBlock, Message, NeutralRequest, ToolResultBlock

from ._adapter import Exchange
from ._config import Config
from ._conversation import REMOTE
from ._errors import RelayError, bad_request


async def fetch_remote_images(
    exchange: Exchange, config: Config, body_size: int, refusal: Callable[[NeutralRequest], RelayError | None]
) -> Exchange:
    """``exchange`` (a parsed request of any API, its body ``body_size`` bytes) with its image URLs replaced
    by the images' data; ``refusal`` says why the broker would refuse it at once, if it would."""
    request = exchange.request
    urls = {block.data: block.mime_type[len(REMOTE) :] for block in _images(request.messages) if _remote(block)}
    if not urls:
        return exchange
    if config.fetch_images == "off":
        where = next(iter(urls.values()))
        raise bad_request(
            f"'{where}': this relay does not fetch image URLs (--fetch-images off); send the image inline as a "
            "data: URL (base64).",
            param=where,
        )
    if (refused := refusal(request)) is not None:
        raise refused
    from ._image_fetch import FetchLimits, ImageFetchError, fetch_image

    local = config.fetch_images == "local"
    deadline = anyio.current_time() + config.image_fetch_timeout
    fetched: dict[str, ImageBlock] = {}
    size = body_size
    for url, where in urls.items():
        left = deadline - anyio.current_time()
        if left <= 0:
            raise bad_request(
                f"'{where}': not fetched: the request's images took longer than {config.image_fetch_timeout:g} s "
                "(--image-fetch-timeout).",
                param=where,
            )
        limits = FetchLimits(config.image_max_bytes, left, allow_private=local, allow_http=local)
        try:
            media_type, data = await fetch_image(url, limits)
        except ImageFetchError as exc:
            budget = f" (--image-fetch-timeout: {config.image_fetch_timeout:g} s for all of a request's images)"
            raise bad_request(f"'{where}': {exc}{budget if exc.timed_out else ''}.", param=where) from None
        size += 4 * -(-len(data) // 3)  # as base64
        if size > config.max_body_bytes:
            raise bad_request(
                f"'{where}': with its images (as base64) the request is larger than {config.max_body_bytes} bytes "
                "(--max-body-bytes).",
                param=where,
            )
        fetched[url] = ImageBlock(data=base64.b64encode(data).decode("ascii"), mime_type=media_type)
    keep = exchange.keep
    if keep is not None:
        keep = replace(keep, messages=tuple(_swapped(list(keep.messages), fetched)))
    new_request = replace(request, messages=_swapped(request.messages, fetched))
    return cast(Exchange, replace(cast(Any, exchange), request=new_request, keep=keep))  # each API's dataclass


def _remote(block: ImageBlock) -> bool:
    return block.mime_type.startswith(REMOTE)


def _images(messages: list[Message]) -> list[ImageBlock]:
    found: list[ImageBlock] = []
    for message in messages:
        for block in message.content:
            if isinstance(block, ImageBlock):
                found.append(block)
            elif isinstance(block, ToolResultBlock):
                found += [b for b in block.content if isinstance(b, ImageBlock)]
    return found


def _swapped(messages: list[Message], fetched: dict[str, ImageBlock]) -> list[Message]:
    def swap(block: Any) -> Any:
        if isinstance(block, ImageBlock) and _remote(block):
            return fetched[block.data]
        if isinstance(block, ToolResultBlock) and any(isinstance(b, ImageBlock) and _remote(b) for b in block.content):
            return replace(block, content=[swap(b) for b in block.content])
        return block

    return [replace(m, content=[swap(b) for b in m.content]) for m in messages]
