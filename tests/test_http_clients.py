"""Real HTTP clients against the real relay and mcptb-server: the openai SDK, litellm and curl.

The openai SDK and litellm run synchronously in a worker thread (or, for ``acompletion``, in their
own asyncio loop in a thread) so the same test runs whether the test's own loop is asyncio or trio.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import anthropic
import openai
import pytest

from relay._usage import text_tokens

from _inprocess import relay_in_process
from _scripted import LONG_ANSWER, MODEL
from conftest import chat_body, in_thread, litellm, mcp_worker

pytestmark = pytest.mark.anyio

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def client(relay) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=30)


# --- openai SDK -------------------------------------------------------------------------------


async def test_openai_create_non_stream(relay, backend):
    async with mcp_worker(relay, backend):
        completion = await in_thread(
            client(relay).chat.completions.create,
            model="gpt-x",
            messages=[{"role": "user", "content": "hi sdk"}],
        )
    assert completion.choices[0].message.content == "echo: hi sdk"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.usage.total_tokens > 0


async def test_openai_create_stream(relay, backend):
    def run():
        stream = client(relay).chat.completions.create(
            model="gpt-x",
            messages=[{"role": "user", "content": "LONG"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    async with mcp_worker(relay, backend):
        chunks = await in_thread(run)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == LONG_ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == round(text_tokens(LONG_ANSWER))  # estimated as it arrived


async def test_openai_stream_helper_accumulates_text_and_tool_calls(relay, backend):
    def run():
        with client(relay).chat.completions.stream(
            model="gpt-x", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS
        ) as stream:
            for _ in stream:
                pass
            return stream.get_final_completion()

    async with mcp_worker(relay, backend, sampling_tools=True):
        final = await in_thread(run)
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me check."
    (call,) = message.tool_calls
    assert call.id == "call_scripted_1" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_openai_sdk_sees_relay_errors_with_their_message(relay, backend):
    async with relay_in_process(worker_grace=0) as lonely:
        with pytest.raises(openai.InternalServerError) as no_worker:
            await in_thread(
                client(lonely).chat.completions.create, model="m", messages=[{"role": "user", "content": "x"}]
            )
    assert no_worker.value.status_code == 503 and "claude mcp add" in no_worker.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        await in_thread(client(relay).chat.completions.create, model="m", messages=[])
    assert "non-empty" in bad.value.message

    def stream_refused():
        return list(
            client(relay).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "REFUSE"}], stream=True
            )
        )

    async with mcp_worker(relay, backend):
        with pytest.raises(openai.APIError) as mid_stream:
            await in_thread(stream_refused)
    assert "User rejected sampling request" in mid_stream.value.message


async def test_openai_models_list(relay, backend):
    async with mcp_worker(relay, backend, client_name="VS Code"):
        models = await in_thread(lambda: [m.id for m in client(relay).models.list()])
    assert models == ["vs-code"]


# --- litellm ----------------------------------------------------------------------------------


def litellm_kwargs(relay) -> dict:
    return {"model": "openai/gpt-x", "api_base": relay.url + "/v1", "api_key": "unused", "num_retries": 0}


async def test_litellm_completion_non_stream_and_stream(relay, backend):
    messages = [{"role": "user", "content": "hi litellm"}]

    def streamed():
        chunks = list(litellm().completion(messages=messages, stream=True, **litellm_kwargs(relay)))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        return text, finish

    async with mcp_worker(relay, backend):
        response = await in_thread(litellm().completion, messages=messages, **litellm_kwargs(relay))
        text, finish = await in_thread(streamed)
    assert response.choices[0].message.content == "echo: hi litellm"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.total_tokens > 0
    assert text == "echo: hi litellm" and finish == ["stop"]


async def test_litellm_acompletion_stream_with_tools(relay, backend):
    async def run():
        stream = await litellm().acompletion(
            messages=[{"role": "user", "content": "weather?"}],
            tools=TOOLS,
            stream=True,
            **litellm_kwargs(relay),
        )
        chunks = [c async for c in stream]
        whole = await litellm().acompletion(
            messages=[{"role": "user", "content": "weather?"}], tools=TOOLS, **litellm_kwargs(relay)
        )
        return chunks, whole

    async with mcp_worker(relay, backend, sampling_tools=True):
        chunks, whole = await in_thread(asyncio.run, run())
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    (call,) = whole.choices[0].message.tool_calls
    assert whole.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"}


async def test_litellm_error_mapping(backend):
    async with relay_in_process(worker_grace=0) as relay:
        with pytest.raises(litellm().ServiceUnavailableError) as error:
            await in_thread(litellm().completion, messages=[{"role": "user", "content": "x"}], **litellm_kwargs(relay))
    assert "No MCP server connected" in str(error.value)


# --- curl -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.real
async def test_curl_stream_and_non_stream(relay, backend):
    def curl(body: bytes) -> str:
        result = subprocess.run(
            [
                "curl",
                "-sS",
                "-N",
                "--fail-with-body",
                relay.url + "/v1/chat/completions",
                "-H",
                "content-type: application/json",
                "--data-binary",
                "@-",
            ],
            input=body,
            capture_output=True,
            timeout=30,
            check=True,
        )
        return result.stdout.decode()

    async with mcp_worker(relay, backend):
        whole = json.loads(await in_thread(curl, chat_body("hi curl")))
        streamed = await in_thread(curl, chat_body("hi curl", stream=True))
    assert whole["choices"][0]["message"]["content"] == "echo: hi curl"
    assert streamed.endswith("data: [DONE]\n\n")
    assert '"content":"echo: hi curl"' in streamed


@pytest.mark.parametrize("client", ["litellm Router", "openai", "anthropic"])
async def test_no_client_asks_a_model_that_failed_again(relay, backend, client):
    """The MCP client's model failed on this input (MCP error -32603): each client, with its default retries
    (litellm's Router with num_retries=2, the SDKs' max_retries 2), reports the error after one model turn
    instead of paying for three (the Router retried the 502 this used to be twice)."""
    prompt = [{"role": "user", "content": "FAIL please"}]
    deployment = {"model": "openai/gpt-x", "api_base": relay.url + "/v1", "api_key": "unused"}
    calls = {
        "litellm Router": lambda: (
            litellm()
            .Router(model_list=[{"model_name": "m", "litellm_params": deployment}], num_retries=2)
            .completion(model="m", messages=prompt)
        ),
        "openai": lambda: openai.OpenAI(base_url=relay.url + "/v1", api_key="unused").chat.completions.create(
            model="m", messages=prompt
        ),
        "anthropic": lambda: anthropic.Anthropic(base_url=relay.url, api_key="unused").messages.create(
            model="m", max_tokens=50, messages=prompt
        ),
    }
    async with mcp_worker(relay, backend) as worker:
        with pytest.raises(Exception) as error:
            await in_thread(calls[client])
    assert "The model failed on this input" in str(error.value)
    assert getattr(error.value, "status_code", None) == 424
    assert len(worker.model.requests) == 1


async def test_litellm_does_not_ask_a_user_who_declined_again(relay, backend):
    """A declined sampling request is a 422: litellm's Router (num_retries=2) reports it at once instead
    of sending it twice more, which would ask the user twice more (it did with a 502, and with a 403)."""
    deployment = {"model": "openai/gpt-x", "api_base": relay.url + "/v1", "api_key": "unused"}
    router = litellm().Router(model_list=[{"model_name": "m", "litellm_params": deployment}], num_retries=2)
    async with mcp_worker(relay, backend) as worker:
        with pytest.raises(Exception) as error:
            await in_thread(router.completion, model="m", messages=[{"role": "user", "content": "REFUSE please"}])
    assert "User rejected sampling request" in str(error.value)
    assert len(worker.model.requests) == 1
