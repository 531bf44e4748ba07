"""Unit tests of the chat-completions adapter: our frames have exactly the shape of the golden frames
recorded against real clients (tests/golden/, copied from shared/reference/golden/)."""

from __future__ import annotations

import json
from pathlib import Path

from relay._collect import Answer
from relay._openai_chat import ChatStreamEncoder, completion, parse_request
from relay._usage import UsageEstimate
from shared_protocol import End, Start, TextDelta, ToolCall

GOLDEN = Path(__file__).parent / "golden"


def shape(value):
    """Keys (recursively) and value types, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def sse_json(data: bytes) -> list:
    events = [e for e in data.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def test_stream_frames_match_the_golden_text_stream():
    golden = sse_json((GOLDEN / "chat_stream_text.sse").read_bytes())
    encoder = ChatStreamEncoder(include_usage=True)
    answer = Answer(model="m")
    out = encoder.first(answer)
    events = [Start(id="r", model="mock-model"), *(TextDelta(id="r", text=p) for p in ("Hello", " world", "!"))]
    for event in events:
        answer.add(event)
        out += encoder.event(event, answer)
    answer.add(End(id="r", stop_reason="endTurn"))
    out += encoder.finish(answer, UsageEstimate(12, 7))
    ours = sse_json(out)
    assert ours[-1] == golden[-1] == "[DONE]"
    assert [shape(json.loads(e)) for e in ours[:-1]] == [shape(json.loads(e)) for e in golden[:-1]]
    assert [json.loads(e)["choices"] for e in ours[1:-1]] == [json.loads(e)["choices"] for e in golden[1:-1]]


def test_tool_call_delta_has_the_golden_first_delta_keys_and_whole_arguments():
    golden = [json.loads(e) for e in sse_json((GOLDEN / "chat_stream_text_then_2_tools.sse").read_bytes())[:-1]]
    golden_first_call = next(
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in golden
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    )
    encoder = ChatStreamEncoder(include_usage=False)
    tool_call = ToolCall(id="r", call_id="call_1", name="get_weather", arguments={"location": "Paris"})
    frame = encoder.event(tool_call, Answer(model="m", tool_calls=[tool_call]))
    (call,) = json.loads(sse_json(frame)[0])["choices"][0]["delta"]["tool_calls"]
    assert call.keys() == golden_first_call.keys()
    assert call["function"].keys() == golden_first_call["function"].keys()
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}


def test_non_stream_bodies_match_the_golden_shapes():
    text = Answer(model="mock-model", text=["Hello world!"], stop_reason="endTurn")
    golden_text = json.loads((GOLDEN / "chat_nonstream_text.json").read_text())
    assert shape(completion(text, UsageEstimate(12, 7))) == shape(golden_text)
    tool = Answer(
        model="mock-model",
        stop_reason="toolUse",
        tool_calls=[ToolCall(id="r", call_id="call_mock_0", name="get_weather", arguments={"location": "Paris"})],
    )
    golden_tool = json.loads((GOLDEN / "chat_nonstream_tool.json").read_text())
    ours = completion(tool, UsageEstimate(12, 7))
    assert shape(ours) == shape(golden_tool)
    assert ours["choices"][0]["finish_reason"] == "tool_calls"


def test_finish_reasons_map_from_mcp_stop_reasons():
    for stop, expected in [("endTurn", "stop"), ("stopSequence", "stop"), ("maxTokens", "length")]:
        body = completion(Answer(model="m", text=["x"], stop_reason=stop), UsageEstimate(1, 1))
        assert body["choices"][0]["finish_reason"] == expected


def test_litellm_proxy_chat_request_is_accepted():
    """The body litellm's proxy sends for a Claude-Code-shaped request (wire contract section 4.2)."""
    body = {
        "model": "mock-model",
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "You are Claude Code"}, {"type": "text", "text": "CLI"}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "List the files"},
                ],
            },
            {
                "role": "assistant",
                "content": "I'll list the files first.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command": "ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "README.md\nsrc"},
            {"role": "user", "content": [{"type": "text", "text": "continue"}]},
        ],
        "temperature": 1,
        "max_tokens": 32000,
        "top_k": 5,
        "prompt_cache_key": "abc",
        "reasoning_effort": "high",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "Bash",
                    "description": "run",
                    "parameters": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"],
                        "additionalProperties": False,
                        "$schema": "http://json-schema.org/draft-07/schema#",
                    },
                },
            }
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    call = parse_request(json.dumps(body).encode())
    request = call.request
    assert call.stream and call.include_usage
    assert request.system == "You are Claude Code\nCLI"
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assert [b.type for b in request.messages[1].content] == ["text", "tool_use"]
    assert [b.type for b in request.messages[2].content] == ["tool_result", "text"]
    assert request.tools[0].input_schema["additionalProperties"] is False
