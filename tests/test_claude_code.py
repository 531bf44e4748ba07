"""The real Claude Code CLI as the MCP client, offline: HTTP caller -> relay -> mcptb-server -> Claude Code.

Claude Code does not implement MCP sampling, so it answers through the agent-pull tools: its agent calls
``next_request`` (which waits for an HTTP request and returns it rendered as text) and ``reply``. Its
model is ``tests/claude_code/fake_model.py``, a scripted fake Anthropic API that plays that agent
deterministically (call next_request; reply ``claude-code answered: <last user text>``; say ``served one
request``). Each test gets a fresh HOME and project directory, registers the bridge with
``claude mcp add mcptb -- <python> -m mcp_server --socket <relay socket> --backend <backend>``, and runs
``claude -p`` with only the bridge's tools.

Runs against the newest Claude Code (MCP 2026-07-28 era, no ``initialize``) and 2.1.197 (2025 era), both
installed by npm into ``tests/node``. Without node, npm or the installed CLI the tests skip, loudly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import openai
import pydantic
import pytest
from claude_code.fake_model import ANSWER_PREFIX, GAVE_UP, NEXT_REQUEST, REPLY, SERVED, result_text
from claude_code.harness import ClaudeCode, FakeModelProcess, Run

from _eventually import eventually
from _http_client import get_json
from conftest import RelayProcess, litellm, no_workers, say

pytestmark = [pytest.mark.anyio, pytest.mark.node]


@pytest.fixture
def relay(relay_process):
    """Real clients meet the real relay process, as users run it."""
    return relay_process


SERVER_NAME = "mcptb"
SERVE = f"mcp__{SERVER_NAME}__serve"
MODEL_ID = "claude-code"
QUESTION = "What is 6*7?"
PROMPT = "Serve one request from the bridge"
# the MCP protocol era each Claude Code version negotiates with an mcp 2.3 server
ERAS = {"newest": "2026-07-28", "2.1.197": "2025-11-25"}


def _diagnostics(run: Run | None, fake: FakeModelProcess, relay: RelayProcess) -> str:
    decisions = [(r["n"], r["decision"]) for r in fake.messages_requests]
    relay_log = "".join(line for line in relay.log_lines if " GET /health " not in line)
    return (
        f"{run.describe() if run else 'claude -p did not finish'}\n--- fake model decisions ---\n{decisions}\n"
        f"--- fake model stderr ---\n{fake.stderr}\n--- relay log (without /health) ---\n{relay_log}"
    )


def _tool_results(request: dict[str, Any]) -> list[str]:
    """The tool_result texts in the last user message of a logged /v1/messages request."""
    users = [m for m in request["body"]["messages"] if m["role"] == "user"]
    content = users[-1]["content"] if users else []
    return [result_text(b) for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


async def _wait_for_worker(relay: RelayProcess, claude_done: anyio.Event, timeout: float = 60) -> dict[str, Any]:
    """Poll /health until Claude Code's mcptb-server is connected and has told the relay who its client
    is (it connects when it starts and learns the client from the first MCP message)."""

    async def known() -> dict[str, Any] | None:
        if claude_done.is_set():
            raise AssertionError("Claude Code ended before its MCP server showed up in the relay's /health")
        seen = (await get_json(relay.url + "/health"))["workers"]
        return dict(seen[0]) if seen and seen[0]["client"]["name"] is not None else None

    return await eventually(known, timeout=timeout, what="Claude Code's MCP server in /health, its client known")


async def _wait_for_no_worker(relay: RelayProcess, timeout: float = 15) -> None:
    await eventually(lambda: no_workers(relay), timeout=timeout, what="Claude Code's MCP server gone")


@dataclass
class Served:
    answer: Any
    """What the caller function returned."""
    round_trip: float
    """Seconds from the caller's start to its complete answer."""
    run: Run
    worker: dict[str, Any]
    """The worker as /health showed it while Claude Code was running."""
    fake: FakeModelProcess


async def _serve_one(
    request: pytest.FixtureRequest,
    relay: RelayProcess,
    backend: str,
    claude: ClaudeCode,
    fake: FakeModelProcess,
    caller: Callable[[], Any],
    label: str,
    prompt: str = PROMPT,
    launch: Callable[[], Run] | None = None,
) -> Served:
    """Register the bridge, start ``claude -p`` (or ``launch`` it some other way, in a thread), call the
    relay once Claude Code's worker is connected (it is then queued until the agent's next_request takes
    it), and wait for both ends."""
    claude.model_url = fake.url

    def print_mode() -> Run:
        return claude.print_mode(prompt, NEXT_REQUEST, REPLY, timeout=120)

    if launch is None:
        claude.mcp_add_bridge(relay.socket, backend)
    run: Run | None = None
    claude_done = anyio.Event()
    failure: list[Exception] = []

    async def run_claude() -> None:
        nonlocal run
        try:
            run = await anyio.to_thread.run_sync(launch or print_mode)
        except Exception as caught:
            failure.append(caught)
        finally:
            claude_done.set()

    answer: Any = None
    round_trip = 0.0
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_claude)
        try:
            worker = await _wait_for_worker(relay, claude_done)
            started = time.monotonic()
            answer = await anyio.to_thread.run_sync(caller)
            round_trip = time.monotonic() - started
        except Exception as caught:
            error = caught
            claude.close()  # do not wait for the agent's next_request to time out
        await claude_done.wait()
    if error is not None or failure:
        first = error or failure[0]
        raise AssertionError(f"{type(first).__name__}: {first}\n{_diagnostics(run, fake, relay)}") from first
    assert run is not None
    say(
        request.config,
        f"[Claude Code {claude.version}, {backend}, {label}] round trip (caller start -> caller done): "
        f"{round_trip:.2f} s; claude -p wall: {run.wall:.2f} s",
    )
    return Served(answer, round_trip, run, worker, fake)


def _check_claude_side(
    served: Served, claude: ClaudeCode, relay: RelayProcess, question: str, finished: bool = True
) -> None:
    """Claude Code connected the bridge and served ``question``; ``finished``: and then ended by itself
    (False: a session that goes on serving, kept by mcptb-serve's Stop hook)."""
    run, fake = served.run, served.fake
    why = _diagnostics(run, fake, relay)
    init = run.init
    assert {"name": SERVER_NAME, "status": "connected"}.items() <= init["mcp_servers"][0].items(), why
    if finished:  # it saw the bridge's two tools and its prompt, and finished cleanly
        assert run.returncode == 0, why
        assert {NEXT_REQUEST, REPLY} <= set(init["tools"]), why
        assert SERVE in init["slash_commands"], why
        result = run.result
        assert result["subtype"] == "success" and not result["is_error"], why
        assert result["result"] == SERVED, why
    # the relay knew the worker as Claude Code, in the protocol era of its version
    assert served.worker["client"]["name"] == MODEL_ID, served.worker
    assert served.worker["client"]["version"] == claude.version, served.worker
    assert served.worker["protocol_version"] == ERAS[claude.label], served.worker
    # the fake model got next_request's rendering of the HTTP request as a tool_result
    decisions = [r["decision"] for r in fake.messages_requests]
    served_first = [d.get("name", d.get("text")) for d in decisions][: None if finished else 3]
    assert served_first == [NEXT_REQUEST, REPLY, SERVED], why
    rendered = _tool_results(fake.messages_requests[1])
    assert len(rendered) == 1 and rendered[0].startswith("request_id: req_"), why
    assert "\nconversation:" in rendered[0] and f"[user]\n{question}" in rendered[0], why
    request_id = rendered[0].splitlines()[0].removeprefix("request_id:").strip()
    assert decisions[1]["input"] == {"request_id": request_id, "content": ANSWER_PREFIX + question}, why
    (delivered,) = _tool_results(fake.messages_requests[2])
    assert delivered.startswith("Delivered"), why


# --- the tests ---------------------------------------------------------------------------------------


async def test_claude_mcp_list_shows_the_bridge_connected(claude, relay, backend):
    added = claude.mcp_add_bridge(relay.socket, backend)
    assert "Added stdio MCP server mcptb" in added.stdout, added.describe()
    listed = claude.run("mcp", "list", timeout=60)
    assert listed.returncode == 0, listed.describe()
    (line,) = [x for x in listed.stdout.splitlines() if x.startswith(f"{SERVER_NAME}: ")]
    assert line.endswith("Connected") and "Failed" not in line, listed.describe()
    assert f"-m mcp_server --socket {relay.socket} --backend {backend}" in line


async def test_openai_stream_is_served_by_claude_code(request, claude, relay, backend, fake_model):
    def caller() -> list[Any]:
        client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=90)
        stream = client.chat.completions.create(
            model=MODEL_ID, stream=True, messages=[{"role": "user", "content": QUESTION}]
        )
        return list(stream)

    served = await _serve_one(request, relay, backend, claude, fake_model(), caller, "openai stream")
    chunks = served.answer
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == ANSWER_PREFIX + QUESTION
    assert finishes == ["stop"]
    assert {c.model for c in chunks} == {MODEL_ID}
    _check_claude_side(served, claude, relay, QUESTION)
    await _wait_for_no_worker(relay)  # the worker does not stay connected after Claude Code exited


async def test_litellm_is_served_by_claude_code(request, claude, relay, backend, fake_model):
    def caller() -> Any:
        return litellm().completion(
            model=f"openai/{MODEL_ID}",
            api_base=relay.url + "/v1",
            api_key="x",
            num_retries=0,
            timeout=90,
            messages=[{"role": "user", "content": QUESTION}],
        )

    served = await _serve_one(request, relay, backend, claude, fake_model(), caller, "litellm")
    response = served.answer
    assert response.choices[0].message.content == ANSWER_PREFIX + QUESTION
    assert response.choices[0].finish_reason == "stop"
    assert response.model == MODEL_ID
    _check_claude_side(served, claude, relay, QUESTION)


async def test_serve_slash_command_starts_the_loop(request, claude, relay, backend, fake_model):
    """``/mcp__mcptb__serve`` (the MCP prompt ``serve``) as the whole prompt: Claude Code fetches the
    prompt from mcptb-server, sends its text to the model, and the loop serves a non-streamed caller."""
    question = "Name a prime number."

    def caller() -> Any:
        client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=90)
        return client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": question}])

    served = await _serve_one(
        request, relay, backend, claude, fake_model(), caller, "openai, /serve", prompt=f"/{SERVE}"
    )
    completion = served.answer
    assert completion.choices[0].message.content == ANSWER_PREFIX + question
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL_ID
    _check_claude_side(served, claude, relay, question)
    first = served.fake.messages_requests[0]["body"]["messages"]
    prompt_text = json.dumps([m["content"] for m in first if m["role"] == "user"])
    assert f"/{SERVE}" in prompt_text and "next_request" in prompt_text, prompt_text


async def test_tool_calls_in_reply_reach_a_streaming_caller(request, claude, relay, backend, fake_model):
    """A multi-turn request that offers a tool: the rendering carries the system prompt, every turn and
    the tool; the agent answers with text plus a call of that tool through ``reply``'s tool_calls; the
    openai SDK's stream helper gets both, with finish_reason ``tool_calls``."""
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello. What do you need?"},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]

    def caller() -> Any:
        client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=90)
        with client.chat.completions.stream(model=MODEL_ID, messages=messages, tools=tools) as stream:
            for _ in stream:
                pass
            return stream.get_final_completion()

    served = await _serve_one(request, relay, backend, claude, fake_model(), caller, "openai stream, tools")
    why = _diagnostics(served.run, served.fake, relay)
    (choice,) = served.answer.choices
    assert choice.finish_reason == "tool_calls", served.answer
    assert choice.message.content == ANSWER_PREFIX + "Weather in Paris?", served.answer
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert served.answer.model == MODEL_ID
    assert served.run.returncode == 0 and served.run.result["result"] == SERVED, why
    (rendered,) = _tool_results(served.fake.messages_requests[1])
    assert "system prompt:\nBe terse.\n" in rendered, rendered
    turns = "[user]\nHi\n[assistant]\nHello. What do you need?\n[user]\nWeather in Paris?\n"
    assert f"conversation:\n{turns}" in rendered, rendered
    assert "- get_weather: Weather for a city" in rendered, rendered


async def test_reply_to_an_unknown_request_id_is_a_tool_error(request, claude, relay_factory, backend, fake_model):
    """The agent replies to an id it was not given: ``reply`` is a tool error that says what to do, the
    real request is not answered with it, and its caller gets an HTTP error within the relay's timeouts
    once Claude Code has exited (instead of an answer, or a hang)."""
    relay = relay_factory("--keepalive-interval", "0.5", "--queue-timeout", "5", "--request-timeout", "2")
    bogus = "req_0000000000000000bogus"

    def caller() -> Any:
        client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        try:
            return client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}])
        except openai.APIStatusError as error:
            return error

    fake = fake_model(FAKE_REPLY_REQUEST_ID=bogus)
    served = await _serve_one(request, relay, backend, claude, fake, caller, "reply to a wrong id")
    why = _diagnostics(served.run, fake, relay)
    assert isinstance(served.answer, openai.APIStatusError), served.answer
    assert served.answer.status_code in (503, 504), served.answer
    assert served.run.returncode == 0, why
    decisions = [r["decision"] for r in fake.messages_requests]
    assert [d.get("name") for d in decisions[:2]] == [NEXT_REQUEST, REPLY], why
    assert decisions[1]["input"]["request_id"] == bogus, why
    last = fake.messages_requests[2]["body"]["messages"][-1]["content"]
    (result,) = [b for b in last if b.get("type") == "tool_result"]
    assert result.get("is_error") is True, why
    assert bogus in result_text(result) and "next_request" in result_text(result), why


async def test_reply_after_the_caller_hung_up_is_a_tool_error(request, claude, relay, backend, fake_model):
    """The caller hangs up while the agent is writing its answer (the fake model thinks for 2 s before
    calling reply): ``reply`` is then a tool error naming the request, and Claude Code carries on."""
    fake = fake_model(FAKE_REPLY_DELAY="2")
    body = {"model": MODEL_ID, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}

    def caller() -> bytes:
        with httpx.stream("POST", relay.url + "/v1/chat/completions", json=body, timeout=60) as response:
            received = response.iter_bytes()  # kept: closing this generator would close the response
            first = next(received)
            deadline = time.monotonic() + 30
            while not any(r["decision"].get("name") == REPLY for r in fake.messages_requests):
                assert time.monotonic() < deadline, "the agent never called reply"
                time.sleep(0.05)
        return first  # leaving the block closed the connection before the reply

    served = await _serve_one(request, relay, backend, claude, fake, caller, "caller hangs up")
    why = _diagnostics(served.run, fake, relay)
    assert b'"role":"assistant"' in served.answer, served.answer
    assert served.run.returncode == 0, why
    decisions = [r["decision"] for r in fake.messages_requests]
    assert [d.get("name") for d in decisions[:2]] == [NEXT_REQUEST, REPLY], why
    request_id = decisions[1]["input"]["request_id"]
    last = fake.messages_requests[2]["body"]["messages"][-1]["content"]
    (result,) = [b for b in last if b.get("type") == "tool_result"]
    assert result.get("is_error") is True, why
    assert request_id in result_text(result) and "next_request" in result_text(result), why
    assert served.run.result["result"].startswith("tool error:"), why


async def test_next_request_without_a_caller_says_no_request_yet(claude, relay, backend, fake_model):
    """No HTTP caller: next_request returns after wait_seconds with a text that is not a request, the
    agent polls again (twice in all here), then gives up."""
    fake = fake_model(FAKE_WAIT_SECONDS="1", FAKE_MAX_POLLS="2")
    claude.model_url = fake.url
    claude.mcp_add_bridge(relay.socket, backend)
    run = await anyio.to_thread.run_sync(lambda: claude.print_mode(PROMPT, NEXT_REQUEST, REPLY, timeout=90))
    why = _diagnostics(run, fake, relay)
    assert run.returncode == 0 and run.result["result"] == GAVE_UP, why
    decisions = [r["decision"] for r in fake.messages_requests]
    assert [d.get("name", d.get("text")) for d in decisions] == [NEXT_REQUEST, NEXT_REQUEST, GAVE_UP], why
    assert [d["input"] for d in decisions[:2]] == [{"wait_seconds": 1}] * 2, why
    for logged in fake.messages_requests[1:]:
        (text,) = _tool_results(logged)
        assert text and not text.startswith("request_id:"), why
        assert "no request" in text.lower(), why


class Person(pydantic.BaseModel):
    name: str
    age: int


async def test_a_structured_reply_that_breaks_the_schema_is_refused_and_corrected(
    request, claude, relay, backend, fake_model
):
    """The caller asks for a pydantic model (openai ``parse()``); the agent's first reply misses a field,
    ``reply`` refuses it with the validation error, the agent replies again, and the caller gets the
    object - never the invalid JSON."""
    contents = ['{"name": "Ada"}', '{"name": "Ada", "age": 36}']
    fake = fake_model(FAKE_REPLY_CONTENTS=json.dumps(contents))

    def caller() -> Any:
        client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        return client.chat.completions.parse(
            model=MODEL_ID,
            messages=[{"role": "user", "content": "Who wrote the first program?"}],
            response_format=Person,
        )

    served = await _serve_one(request, relay, backend, claude, fake, caller, "structured reply, corrected")
    why = _diagnostics(served.run, fake, relay)
    assert served.answer.choices[0].message.parsed == Person(name="Ada", age=36), why
    decisions = [r["decision"] for r in fake.messages_requests]
    assert [d.get("name", d.get("text")) for d in decisions] == [NEXT_REQUEST, REPLY, REPLY, SERVED], why
    (rendered,) = _tool_results(fake.messages_requests[1])
    assert "answer format" in rendered and '"required"' in rendered, why
    (refused,) = _tool_results(fake.messages_requests[2])
    assert "'age' is a required property" in refused and "still open" in refused, why
    assert [d["input"]["content"] for d in decisions[1:3]] == contents, why
