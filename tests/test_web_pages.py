"""What a web page in the user's browser can do to the relay (the relay in process, both backends).

- ``Origin: null`` (a sandboxed iframe of any site) is a foreign origin;
- a POST with an ``Origin`` and a CORS-safelisted content type (``text/plain`` and kin, which a page
  may send cross-site without a preflight) is refused, whatever the origin;
- unparsable ``Host`` or ``Origin`` values are a 403, not a 500;
- with an API key, ``/health`` shows only its status without the key (a DNS-rebinding page would
  otherwise read pids, client names and the socket path).
"""

from __future__ import annotations

import pytest

from relay._app import App
from relay._broker import Broker
from relay._config import Config
from relay._responder import RequestHead

from _http_client import request
from _inprocess import relay_in_process
from conftest import chat_body, mcp_worker

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "null", "content-type": "application/json"},
        {"origin": "http://localhost:3000", "content-type": "text/plain"},
        {"origin": "http://localhost:3000", "content-type": "application/x-www-form-urlencoded"},
        {"origin": "http://127.0.0.1", "content-type": "multipart/form-data; boundary=x"},
        {"origin": "null", "content-type": "text/plain;charset=UTF-8"},
    ],
)
async def test_a_post_a_page_can_send_without_preflight_is_refused(relay, backend, headers):
    async with mcp_worker(relay, backend) as worker:
        response = await request(relay.url, "POST", PATH, chat_body("drive my model"), headers=headers)
    assert response.status == 403, response.body
    assert response.json()["error"]["code"] == "forbidden_origin"
    assert worker.model.requests == []  # nothing reached the model


async def test_a_local_page_sending_json_still_works(relay, backend):
    headers = {"origin": "http://localhost:3000", "content-type": "application/json"}
    async with mcp_worker(relay, backend):
        response = await request(relay.url, "POST", PATH, chat_body("hi"), headers=headers)
    assert response.status == 200, response.body


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"host": "["}, "forbidden_host"),
        ({"host": "[::1"}, "forbidden_host"),
        ({"origin": "http://[x"}, "forbidden_origin"),
        ({"origin": "["}, "forbidden_origin"),
    ],
)
async def test_unparsable_host_or_origin_is_a_403_not_a_500(relay, headers, code):
    response = await request(relay.url, "GET", "/v1/models", headers=headers)
    assert response.status == 403, response.body
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in relay.log and "internal error" not in relay.log


async def test_with_a_key_health_shows_only_its_status_without_it(backend):
    async with relay_in_process(api_key="sekrit") as relay:
        rebinding = await request(relay.url, "GET", "/health", headers={"host": "evil.example"})
        assert rebinding.status == 200 and rebinding.json() == {"status": "ok"}
        keyed = await request(relay.url, "GET", "/health", headers={"authorization": "Bearer sekrit"})
        assert {"socket", "workers", "queue_depth"} <= set(keyed.json())


def test_access_verdicts_stay_right_as_hosts_and_origins_change():
    """Verdicts are decided once per Host/Origin value and then looked up: each stays the verdict of its
    own headers (method and content type included), also after more values than are kept."""
    app = App(Config(socket="/tmp/mcptb-test/relay.sock"), Broker(max_queue=1, socket_path="/s"))

    def verdict(method: str = "POST", **headers: str) -> str | None:
        path = PATH if method == "POST" else "/v1/models"
        refused = app.admit(RequestHead(method, path, "", headers))
        return refused.kind if refused is not None else None

    local = {"host": "localhost:8080"}
    for _ in range(3):
        for i in range(100):  # more distinct hosts than the verdicts kept
            assert verdict(host=f"evil{i}.example:8080") == "forbidden_host"
            assert verdict(host=f"127.0.0.{i % 250 + 1}:8080") is None
        assert verdict(**local) is None
        page = {**local, "origin": "http://localhost:3000"}
        assert verdict(**page, **{"content-type": "application/json"}) is None
        assert verdict(**page, **{"content-type": "text/plain"}) == "forbidden_origin"
        assert verdict("GET", **page, **{"content-type": "text/plain"}) is None
        assert verdict(**{**page, "origin": "http://evil.example"}) == "forbidden_origin"
