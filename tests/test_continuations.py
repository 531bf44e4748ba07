"""Continuations end to end, through the relay, mcptb-server and real SDKs: OpenAI Responses
``previous_response_id`` with the openai SDK (text turns, a function call answered by a
``function_call_output``, an unknown id), and Anthropic message threads as the SDKs' default tool
runners use them: the Python ``anthropic`` SDK's ``tool_runner`` and the TypeScript
``@anthropic-ai/sdk``'s ``toolRunner`` (node), with the store on, off, and losing the thread. The store
alone and each adapter's rules are unit-tested in test_unit_store.py and test_unit_api_*.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import anthropic
import anyio
import mcp_types as types
import openai
import pytest

from _http_client import get_json
from _inprocess import relay_in_process
from _scripted import MODEL, ScriptedModel
from conftest import ROOT, in_thread, mcp_worker, say

pytestmark = pytest.mark.anyio

RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": False,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@dataclass
class ToolThenAnswerModel(ScriptedModel):
    """Calls the first tool offered (as :class:`ScriptedModel` does), but answers a turn that brings tool
    results with ``done: <their text>``: a tool loop that ends."""

    async def __call__(self, ctx: Any, params: types.CreateMessageRequestParams) -> Any:
        last = params.messages[-1].content_as_list
        results = [block for block in last if isinstance(block, types.ToolResultContent)]
        if not results:
            return await super().__call__(ctx, params)
        self.requests.append(params)
        text = " ".join(c.text for r in results for c in r.content if isinstance(c, types.TextContent))
        return types.CreateMessageResult(
            role="assistant", model=MODEL, stop_reason="endTurn", content=types.TextContent(text=f"done: {text}")
        )


def shape(params: types.CreateMessageRequestParams) -> list[tuple[str, list[str]]]:
    return [(m.role, [b.type for b in m.content_as_list]) for m in params.messages]


PAIRED = [("user", ["text"]), ("assistant", ["text", "tool_use"]), ("user", ["tool_result"])]
"""What the model must get on a tool loop's second turn: the call, then its result."""


async def stored(relay) -> int:
    return int((await get_json(relay.url + "/health"))["stored_conversations"]["count"])


# --- OpenAI Responses: previous_response_id ----------------------------------------------------


def openai_client(relay) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=30)


async def test_responses_previous_response_id_continues_a_conversation(relay, backend):
    client = openai_client(relay)
    async with mcp_worker(relay, backend) as worker:
        first = await in_thread(client.responses.create, model="gpt-x", instructions="Be brief.", input="hi there")
        second = await in_thread(
            client.responses.create, model="gpt-x", input="and then?", previous_response_id=first.id
        )
    assert first.output_text == "echo: hi there" and second.output_text == "echo: and then?"
    assert second.previous_response_id == first.id
    later = worker.model.requests[1]
    texts = [[b.text for b in m.content_as_list] for m in later.messages]
    assert texts == [["hi there"], ["echo: hi there"], ["and then?"]]
    assert later.system_prompt is None  # instructions are not carried over (OpenAI's rule)


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_function_call_output_continues_the_call(relay, backend, stream):
    client = openai_client(relay)

    def first_turn():
        if not stream:
            return client.responses.create(model="gpt-x", input="weather?", tools=RESPONSES_TOOLS)
        with client.responses.stream(model="gpt-x", input="weather?", tools=RESPONSES_TOOLS) as events:
            for _ in events:
                pass
            return events.get_final_response()

    model = ToolThenAnswerModel()
    async with mcp_worker(relay, backend, model=model, sampling_tools=True):
        first = await in_thread(first_turn)
        (call,) = [item for item in first.output if item.type == "function_call"]
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny in Paris"}
        second = await in_thread(
            client.responses.create, model="gpt-x", input=[output], tools=RESPONSES_TOOLS, previous_response_id=first.id
        )
    assert second.output_text == "done: sunny in Paris"
    assert shape(model.requests[1]) == PAIRED


async def test_responses_unknown_previous_response_id_is_openais_error(relay, backend):
    async with mcp_worker(relay, backend) as worker:
        with pytest.raises(openai.BadRequestError) as raised:
            await in_thread(
                openai_client(relay).responses.create, model="gpt-x", input="x", previous_response_id="resp_0"
            )
    error = raised.value
    assert error.status_code == 400 and error.code == "previous_response_not_found"
    assert error.param == "previous_response_id" and error.type == "invalid_request_error"
    assert error.body["message"] == "Previous response with id 'resp_0' not found."
    assert worker.model.requests == []


# --- Anthropic message threads: the Python SDK's tool runner -----------------------------------


def threading_sdk() -> None:
    if not getattr(anthropic.Anthropic, "_supports_message_threads", False):
        pytest.skip(f"anthropic {anthropic.__version__} has no message threads (2.15 does)")


@anthropic.beta_tool
def get_weather(city: str) -> str:
    """Weather for a city"""
    return f"sunny in {city}"


def run_tool_runner(url: str, stream: bool) -> list[Any]:
    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0, timeout=30)
    runner = client.beta.messages.tool_runner(
        model="claude-x",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[get_weather],
        stream=stream,
    )
    return [item.get_final_message() if stream else item for item in runner]


@pytest.mark.parametrize("stream", [False, True])
async def test_python_sdk_tool_runner_continues_its_thread(relay, backend, stream):
    threading_sdk()
    model = ToolThenAnswerModel()
    async with mcp_worker(relay, backend, model=model, sampling_tools=True):
        messages = await in_thread(run_tool_runner, relay.url, stream)
        kept = await stored(relay)
    assert [m.stop_reason for m in messages] == ["tool_use", "end_turn"]
    assert messages[-1].content[0].text == "done: sunny in Paris"
    assert shape(model.requests[1]) == PAIRED and model.requests[1].system_prompt == "Be brief."
    assert kept == 2  # both turns went over the thread: created, then continued


async def test_python_sdk_tool_runner_without_a_store_goes_on_unthreaded(backend):
    threading_sdk()
    model = ToolThenAnswerModel()
    async with (
        relay_in_process(store_conversations=0) as relay,
        mcp_worker(relay, backend, model=model, sampling_tools=True),
    ):
        messages = await in_thread(run_tool_runner, relay.url, False)
    assert [m.stop_reason for m in messages] == ["tool_use", "end_turn"]
    assert shape(model.requests[1]) == PAIRED


async def test_python_sdk_tool_runner_replays_a_thread_the_relay_lost(backend):
    threading_sdk()
    model = ToolThenAnswerModel()
    # a store too small for any conversation: every continue is thread_not_found, and the SDK replays
    async with relay_in_process(store_bytes=10) as relay, mcp_worker(relay, backend, model=model, sampling_tools=True):
        messages = await in_thread(run_tool_runner, relay.url, False)
    assert [m.stop_reason for m in messages] == ["tool_use", "end_turn"]
    assert shape(model.requests[1]) == PAIRED and len(model.requests) == 2
    assert "status=404" in relay.log, relay.log  # the continue, answered thread_not_found


# --- Anthropic message threads: the TypeScript SDK's tool runner (node) ------------------------

NODE_DIR = ROOT / "tests" / "node"


def node_reason() -> str | None:
    if shutil.which("node") is None:
        return "SKIPPED: node not found - the TypeScript Anthropic SDK thread test did not run"
    if not (NODE_DIR / "node_modules" / "@anthropic-ai" / "sdk").is_dir():
        return (
            "SKIPPED: tests/node/node_modules/@anthropic-ai/sdk is missing (run: cd tests/node && npm install "
            "--no-audit --no-fund) - the TypeScript Anthropic SDK thread test did not run"
        )
    return None


async def ts_tool_runner(url: str, *mode: str) -> list[dict[str, Any]]:
    done = await anyio.run_process(
        ["node", str(NODE_DIR / "thread_tool_runner.mjs"), url, *mode], check=False, stderr=subprocess.STDOUT
    )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines[-1] == {"event": "done"}, done.stdout.decode()
    return lines[:-1]


@pytest.mark.node
@pytest.mark.parametrize("mode", [(), ("stream",)], ids=["whole", "stream"])
async def test_typescript_sdk_tool_runner_continues_its_thread(request, relay, backend, mode):
    reason = node_reason()
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    model = ToolThenAnswerModel()
    async with mcp_worker(relay, backend, model=model, sampling_tools=True):
        messages = await ts_tool_runner(relay.url, *mode)
        kept = await stored(relay)
    assert [m["stop_reason"] for m in messages] == ["tool_use", "end_turn"]
    assert messages[-1]["content"] == [{"type": "text", "text": "done: sunny in Paris"}]
    assert shape(model.requests[1]) == PAIRED and model.requests[1].system_prompt == "Be brief."
    assert kept == 2
