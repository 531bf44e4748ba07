"""Fetching an image that a caller names by URL, for the MCP side, which takes images as base64 data.

Callers (pydantic-ai, LangChain, the AI SDK) send ``https://`` image URLs; the relay fetches them itself,
so a URL must neither open the network the relay runs in to the caller nor carry anything of the
caller's to the server. The rules:
- ``https`` only (and ``http`` with ``allow_http``); a URL with a user name or password is refused.
- The host is resolved once, and every address it resolves to must be globally routable: not
  unspecified, loopback, link-local, multicast, private, reserved, site-local or shared (100.64.0.0/10);
  an IPv6 address that embeds an IPv4 one (mapped, 6to4, NAT64) is judged by that IPv4 address. A
  literal address in the URL is judged the same way. ``allow_private`` turns the check off. The
  connection goes to a checked address, never to the name again (DNS rebinding); TLS verifies the
  certificate for the URL's host (SNI).
- At most ``max_redirects`` redirects (301, 302, 303, 307, 308), each new URL checked by every rule.
- The request carries nothing of the caller's: ``GET`` with Host, User-Agent, Accept (the four image
  types), ``Accept-Encoding: identity`` and ``Connection: close``.
- Only a 200 whose body is not encoded, is at most ``max_bytes`` (by Content-Length before reading,
  then counted while reading) and is a PNG, JPEG, GIF or WebP by its first bytes; the media type
  returned is the one the bytes show, whatever Content-Type said.
- All of it, redirects included, within ``timeout`` seconds.
- Every failure is one :class:`ImageFetchError` that names the host and the reason: never the URL's
  path or query (they may carry tokens), its credentials, or the body the server sent.

Importing this module costs about 10 ms (ssl); the default TLS context loads the system's CA
certificates (about 20 ms) at the first fetch.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
import string
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import anyio
import h11
from anyio.abc import ByteStream, SocketStream
from anyio.streams.tls import TLSStream

USER_AGENT = "mcp-token-bridge"
ACCEPT = "image/png, image/jpeg, image/gif, image/webp"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
READ_SIZE = 65536
CONNECT_TRY_SECONDS = 2.0
"""How long one of a host's addresses may take to connect before the next one is tried."""

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_KINDS = (
    ("is_unspecified", "the unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
    ("is_site_local", "a site-local address"),  # IPv6 only: is_global says True for fec0::/10
)


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    """A body larger than this is refused (by its Content-Length, or counted while reading)."""
    timeout: float
    """Seconds for the whole fetch, redirects included."""
    allow_private: bool = False
    """Fetch from addresses that are not globally routable (loopback, private, link-local...)."""
    allow_http: bool = False
    """Fetch ``http://`` URLs too."""
    max_redirects: int = 3


class ImageFetchError(Exception):
    """Why a URL was not fetched, in words safe to show the caller (never credentials or response bodies)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        """It ran out of ``FetchLimits.timeout`` (which may be what was left of a larger budget)."""


class _Reason(Exception):
    """Why this fetch stops; :func:`fetch_image` adds the host once, as :class:`ImageFetchError`."""


@dataclass(frozen=True)
class _Hop:
    tls: bool
    host: str
    """ASCII (IDNA), without the brackets of an IPv6 literal."""
    port: int
    host_header: str
    target: str
    """The path and query, percent-encoded where HTTP needs it."""


async def fetch_image(url: str, limits: FetchLimits, *, ssl_context: ssl.SSLContext | None = None) -> tuple[str, bytes]:
    """(media type, bytes) of the image at ``url``, by the rules above; :class:`ImageFetchError` if not.
    ``ssl_context`` defaults to the system's trusted certificates."""
    first = where = _host_of(url)
    timed_out = False
    try:
        with anyio.move_on_after(limits.timeout):
            for redirects in range(limits.max_redirects + 1):
                if redirects:
                    where = f"{_host_of(url)} (redirected from {first})"
                hop = _hop(url, limits)
                addresses = await _addresses(hop, limits)
                answer = await _exchange(hop, addresses, limits, ssl_context or _default_tls())
                if isinstance(answer, tuple):
                    return answer
                url = urljoin(url, answer)
            raise _Reason(f"it redirected more than {limits.max_redirects} times")
        reason = f"it took longer than {limits.timeout:.3g} s"
        timed_out = True
    except _Reason as exc:
        reason = str(exc)
    except ssl.SSLCertVerificationError as exc:
        reason = f"its TLS certificate was refused ({exc.verify_message})"
    except ssl.SSLError as exc:
        reason = f"TLS failed ({exc.reason or 'handshake'})"
    except socket.gaierror as exc:
        reason = f"its name does not resolve ({exc.strerror})"
    except OSError as exc:  # anyio.connect_tcp says which error in its cause
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        reason = f"could not connect ({os.strerror(cause.errno) if cause.errno else cause})"
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        reason = "the connection broke"
    except h11.ProtocolError:
        reason = "it gave no valid HTTP/1.1 answer"
    raise ImageFetchError(
        f"could not fetch the image at {where}: {reason}" if where else f"could not fetch the image: {reason}",
        timed_out=timed_out,
    )


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is no address to fetch from ("a loopback address"...), or None: it is globally routable."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        if embedded is not None:
            kind = address_refusal(embedded)
            return None if kind is None else f"an IPv6 form of {embedded}, {kind}"
    for attribute, kind in _KINDS:
        if getattr(ip, attribute, False):
            return kind
    if ip in _SHARED:
        return "a shared address (100.64.0.0/10)"
    return None if ip.is_global else "not a globally routable address"


def _hop(url: str, limits: FetchLimits) -> _Hop:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _Reason("the URL is not valid") from None
    if parts.scheme != "https" and not (parts.scheme == "http" and limits.allow_http):
        raise _Reason(
            "only http:// and https:// URLs are fetched" if limits.allow_http else "only https:// URLs are fetched"
        )
    if "@" in parts.netloc:
        raise _Reason("the URL carries a user name or password, which the relay never sends")
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        raise _Reason("its host name is not valid") from None
    if not host:
        raise _Reason("the URL has no host")
    host_header = f"[{host}]" if ":" in host else host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Hop(
        tls=parts.scheme == "https",
        host=host,
        port=(443 if parts.scheme == "https" else 80) if port is None else port,
        host_header=host_header if port is None else f"{host_header}:{port}",
        target=quote(path, safe=string.punctuation),  # spaces, controls and non-ASCII only
    )


async def _addresses(hop: _Hop, limits: FetchLimits) -> list[str]:
    """The host's addresses, in the resolver's order, each checked unless ``allow_private``."""
    try:
        found = [ipaddress.ip_address(hop.host)]
        literal = True
    except ValueError:
        resolved = await anyio.getaddrinfo(hop.host, hop.port, type=socket.SOCK_STREAM)
        found = [ipaddress.ip_address(sockaddr[0]) for *_, sockaddr in resolved]
        literal = False
    if not limits.allow_private:
        for ip in found:
            kind = address_refusal(ip)
            if kind is not None:
                raise _Reason(f"it is {kind}" if literal else f"it resolves to {ip}, {kind}")
    return list(dict.fromkeys(str(ip) for ip in found))


async def _exchange(
    hop: _Hop, addresses: list[str], limits: FetchLimits, ssl_context: ssl.SSLContext
) -> tuple[str, bytes] | str:
    """One request and its answer: (media type, body), or the Location of a redirect."""
    stream: ByteStream = await _connect_any(addresses, hop.port)
    try:
        if hop.tls:
            stream = await TLSStream.wrap(stream, hostname=hop.host, ssl_context=ssl_context, standard_compatible=False)
        return await _get(stream, hop, limits)
    finally:
        await anyio.aclose_forcefully(stream)


async def _connect_any(addresses: list[str], port: int) -> SocketStream:
    """A connection to the first address that takes one (a host's IPv6 address may be unreachable from here,
    refusing at once or dropping packets: each but the last gets :data:`CONNECT_TRY_SECONDS`)."""
    for address in addresses[:-1]:
        with anyio.move_on_after(CONNECT_TRY_SECONDS):
            try:
                return await _connect(address, port)
            except OSError:
                pass
    return await _connect(addresses[-1], port)


async def _connect(address: str, port: int) -> SocketStream:
    """A TCP connection to one checked address (the tests' seam: they point a public address at a local server)."""
    return await anyio.connect_tcp(address, port)


async def _get(stream: ByteStream, hop: _Hop, limits: FetchLimits) -> tuple[str, bytes] | str:
    conn = h11.Connection(h11.CLIENT)
    headers = [
        ("Host", hop.host_header),
        ("User-Agent", USER_AGENT),
        ("Accept", ACCEPT),
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
    ]
    request = conn.send(h11.Request(method="GET", target=hop.target, headers=headers)) or b""
    await stream.send(request + (conn.send(h11.EndOfMessage()) or b""))
    response = await _next_event(conn, stream)
    while isinstance(response, h11.InformationalResponse):
        response = await _next_event(conn, stream)
    assert isinstance(response, h11.Response)  # h11 raises on anything else (a close, a switch of protocols)
    status = response.status_code
    if status in REDIRECTS:
        location = _field(response, b"location")
        if not location:
            raise _Reason(f"it answered {status} without a Location")
        return location
    if status != 200:
        raise _Reason(f"it answered HTTP {status}")
    encoding = _field(response, b"content-encoding")
    if any(token.strip().lower() not in ("", "identity") for token in encoding.split(",")):
        raise _Reason(f"it sent the image encoded (Content-Encoding: {encoding[:40]}), which was not asked for")
    length = _field(response, b"content-length")  # h11 has checked it is one number
    if length and int(length) > limits.max_bytes:
        raise _Reason(f"the image is larger than {limits.max_bytes} bytes (Content-Length: {length})")
    body = bytearray()
    while isinstance(part := await _next_event(conn, stream), h11.Data):  # then EndOfMessage, or h11 raises
        body += part.data
        if len(body) > limits.max_bytes:
            raise _Reason(f"the image is larger than {limits.max_bytes} bytes")
    media = _sniff(body)
    if media is None:
        claimed = _field(response, b"content-type").split(";")[0].strip()[:60] or "none"
        raise _Reason(f"what it sent is not a PNG, JPEG, GIF or WebP image (Content-Type: {claimed})")
    return media, bytes(body)


async def _next_event(conn: h11.Connection, stream: ByteStream) -> object:
    """h11's next event, reading as much as it needs (the end of the stream included)."""
    while (event := conn.next_event()) is h11.NEED_DATA:
        try:
            conn.receive_data(await stream.receive(READ_SIZE))
        except anyio.EndOfStream:
            conn.receive_data(b"")
    return event


def _field(response: h11.Response, name: bytes) -> str:
    """A header's values, joined by commas ('' if it has none)."""
    return ", ".join(value.decode("ascii", "replace") for key, value in response.headers if key == name)


def _sniff(body: bytes | bytearray) -> str | None:
    """The media type the body's first bytes show, if it is one of the four."""
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if body.startswith(b"RIFF") and body[8:12] == b"WEBP":
        return "image/webp"
    return None


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The system's trusted certificates, loaded once."""
    return ssl.create_default_context()
