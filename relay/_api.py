"""The HTTP APIs this relay speaks: one adapter each, in :data:`APIS`.

Everything that depends on which APIs exist is derived from that tuple: the app's routes, the
paths its 404 lists, and the error shape of a path (for errors found before the app runs too, such
as a body over the size limit).
"""

from __future__ import annotations

import json

from ._adapter import Adapter
from ._anthropic import MessagesAdapter
from ._errors import RelayError
from ._openai_chat import ChatAdapter
from ._responses import ResponsesAdapter

APIS: tuple[Adapter, ...] = (ChatAdapter(), ResponsesAdapter(), MessagesAdapter())
"""In the order the 404 lists their paths; the first one also shapes errors on paths no API owns."""


def api_paths() -> list[str]:
    return [route.path for api in APIS for route in api.routes]


def api_for(path: str) -> Adapter:
    """The API whose error shape a path gets: the one with a route the path starts with (so
    /v1/messages/batches gets Anthropic's), else the first."""
    return next((api for api in APIS for route in api.routes if path.startswith(route.path)), APIS[0])


def error_page(error: RelayError, path: str) -> bytes:
    """The body of an error found before the app runs (bad HTTP, size limits), in the shape of the
    API the path belongs to."""
    return json.dumps(api_for(path).error_json(error)).encode()
