"""Who may ask the relay: the ``Host`` and ``Origin`` rules and the API key.

Rules (DESIGN "safe by default"): without an API key only loopback ``Host`` names are accepted, and a
request carrying a non-loopback ``Origin`` is refused whatever the key, so a web page cannot drive
the relay through the user's browser (DNS rebinding, CSRF). ``Origin: null`` (a sandboxed frame of
any site) is foreign, an unparsable ``Host`` or ``Origin`` is foreign, and a POST with an ``Origin``
and a CORS-safelisted content type (which browsers send cross-site without a preflight) is refused.
The key is offered as ``Authorization: Bearer <key>``, ``x-api-key: <key>``, or - so that a browser
can open the status page - HTTP Basic with the key as the password (any user name).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from urllib.parse import urlsplit

from ._config import Config
from ._errors import RelayError
from ._responder import RequestHead

_SIMPLE_CONTENT_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
"""CORS-safelisted request content types: a page may POST these cross-site without a preflight."""
_SEEN = 64
"""Access verdicts kept (then they are decided afresh)."""


def _hostname(url: str) -> str:
    """The host of a URL (or ``//host:port``); "" when it has none or cannot be parsed (``[``, ``http://[x``)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _is_loopback_name(host: str) -> bool:
    if host in ("localhost", "localhost.") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Access:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._seen: dict[object, RelayError | None] = {}

    def verdict(self, head: RequestHead) -> RelayError | None:
        """The access verdict on a head's ``Host`` (and ``Origin``): decided once per distinct value,
        then looked up - callers send the same few on every request."""
        origin = head.header("origin")
        host = head.header("host")
        key = (host, origin, head.method, head.header("content-type")) if origin is not None else host
        try:
            return self._seen[key]
        except KeyError:
            pass
        try:
            self._check(head)
            verdict = None
        except RelayError as error:
            verdict = error
        if len(self._seen) >= _SEEN:
            self._seen.clear()
        self._seen[key] = verdict
        return verdict

    def _check(self, request: RequestHead) -> None:
        origin = request.header("origin")
        if origin is not None:
            if not _is_loopback_name(_hostname(origin)):  # also "null": a sandboxed frame of any site
                raise RelayError("forbidden_origin", f"Requests from web pages ({origin[:200]}) are refused.")
            media_type = (request.header("content-type") or "").split(";")[0].strip().lower()
            if request.method == "POST" and (not media_type or media_type in _SIMPLE_CONTENT_TYPES):
                raise RelayError(
                    "forbidden_origin",
                    f"A POST from a web page ({origin[:200]}) with content type {media_type or 'none'!r} is "
                    "refused: browsers send those without asking first. Send JSON (application/json).",
                )
        if self.config.api_key:
            return
        host = _hostname("//" + (request.header("host") or ""))
        if not (_is_loopback_name(host) or host == self.config.host):
            raise RelayError(
                "forbidden_host",
                f"Host {host or (request.header('host') or '')[:200]!r} is not a loopback name; this relay "
                "only answers localhost unless it runs with --api-key.",
            )

    @staticmethod
    def offered_key(request: RequestHead) -> str | None:
        auth = request.header("authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return ""
        return request.header("x-api-key")

    def has_key(self, request: RequestHead) -> bool:
        """The request carries the relay's key (True when none is configured)."""
        key = self.config.api_key
        if not key:
            return True
        return hmac.compare_digest((self.offered_key(request) or "").encode(), key.encode())

    def check_key(self, request: RequestHead) -> None:
        if not self.has_key(request):
            offered = "Incorrect API key provided" if self.offered_key(request) else "Missing API key"
            raise RelayError(
                "invalid_api_key",
                f"{offered}: pass the relay's --api-key as 'Authorization: Bearer <key>' or 'x-api-key'.",
            )
