"""Unit tests of tool-use emulation (``mcp_server/_emulation.py``): the prompt and the messages a
client without ``sampling.tools`` gets, and the parsing of a model's text answer back into calls;
plus the pieces around it (the worker's ``tools`` flag, the CLI switch, when emulation applies)."""

from __future__ import annotations

import itertools
import json
import re

import mcp_types as types
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_server import _emulation as emulation
from mcp_server._client import ClientState, Settings
from mcp_server._sampling import emulates_tools
from mcp_server.cli import parse_args
from shared_protocol import (
    ImageBlock,
    Message,
    NeutralRequest,
    TextBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolSpec(name="get_time", input_schema={"type": "object", "properties": {}})
NAMES = ["get_weather", "get_time"]


def request(
    messages: list[Message] | None = None,
    tools: list[ToolSpec] | None = None,
    tool_choice: ToolChoice | None = None,
    system: str | None = "Be brief.",
) -> NeutralRequest:
    return NeutralRequest(
        system=system,
        messages=messages or [Message(role="user", content=[TextBlock(text="weather in Paris?")])],
        tools=[WEATHER, TIME] if tools is None else tools,
        tool_choice=tool_choice,
        max_tokens=100,
    )


def counter_ids():
    numbers = itertools.count(1)
    return lambda: f"call_{next(numbers)}"


def call(name: str = "get_weather", arguments: object = None, **extra: object) -> str:
    body = {"name": name, "arguments": {"city": "Paris"} if arguments is None else arguments, **extra}
    return f"<tool_call>{json.dumps(body)}</tool_call>"


# --- the prompt -------------------------------------------------------------------------------


def test_system_prompt_is_the_callers_followed_by_the_tools_and_the_format():
    system = emulation.system_prompt(request())
    assert system.startswith("Be brief.\n\n# Tools\n")
    lines = system.splitlines()
    listed = lines[lines.index("<tools>") + 1 : lines.index("</tools>")]
    assert [json.loads(line) for line in listed] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": WEATHER.input_schema,
        },
        {"name": "get_time", "parameters": TIME.input_schema},
    ]
    assert '<tool_call>{"name": "TOOL_NAME", "arguments": {...}}</tool_call>' in lines
    assert "Write nothing after the last block" in system
    assert "Call a tool only when it helps" in system


def test_without_a_caller_system_prompt_the_tool_section_is_the_system_prompt():
    assert emulation.system_prompt(request(system=None)).startswith("# Tools\n")


def test_tool_choice_required_and_named_are_said_in_the_prompt():
    required = emulation.system_prompt(request(tool_choice=ToolChoice(mode="required")))
    assert "You must call at least one tool in this answer." in required
    named_request = request(tool_choice=ToolChoice(mode="required", name="get_time"))
    named = emulation.system_prompt(named_request)
    assert "You must call the tool get_time in this answer." in named
    assert '"get_weather"' not in named  # only the demanded tool is offered, as on the native path
    assert [t.name for t in emulation.callable_tools(named_request)] == ["get_time"]


def test_tool_choice_none_describes_no_tool_as_callable():
    none = request(tool_choice=ToolChoice(mode="none"))
    system = emulation.system_prompt(none)
    assert "<tools>" not in system and "get_weather" not in system
    assert "You cannot call any tool now" in system
    assert emulation.callable_tools(none) == []
    # and a call written anyway is not a call
    assert emulation.parse_answer(call(), [t.name for t in emulation.callable_tools(none)]) == (call(), [])


def test_history_is_rendered_as_text_in_the_answer_format():
    messages = [
        Message(role="user", content=[TextBlock(text="weather in Oslo and Paris?")]),
        Message(
            role="assistant",
            content=[
                TextBlock(text="Checking both."),
                ToolUseBlock(id="call_1", name="get_weather", input={"city": "Oslo"}),
                ToolUseBlock(id="call_2", name="get_weather", input={"city": "Paris"}),
            ],
        ),
        Message(
            role="user",
            content=[
                ToolResultBlock(tool_use_id="call_1", content=[TextBlock(text="sunny")]),
                ToolResultBlock(tool_use_id="call_2", content=[TextBlock(text="no such city")], is_error=True),
                TextBlock(text="and now?"),
            ],
        ),
    ]
    system, sampled = emulation.render(request(messages))
    assert system == emulation.system_prompt(request(messages))
    assert [m.role for m in sampled] == ["user", "assistant", "user"]
    assert all(isinstance(m.content, types.TextContent) for m in sampled)
    texts = [m.content.text for m in sampled]  # type: ignore[union-attr]
    assert texts[0] == "weather in Oslo and Paris?"
    assert texts[1] == (
        "Checking both.\n\n"
        '<tool_call id="call_1">{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n\n'
        '<tool_call id="call_2">{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    )
    assert texts[2] == (
        '<tool_result id="call_1" name="get_weather">\nsunny\n</tool_result>\n\n'
        '<tool_result id="call_2" name="get_weather" error="true">\nno such city\n</tool_result>\n\n'
        "and now?"
    )


def test_images_stay_images_even_inside_tool_results():
    png = ImageBlock(data="iVBORw0KGgo=", mime_type="image/png")
    messages = [
        Message(role="user", content=[TextBlock(text="look"), png]),
        Message(role="assistant", content=[ToolUseBlock(id="t1", name="screenshot", input={})]),
        Message(
            role="user",
            content=[ToolResultBlock(tool_use_id="t1", content=[TextBlock(text="here"), png, TextBlock(text="ok")])],
        ),
    ]
    sampled = emulation.sampling_messages(request(messages))
    first = sampled[0].content_as_list
    assert [b.type for b in first] == ["text", "image"]
    result = sampled[2].content_as_list
    assert [b.type for b in result] == ["text", "image", "text"]
    assert result[0].text == '<tool_result id="t1" name="screenshot">\nhere'  # type: ignore[union-attr]
    assert result[2].text == "ok\n</tool_result>"  # type: ignore[union-attr]


def test_a_result_whose_call_is_not_in_the_history_still_renders_and_ids_are_quoted():
    messages = [Message(role="user", content=[ToolResultBlock(tool_use_id='we"ird', content=[])])]
    (only,) = emulation.sampling_messages(request(messages))
    assert only.content_as_list[0].text == '<tool_result id="we\\"ird">\n</tool_result>'  # type: ignore[union-attr]


def test_emulation_applies_to_tools_or_tool_history_and_only_without_sampling_tools():
    plain = request(tools=[])
    history = request(
        [
            Message(role="assistant", content=[ToolUseBlock(id="c", name="f", input={})]),
            Message(role="user", content=[ToolResultBlock(tool_use_id="c", content=[TextBlock(text="x")])]),
        ],
        tools=[],
    )
    assert not emulation.has_tool_history(plain) and emulation.has_tool_history(history)
    assert emulates_tools(request(), sampling_tools=False)
    assert not emulates_tools(request(), sampling_tools=True)
    assert not emulates_tools(plain, sampling_tools=False)
    assert emulates_tools(history, sampling_tools=False)
    assert not emulates_tools(history, sampling_tools=False, tool_emulation=False)
    # a request with tools that reached a worker anyway is emulated rather than failed
    assert emulates_tools(request(), sampling_tools=False, tool_emulation=False)


# --- parsing answers --------------------------------------------------------------------------


def test_a_well_formed_call_is_a_call_with_a_fresh_id():
    text, calls = emulation.parse_tool_calls(call(), NAMES)
    assert text == ""
    (only,) = calls
    assert only.name == "get_weather" and only.input == {"city": "Paris"}
    assert re.fullmatch(r"call_[0-9a-f]{24}", only.id)
    assert emulation.parse_tool_calls(call(), NAMES)[1][0].id != only.id


def test_several_calls_are_parallel_calls_and_prose_before_them_is_the_text():
    answer = f"I'll check both cities.\n\n{call()}\n{call(arguments={'city': 'Oslo'})}\n"
    text, calls = emulation.parse_tool_calls(answer, NAMES, counter_ids())
    assert text == "I'll check both cities."
    assert [(c.id, c.input) for c in calls] == [("call_1", {"city": "Paris"}), ("call_2", {"city": "Oslo"})]


def test_prose_between_and_after_calls_and_invented_results_are_dropped():
    answer = (
        f"First this. {call()} and then {call('get_time', {})} Hope that helps!"
        f'<tool_result id="x">made up</tool_result>{call(arguments={"city": "Rome"})}'
    )
    text, calls = emulation.parse_tool_calls(answer, NAMES)
    assert text == "First this."
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_time", {})]


def test_tolerated_variations_of_the_block():
    variants = [
        '<tool_call id="call_9">{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        '<tool_call>\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```\n</tool_call>',
        '<tool_call>\n  {"name": "get_weather",\n   "arguments": {"city": "Paris"}}\n</tool_call>',
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}',  # stopped before the closer
        'Sure:\n```xml\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n```',
    ]
    for answer in variants:
        text, calls = emulation.parse_tool_calls(answer, NAMES)
        assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"})], answer
        assert text in ("", "Sure:"), answer


def test_missing_arguments_mean_no_arguments():
    _, (only,) = emulation.parse_tool_calls('<tool_call>{"name": "get_time"}</tool_call>', NAMES)
    assert only.input == {}


def test_an_answer_without_calls_is_all_text():
    for answer in ["Paris is sunny.", "", "Use <tool_calls> in XML", '{"name": "get_weather", "arguments": {}}']:
        assert emulation.parse_tool_calls(answer, NAMES) == (answer, [])


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>', "not valid JSON"),
        ("<tool_call>{'name': 'get_weather', 'arguments': {}}</tool_call>", "not valid JSON"),
        ("I will use <tool_call> blocks for this.", "not valid JSON"),
        ('<tool_call>{"name": "get_weather", "arguments": {}} extra</tool_call>', "text after its JSON"),
        ('<tool_call>["get_weather", {}]</tool_call>', "not a JSON object"),
        (call("delete_everything"), "did not offer"),
        ('<tool_call>{"arguments": {}}</tool_call>', "no tool name"),
        (call(arguments='{"city": "Paris"}'), "not a JSON object"),
        (call(arguments=["Paris"]), "not a JSON object"),
        (call(id="call_1"), "keys other than"),
        ('<tool_call>{"name": "get_weather", "parameters": {"city": "Paris"}}</tool_call>', "keys other than"),
        (call() + "\n" + call("nope"), "tool call 2"),
    ],
)
def test_an_unusable_call_is_reported_and_the_whole_answer_falls_back_to_text(answer, why):
    with pytest.raises(emulation.MalformedToolCall, match=why) as caught:
        emulation.parse_tool_calls(answer, NAMES)
    assert "Paris" not in str(caught.value) and "delete_everything" not in str(caught.value)  # never quotes
    assert emulation.parse_answer(answer, NAMES) == (answer, [])


def test_deeply_nested_arguments_do_not_crash():
    answer = '<tool_call>{"name": "get_weather", "arguments": ' + "[" * 100_000 + "</tool_call>"
    assert emulation.parse_answer(answer, NAMES) == (answer, [])


@given(st.text())
def test_parsing_arbitrary_text_never_raises_anything_else(answer):
    text, calls = emulation.parse_answer(answer, NAMES)
    assert isinstance(text, str)
    assert all(c.name in NAMES and isinstance(c.input, dict) for c in calls)
    if not calls:
        assert text == answer


@given(
    st.text(alphabet=st.characters(blacklist_characters="<`")),
    st.lists(
        st.tuples(
            st.sampled_from(NAMES),
            st.dictionaries(st.text(), st.one_of(st.none(), st.integers(), st.text()), max_size=3),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_rendered_calls_parse_back(prose, wanted):
    answer = prose + "".join(call(name, arguments) for name, arguments in wanted)
    text, calls = emulation.parse_tool_calls(answer, NAMES)
    assert text == prose.strip()
    assert [(c.name, c.input) for c in calls] == wanted


# --- the worker's flag and the switch ---------------------------------------------------------


def test_a_sampling_worker_takes_tools_with_emulation_on_and_not_with_it_off():
    def sampling_client(tool_emulation: bool, sampling_tools: bool = False) -> ClientState:
        client = ClientState(Settings(concurrency=2, model_name=None, mode="auto", tool_emulation=tool_emulation))
        client.sampling, client.sampling_tools, client.session = True, sampling_tools, object()  # type: ignore[assignment]
        return client

    assert sampling_client(True).info().tools
    assert not sampling_client(False).info().tools
    assert sampling_client(False, sampling_tools=True).info().tools
    agent_only = ClientState(Settings(concurrency=2, model_name=None, mode="auto", tool_emulation=False))
    assert agent_only.info().tools  # agents always can
    assert Settings(concurrency=1, model_name=None, mode="auto").tool_emulation  # on by default


def test_the_switch_reads_the_flag_and_the_environment(monkeypatch):
    monkeypatch.delenv("MCPTB_TOOL_EMULATION", raising=False)
    assert parse_args([]).tool_emulation == "on"
    assert parse_args(["--tool-emulation", "off"]).tool_emulation == "off"
    monkeypatch.setenv("MCPTB_TOOL_EMULATION", "OFF")
    assert parse_args([]).tool_emulation == "off"
    assert parse_args(["--tool-emulation", "on"]).tool_emulation == "on"
    monkeypatch.setenv("MCPTB_TOOL_EMULATION", "maybe")
    with pytest.raises(SystemExit):
        parse_args([])
