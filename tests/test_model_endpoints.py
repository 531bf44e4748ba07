"""Model discovery and the small contracts around it, as the clients read them: ``GET /v1/models`` and
``/v1/models/{id}`` through the openai and anthropic SDKs, ``HEAD /api/hello`` (Claude Code's warm-up),
and the request id both SDKs read. The relay in process and the SDKs in a thread, both backends."""

from __future__ import annotations

import anthropic
import anyio
import openai
import pytest

from shared_protocol import PROTOCOL_VERSION, Hello, ModelLimits, RelayFrameDecoder, WorkerInfo, encode

from _http_client import request
from _inprocess import relay_in_process
from conftest import in_thread, mcp_worker

pytestmark = pytest.mark.anyio


def openai_client(relay, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=relay.url + "/v1", api_key=key, max_retries=0, timeout=30)


def anthropic_client(relay, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=relay.url, api_key=key, max_retries=0, timeout=30)


async def test_the_sdks_list_and_retrieve_the_models_a_client_serves(relay, backend):
    async with mcp_worker(relay, backend, client_name="claude-code"):
        listed = await in_thread(lambda: list(openai_client(relay).models.list()))
        one = await in_thread(openai_client(relay).models.retrieve, "claude-code")
        # the anthropic SDK pages on last_id unless has_more is false: list() must end
        paged = await in_thread(lambda: list(anthropic_client(relay).models.list(limit=1000)))
        theirs = await in_thread(anthropic_client(relay).models.retrieve, "claude-code")
    assert [m.id for m in listed] == ["claude-code"] and one.id == "claude-code" and one.owned_by == "claude-code"
    assert [m.id for m in paged] == ["claude-code"]
    assert theirs.display_name == "claude-code (claude-code 1.0)" and theirs.type == "model"
    assert theirs.created_at.year >= 2026
    assert "MCP sampling" in theirs.model_extra["description"]  # type: ignore[index]


async def test_an_unknown_model_is_a_404_in_the_askers_shape(relay, backend):
    with pytest.raises(openai.NotFoundError) as openai_error:
        await in_thread(openai_client(relay).models.retrieve, "no-such-model")
    with pytest.raises(anthropic.NotFoundError) as anthropic_error:
        await in_thread(anthropic_client(relay).models.retrieve, "no-such-model")
    assert openai_error.value.code == "model_not_found"
    assert openai_error.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert "`no-such-model`" in openai_error.value.message
    assert anthropic_error.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_claude_codes_warm_up_is_answered_without_the_key(backend):
    async with relay_in_process(api_key="sk-secret") as relay:
        head = await request(relay.url, "HEAD", "/api/hello")
        get = await request(relay.url, "GET", "/api/hello")
        models = await request(relay.url, "GET", "/v1/models")
    assert head.status == 200 and head.body == b""
    assert get.status == 200
    assert models.status == 401  # the model list still needs the key


async def test_both_sdks_read_the_request_id(relay, backend):
    async with mcp_worker(relay, backend):
        message = await in_thread(
            anthropic_client(relay).messages.create,
            model="m",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
        )
        completion = await in_thread(
            openai_client(relay).chat.completions.create,
            model="m",
            messages=[{"role": "user", "content": "hi"}],
        )
    assert message._request_id and message._request_id.startswith("req_")
    assert completion._request_id and completion._request_id.startswith("req_")


async def test_limits_a_worker_reports_are_on_its_model_and_none_are_made_up(relay, backend):
    info = WorkerInfo(
        client_name="limited",
        models=["big-model", "plain-model"],
        limits={"big-model": ModelLimits(context_length=200_000, max_output_tokens=8_192)},
    )
    async with await anyio.connect_unix(relay.socket) as link:  # a worker of its own, speaking the protocol
        await link.send(encode(Hello(version=PROTOCOL_VERSION, worker=info)))
        (welcome,) = list(RelayFrameDecoder().feed(await link.receive()))
        assert welcome.type == "welcome"
        models = {m["id"]: m for m in (await request(relay.url, "GET", "/v1/models")).json()["data"]}
    big, plain = models["big-model"], models["plain-model"]
    assert big["context_length"] == big["max_input_tokens"] == 200_000
    assert big["max_completion_tokens"] == big["max_output_tokens"] == big["max_tokens"] == 8_192
    assert not {"context_length", "max_input_tokens", "max_tokens", "max_output_tokens"} & set(plain)
