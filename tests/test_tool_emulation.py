"""Tool use emulated for a sampling client without ``sampling.tools``, end to end: HTTP caller -> relay
-> mcptb-server -> the MCP client's sampling callback, which answers fixed strings the way a model
following (or not following) the emulation format would."""

from __future__ import annotations

import json
import re

import pytest

from _http_client import get_json, post
from _scripted import MODEL, FixedAnswerModel
from _sse import data_of
from conftest import chat_body, mcp_worker

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": WEATHER_SCHEMA},
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
PARIS = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
OSLO = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


def body(*, stream: bool = False, **extra) -> bytes:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "weather in Paris?"}]
    payload = {"model": "m", "messages": messages, "tools": TOOLS, "stream": stream, **extra}
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return json.dumps(payload).encode()


def stream_chunks(response) -> list[dict]:
    datas = data_of(response.body)
    assert datas[-1] == "[DONE]"
    return [json.loads(d) for d in datas[:-1]]


def streamed(response) -> tuple[str, list[dict], str]:
    """(text, tool call deltas, finish_reason) of an SSE response."""
    chunks = [c for c in stream_chunks(response) if c["choices"]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    text = "".join(d.get("content") or "" for d in deltas)
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    return text, calls, chunks[-1]["choices"][0]["finish_reason"]


def sent_without_tools(worker) -> None:
    (params,) = worker.model.requests
    assert params.tools is None and params.tool_choice is None
    assert all(b.type in ("text", "image") for m in params.messages for b in m.content_as_list)


async def test_health_says_a_sampling_worker_without_sampling_tools_takes_tools(relay, backend):
    async with mcp_worker(relay, backend):
        health = await get_json(relay.url + "/health")
    (worker,) = health["workers"]
    assert worker["modes"] == ["sampling", "agent"] and worker["tools"] is True


async def test_a_well_formed_call_becomes_tool_calls_and_the_client_got_no_tools(relay, backend):
    model = FixedAnswerModel(answers=[PARIS])
    async with mcp_worker(relay, backend, model=model) as worker:
        response = await post(relay.url, PATH, body())
    assert response.status == 200, response.body
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert CALL_ID.fullmatch(call["id"]) and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert choice["message"]["content"] is None
    assert response.json()["model"] == MODEL

    sent_without_tools(worker)
    system = worker.model.requests[0].system_prompt
    assert system.startswith("Be brief.\n\n# Tools\n")
    assert (
        '{"name": "get_weather", "description": "Weather in a city.", "parameters": ' + json.dumps(WEATHER_SCHEMA) + "}"
    ) in system.splitlines()
    assert '<tool_call>{"name": "TOOL_NAME", "arguments": {...}}</tool_call>' in system


async def test_prose_and_two_calls_stream_as_text_then_parallel_calls(relay, backend):
    model = FixedAnswerModel(answers=[f"I'll check both cities.\n\n{PARIS}\n{OSLO}"])
    async with mcp_worker(relay, backend, model=model) as worker:
        response = await post(relay.url, PATH, body(stream=True))
    assert response.status == 200
    text, calls, finish = streamed(response)
    assert text == "I'll check both cities."
    assert finish == "tool_calls"
    assert [c["index"] for c in calls] == [0, 1]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert all(CALL_ID.fullmatch(c["id"]) for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert stream_chunks(response)[-1]["usage"]["total_tokens"] > 0
    sent_without_tools(worker)


async def test_the_same_answer_without_streaming_carries_text_and_both_calls(relay, backend):
    model = FixedAnswerModel(answers=[f"I'll check both cities.\n\n{PARIS}\n{OSLO}"])
    async with mcp_worker(relay, backend, model=model):
        response = await post(relay.url, PATH, body())
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "I'll check both cities."
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_weather"]


UNUSABLE = {
    "malformed JSON": 'Checking.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>',
    "unknown tool": '<tool_call>{"name": "rm_rf", "arguments": {"path": "/"}}</tool_call>',
    "arguments not an object": '<tool_call>{"name": "get_weather", "arguments": "Paris"}</tool_call>',
    "one good, one bad": PARIS + '\n<tool_call>{"name": "get_weather", "arguments": {]}</tool_call>',
    "no call at all": "It is sunny in Paris.",
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("case", list(UNUSABLE))
async def test_an_answer_that_does_not_parse_reaches_the_caller_as_plain_text(relay, backend, case, stream):
    answer = UNUSABLE[case]
    async with mcp_worker(relay, backend, model=FixedAnswerModel(answers=[answer])) as worker:
        response = await post(relay.url, PATH, body(stream=stream))
        stderr = worker.stderr
    assert response.status == 200
    if stream:
        text, calls, finish = streamed(response)
        assert (text, calls, finish) == (answer, [], "stop")
    else:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["content"] == answer and "tool_calls" not in choice["message"]
    sent_without_tools(worker)
    if case != "no call at all":
        assert "unusable" in stderr and answer not in stderr  # logged, without the content


async def test_a_cut_off_call_is_text_that_says_it_was_cut_off(relay, backend):
    model = FixedAnswerModel(answers=['<tool_call>{"name": "get_weather", "argu'], stop_reason="maxTokens")
    async with mcp_worker(relay, backend, model=model):
        response = await post(relay.url, PATH, body())
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]


async def test_earlier_calls_and_results_reach_the_model_as_text(relay, backend):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "weather in Oslo and Paris?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {"role": "user", "content": "so?"},
    ]
    model = FixedAnswerModel(answers=["Oslo is sunny, Paris is rainy."])
    payload = {"model": "m", "messages": messages, "tools": TOOLS, "tool_choice": "auto"}
    async with mcp_worker(relay, backend, model=model) as worker:
        response = await post(relay.url, PATH, json.dumps(payload).encode())
    assert response.status == 200, response.body
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == "Oslo is sunny, Paris is rainy."

    sent_without_tools(worker)
    params = worker.model.requests[0]
    assert [m.role for m in params.messages] == ["user", "assistant", "user"]
    texts = ["\n\n".join(b.text for b in m.content_as_list) for m in params.messages]
    assert texts == [
        "weather in Oslo and Paris?",
        "Checking both.\n\n"
        '<tool_call id="call_1">{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n\n'
        '<tool_call id="call_2">{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        '<tool_result id="call_1" name="get_weather">\nsunny\n</tool_result>\n\n'
        '<tool_result id="call_2" name="get_weather">\nrain\n</tool_result>\n\n'
        "so?",
    ]
    assert "get_weather" in params.system_prompt


async def test_a_history_with_tool_calls_but_no_tools_offered_is_rendered_too(relay, backend):
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    model = FixedAnswerModel(answers=[f"Sunny. {OSLO}"])
    async with mcp_worker(relay, backend, model=model) as worker:
        response = await post(relay.url, PATH, json.dumps({"model": "m", "messages": messages}).encode())
    choice = response.json()["choices"][0]
    # no tool is callable, so a call written anyway is just text
    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == f"Sunny. {OSLO}"
    sent_without_tools(worker)
    params = worker.model.requests[0]
    assert "You cannot call any tool now" in params.system_prompt
    assert params.messages[2].content_as_list[0].text == (
        '<tool_result id="c1" name="get_weather">\nsunny\n</tool_result>'
    )


@pytest.mark.parametrize(
    ("tool_choice", "said", "listed"),
    [
        ("required", "You must call at least one tool in this answer.", ["get_weather", "get_time"]),
        (
            {"type": "function", "function": {"name": "get_time"}},
            "You must call the tool get_time in this answer.",
            ["get_time"],
        ),
        ("none", "You cannot call any tool now", []),
    ],
    ids=["required", "named", "none"],
)
async def test_tool_choice_is_said_in_the_prompt(relay, backend, tool_choice, said, listed):
    answer = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    async with mcp_worker(relay, backend, model=FixedAnswerModel(answers=[answer])) as worker:
        response = await post(relay.url, PATH, body(tool_choice=tool_choice))
    system = worker.model.requests[0].system_prompt
    assert said in system
    assert [name for name in ("get_weather", "get_time") if f'{{"name": "{name}"' in system] == listed
    sent_without_tools(worker)
    choice = response.json()["choices"][0]
    if listed:
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_time"
    else:
        assert choice["finish_reason"] == "stop" and choice["message"]["content"] == answer


async def test_a_client_with_sampling_tools_still_gets_tools_natively(relay, backend):
    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        response = await post(relay.url, PATH, chat_body("weather?", tools=TOOLS))
    assert response.json()["choices"][0]["message"]["tool_calls"][0]["id"] == "call_scripted_1"
    params = worker.model.requests[0]
    assert [t.name for t in params.tools] == ["get_weather", "get_time"]
    assert params.system_prompt is None


async def test_with_emulation_off_the_worker_says_it_cannot_take_tools(relay, backend):
    async with mcp_worker(relay, backend, "--tool-emulation", "off"):
        health = await get_json(relay.url + "/health")
        plain = await post(relay.url, PATH, chat_body("hi"))
    assert health["workers"][0]["tools"] is False
    assert plain.status == 200  # only requests with tools are refused (tests/test_faults.py)
