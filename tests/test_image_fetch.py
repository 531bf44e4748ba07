"""Fetching a caller's image URL (relay/_image_fetch.py) against local HTTP(S) servers in the test's own
event loop: a self-signed certificate for ``localhost`` made with ``cryptography`` (a test dependency,
through litellm[proxy]), scripted raw answers, and the request heads each server received.

No test reaches the network: ``_connect``, the fetcher's one seam, is wrapped so that it dials only
loopback, or a public address a test points at its local server (to follow a redirect from a public
host honestly, with the address check on), and fails the test on any other address."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay import _image_fetch
from relay._image_fetch import FetchLimits, ImageFetchError, address_refusal, fetch_image

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))
LOCAL = FetchLimits(max_bytes=10_000, timeout=5, allow_private=True)
PUBLIC = FetchLimits(max_bytes=10_000, timeout=5)
SECRET = "s3cret"
"""In the query of every URL a test expects refused: no error message may carry it."""

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]


def answer(body: bytes, status: str = "200 OK", *headers: str) -> bytes:
    head = "\r\n".join([f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers])
    return f"{head}\r\n\r\n".encode() + body


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunks(body: bytes, size: int) -> bytes:
    """``body`` in chunks of ``size`` bytes, without the last (empty) chunk."""
    return b"".join(
        b"%x\r\n%s\r\n" % (len(body[at : at + size]), body[at : at + size]) for at in range(0, len(body), size)
    )


def then_stall(head: bytes) -> Handler:
    """A handler that sends ``head`` (and whatever follows it) and then never another byte."""

    async def handler(stream: anyio.abc.ByteStream) -> None:
        await stream.send(head)
        await anyio.sleep_forever()

    return handler


@dataclass
class Site:
    port: int
    heads: list[bytes] = field(default_factory=list)
    """Each request's head, as the server received it."""


@asynccontextmanager
async def site(routes: dict[str, bytes | Handler], tls: ssl.SSLContext | None = None) -> AsyncIterator[Site]:
    """A server on 127.0.0.1 (TLS with ``tls``): a request's path (without the query) picks its route,
    raw bytes to send or a handler; the connection closes after it."""
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server = Site(tcp.extra(anyio.abc.SocketAttribute.local_port))
    listener: anyio.abc.Listener[anyio.abc.ByteStream] = (
        tcp if tls is None else TLSListener(tcp, tls, standard_compatible=False)
    )

    async def handle(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.EndOfStream):
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
                server.heads.append(head)
                route = routes[head.split(b" ")[1].split(b"?")[0].decode()]
                await (stream.send(route) if isinstance(route, bytes) else route(stream))

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield server
        tg.cancel_scope.cancel()


class Dialer:
    """Stands in for ``_image_fetch._connect``: records each address dialled; dials loopback as asked,
    an address in ``aliases`` at the one it names, and fails the test for any other."""

    def __init__(self, connect: Callable[[str, int], Awaitable[anyio.abc.SocketStream]]) -> None:
        self.connect = connect
        self.calls: list[str] = []
        self.aliases: dict[str, str] = {}

    async def __call__(self, address: str, port: int) -> anyio.abc.SocketStream:
        self.calls.append(address)
        target = self.aliases.get(address, address)
        if not ipaddress.ip_address(target).is_loopback:
            raise AssertionError(f"the fetcher dialled {address}")
        return await self.connect(target, port)


@pytest.fixture(autouse=True)
def dialer(monkeypatch: pytest.MonkeyPatch) -> Dialer:
    dialer = Dialer(_image_fetch._connect)
    monkeypatch.setattr(_image_fetch, "_connect", dialer)
    return dialer


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``localhost`` only (not 127.0.0.1), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate[0])


async def refused(url: str, limits: FetchLimits, **kwargs: ssl.SSLContext) -> str:
    """The message of the ImageFetchError that fetching ``url`` raises; it never carries the query."""
    with pytest.raises(ImageFetchError) as caught:
        await fetch_image(url, limits, **kwargs)
    message = str(caught.value)
    assert SECRET not in message and "/img" not in message, message
    return message


# ---- fetched ----


async def test_a_png_over_https_comes_back_with_its_media_type(server_tls, client_tls, dialer):
    async with site({"/cat.png": answer(PNG, "200 OK", "Content-Type: image/png")}, server_tls) as server:
        got = await fetch_image(f"https://localhost:{server.port}/cat.png", LOCAL, ssl_context=client_tls)
    assert got == ("image/png", PNG)
    assert dialer.calls[-1] == "127.0.0.1"  # the checked address, dialled literally (no second lookup)
    assert all(ipaddress.ip_address(address) for address in dialer.calls)


async def test_the_media_type_is_the_one_the_bytes_show(server_tls, client_tls):
    images = {
        "/a.jpg": (b"\xff\xd8\xff\xe0" + bytes(20), "image/jpeg"),
        "/a.gif": (b"GIF87a" + bytes(20), "image/gif"),
        "/b.gif": (b"GIF89a" + bytes(20), "image/gif"),
        "/a.webp": (b"RIFF\x20\x00\x00\x00WEBPVP8 " + bytes(20), "image/webp"),
        "/a.png": (PNG, "image/png"),
    }
    routes = {
        path: answer(body, "200 OK", "Content-Type: application/octet-stream") for path, (body, _) in images.items()
    }
    async with site(routes, server_tls) as server:
        for path, (body, media) in images.items():
            url = f"https://localhost:{server.port}{path}"
            assert await fetch_image(url, LOCAL, ssl_context=client_tls) == (media, body)


async def test_the_request_carries_only_its_own_headers(server_tls, client_tls):
    routes = {"/cat.png": answer(PNG), "/a%20b/%C3%A9.png": answer(PNG)}
    async with site(routes, server_tls) as server:
        await fetch_image(f"https://localhost:{server.port}/cat.png?size=1#frag", LOCAL, ssl_context=client_tls)
        await fetch_image(f"https://localhost:{server.port}/a b/é.png", LOCAL, ssl_context=client_tls)
    lines = server.heads[0].decode().split("\r\n")
    assert lines[0] == "GET /cat.png?size=1 HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert {name.lower(): value for name, value in headers.items()} == {
        "host": f"localhost:{server.port}",
        "user-agent": "mcp-token-bridge",
        "accept": "image/png, image/jpeg, image/gif, image/webp",
        "accept-encoding": "identity",
        "connection": "close",
    }
    assert server.heads[1].startswith(b"GET /a%20b/%C3%A9.png HTTP/1.1\r\n")


async def test_a_chunked_body_is_read_whole(server_tls, client_tls):
    async with site({"/cat.png": CHUNKED + chunks(PNG, 5) + b"0\r\n\r\n"}, server_tls) as server:
        assert await fetch_image(f"https://localhost:{server.port}/cat.png", LOCAL, ssl_context=client_tls) == (
            "image/png",
            PNG,
        )


# ---- the address, scheme and credentials of every URL ----


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "it is a loopback address"),
        ("localhost", "a loopback address"),
        ("[::1]", "it is a loopback address"),
        ("2130706433", "it resolves to 127.0.0.1, a loopback address"),  # 127.0.0.1, as a resolver reads it
        ("10.1.2.3", "it is a private address"),
        ("192.168.0.1", "it is a private address"),
        ("[fd00::1]", "it is a private address"),
        ("169.254.169.254", "it is a link-local address"),
        ("[fe80::1]", "it is a link-local address"),
        ("100.64.0.1", "it is a shared address"),
        ("0.0.0.0", "it is the unspecified address"),
        ("224.0.0.1", "it is a multicast address"),
        ("[::ffff:127.0.0.1]", "it is an IPv6 form of 127.0.0.1, a loopback address"),
        ("[::ffff:169.254.169.254]", "a link-local address"),
        ("[2002:7f00:1::1]", "it is an IPv6 form of 127.0.0.1, a loopback address"),  # 6to4
        ("[64:ff9b::a00:1]", "it is an IPv6 form of 10.0.0.1, a private address"),  # NAT64
    ],
)
async def test_an_address_that_is_not_global_is_refused_without_connecting(host, kind, dialer):
    message = await refused(f"https://{host}/img.png?token={SECRET}", PUBLIC)
    assert message.startswith(f"could not fetch the image at {host.strip('[]')}: ") and kind in message
    assert dialer.calls == []


def test_embedded_ipv4_addresses_are_judged_by_the_ipv4_address():
    for public in ["1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]:
        assert address_refusal(ipaddress.ip_address(public)) is None, public
    for private in [
        "fec0::1",
        "64:ff9b:1::1",
        "2001:db8::1",
        "2001::1",
        "198.51.100.7",
        "255.255.255.255",
        "240.0.0.1",
    ]:
        assert address_refusal(ipaddress.ip_address(private)) is not None, private


def resolving(monkeypatch: pytest.MonkeyPatch, name: str, *addresses: str) -> None:
    """Make ``name`` resolve to ``addresses``, in this order."""

    async def getaddrinfo(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        assert host == name
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)


async def test_a_name_is_refused_if_any_of_its_addresses_is_not_global(monkeypatch, dialer):
    resolving(monkeypatch, "images.example", "1.1.1.1", "10.0.0.1")
    message = await refused(f"https://images.example/img.png?{SECRET}", PUBLIC)
    assert message == "could not fetch the image at images.example: it resolves to 10.0.0.1, a private address"
    assert dialer.calls == []


async def test_the_next_address_is_dialled_when_one_refuses(monkeypatch, dialer):
    resolving(monkeypatch, "images.example", "127.0.0.2", "127.0.0.1")  # nothing listens on 127.0.0.2
    limits = FetchLimits(max_bytes=10_000, timeout=5, allow_private=True, allow_http=True)
    async with site({"/cat.png": answer(PNG)}) as server:
        assert await fetch_image(f"http://images.example:{server.port}/cat.png", limits) == ("image/png", PNG)
    assert dialer.calls == ["127.0.0.2", "127.0.0.1"]
    assert f"\r\nHost: images.example:{server.port}\r\n".encode() in server.heads[0]


async def test_an_address_that_drops_packets_does_not_use_up_the_whole_time(monkeypatch, dialer):
    resolving(monkeypatch, "images.example", "127.0.0.2", "127.0.0.1")
    monkeypatch.setattr(_image_fetch, "CONNECT_TRY_SECONDS", 0.2)
    connect = dialer.connect

    async def silent_first(address: str, port: int) -> anyio.abc.SocketStream:
        if address == "127.0.0.2":
            await anyio.sleep_forever()  # a route that drops packets: no refusal ever comes
        return await connect(address, port)

    dialer.connect = silent_first
    limits = FetchLimits(max_bytes=10_000, timeout=5, allow_private=True, allow_http=True)
    async with site({"/cat.png": answer(PNG)}) as server:
        started = anyio.current_time()
        assert await fetch_image(f"http://images.example:{server.port}/cat.png", limits) == ("image/png", PNG)
    assert dialer.calls == ["127.0.0.2", "127.0.0.1"] and anyio.current_time() - started < 2


async def test_plain_http_only_when_allowed(dialer):
    async with site({"/cat.png": answer(PNG)}) as server:
        url = f"http://127.0.0.1:{server.port}/img.png?token={SECRET}"
        assert "only https:// URLs are fetched" in await refused(url, LOCAL)
        assert dialer.calls == []
        allowed = FetchLimits(max_bytes=10_000, timeout=5, allow_private=True, allow_http=True)
        assert await fetch_image(f"http://127.0.0.1:{server.port}/cat.png", allowed) == ("image/png", PNG)
    assert "only http:// and https:// URLs" in await refused(f"file:///etc/passwd?{SECRET}", allowed)


async def test_a_url_with_credentials_is_refused(dialer):
    for url in [f"https://user:hunter2@localhost/img?{SECRET}", f"https://token@localhost/img?{SECRET}"]:
        message = await refused(url, LOCAL)
        assert "user name or password" in message and "hunter2" not in message and "token" not in message
    assert dialer.calls == []


# ---- redirects ----


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("http://127.0.0.1:{port}/img.png", "at 127.0.0.1 (redirected from 1.1.1.1): it is a loopback address"),
        ("http://localhost:{port}/img.png", "at localhost (redirected from 1.1.1.1): it resolves to"),
        ("http://[::ffff:10.0.0.1]/img.png", "it is an IPv6 form of 10.0.0.1, a private address"),
        ("ftp://1.1.1.1/img.png", "only http:// and https:// URLs are fetched"),
        ("http://me:pw@1.1.1.1/img.png", "user name or password"),
    ],
)
async def test_each_redirect_is_checked_again(location, kind, dialer):
    """A public host (1.1.1.1, which the dialer points at the local server) redirects: the new URL goes
    through every check, with private addresses refused."""
    limits = FetchLimits(max_bytes=10_000, timeout=5, allow_http=True)
    routes: dict[str, bytes | Handler] = {"/img.png": answer(PNG)}
    async with site(routes) as public:
        routes["/start"] = answer(b"", "302 Found", f"Location: {location.format(port=public.port)}")
        dialer.aliases["1.1.1.1"] = "127.0.0.1"
        message = await refused(f"http://1.1.1.1:{public.port}/start?token={SECRET}", limits)
    assert kind in message
    assert dialer.calls == ["1.1.1.1"]
    assert len(public.heads) == 1  # the first hop only


async def test_a_relative_redirect_is_followed_from_a_public_host(dialer):
    limits = FetchLimits(max_bytes=10_000, timeout=5, allow_http=True)
    routes = {
        "/start": answer(b"", "301 Moved Permanently", "Location: /images/cat.png"),
        "/images/cat.png": answer(PNG),
    }
    async with site(routes) as public:
        dialer.aliases["1.1.1.1"] = "127.0.0.1"
        assert await fetch_image(f"http://1.1.1.1:{public.port}/start", limits) == ("image/png", PNG)
    assert dialer.calls == ["1.1.1.1", "1.1.1.1"]
    assert public.heads[1].startswith(b"GET /images/cat.png HTTP/1.1\r\nHost: 1.1.1.1:")


async def test_an_https_page_may_not_redirect_to_http(server_tls, client_tls):
    async with site(
        {"/start": answer(b"", "307 Temporary Redirect", "Location: http://localhost/img")}, server_tls
    ) as s:
        message = await refused(f"https://localhost:{s.port}/start?{SECRET}", LOCAL, ssl_context=client_tls)
    assert "only https:// URLs are fetched" in message


async def test_too_many_redirects(server_tls, client_tls):
    routes = {"/loop": answer(b"", "302 Found", "Location: /loop?again")}
    async with site(routes, server_tls) as server:
        message = await refused(f"https://localhost:{server.port}/loop?{SECRET}", LOCAL, ssl_context=client_tls)
    assert "it redirected more than 3 times" in message
    assert len(server.heads) == 4


# ---- what the server answers ----


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (answer(b"not here", "404 Not Found"), "it answered HTTP 404"),
        (answer(b"", "302 Found"), "it answered 302 without a Location"),
        (
            answer(b"<html>secret page</html>", "200 OK", "Content-Type: image/png; charset=utf-8"),
            "(Content-Type: image/png)",
        ),
        (answer(gzip.compress(PNG), "200 OK", "Content-Encoding: gzip"), "(Content-Encoding: gzip)"),
        (then_stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n"), "larger than 10000 bytes"),
        (then_stall(CHUNKED + chunks(PNG + bytes(20_000), 1024)), "larger than 10000 bytes"),  # and more to come
        (then_stall(b"hello\r\n\r\n"), "it gave no valid HTTP/1.1 answer"),
        (b"", "it gave no valid HTTP/1.1 answer"),  # closes without answering
    ],
)
async def test_an_answer_that_is_not_an_image_under_the_limits_is_refused(response, reason, server_tls, client_tls):
    async with site({"/img": response}, server_tls) as server:
        started = time.monotonic()
        message = await refused(f"https://localhost:{server.port}/img?{SECRET}", LOCAL, ssl_context=client_tls)
    assert reason in message and "secret page" not in message, message
    assert time.monotonic() - started < 2  # refused as soon as it is known, not at the timeout


async def test_a_slow_server_runs_into_the_timeout(server_tls, client_tls):
    limits = FetchLimits(max_bytes=10_000, timeout=0.3, allow_private=True)
    async with site(
        {"/img": then_stall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + PNG)}, server_tls
    ) as server:
        started = time.monotonic()
        message = await refused(f"https://localhost:{server.port}/img?{SECRET}", limits, ssl_context=client_tls)
    assert message == "could not fetch the image at localhost: it took longer than 0.3 s"
    assert time.monotonic() - started < 2


# ---- the connection ----


async def test_the_certificate_must_be_valid_for_the_host(server_tls, client_tls):
    async with site({"/img": answer(PNG)}, server_tls) as server:
        wrong_name = await refused(f"https://127.0.0.1:{server.port}/img?{SECRET}", LOCAL, ssl_context=client_tls)
        untrusted = await refused(f"https://localhost:{server.port}/img?{SECRET}", LOCAL)  # the system's CAs
    assert "its TLS certificate was refused" in wrong_name and "127.0.0.1" in wrong_name
    assert "its TLS certificate was refused" in untrusted


async def test_nothing_listening(client_tls):
    async with site({}) as server:
        port = server.port
    message = await refused(f"https://127.0.0.1:{port}/img?{SECRET}", LOCAL, ssl_context=client_tls)
    assert message == "could not fetch the image at 127.0.0.1: could not connect (Connection refused)"
