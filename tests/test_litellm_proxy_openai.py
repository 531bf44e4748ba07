"""The real litellm proxy in front of the relay's OpenAI endpoints: ``openai/`` and ``hosted_vllm/``
deployments whose ``api_base`` is ``<relay>/v1`` (the wire contract's §4.1).

- default settings, ``openai/``: an Anthropic ``/v1/messages`` request (Claude Code's) is sent to the
  relay's ``POST /v1/responses``, also with ``thinking: {"type": "enabled"}``;
- ``hosted_vllm/``: the same request goes to ``POST /v1/chat/completions``;
- ``litellm_settings.use_chat_completions_url_for_anthropic_messages: true`` with ``openai/``: to
  ``POST /v1/chat/completions`` too (but ``thinking: {"type": "enabled"}`` still to ``/v1/responses``);
- the proxy's own ``/v1/chat/completions`` (the openai SDK, ``stream_options.include_usage``);
- a model group of two deployments, each a relay with its own worker: both get traffic, and when one
  relay stops the proxy keeps answering from the other.

Two proxies (default settings and the chat-completions flag) start once per module, side by side (10-20
s each on a small machine); the relays are module-scoped too, one set per backend, and each test's worker
runs on the test's backend. Which relay endpoint a request reached is read from the relay's access log.
The proxy-starting pieces come from tests/test_litellm_proxy.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from test_litellm_proxy import (
    GOLDEN,
    LITELLM,
    Proxy,
    _free_port,
    _proxy_skip_reason,
    _wait_until_ready,
    assemble,
    parse_sse,
)

from conftest import RelayProcess, mcp_worker, say, short_socket_dir, start_relay

pytestmark = [pytest.mark.anyio, pytest.mark.real]

MASTER_KEY = "sk-test"
UPSTREAM_MODEL = "bridged-model"
BACKENDS = ("asyncio", "trio")
STARTUP_TIMEOUT = 120.0
REQUEST_TIMEOUT = 60.0
COOLDOWN_TIME = 5  # router_settings.cooldown_time of the default proxy (the team test waits this long)
HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "x-api-key": MASTER_KEY,
}
RELAY_NAMES = ("main", "team-a", "team-b")
TEAM_KEY = "sk-team-relay"  # the team relays run with --api-key (as a relay on another machine must)


# --- the proxies and their relays (module scope) ------------------------------------------------------


def _deployment(name: str, model: str, relay: RelayProcess, api_key: str = "anything") -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": model, "api_base": relay.url + "/v1", "api_key": api_key},
    }


def default_config(relays: dict[str, dict[str, RelayProcess]]) -> dict[str, Any]:
    """Per backend: ``resp-<b>`` (openai/), ``vllm-<b>`` (hosted_vllm/), and ``team-<b>``: two openai/
    deployments with the same model_name, on two relays that want the deployments' ``api_key``."""
    deployments = []
    for backend, mine in relays.items():
        deployments.append(_deployment(f"resp-{backend}", f"openai/{UPSTREAM_MODEL}", mine["main"]))
        deployments.append(_deployment(f"vllm-{backend}", f"hosted_vllm/{UPSTREAM_MODEL}", mine["main"]))
        deployments.append(_deployment(f"team-{backend}", f"openai/{UPSTREAM_MODEL}", mine["team-a"], TEAM_KEY))
        deployments.append(_deployment(f"team-{backend}", f"openai/{UPSTREAM_MODEL}", mine["team-b"], TEAM_KEY))
    return {
        "model_list": deployments,
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"num_retries": 0, "request_timeout": REQUEST_TIMEOUT},
        "router_settings": {"cooldown_time": COOLDOWN_TIME},
    }


def chat_flag_config(relays: dict[str, dict[str, RelayProcess]]) -> dict[str, Any]:
    """Per backend: ``chat-<b>`` (openai/) with the chat-completions flag."""
    return {
        "model_list": [
            _deployment(f"chat-{backend}", f"openai/{UPSTREAM_MODEL}", mine["main"]) for backend, mine in relays.items()
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {
            "num_retries": 0,
            "request_timeout": REQUEST_TIMEOUT,
            "use_chat_completions_url_for_anthropic_messages": True,
        },
    }


def _launch(workdir: Path, name: str, config: dict[str, Any]) -> Proxy:
    path = workdir / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = _free_port()
    log_path = workdir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "DATABASE_URL"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # do not fetch the cost map from the internet
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    return Proxy(f"http://127.0.0.1:{port}", proc, log_path, {}, 0.0)


@dataclass
class Setup:
    default: Proxy
    chat_flag: Proxy
    relays: dict[str, dict[str, RelayProcess]]


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = _proxy_skip_reason()
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("litellm-proxy-openai")
    dirs: list[str] = []
    relays: dict[str, dict[str, RelayProcess]] = {}
    proxies: list[Proxy] = []
    try:
        for backend in BACKENDS:
            relays[backend] = {}
            for name in RELAY_NAMES:
                dirs.append(short_socket_dir())
                key = ("--api-key", TEAM_KEY) if name.startswith("team-") else ()
                relays[backend][name] = start_relay(backend, os.path.join(dirs[-1], "relay.sock"), *key)
        started = time.monotonic()
        proxies.append(_launch(workdir, "default", default_config(relays)))
        proxies.append(_launch(workdir, "chat-flag", chat_flag_config(relays)))
        for proxy in proxies:
            _wait_until_ready(proxy.url, proxy.proc, proxy.log_path, STARTUP_TIMEOUT)
            proxy.startup = time.monotonic() - started
        say(request.config, f"[litellm proxies] both ready in {max(p.startup for p in proxies):.1f} s")
        yield Setup(proxies[0], proxies[1], relays)
    finally:
        for proxy in proxies:
            proxy.stop()
        for mine in relays.values():
            for relay in mine.values():
                relay.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def relay(setup: Setup, backend: str) -> RelayProcess:
    return setup.relays[backend]["main"]


# --- requests and checks -----------------------------------------------------------------------------


def claude_code_body(model: str, *, thinking: bool = False, stream: bool = True) -> dict[str, Any]:
    """Claude Code 2.1's request (golden) with a Bash tool_use + tool_result history (§4.2)."""
    body = copy.deepcopy(json.loads((GOLDEN / "claude_code_2_1_request.json").read_text())["body"])
    body["model"] = model
    body["messages"] += [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll list the files first."},
                {
                    "type": "tool_use",
                    "id": "toolu_01AbCdEf",
                    "name": "Bash",
                    "input": {"command": "ls", "description": "List files in current directory"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01AbCdEf", "content": "README.md\nsetup.py\nsrc"},
                {"type": "text", "text": "continue"},
            ],
        },
    ]
    if thinking:
        body["thinking"] = {"type": "enabled", "budget_tokens": 2000}
    body["stream"] = stream
    return body


@dataclass
class Posted:
    status: int
    headers: httpx.Headers
    body: bytes
    seconds: float


async def post(proxy: Proxy, body: dict[str, Any], path: str = "/v1/messages?beta=true") -> Posted:
    def send() -> Posted:
        started = time.monotonic()
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            response = client.post(proxy.url + path, json=body, headers=HEADERS)
        return Posted(response.status_code, response.headers, response.content, time.monotonic() - started)

    return await anyio.to_thread.run_sync(send)


def posts(relay: RelayProcess, since: int) -> list[str]:
    """The relay's access-log lines for POSTs since log line ``since``."""
    return [line for line in relay.log_lines[since:] if "mcptb.relay.access" in line and " POST /" in line]


def why(proxy: Proxy, relays: list[RelayProcess], since: list[int], posted: Posted | None = None) -> str:
    logs = "".join(
        "".join(line for line in r.log_lines[s:] if " GET /health " not in line)
        for r, s in zip(relays, since, strict=True)
    )
    response = f"--- response {posted.status} ---\n{posted.body[:4000]!r}\n" if posted else ""
    return f"{response}--- relay log ---\n{logs}\n--- proxy log (tail) ---\n{proxy.log[-4000:]}"


async def check_claude_code_stream(
    request: pytest.FixtureRequest,
    proxy: Proxy,
    relay: RelayProcess,
    backend: str,
    model: str,
    endpoint: str,
    *,
    trailing_empty_text: bool = False,
    **kw: Any,
) -> None:
    """A streamed Claude Code request through ``proxy`` to ``model``: a valid Anthropic stream with the
    scripted text and tool_use, and one relay request at ``endpoint``. ``trailing_empty_text``: litellm
    adds an empty text block after the tool_use (seen on the chat-flag proxy's /v1/responses path only;
    the relay's /v1/responses stream is the same as on the default proxy, where there is none)."""
    since = len(relay.log_lines)
    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        posted = await post(proxy, claude_code_body(model, **kw))
    diag = why(proxy, [relay], [since], posted)
    say(request.config, f"[proxy {model} {kw or ''} -> relay {endpoint}] stream: {posted.seconds:.2f} s")
    assert posted.status == 200, diag
    assert posted.headers["content-type"].startswith("text/event-stream"), diag
    events = parse_sse(posted.body)  # every frame has event: and data: of the same type
    message = assemble(events)  # message_start ... message_stop, blocks opened/closed in order
    assert message["stop_reason"] == "tool_use", diag
    blocks = [b for b in message["content"] if b["type"] != "thinking"]
    if trailing_empty_text:
        assert blocks[2:] == [{"type": "text", "text": ""}], diag
        blocks = blocks[:2]
    assert [b["type"] for b in blocks] == ["text", "tool_use"], diag
    assert blocks[0]["text"] == "Let me check.", diag
    assert (blocks[1]["name"], blocks[1]["input"]) == ("Bash", {"command": "Paris"}), diag  # input JSON parsed
    assert message["usage"]["output_tokens"] > 0, diag
    (params,) = worker.model.requests
    assert [t.name for t in params.tools or []] == ["Bash", "Read", "TodoWrite"]
    (line,) = posts(relay, since)
    assert f" POST {endpoint} " in line and " status=200 " in line, diag


# --- 1. default settings, openai/: /v1/responses -----------------------------------------------------


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking-enabled"])
async def test_openai_deployment_uses_responses(request, setup, relay, backend, thinking):
    await check_claude_code_stream(
        request, setup.default, relay, backend, f"resp-{backend}", "/v1/responses", thinking=thinking
    )


# --- 2. hosted_vllm/, the chat-completions flag, the proxy's own chat completions --------------------


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking-enabled"])
async def test_hosted_vllm_deployment_uses_chat_completions(request, setup, relay, backend, thinking):
    await check_claude_code_stream(
        request, setup.default, relay, backend, f"vllm-{backend}", "/v1/chat/completions", thinking=thinking
    )


@pytest.mark.parametrize(
    ("thinking", "endpoint"),
    [(False, "/v1/chat/completions"), (True, "/v1/responses")],
    ids=["plain", "thinking-enabled"],
)
async def test_chat_completions_flag(request, setup, relay, backend, thinking, endpoint):
    """With the flag, openai/ goes to chat/completions, except thinking: enabled (still /v1/responses,
    and litellm's stream then ends with an extra empty text block)."""
    await check_claude_code_stream(
        request,
        setup.chat_flag,
        relay,
        backend,
        f"chat-{backend}",
        endpoint,
        thinking=thinking,
        trailing_empty_text=thinking,
    )


@pytest.mark.parametrize("deployment", ["resp", "vllm"])
async def test_openai_sdk_chat_completions_through_the_proxy(request, setup, relay, backend, deployment):
    proxy = setup.default
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=REQUEST_TIMEOUT)

    def stream() -> list[Any]:
        chunks = client.chat.completions.create(
            model=f"{deployment}-{backend}",
            messages=[{"role": "user", "content": "hello proxy"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(chunks)

    since = len(relay.log_lines)
    started = time.monotonic()
    async with mcp_worker(relay, backend, sampling_tools=True):
        chunks = await anyio.to_thread.run_sync(stream)
    say(request.config, f"[openai SDK -> proxy {deployment}-{backend}] chat stream: {time.monotonic() - started:.2f} s")
    diag = why(proxy, [relay], [since])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello proxy", diag
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens > 0 and usage[-1].prompt_tokens > 0, diag
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"], diag
    (line,) = posts(relay, since)
    assert " POST /v1/chat/completions " in line and " status=200 " in line, diag


# --- 3. two relays behind one model group ------------------------------------------------------------


async def test_two_relays_share_a_model_group_and_one_can_stop(request, setup, backend):
    proxy = setup.default
    a, b = setup.relays[backend]["team-a"], setup.relays[backend]["team-b"]
    model = f"team-{backend}"
    since = [len(a.log_lines), len(b.log_lines)]

    def body(i: int) -> dict[str, Any]:
        return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": f"hi {i}"}]}

    def hits(relay: RelayProcess, start: int) -> int:
        return sum(" status=200 " in line for line in posts(relay, start))

    started = time.monotonic()
    async with mcp_worker(a, backend) as worker_a, mcp_worker(b, backend) as worker_b:
        # both relays get traffic (the router picks at random: bounded at 30 requests)
        sent = 0
        while sent < 30 and not (hits(a, since[0]) and hits(b, since[1])):
            posted = await post(proxy, body(sent), "/v1/messages")
            assert posted.status == 200, why(proxy, [a, b], since, posted)
            assert json.loads(posted.body)["content"][0]["text"] == f"echo: hi {sent}"
            sent += 1
        balanced = time.monotonic() - started
        diag = why(proxy, [a, b], since)
        assert hits(a, since[0]) and hits(b, since[1]), diag
        assert len(worker_a.model.requests) + len(worker_b.model.requests) == sent
        assert all(" POST /v1/responses " in line for line in posts(a, since[0]) + posts(b, since[1])), diag

        # relay b stops: requests may fail until the router cools b down, then all go to a
        b.stop()
        after = [len(a.log_lines), len(b.log_lines)]
        stopped = time.monotonic()
        statuses: list[int] = []
        first_error = b""
        deadline = stopped + 4 * COOLDOWN_TIME + 20
        while time.monotonic() < deadline and statuses[-10:] != [200] * 10:
            posted = await post(proxy, body(100 + len(statuses)), "/v1/messages")
            statuses.append(posted.status)
            if posted.status != 200:
                first_error = first_error or posted.body
                await anyio.sleep(0.2)
        recovered = time.monotonic() - stopped
    say(
        request.config,
        f"[proxy team-{backend}] both relays hit after {sent} requests ({balanced:.2f} s); relay b stopped: "
        f"statuses {statuses}, 10 in a row OK after {recovered:.2f} s; first error: {first_error[:300]!r}",
    )
    diag = why(proxy, [a], after[:1]) + f"\nstatuses after the stop: {statuses}"
    assert statuses[-10:] == [200] * 10, diag
    assert hits(a, after[0]) == statuses.count(200), diag
