"""The OpenAI Agents SDK with an ``output_type`` against the relay, on both of its model classes (the
Responses model and the chat-completions model), answered by a sampling worker whose scripted model
gets the format wrong once. The SDK is asyncio-only: it runs in its own loop in a thread, so the test's
own loop (asyncio or trio) keeps serving the relay."""

from __future__ import annotations

import asyncio

import anyio
import pydantic
import pytest

from _scripted import FixedAnswerModel
from conftest import mcp_worker

pytestmark = pytest.mark.anyio


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


def run_agent(base_url: str, model_class: str) -> object:
    from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # the SDK would otherwise export traces to OpenAI

    async def main() -> object:
        # closed here, in its own loop: left to the garbage collector it would close in a later test's loop
        async with AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30) as client:
            model_type = OpenAIResponsesModel if model_class == "responses" else OpenAIChatCompletionsModel
            agent = Agent(
                name="forecaster",
                instructions="Report the weather.",
                model=model_type(model="m", openai_client=client),
                output_type=Weather,
            )
            result = await Runner.run(agent, "Weather in Oslo?")
            return result.final_output

    return asyncio.run(main())


@pytest.mark.parametrize("model_class", ["responses", "chat"])
async def test_an_agent_with_an_output_type_gets_its_object(relay, backend, model_class):
    model = FixedAnswerModel(answers=['{"city": "Oslo"}', '{"city": "Oslo", "celsius": -3}'])
    async with mcp_worker(relay, backend, model=model):
        output = await anyio.to_thread.run_sync(run_agent, relay.url + "/v1", model_class)
    assert output == Weather(city="Oslo", celsius=-3)
    assert len(model.requests) == 2  # the first answer missed celsius: one repair round
    assert "Report the weather." in (model.requests[0].system_prompt or "")
