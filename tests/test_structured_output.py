"""Structured output end to end: real SDK callers (openai ``parse()`` on chat and Responses, anthropic
``output_config.format``, litellm ``response_format``) against the relay and mcptb-server, answered by
background sampling with a scripted model that gets it wrong first (the repair round), never (the
caller's error), or right at once. The worker validates before anything is released."""

from __future__ import annotations

import json

import anthropic
import mcp_types as types
import openai
import pydantic
import pytest

from _scripted import MODEL, FixedAnswerModel
from conftest import in_thread, litellm, mcp_worker

pytestmark = pytest.mark.anyio


class Person(pydantic.BaseModel):
    name: str
    age: int


VALID = '{"name": "Ada", "age": 36}'
INVALID = '{"name": "Ada"}'  # misses age


def openai_client(relay) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def system_of(params: types.CreateMessageRequestParams) -> str:
    return params.system_prompt or ""


async def test_chat_parse_with_a_pydantic_model_gets_the_object_after_one_repair_round(relay, backend):
    model = FixedAnswerModel(answers=[INVALID, "```json\n" + VALID + "\n```"])
    async with mcp_worker(relay, backend, model=model):
        completion = await in_thread(
            openai_client(relay).chat.completions.parse,
            model="m",
            messages=[{"role": "user", "content": "Who wrote the first program?"}],
            response_format=Person,
        )
    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)
    assert completion.choices[0].message.content == '{"name":"Ada","age":36}'
    first, repair = model.requests
    assert '"required"' in system_of(first) and "exactly one JSON value" in system_of(first)
    assert [m.role for m in repair.messages] == ["user", "assistant", "user"]
    assert "'age' is a required property" in repair.messages[-1].content_as_list[0].text


async def test_a_stream_releases_the_structured_answer_only_once_valid(relay, backend):
    model = FixedAnswerModel(answers=[INVALID, VALID])
    async with mcp_worker(relay, backend, model=model):

        def stream() -> list[str]:
            with openai_client(relay).chat.completions.stream(
                model="m", messages=[{"role": "user", "content": "who?"}], response_format=Person
            ) as events:
                return [e.delta for e in events if e.type == "content.delta"]

        deltas = await in_thread(stream)
    assert "".join(deltas) == '{"name":"Ada","age":36}'  # the invalid first answer never reached the caller


async def test_an_answer_that_never_fits_is_an_error_not_a_wrong_200(relay, backend):
    model = FixedAnswerModel(answers=[INVALID])
    async with mcp_worker(relay, backend, "--repair-rounds", "2", model=model):
        with pytest.raises(openai.APIStatusError) as error:
            await in_thread(
                openai_client(relay).chat.completions.parse,
                model="m",
                messages=[{"role": "user", "content": "who?"}],
                response_format=Person,
            )
    assert error.value.status_code == 422
    assert "after 2 repair rounds" in error.value.message and "'age' is a required property" in error.value.message
    assert len(model.requests) == 3


async def test_responses_parse_gets_the_object_and_the_response_reports_the_format(relay, backend):
    async with mcp_worker(relay, backend, model=FixedAnswerModel(answers=[VALID])):
        response = await in_thread(openai_client(relay).responses.parse, model="m", input="who?", text_format=Person)
    assert response.output_parsed == Person(name="Ada", age=36)
    assert response.text.format.type == "json_schema" and response.text.format.name == "Person"


async def test_anthropic_output_config_format(relay, backend):
    model = FixedAnswerModel(answers=["Here you go: " + VALID, VALID])
    async with mcp_worker(relay, backend, model=model):
        client = anthropic.Anthropic(base_url=relay.url, api_key="unused", max_retries=0, timeout=30)
        message = await in_thread(
            client.messages.create,
            model="m",
            max_tokens=200,
            messages=[{"role": "user", "content": "who?"}],
            output_config={"format": {"type": "json_schema", "schema": Person.model_json_schema()}},
        )
    assert json.loads(message.content[0].text) == {"name": "Ada", "age": 36}
    assert len(model.requests) == 2  # the prose around the JSON cost one repair round


async def test_litellm_response_format_json_object(relay, backend):
    async with mcp_worker(relay, backend, model=FixedAnswerModel(answers=["[1, 2]", '{"ok": true}'])):
        response = await in_thread(
            litellm().completion,
            model="openai/m",
            api_base=relay.url + "/v1",
            api_key="unused",
            num_retries=0,
            messages=[{"role": "user", "content": "Answer in JSON."}],
            response_format={"type": "json_object"},
        )
    assert json.loads(response.choices[0].message.content) == {"ok": True}
    assert response.model.endswith(MODEL)


async def weather_call_arguments(relay, strict: bool = False) -> dict:
    """Ask for the weather with a get_weather tool whose city is required; the one call's arguments."""
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": strict,
        },
    }
    completion = await in_thread(
        openai_client(relay).chat.completions.create,
        model="m",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[weather],
    )
    (call,) = completion.choices[0].message.tool_calls
    return json.loads(call.function.arguments)


async def test_a_tool_call_missing_a_required_argument_goes_back_to_the_model(relay, backend):
    """A native tool call (client with sampling.tools) whose arguments miss a required field is answered
    with a tool result that says so; the corrected call is what the caller gets."""
    calls = [{}, {"city": "Paris"}]

    async def sampling(ctx, params):
        arguments = calls[min(len(seen), 1)]
        seen.append(params)
        return types.CreateMessageResultWithTools(
            role="assistant",
            model=MODEL,
            stop_reason="toolUse",
            content=[types.ToolUseContent(id=f"call_{len(seen)}", name="get_weather", input=arguments)],
        )

    seen: list[types.CreateMessageRequestParams] = []
    async with mcp_worker(relay, backend, model=sampling, sampling_tools=True):
        arguments = await weather_call_arguments(relay, strict=True)
    assert arguments == {"city": "Paris"}
    repair = seen[1].messages[-1].content_as_list[0]
    assert repair.type == "tool_result" and repair.is_error
    assert "'city' is a required property" in repair.content[0].text


async def test_an_unusable_schema_is_a_400_naming_the_problem(relay, backend):
    async with mcp_worker(relay, backend):
        with pytest.raises(openai.BadRequestError) as error:
            await in_thread(
                openai_client(relay).chat.completions.create,
                model="m",
                messages=[{"role": "user", "content": "who?"}],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "p", "schema": {"$ref": "https://example.com/person.json"}},
                },
            )
    assert "https://example.com/person.json" in error.value.message and "local references" in error.value.message


async def test_structured_output_with_emulated_tools(relay, backend):
    """A client without sampling.tools (tools emulated in the prompt) asked for JSON: both instructions
    reach the model, and its JSON answer is checked like any other."""
    model = FixedAnswerModel(answers=["I think " + VALID, VALID])
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
            "strict": True,
        },
    }
    async with mcp_worker(relay, backend, model=model, sampling_tools=False):
        completion = await in_thread(
            openai_client(relay).chat.completions.parse,
            model="m",
            messages=[{"role": "user", "content": "who?"}],
            response_format=Person,
            tools=[weather],
        )
    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)
    system = system_of(model.requests[0])
    assert "<tool_call>" in system and "exactly one JSON value" in system


async def test_an_emulated_tool_call_missing_a_required_argument_goes_back_to_the_model(relay, backend):
    """Tools emulated in the prompt (no sampling.tools): a written call that breaks the tool's schema is
    answered in text with what is wrong, and the corrected call is what the caller gets."""
    wrong = '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
    right = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    model = FixedAnswerModel(answers=[wrong, right])
    async with mcp_worker(relay, backend, model=model, sampling_tools=False):
        arguments = await weather_call_arguments(relay)
    assert arguments == {"city": "Paris"}
    repair = model.requests[1].messages[-1].content_as_list[0].text
    assert "were not run" in repair and "'city' is a required property" in repair
