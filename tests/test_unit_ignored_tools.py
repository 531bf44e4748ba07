"""Hosted tools (web search and kin), which no MCP client can run, are accepted on every API and
left out visibly: the ``x-mcptb-ignored-tools`` response header names them and the relay logs a
line. Per-API parsing is in test_unit_api_responses.py and test_unit_api_anthropic.py; here the
header's format, chat's ``web_search_options`` and the log line. No processes (tests/_app_driver.py)."""

from __future__ import annotations

import logging

import pytest

from relay._app import ignored_tools_headers
from shared_protocol import End, Start, TextDelta

from _app_driver import in_process

pytestmark = pytest.mark.anyio

ANSWER = [Start(id="-", model="m"), TextDelta(id="-", text="ok"), End(id="-", stop_reason="endTurn")]
CHAT = {"model": "m", "messages": [{"role": "user", "content": "news?"}]}


def test_the_header_names_each_tool_once_in_order_as_safe_ascii():
    assert ignored_tools_headers(()) == []
    assert ignored_tools_headers(("web_search", "file_search", "web_search")) == [
        ("x-mcptb-ignored-tools", "web_search,file_search")
    ]
    # a caller's name cannot break the header or the list
    assert ignored_tools_headers(("a,b", "tab\there", "ünï\r\n")) == [("x-mcptb-ignored-tools", "a?b,tab?here,?n???")]


def test_a_long_list_is_bounded():
    (header,) = ignored_tools_headers((*(f"tool_{i}" for i in range(25)), "x" * 500))
    names = header[1].split(",")
    assert len(names) == 21 and names[-1] == "+6 more" and names[:2] == ["tool_0", "tool_1"]
    assert ignored_tools_headers(("x" * 500,))[0][1] == "x" * 64


async def test_chat_web_search_options_is_accepted_and_named_in_stream_and_whole_answers():
    async with in_process(ANSWER) as relay:
        whole = await relay.post("/v1/chat/completions", {**CHAT, "web_search_options": {}})
        streamed = await relay.post("/v1/chat/completions", {**CHAT, "web_search_options": {}, "stream": True})
        plain = await relay.post("/v1/chat/completions", CHAT)
    assert whole.status == 200 and whole.json()["choices"][0]["message"]["content"] == "ok"
    assert whole.headers["x-mcptb-ignored-tools"] == "web_search"
    assert streamed.headers["x-mcptb-ignored-tools"] == "web_search"
    assert "x-mcptb-ignored-tools" not in plain.headers


async def test_the_relay_logs_what_it_left_out(caplog):
    hosted = {"model": "m", "input": "x", "tools": [{"type": "web_search"}, {"type": "code_interpreter"}]}
    with caplog.at_level(logging.INFO, logger="mcptb.relay"):
        async with in_process(ANSWER) as relay:
            await relay.post("/v1/responses", hosted)
    (line,) = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert line.endswith(": tools left out, the MCP client's model cannot use them: web_search, code_interpreter")
