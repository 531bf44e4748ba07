"""Structured answers and tool arguments checked against their schemas (mcp_server._structured), and
the agent's reply refused until it fits (the worker core)."""

from __future__ import annotations

import json

import pytest

from mcp_server._core import WorkerCore
from mcp_server._effects import Delivery, ToolText, Waiting
from mcp_server._render import render_request
from mcp_server._structured import arguments_problem, instruction, parse_answer, schema_problem
from shared_protocol import (
    ErrorFrame,
    Message,
    NeutralRequest,
    OutputFormat,
    Ready,
    RequestFrame,
    TextBlock,
    TextDelta,
    ToolSpec,
    WorkerInfo,
)

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
AS_PERSON = OutputFormat(type="json_schema", name="person", json_schema=PERSON, strict=True)


@pytest.mark.parametrize(
    "answer",
    [
        '{"name": "Ada", "age": 36}',
        '  \n{"name":"Ada","age":36}\n',
        '```json\n{"name": "Ada", "age": 36}\n```',
        '```\n{"name": "Ada", "age": 36}```',
    ],
)
def test_a_valid_answer_is_returned_as_compact_json_fences_and_all(answer):
    assert parse_answer(answer, AS_PERSON) == ('{"name":"Ada","age":36}', [])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('Sure! {"name": "Ada", "age": 36}', "not one JSON value"),
        ('{"name": "Ada"}', "at $: 'age' is a required property"),
        ('{"name": "Ada", "age": -1}', "at $.age: -1 is less than the minimum of 0"),
        ('{"name": "Ada", "age": 36, "x": 1}', "Additional properties are not allowed"),
        ('{"name": "Ada", "age": 36} and more', "not one JSON value"),
    ],
)
def test_an_answer_that_breaks_the_schema_says_where(answer, expected):
    _, errors = parse_answer(answer, AS_PERSON)
    assert errors and any(expected in e for e in errors), errors


def test_json_object_wants_an_object():
    wanted = OutputFormat(type="json_object")
    assert parse_answer('{"a": [1, 2]}', wanted) == ('{"a":[1,2]}', [])
    assert parse_answer("[1, 2]", wanted)[1] == ["the answer must be a JSON object, not list"]


def test_schemas_that_cannot_be_used_are_named():
    assert schema_problem(PERSON, "x") is None
    assert "not a valid JSON Schema" in (schema_problem({"type": "objekt"}, "the schema") or "")
    remote = schema_problem({"properties": {"a": {"$ref": "https://example.com/a.json"}}}, "the schema")
    assert remote is not None and "https://example.com/a.json" in remote and "local references" in remote
    assert schema_problem({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"}, "x") is None


def test_tool_arguments_are_checked_against_the_tool_schema():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    assert arguments_problem("weather", {"city": "Paris"}, schema) is None
    problem = arguments_problem("weather", {}, schema)
    assert problem is not None and "weather" in problem and "'city' is a required property" in problem


def test_the_instruction_carries_the_schema_and_the_rule():
    text = instruction(AS_PERSON)
    assert "exactly one JSON value" in text and '"person"' in text and json.dumps(PERSON) in text


# --- agent pull: the core refuses what does not fit -------------------------------------------


def shown(request: NeutralRequest) -> WorkerCore:
    core = WorkerCore("/s", WorkerInfo(modes=["agent"], tools=True))
    core.link_up(core.info)
    step, _ = core.agent_waits({"wait_seconds": 30})
    assert isinstance(step, Waiting)
    core.request(RequestFrame(id="req_1", timeout=60, request=request))
    assert core.show(step.waiter)[0] is not None
    return core


def neutral(**extra) -> NeutralRequest:
    return NeutralRequest(messages=[Message(role="user", content=[TextBlock(text="who?")])], max_tokens=100, **extra)


def test_the_agent_sees_the_schema_and_the_rule():
    text = render_request(RequestFrame(id="req_1", timeout=60, request=neutral(output_format=AS_PERSON)))
    assert "answer format" in text and json.dumps(PERSON) in text
    assert "content must be exactly that one JSON value" in text


def test_an_invalid_structured_reply_is_refused_with_the_errors_and_a_corrected_one_delivered():
    core = shown(neutral(output_format=AS_PERSON))
    refused = core.reply({"request_id": "req_1", "content": '{"name": "Ada"}'})
    assert isinstance(refused, ToolText) and refused.error
    assert "'age' is a required property" in refused.text and "still open" in refused.text
    accepted = core.reply({"request_id": "req_1", "content": '```json\n{"name": "Ada", "age": 36}\n```'})
    assert isinstance(accepted, Delivery)
    assert TextDelta(id="req_1", text='{"name":"Ada","age":36}') in accepted.frames


def test_a_tool_call_missing_a_required_argument_is_refused():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    core = shown(neutral(tools=[ToolSpec(name="weather", input_schema=schema)]))
    refused = core.reply({"request_id": "req_1", "content": "", "tool_calls": [{"name": "weather", "arguments": {}}]})
    assert isinstance(refused, ToolText) and "'city' is a required property" in refused.text
    accepted = core.reply(
        {"request_id": "req_1", "content": "", "tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]}
    )
    assert isinstance(accepted, Delivery)


def test_a_request_with_an_unusable_schema_is_answered_unsupported_at_once():
    core = WorkerCore("/s", WorkerInfo(modes=["agent"], tools=True))
    core.link_up(core.info)
    core.agent_waits({"wait_seconds": 30})
    bad = OutputFormat(type="json_schema", json_schema={"type": "objekt"})
    effects = core.request(RequestFrame(id="req_1", timeout=60, request=neutral(output_format=bad)))
    frames = [e.frame for e in effects]
    assert isinstance(frames[0], ErrorFrame) and frames[0].code == "unsupported"
    assert "not a valid JSON Schema" in frames[0].message
    assert frames[1:] == [Ready(slots=1)] and core.waiting == 1  # the agent waits on, its slot announced again
