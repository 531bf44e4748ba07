"""Image URLs in requests: the relay fetches them (``--fetch-images``) and the MCP client's model gets the
image as data, on every API; what it will not fetch is a 400 naming the field. The relay and mcptb-server
in process, an image server in a thread, pydantic-ai as a caller; both backends."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import mcp_types as types
import pytest

from _http_client import post
from _inprocess import relay_in_process, worker_in_process
from conftest import in_thread, wait_for_workers

pytestmark = pytest.mark.anyio


def png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
        + chunk(b"IEND", b"")
    )


PNG = png()


@contextlib.contextmanager
def image_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An http server on loopback answering /cat.png; yields its base URL and the headers of each request."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            if self.path == "/slow.png":
                time.sleep(1.0)
                self.path = "/cat.png"
            body = PNG if self.path == "/cat.png" else b"<html>not here</html>"
            self.send_response(200 if self.path == "/cat.png" else 404)
            self.send_header("Content-Type", "image/png" if self.path == "/cat.png" else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def chat(url: str) -> bytes:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}).encode()


def responses(url: str) -> bytes:
    content = [{"type": "input_text", "text": "what is this?"}, {"type": "input_image", "image_url": url}]
    return json.dumps({"model": "m", "input": [{"role": "user", "content": content}]}).encode()


def messages(url: str) -> bytes:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image", "source": {"type": "url", "url": url}}]
    return json.dumps({"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": content}]}).encode()


ROUTES = {"/v1/chat/completions": chat, "/v1/responses": responses, "/v1/messages": messages}
FIELDS = {
    "/v1/chat/completions": "messages[0].content[1].image_url.url",
    "/v1/responses": "input[0].content[1].image_url",
    "/v1/messages": "messages.0.content.1.source.url",  # the Anthropic adapter names fields so
}


def images_seen(params: types.CreateMessageRequestParams) -> list[types.ImageContent]:
    return [b for m in params.messages for b in m.content_as_list if isinstance(b, types.ImageContent)]


@pytest.mark.parametrize("path", list(ROUTES))
async def test_an_image_url_reaches_the_model_as_the_image(backend, path):
    with image_server() as (base, seen):
        async with relay_in_process(fetch_images="local") as relay, worker_in_process(relay.socket) as worker:
            await wait_for_workers(relay, 1)
            response = await post(relay.url, path, ROUTES[path](base + "/cat.png"))
    assert response.status == 200, response.body
    (image,) = images_seen(worker.model.requests[0])
    assert base64.b64decode(image.data) == PNG and image.mime_type == "image/png"
    # nothing of the caller's went to the image's server
    assert set(seen[0]) == {"host", "user-agent", "accept", "accept-encoding", "connection"}


@pytest.mark.parametrize("path", list(ROUTES))
async def test_by_default_an_image_on_this_machine_is_not_fetched(backend, path):
    with image_server() as (base, seen):
        async with relay_in_process() as relay, worker_in_process(relay.socket) as worker:
            await wait_for_workers(relay, 1)
            https = base.replace("http://", "https://")  # refused before any connection: a loopback address
            response = await post(relay.url, path, ROUTES[path](https + "/cat.png?token=secret"))
            plain = await post(relay.url, path, ROUTES[path](base + "/cat.png"))
    assert response.status == 400 and seen == [] and worker.model.requests == []
    error = response.json()["error"]
    assert FIELDS[path] in error["message"] and "loopback" in error["message"] and "secret" not in error["message"]
    assert path == "/v1/messages" or error["param"] == FIELDS[path]
    assert plain.status == 400 and "only https:// URLs are fetched" in plain.json()["error"]["message"]


async def test_what_cannot_be_fetched_is_a_400_that_says_why(backend):
    with image_server() as (base, _seen):
        async with relay_in_process(fetch_images="local", image_max_bytes=10) as relay:
            too_big = await post(relay.url, "/v1/chat/completions", chat(base + "/cat.png"))
        async with relay_in_process(fetch_images="local") as relay:
            missing = await post(relay.url, "/v1/chat/completions", chat(base + "/dog.png"))
        async with relay_in_process(fetch_images="off") as relay:
            off = await post(relay.url, "/v1/chat/completions", chat(base + "/cat.png"))
        async with relay_in_process(fetch_images="local", image_fetch_timeout=0.3) as relay:
            slow = await post(relay.url, "/v1/chat/completions", chat(base + "/slow.png"))
    assert too_big.status == 400 and "larger than 10 bytes" in too_big.json()["error"]["message"]
    assert missing.status == 400 and "HTTP 404" in missing.json()["error"]["message"]
    assert off.status == 400 and "--fetch-images off" in off.json()["error"]["message"]
    assert slow.status == 400 and "took longer than 0.3 s" in slow.json()["error"]["message"]
    assert "--image-fetch-timeout: 0.3 s for all of a request's images" in slow.json()["error"]["message"]


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_pydantic_ai_sends_an_image_url_and_gets_its_answer(backend, api):
    from pydantic_ai import Agent, ImageUrl

    with image_server() as (base, _seen):
        async with relay_in_process(fetch_images="local") as relay, worker_in_process(relay.socket) as worker:
            await wait_for_workers(relay, 1)
            agent = Agent(_pydantic_ai_model(api, relay.url))
            result = await in_thread(agent.run_sync, ["Hello!", ImageUrl(url=base + "/cat.png")])
    assert result.output == "echo: Hello!"
    (image,) = images_seen(worker.model.requests[0])
    assert base64.b64decode(image.data) == PNG


def _pydantic_ai_model(api: str, url: str) -> Any:
    if api == "messages":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel("any", provider=AnthropicProvider(base_url=url, api_key="unused"))
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=url + "/v1", api_key="unused")
    return (OpenAIChatModel if api == "chat" else OpenAIResponsesModel)("any", provider=provider)


async def test_a_request_the_relay_would_refuse_at_once_fetches_nothing(backend):
    with image_server() as (base, seen):
        async with relay_in_process(fetch_images="local", worker_grace=0) as relay:
            response = await post(relay.url, "/v1/chat/completions", chat(base + "/cat.png"))
    assert response.status == 503 and response.json()["error"]["code"] == "no_worker" and seen == []


async def test_the_body_and_its_images_as_base64_fit_max_body_bytes(backend):
    with image_server() as (base, _seen):
        body = chat(base + "/cat.png")
        limit = len(body) + 4 * -(-len(PNG) // 3)
        async with relay_in_process(fetch_images="local", max_body_bytes=limit - 1) as relay:
            over = await post(relay.url, "/v1/chat/completions", body)
        async with (
            relay_in_process(fetch_images="local", max_body_bytes=limit) as relay,
            worker_in_process(relay.socket),
        ):
            await wait_for_workers(relay, 1)
            fits = await post(relay.url, "/v1/chat/completions", body)
    assert over.status == 400 and "larger than" in over.json()["error"]["message"]
    assert fits.status == 200


async def test_a_continued_response_keeps_the_fetched_image_not_the_url(backend):
    """The conversation store keeps the image itself: a continuation does not fetch it again (its server
    may be gone by then, or the URL's token expired)."""
    with image_server() as (base, seen):
        async with relay_in_process(fetch_images="local") as relay, worker_in_process(relay.socket) as worker:
            await wait_for_workers(relay, 1)
            first = await post(relay.url, "/v1/responses", responses(base + "/cat.png"))
            follow = {"model": "m", "input": "and now?", "previous_response_id": first.json()["id"]}
            second = await post(relay.url, "/v1/responses", json.dumps(follow).encode())
    assert first.status == 200 and second.status == 200, second.body
    assert len(seen) == 1  # fetched once
    (image,) = images_seen(worker.model.requests[1])
    assert base64.b64decode(image.data) == PNG


async def test_a_response_too_large_to_keep_with_its_images_says_so(backend):
    """The store's size check at parse time saw the body, not the images fetched after it: an answer whose
    conversation no longer fits is answered, not kept, and the relay's log says so."""
    with image_server() as (base, _seen):
        body = responses(base + "/cat.png")
        limit = len(body) + 4 * -(-len(PNG) // 3)  # the request fits; the conversation with the answer does not
        async with (
            relay_in_process(fetch_images="local", max_body_bytes=limit) as relay,
            worker_in_process(relay.socket),
        ):
            await wait_for_workers(relay, 1)
            first = await post(relay.url, "/v1/responses", body)
            follow = {"model": "m", "input": "and now?", "previous_response_id": first.json()["id"]}
            second = await post(relay.url, "/v1/responses", json.dumps(follow).encode())
            log = relay.log
    assert first.status == 200 and "too large for the conversation store" in log
    assert second.status == 400 and second.json()["error"]["code"] == "previous_response_not_found"
