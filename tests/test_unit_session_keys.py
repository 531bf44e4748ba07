"""The session keys and request classes callers send, as each API's parser and the relay read them:
the body's ``prompt_cache_key`` (chat completions, Responses) and ``metadata.user_id`` (Messages), and
Claude Code's ``x-claude-code-request-class`` in the access log and on /metrics. In process."""

from __future__ import annotations

import json

import pytest

from relay._anthropic import MessagesAdapter
from relay._openai_chat import ChatAdapter
from relay._responses import ResponsesAdapter

from _http_client import post, request
from _inprocess import relay_in_process, worker_in_process
from conftest import chat_body, wait_for_workers

pytestmark = pytest.mark.anyio


def test_each_api_reads_the_session_key_its_callers_send():
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "prompt_cache_key": "thread-1"}
    responses = {"model": "m", "input": "hi", "prompt_cache_key": "thread-2"}
    messages = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    claude_code = {**messages, "metadata": {"user_id": '{"device_id":"d","session_id":"s-3"}'}}
    assert ChatAdapter().parse(json.dumps(chat).encode(), None).session_key == "thread-1"
    assert ResponsesAdapter().parse(json.dumps(responses).encode(), None).session_key == "thread-2"
    assert (
        MessagesAdapter().parse(json.dumps(claude_code).encode(), None).session_key
        == claude_code["metadata"]["user_id"]
    )
    assert MessagesAdapter().parse(json.dumps(messages).encode(), None).session_key is None


async def test_claude_codes_request_class_is_in_the_access_log_and_on_the_metrics(backend):
    async with relay_in_process(usage_db="") as relay, worker_in_process(relay.socket):
        await wait_for_workers(relay, 1)
        for request_class in ("main", "compaction", "main", "made-up"):
            headers = {"x-claude-code-request-class": request_class, "x-claude-code-session-id": "s1"}
            assert (await post(relay.url, "/v1/chat/completions", chat_body("hi"), headers=headers)).status == 200
        assert (await post(relay.url, "/v1/chat/completions", chat_body("hi"))).status == 200
        metrics = (await request(relay.url, "GET", "/metrics")).body.decode()
        log = relay.log
    counts = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mcptb_claude_code_requests_total{")
    }
    assert counts == {"main": 2, "compaction": 1, "other": 1}
    assert log.count(" class=main ") == 2 and log.count(" class=compaction ") == 1 and " class=made-up" not in log
