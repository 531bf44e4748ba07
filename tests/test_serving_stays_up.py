"""Issue 15, in process: a caller waits for a worker that is coming (``--worker-grace``), an agent's
``next_request`` waits for a relay that is down instead of spinning, and a Claude Code session that
waits for itself is told so. The relay and mcptb-server run in the test's event loop (asyncio and trio);
the real Claude Code sessions are in ``test_serve_supervisor.py``."""

from __future__ import annotations

import os
import tempfile

import anyio
import pytest
from test_agent_pull import request_id, text_of

from _eventually import eventually
from _http_client import post
from _inprocess import relay_in_process, worker_in_process
from conftest import chat_body, queue_depth, wait_for_workers

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_caller_waits_for_a_worker_that_connects_within_the_grace(backend, stream):
    """A caller that arrives while a serving session is starting gets its answer, not an instant 503."""
    async with relay_in_process(worker_grace=20) as relay, anyio.create_task_group() as tg:
        answers = []

        async def call() -> None:
            answers.append(await post(relay.url, PATH, chat_body("early bird", stream=stream)))

        tg.start_soon(call)
        await _eventually_queued(relay)
        async with worker_in_process(relay.socket):
            await _eventually(lambda: answers)
    assert answers[0].status == 200, answers[0].body
    if stream:
        assert answers[0].sse_events[-1] == "data: [DONE]" and "echo: early bird" in answers[0].body.decode()
    else:
        assert answers[0].json()["choices"][0]["message"]["content"] == "echo: early bird"


async def test_with_no_worker_a_request_fails_after_the_grace_naming_mcptb_serve_and_scope_user(backend):
    async with relay_in_process(worker_grace=0.5) as relay:
        started = anyio.current_time()
        response = await post(relay.url, PATH, chat_body())
        waited = anyio.current_time() - started
    assert response.status == 503 and response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["code"] == "no_worker" and waited >= 0.5
    assert "within 0.5 s (relay --worker-grace)" in error["message"]
    assert "`mcptb-serve`" in error["message"] and "claude mcp add --scope user mcptb -- " in error["message"]
    assert "nobody served it for 0.5 s (--worker-grace)" in relay.log


async def test_a_worker_grace_of_zero_is_the_503_at_once(backend):
    async with relay_in_process(worker_grace=0) as relay:
        started = anyio.current_time()
        response = await post(
            relay.url, "/v1/messages", b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
        )
        assert anyio.current_time() - started < 0.5
    assert response.status == 503 and response.json()["error"]["type"] == "overloaded_error"
    assert "mcptb-serve" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", [PATH, "/v1/messages", "/v1/responses"])
async def test_a_stream_whose_worker_grace_runs_out_before_a_keepalive_gets_a_real_503(backend, path):
    """The status line waits (at most one keep-alive interval) while no MCP server is connected, so that
    clients that map statuses (litellm, the SDKs) see the 503, not an error event after a 200."""
    body = b'{"model":"m","max_tokens":5,"stream":true,"input":"hi","messages":[{"role":"user","content":"hi"}]}'
    async with relay_in_process(worker_grace=0.5, keepalive_interval=5) as relay:
        response = await post(relay.url, path, body)
    assert response.status == 503, response.body
    assert "no_worker" in response.body.decode() or "overloaded_error" in response.body.decode()
    assert "mcptb-serve" in response.body.decode()


async def test_a_stream_nobody_serves_gets_a_real_503_when_the_agent_grace_ends_before_a_keepalive(backend):
    async with relay_in_process(agent_grace=0.5, keepalive_interval=5) as relay:
        async with worker_in_process(relay.socket, sampling=False, client_name="claude-code"):
            await wait_for_workers(relay, 1, sampling=False)
            response = await post(relay.url, PATH, chat_body(stream=True))
    assert response.status == 503 and response.json()["error"]["code"] == "no_agent", response.body


async def test_a_stream_waiting_for_a_worker_sends_keepalives_then_its_error_event(backend):
    async with relay_in_process(worker_grace=1.2, keepalive_interval=0.2) as relay:
        response = await post(relay.url, PATH, chat_body(stream=True))
    events = response.sse_events
    assert response.status == 200 and sum(e.startswith(":") for e in events) >= 3, events
    assert '"code":"no_worker"' in events[-2] and events[-1] == "data: [DONE]"


async def test_a_caller_that_hangs_up_stops_waiting_for_a_worker(backend):
    async with relay_in_process(worker_grace=30) as relay:
        async with anyio.create_task_group() as tg:
            tg.start_soon(post, relay.url, PATH, chat_body())
            await _eventually_queued(relay)
            tg.cancel_scope.cancel()  # the caller hangs up
        await _eventually(lambda: _queue_is_empty(relay))
        async with worker_in_process(relay.socket) as worker:
            await wait_for_workers(relay, 1)
            assert worker.model.requests == []  # nothing reached the model for the caller that left


async def test_a_waiting_request_with_tools_is_refused_when_the_worker_that_comes_cannot_use_them(backend):
    body = chat_body(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    async with relay_in_process(worker_grace=20) as relay, anyio.create_task_group() as tg:
        answers = []

        async def call() -> None:
            answers.append(await post(relay.url, PATH, body))

        tg.start_soon(call)
        await _eventually_queued(relay)
        async with worker_in_process(relay.socket, "--tool-emulation", "off"):
            await _eventually(lambda: answers)
    assert answers[0].status == 400 and answers[0].json()["error"]["code"] == "tools_unsupported"


CLAUDE_CODE_HEADERS = {"user-agent": "claude-cli/2.1.330 (external, cli)", "x-claude-code-session-id": "3f9c"}
MESSAGES_BODY = b'{"model":"claude-sonnet-4-5","max_tokens":50,"messages":[{"role":"user","content":"serve"}]}'


async def test_a_claude_code_session_waiting_for_itself_is_told_so_at_once(backend, monkeypatch):
    """Issue 15: a Claude Code session whose ANTHROPIC_BASE_URL is this relay ran /mcp__mcptb__serve and
    waited for itself for 2 min 40 s, then was told to run /mcp__mcptb__serve. Its MCP server reports the
    session id Claude Code gives it; a request carrying that session id, which only that session's agent
    could answer, fails at once saying so, with a retry-after that stops Claude Code's retries."""
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", "3f9c")
    async with relay_in_process(agent_grace=30) as relay:
        async with worker_in_process(relay.socket, sampling=False, client_name="claude-code"):
            await wait_for_workers(relay, 1, sampling=False)
            started = anyio.current_time()
            response = await post(relay.url, "/v1/messages", MESSAGES_BODY, CLAUDE_CODE_HEADERS)
            stream_body = MESSAGES_BODY.replace(b'"max_tokens"', b'"stream":true,"max_tokens"')
            streamed = await post(relay.url, "/v1/messages", stream_body, CLAUDE_CODE_HEADERS)
            assert anyio.current_time() - started < 5
    assert streamed.status == 503 and streamed.json()["error"]["type"] == "overloaded_error"  # not a 200
    error = response.json()["error"]
    assert response.status == 503 and response.headers["retry-after"] == "300"
    assert error["type"] == "overloaded_error" and "waiting for itself" in error["message"]
    assert "ANTHROPIC_BASE_URL" in error["message"] and "/mcp__mcptb__serve" not in error["message"]


async def test_a_claude_code_request_that_may_be_waiting_for_itself_is_told_so_after_the_grace(backend):
    """Without a session id to match (another session, or a client that does not say), a Claude Code
    caller waiting for Claude Code agents is told after the agent grace that it may be waiting for itself."""
    async with relay_in_process(agent_grace=0.5) as relay:
        async with worker_in_process(relay.socket, sampling=False, client_name="claude-code"):
            await wait_for_workers(relay, 1, sampling=False)
            response = await post(relay.url, "/v1/messages", MESSAGES_BODY, CLAUDE_CODE_HEADERS)
            other = await post(relay.url, "/v1/messages", MESSAGES_BODY)  # curl, say: the usual advice
    message = response.json()["error"]["message"]
    assert response.status == 503 and response.headers["x-should-retry"] == "false"
    assert response.json()["error"]["type"] == "overloaded_error"
    assert "it is waiting for itself" in message and "ANTHROPIC_BASE_URL" in message
    assert "waiting for itself" not in other.json()["error"]["message"]
    assert "mcptb-serve" in other.json()["error"]["message"]


async def test_next_request_with_no_relay_waits_its_wait_then_says_what_to_run(backend):
    """Issue 15: with the relay down it answered at once and an agent that did as told spun (20 paid
    turns in 24 s). Now each call takes its wait_seconds, so a loop makes one call per wait."""
    socket = os.path.join(tempfile.mkdtemp(prefix="mcptb-"), "relay.sock")
    async with worker_in_process(socket, sampling=False, client_name="claude-code") as worker:
        started = anyio.current_time()
        texts = [text_of(await worker.session.call_tool("next_request", {"wait_seconds": 1})) for _ in range(2)]
        elapsed = anyio.current_time() - started
    assert elapsed >= 2.0, elapsed
    for text in texts:
        assert f"not reachable at {socket} during this wait (1 s;" in text and "mcptb-relay" in text
    assert worker.stderr.count("cannot reach the relay") == 1  # the link's warning, once


async def test_next_request_serves_a_request_when_the_relay_starts_during_the_wait(backend):
    directory = tempfile.mkdtemp(prefix="mcptb-")
    socket = os.path.join(directory, "relay.sock")
    # the link backs off to 5 s between attempts (the default): the waiting agent hurries it
    async with worker_in_process(
        socket, "--reconnect-max-delay", "5", sampling=False, client_name="claude-code"
    ) as worker:
        with anyio.fail_after(20):
            await _eventually(lambda: "cannot reach the relay" in worker.stderr)
            await anyio.sleep(2)  # the link's pause has grown past a second (0.1, 0.2, 0.4, 0.8, 1.6 s...)
            async with anyio.create_task_group() as tg:
                pulled: list[str] = []

                async def pull() -> None:
                    result = await worker.session.call_tool("next_request", {"wait_seconds": 8})
                    pulled.append(text_of(result))

                tg.start_soon(pull)
                async with relay_in_process(socket=socket) as relay:
                    answers = []

                    async def call() -> None:
                        answers.append(await post(relay.url, PATH, chat_body("were you waiting?")))

                    tg.start_soon(call)
                    await _eventually(lambda: pulled)
                    await worker.session.call_tool("reply", {"request_id": request_id(pulled[0]), "content": "yes"})
                    await _eventually(lambda: answers)
    assert answers[0].json()["choices"][0]["message"]["content"] == "yes"


async def _eventually_queued(relay) -> None:
    await eventually(lambda: queue_depth(relay, 1), what="the request queued")


async def _queue_is_empty(relay) -> bool:
    return not await queue_depth(relay, 1)


async def _eventually(check) -> None:
    await eventually(check, timeout=15)


async def test_with_the_default_equal_grace_and_keepalive_a_stream_still_gets_its_real_503(backend):
    """--agent-grace and --keepalive-interval are both 15 s by default: the grace ends first."""
    async with relay_in_process(agent_grace=1, keepalive_interval=1) as relay:
        async with worker_in_process(relay.socket, sampling=False, client_name="claude-code"):
            await wait_for_workers(relay, 1, sampling=False)
            response = await post(relay.url, PATH, chat_body(stream=True))
    assert response.status == 503 and response.json()["error"]["code"] == "no_agent", response.body


async def test_an_mcp_server_restarted_within_a_session_counts_on_from_its_record(backend, monkeypatch, tmp_path):
    """The Stop hook compares the record's counts with its notes: a server that started again from zero
    would look like an agent that stopped calling next_request."""
    from mcp_server import _record as record
    from mcp_server._record import Tally
    from mcp_server.cli import parse_args, worker_from_args

    monkeypatch.setenv("MCPTB_SERVE_SESSION", "s1")
    record.write(str(tmp_path), "s1", Tally(waits=40, shown=12, handed=9000, served=12))
    worker = worker_from_args(parse_args(["--socket", "/nowhere.sock", "--session-state", str(tmp_path)]))
    assert worker.core.tally == Tally(waits=40, shown=12, handed=9000, served=12)
