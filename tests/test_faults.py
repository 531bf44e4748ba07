"""Bad input and faults, through the real relay and the real mcptb-server: every case gets a clear
error in OpenAI's shape with the right status - never a crash, a hang, or a lost request."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from contextlib import suppress

import anyio
import anyio.abc
import pytest

from _eventually import eventually
from _http_client import get_json, post, request
from _inprocess import relay_in_process
from _scripted import FixedAnswerModel, ScriptedModel
from conftest import (
    ROOT,
    Worker,
    chat_body,
    mcp_worker,
    mcp_worker_process,
    no_workers,
    queue_depth,
    wait_for_workers,
)

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"


def error_of(response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# --- refused before answering (bad requests: test_unit_api_chat.py) ----------------------------


async def test_oversized_body_is_413(backend):
    async with relay_in_process(max_body_bytes=1000) as relay:
        response = await post(relay.url, PATH, chat_body("x" * 2000))
        assert response.status == 413
        assert "--max-body-bytes" in error_of(response)["message"]


async def test_oversized_chunked_body_is_413(backend):
    async with relay_in_process(max_body_bytes=1000) as relay:
        body = chat_body("x" * 3000)
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 500]), body[i : i + 500]) for i in range(0, len(body), 500)
        )
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n"
            b"content-type: application/json\r\n\r\n"
        )
        response = await request(relay.url, raw_head=head, body=chunked + b"0\r\n\r\n")
        assert response.status == 413


async def test_oversized_head_is_431(relay):
    response = await request(relay.url, "GET", "/health", headers={"x-big": "a" * 70_000})
    assert response.status == 431


async def test_no_worker_connected_with_no_worker_grace_is_an_immediate_503_saying_how_to_connect(backend):
    async with relay_in_process(worker_grace=0) as relay:
        with anyio.fail_after(5):
            response = await post(relay.url, PATH, chat_body(stream=True))
    assert response.status == 503
    error = error_of(response)
    assert "claude mcp add --scope user" in error["message"] and relay.socket in error["message"]


async def test_tools_without_sampling_tools_or_emulation_are_refused_before_streaming(relay, backend):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with mcp_worker(relay, backend, "--tool-emulation", "off", sampling_tools=False):
        response = await post(relay.url, PATH, chat_body(tools=tools, stream=True))
    assert response.status == 400
    error = error_of(response)
    assert error["param"] == "tools" and "sampling.tools" in error["message"]


# --- access control ---------------------------------------------------------------------------


async def test_api_key_is_required_when_configured(backend):
    async with relay_in_process(api_key="sekrit") as relay:
        missing = await request(relay.url, "GET", "/v1/models")
        assert missing.status == 401 and error_of(missing)["message"].startswith("Missing API key: pass")
        wrong = await request(relay.url, "GET", "/v1/models", headers={"authorization": "Bearer nope"})
        assert wrong.status == 401 and error_of(wrong)["type"] == "authentication_error"
        assert error_of(wrong)["message"].startswith("Incorrect API key provided")
        assert (await request(relay.url, "GET", "/v1/models", headers={"authorization": "Bearer sekrit"})).status == 200
        assert (await request(relay.url, "GET", "/v1/models", headers={"x-api-key": "sekrit"})).status == 200
        assert (await request(relay.url, "GET", "/health")).status == 200


async def test_foreign_host_and_origin_are_refused(relay):
    rebinding = await request(relay.url, "GET", "/v1/models", headers={"host": "evil.example:80"})
    assert rebinding.status == 403
    page = await request(relay.url, "GET", "/v1/models", headers={"origin": "https://evil.example"})
    assert page.status == 403
    local = await request(relay.url, "GET", "/v1/models", headers={"origin": "http://localhost:3000"})
    assert local.status == 200


@pytest.mark.real
def test_non_loopback_bind_without_api_key_is_refused():
    result = subprocess.run(
        [sys.executable, "-m", "relay", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--api-key" in result.stderr


async def test_connections_over_the_limit_get_503(backend):
    async with relay_in_process(max_connections=1) as relay:
        async with await anyio.connect_tcp("127.0.0.1", relay.port):  # holds the only slot once accepted

            async def refused() -> bool:
                return (await request(relay.url, "GET", "/health")).status == 503

            await eventually(refused, what="a second connection refused with 503")


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/no/such/path", "", b"404"),
        ("/v1/chat/completions", "", b"405"),
        ("/v1/models", "origin: https://evil.example\r\n", b"403"),
        ("/", "", b"200"),
    ],
)
async def test_a_head_request_gets_its_answer_head_whatever_the_answer(relay, path, headers, status):
    """Errors too: headers as for GET, and no body (h11 refuses one, and the connection used to drop)."""
    head = f"HEAD {path} HTTP/1.1\r\nhost: localhost\r\n{headers}\r\n".encode()
    async with await anyio.connect_tcp("127.0.0.1", relay.port) as stream:
        await stream.send(head + b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        received = b""
        with anyio.fail_after(10), suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                received += await stream.receive()
    answer_head, _, rest = received.partition(b"\r\n\r\n")
    assert answer_head.startswith(b"HTTP/1.1 " + status + b" "), received[:300]
    assert b"content-length: " in answer_head.lower()
    assert rest == b"" or rest.startswith(b"HTTP/1.1 200 "), rest[:100]  # no body: the next answer, or the end
    assert "Traceback" not in relay.log and "internal error" not in relay.log


async def test_keep_alive_serves_several_requests_on_one_connection(relay):
    one = b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n"
    async with await anyio.connect_tcp("127.0.0.1", relay.port) as stream:
        await stream.send(one + one)  # pipelined
        received = b""
        with anyio.fail_after(5):
            while received.count(b"HTTP/1.1 200") < 2:
                received += await stream.receive()
        await stream.send(one)
        with anyio.fail_after(5):
            while received.count(b"HTTP/1.1 200") < 3:
                received += await stream.receive()


# --- faults while answering -------------------------------------------------------------------


async def test_client_refusing_sampling_is_a_422_that_is_not_retried(relay, backend):
    """The user declined: asking again only asks them again, so the status is a 4xx that the SDKs and
    litellm's Router do not retry (it was a 502, and litellm asked the user three times)."""
    async with mcp_worker(relay, backend) as worker:
        response = await post(relay.url, PATH, chat_body("REFUSE this"))
    assert response.status == 422 and response.headers["x-should-retry"] == "false"
    error = error_of(response)
    assert error["code"] == "refused" and "User rejected sampling request" in error["message"]
    assert error["type"] == "permission_error" and len(worker.model.requests) == 1


async def test_a_model_that_failed_on_the_input_is_a_424_that_is_not_retried(relay, backend):
    """The MCP client's model failed (MCP error -32603): the model already worked on this input, so a retry
    costs the user another turn. A 4xx (litellm's Router retries every 5xx whatever the headers say) and
    ``x-should-retry: false``; a full queue, where nothing was spent, says ``true``."""
    async with mcp_worker(relay, backend) as worker:
        response = await post(relay.url, PATH, chat_body("FAIL this"))
    assert response.status == 424 and response.headers["x-should-retry"] == "false"
    error = error_of(response)
    assert error["code"] == "client_error" and "The model failed on this input" in error["message"]
    assert "MCP error -32603" in error["message"] and len(worker.model.requests) == 1


async def test_a_failure_before_a_stream_starts_is_a_real_status(relay, backend):
    """The status line waits for the model's first output (at most one keep-alive interval): a failure
    before it is the error's own status and retry advice, not an error event after a 200 (which Claude
    Code answers by asking again without streaming: another model turn)."""
    async with mcp_worker(relay, backend) as worker:
        refused = await post(relay.url, PATH, chat_body("REFUSE this", stream=True))
        failed = await post(relay.url, PATH, chat_body("FAIL this", stream=True))
    assert refused.status == 422 and error_of(refused)["code"] == "refused"
    assert failed.status == 424 and error_of(failed)["code"] == "client_error"
    assert [r.headers["x-should-retry"] for r in (refused, failed)] == ["false", "false"]
    assert len(worker.model.requests) == 2


async def test_failure_after_streaming_started_is_an_error_frame_then_done(relay, backend):
    async with mcp_worker(relay, backend):
        response = await post(relay.url, PATH, chat_body("LATE REFUSE this", stream=True))
    assert response.status == 200
    events = response.sse_events
    assert json.loads(events[0].removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "refused"
    assert events[-1] == "data: [DONE]"
    # the access log tells the stream's real outcome, not only the 200 its status line said
    (logged,) = await eventually(  # the line is written after the answer's last byte
        lambda: [line for line in relay.log.splitlines() if "mcptb.relay.access" in line and " POST " in line],
        what="the access-log line",
    )
    assert " status=200 outcome=422:refused " in logged, logged


async def test_sampling_timeout_is_504_and_cancels_the_sampling_request(relay, backend):
    async with mcp_worker(relay, backend, "--sampling-timeout", "0.5") as worker:
        response = await post(relay.url, PATH, chat_body("SLOW one"))
        await eventually(lambda: worker.model.cancelled, what="the sampling callback cancelled")
    assert response.status == 504
    assert "--sampling-timeout" in error_of(response)["message"]
    assert worker.model.cancelled == ["SLOW one"]


async def test_caller_disconnect_cancels_the_sampling_callback(relay, backend):
    async with mcp_worker(relay, backend) as worker:
        async with anyio.create_task_group() as tg:
            tg.start_soon(post, relay.url, PATH, chat_body("SLOW bye", stream=True))
            with anyio.fail_after(10):
                await worker.model.started.wait()
            tg.cancel_scope.cancel()  # the caller hangs up while the model is answering
        await eventually(lambda: worker.model.cancelled, what="the sampling callback cancelled")
        assert worker.model.cancelled == ["SLOW bye"]
        health = await get_json(relay.url + "/health")
        assert health["in_flight"] == 0 and health["queue_depth"] == 0
        # the slot came back: the worker still answers
        assert (await post(relay.url, PATH, chat_body("again"))).json()["choices"][0]["message"][
            "content"
        ] == "echo: again"


@pytest.mark.parametrize("ahead", [0, 1])
async def test_a_caller_that_half_closes_has_hung_up_after_the_requests_it_sent_ahead(relay, backend, ahead):
    """Requests, then the caller's end of the connection (``shutdown(SHUT_WR)``, ``nc -N``) in the same
    write: those it sent ahead are answered in turn, and the last one is cancelled - before it reaches the
    model, or all the way to it - as a hang-up while it is answered would be; never left running."""
    body = chat_body("SLOW half")
    last = b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
    last += b"content-length: %d\r\n\r\n" % len(body) + body
    first = b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n" * ahead
    async with mcp_worker(relay, backend) as worker, await anyio.connect_tcp("127.0.0.1", relay.port) as stream:
        await stream.send(first + last)
        await stream.send_eof()
        received = b""
        with anyio.fail_after(10), suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:  # the relay closes the connection once the last request is cancelled
                received += await stream.receive()
        health = await get_json(relay.url + "/health")
        reached_the_model = bool(worker.model.requests)
        if reached_the_model:
            await eventually(lambda: worker.model.cancelled, what="the sampling callback cancelled")
    assert health["in_flight"] == 0 and health["queue_depth"] == 0
    assert worker.model.cancelled == (["SLOW half"] if reached_the_model else [])
    assert received.count(b"HTTP/1.1 200 ") == ahead  # the health answers, nothing for the cancelled one


async def test_keep_alive_comments_flow_while_the_model_thinks(relay, backend):
    async with mcp_worker(relay, backend):
        partial = await post(relay.url, PATH, chat_body("SLOW think", stream=True), stop_after=b": keep-alive\n\n")
    assert partial.headers["content-type"] == "text/event-stream"
    assert partial.headers["transfer-encoding"] == "chunked"
    events = partial.sse_events
    assert events[0].startswith("data: ") and events[1] == ": keep-alive"


async def test_client_without_sampling_stays_connected_and_its_requests_wait_then_time_out(backend):
    async with relay_in_process(queue_timeout=1) as relay:
        async with mcp_worker(relay, backend, sampling=False, wait_ready=False):
            health = await wait_for_workers(relay, 1, sampling=False)
            assert health["workers"][0]["modes"] == ["agent"]
            response = await post(relay.url, PATH, chat_body("anyone?"))
            assert response.status == 504
            assert "No MCP server or agent picked up" in error_of(response)["message"]
            assert len((await get_json(relay.url + "/health"))["workers"]) == 1


async def test_queue_full_is_429_with_retry_after(backend):
    async with relay_in_process(max_queue=1, queue_timeout=30) as relay:
        async with mcp_worker(relay, backend, sampling=False, wait_ready=False):
            await wait_for_workers(relay, 1, sampling=False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(post, relay.url, PATH, chat_body("first", stream=True))
                await eventually(lambda: queue_depth(relay, 1), what="one request queued")
                response = await post(relay.url, PATH, chat_body("second"))
                tg.cancel_scope.cancel()
        assert response.status == 429
        assert response.headers["retry-after"] == "1"
        assert error_of(response)["type"] == "rate_limit_error"


@pytest.mark.real
async def test_worker_killed_before_answering_gets_its_request_requeued(relay, backend):
    async with mcp_worker_process(relay, backend) as first:
        pid = (await get_json(relay.url + "/health"))["workers"][0]["pid"]
        async with anyio.create_task_group() as tg:
            result = {}

            async def call() -> None:
                result["response"] = await post(relay.url, PATH, chat_body("SLOW survive"))

            tg.start_soon(call)
            with anyio.fail_after(10):
                await first.model.started.wait()
            os.kill(pid, signal.SIGKILL)
            async with mcp_worker(relay, backend, model=ScriptedModel(honour_slow=False), wait_ready=False):
                await eventually(lambda: "response" in result, timeout=20, what="the re-queued answer")
    response = result["response"]
    assert response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: SLOW survive"


async def test_server_reconnects_after_the_relay_restarts(relay_factory, backend):
    relay = relay_factory()
    async with mcp_worker(relay, backend):
        relay.stop()
        again = relay_factory(socket=relay.socket)
        await wait_for_workers(again, 1)
        response = await post(again.url, PATH, chat_body("after restart"))
    assert response.json()["choices"][0]["message"]["content"] == "echo: after restart"


async def test_many_concurrent_callers_each_get_their_own_answer(relay, backend):
    answers: dict[int, str] = {}

    async def call(i: int) -> None:
        response = await post(relay.url, PATH, chat_body(f"caller {i}", stream=(i % 2 == 0)))
        if i % 2:
            answers[i] = response.json()["choices"][0]["message"]["content"]
        else:
            chunks = [json.loads(e.removeprefix("data: ")) for e in response.sse_events[:-1] if e.startswith("data: ")]
            answers[i] = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])

    async with mcp_worker(relay, backend), anyio.create_task_group() as tg:
        for i in range(24):
            tg.start_soon(call, i)
    assert answers == {i: f"echo: caller {i}" for i in range(24)}


@pytest.mark.real
async def test_worker_process_exits_cleanly_when_its_client_closes(relay, backend):
    async with mcp_worker_process(relay, backend):
        pid = (await get_json(relay.url + "/health"))["workers"][0]["pid"]
    await eventually(lambda: no_workers(relay), what="the worker gone from /health")
    with suppress(ProcessLookupError):
        os.kill(pid, 0)
        pytest.fail("mcptb-server still running after its client closed stdin")


def test_sigterm_stops_the_relay_cleanly_and_removes_its_socket(relay_process):
    relay = relay_process
    relay.proc.send_signal(signal.SIGTERM)
    assert relay.proc.wait(10) == 0
    assert not os.path.exists(relay.socket)


async def test_errors_that_retrying_cannot_fix_say_so(backend):
    async with relay_in_process(max_queue=1, queue_timeout=30, worker_grace=0) as relay:
        bad = await post(relay.url, PATH, b"{")
        no_worker = await post(relay.url, PATH, chat_body())
        too_big = await request(relay.url, "GET", "/health", headers={"x-big": "a" * 70_000})
        assert [r.headers.get("x-should-retry") for r in (bad, no_worker, too_big)] == ["false"] * 3
        async with mcp_worker(relay, backend, sampling=False, wait_ready=False), anyio.create_task_group() as tg:
            tg.start_soon(post, relay.url, PATH, chat_body("first", stream=True))
            await eventually(lambda: queue_depth(relay, 1), what="one request queued")
            full = await post(relay.url, PATH, chat_body("second"))
            tg.cancel_scope.cancel()
        assert full.status == 429 and full.headers["x-should-retry"] == "true"


@pytest.mark.real
def test_a_port_in_use_is_named_with_what_to_do(backend):
    with socket.socket() as taken, tempfile.TemporaryDirectory(prefix="mcptb-") as directory:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "relay",
                "--port",
                str(port),
                "--backend",
                backend,
                "--socket",
                f"{directory}/r.sock",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port} is already in use" in message, result.stderr
    assert f"http://127.0.0.1:{port}/health" in message and "--port" in message
    assert "Errno" not in result.stderr


def _deep(levels: int) -> dict:
    node: dict = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"x": node}}
    return node


HOSTILE = {
    "100,000 nested brackets": (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "nests deeper"),
    "deep tool arguments": (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": _deep(70)}}
                        ],
                    },
                ]
            }
        ).encode(),
        None,
        "nests deeper",
    ),
    "a 5,000-digit integer": (
        b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + b"9" * 5000 + b"}",
        None,
        "digits",
    ),
    "a lone surrogate": (b'{"messages": [{"role": "user", "content": "\\ud83d"}]}', "messages[0].content", "surrogate"),
    # numbers JSON has not: the worker would refuse the request's frame and its slot would be lost
    "NaN": (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', None, "NaN is not a JSON number"),
    "Infinity": (b'{"messages": [{"role": "user", "content": "x"}], "top_p": -Infinity}', None, "not a JSON number"),
    "1e999": (b'{"messages": [{"role": "user", "content": "x"}], "top_p": 1e999}', None, "out of range"),
    "a schema maximum of 1e999": (
        b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": '
        b'{"name": "f", "parameters": {"type": "object", "maximum": 1e999}}}]}',
        None,
        "out of range",
    ),
    "max_tokens past the protocol's bound": (
        b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 99999999999999999999}',
        "max_tokens",
        "up to 2147483647",
    ),
    "a tool schema 200 levels deep": (
        json.dumps(
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": _deep(200)}}],
            }
        ).encode(),
        None,
        "nests deeper",
    ),
}


def _nested(levels: int) -> dict:
    node: dict = {}
    for _ in range(levels - 1):
        node = {"a": node}
    return node


def _with_arguments(path: str, arguments: str) -> tuple[str, bytes, str]:
    """A body whose one tool call carries ``arguments`` as its JSON string, and that field's name."""
    if path == "/v1/responses":
        call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": arguments}
        return (
            path,
            json.dumps({"input": [call, {"role": "user", "content": "x"}]}).encode(),
            "input[0].arguments",
        )
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]
    return path, json.dumps({"messages": messages}).encode(), "messages[1].tool_calls[0].function.arguments"


HOSTILE_ARGUMENTS = {  # inside a tool call's JSON string: checked exactly as the body is
    "1,000 open brackets": ("[" * 1000, "nests deeper"),
    "50,000 open brackets": ("[" * 50_000, "nests deeper"),
    "a 5,000-digit integer": ('{"n": ' + "9" * 5000 + "}", "digits"),
    "an object 300 levels deep": (json.dumps(_nested(300)), "nests deeper"),
    "an object 100 levels deep": (json.dumps(_nested(100)), "nests deeper"),
    "an escaped lone surrogate": ('{"s": "\\ud800"}', "surrogate"),
}


@pytest.mark.parametrize("path", [PATH, "/v1/responses"])
@pytest.mark.parametrize("case", list(HOSTILE_ARGUMENTS))
async def test_hostile_json_in_tool_call_arguments_is_a_400_naming_the_field(relay, backend, case, path):
    arguments, fragment = HOSTILE_ARGUMENTS[case]
    path, body, param = _with_arguments(path, arguments)
    async with mcp_worker(relay, backend):
        response = await post(relay.url, path, body)
        assert response.status == 400, response.body[:300]
        error = error_of(response)
        assert fragment in error["message"] and error["param"].startswith(param), error
        shallow = _with_arguments(path, json.dumps(_nested(50)))[1]  # within the body's 64 levels: answered
        assert (await post(relay.url, path, shallow)).status == 200
    assert "Traceback" not in relay.log and "internal error" not in relay.log


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_json_is_a_400_naming_the_field_and_the_link_survives(relay, backend, case):
    body, param, fragment = HOSTILE[case]
    async with mcp_worker(relay, backend):
        response = await post(relay.url, PATH, body)
        assert response.status == 400, response.body[:300]
        error = error_of(response)
        assert fragment in error["message"], error
        if param is not None:
            assert error["param"] == param, error
        after = await post(relay.url, PATH, chat_body("still here?"))  # the worker link survived
    assert after.json()["choices"][0]["message"]["content"] == "echo: still here?"
    assert "Traceback" not in relay.log and "internal error" not in relay.log


async def _head_then_answer(relay, head: bytes) -> bytes:
    """Send only a request head; return what the relay answers before any body is sent."""
    async with await anyio.connect_tcp("127.0.0.1", relay.port) as stream:
        await stream.send(head)
        received = b""
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
        return received


async def test_expect_100_continue_is_answered_before_the_body(relay, backend):
    body = chat_body("continue")
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    async with mcp_worker(relay, backend):
        async with await anyio.connect_tcp("127.0.0.1", relay.port) as stream:
            await stream.send(head)
            interim = b""
            with anyio.fail_after(10):  # without the interim answer this waits until the relay's read timeout
                while b"\r\n\r\n" not in interim:
                    interim += await stream.receive()
            assert interim.startswith(b"HTTP/1.1 100 "), interim
            await stream.send(body)
            rest = interim.split(b"\r\n\r\n", 1)[1]
            with anyio.fail_after(10):
                while b"echo: continue" not in rest:
                    rest += await stream.receive()
    assert b"HTTP/1.1 200 " in rest


async def test_expect_100_continue_with_a_body_over_the_limit_gets_the_413_at_once(backend):
    async with relay_in_process(max_body_bytes=1000) as relay:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
        answer = await _head_then_answer(relay, head)
        assert answer.startswith(b"HTTP/1.1 413 "), answer


async def test_callers_leaving_in_the_middle_of_large_answers_never_cut_a_frame(relay_process, backend):
    """Callers hang up while 3 MB answers are on their way from a real mcptb-server: every frame on the
    worker link stays whole (a cancelled write used to cut one mid-line, the relay rejected the rest of
    the line, and the worker lost slots for good), and all slots come back."""
    relay = relay_process
    model = FixedAnswerModel(answers=["x" * 3_000_000])
    async with mcp_worker_process(relay, backend, "--concurrency", "8", model=model):
        for _ in range(4):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(
                        lambda i=i: post(relay.url, PATH, chat_body(f"big {i}", stream=True), stop_after=b"data:")
                    )
        health = await eventually(lambda: _all_slots_back(relay, 8), what="all 8 slots back", timeout=30)
        after = await post(relay.url, PATH, chat_body("small again"))
    assert health["in_flight"] == 0 and after.status == 200
    assert "bad frame" not in relay.log and "bad_frame" not in relay.log


async def _all_slots_back(relay, slots: int) -> dict | None:
    health = await get_json(relay.url + "/health")
    workers = health["workers"]
    return health if workers and workers[0]["free_slots"] == slots and health["in_flight"] == 0 else None


async def test_a_request_whose_sampling_client_dies_before_answering_goes_to_an_idle_worker(relay_process, backend):
    """The MCP client behind the first worker closes while its model is answering: its mcptb-server
    hands the request back (nothing reached the caller yet) instead of failing it with "Connection
    closed", and the idle second worker answers it."""
    relay = relay_process
    leave = anyio.Event()

    async def first_worker(*, task_status: anyio.abc.TaskStatus[Worker]) -> None:
        async with mcp_worker_process(relay, backend) as worker:
            task_status.started(worker)
            await leave.wait()  # then its MCP client goes away, in the middle of an answer

    async with anyio.create_task_group() as tg:
        first = await tg.start(first_worker)
        async with mcp_worker(relay, backend, model=ScriptedModel(honour_slow=False), wait_ready=False):
            await wait_for_workers(relay, 2)
            result = {}

            async def call() -> None:
                result["response"] = await post(relay.url, PATH, chat_body("SLOW survive"))

            tg.start_soon(call)
            with anyio.fail_after(10):
                await first.model.started.wait()  # the first worker (connected first) took it
            leave.set()
            response = await eventually(lambda: result.get("response"), timeout=20, what="the answer")
    assert response.status == 200, response.body
    assert response.json()["choices"][0]["message"]["content"] == "echo: SLOW survive"


@pytest.mark.parametrize(
    ("path", "body", "ending"),
    [
        (PATH, chat_body("SLOW forever", stream=True), b"data: [DONE]\n\n"),
        (
            "/v1/messages",
            json.dumps({"max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "SLOW"}]}).encode(),
            b"event: error\n",
        ),
        ("/v1/responses", json.dumps({"stream": True, "input": "SLOW forever"}).encode(), b"event: response.failed\n"),
    ],
)
async def test_sigterm_ends_open_streams_with_their_error_event_then_exits(relay_process, backend, path, body, ending):
    relay = relay_process
    async with mcp_worker(relay, backend) as worker, anyio.create_task_group() as tg:
        got = {}
        head = anyio.Event()

        async def call() -> None:
            got["response"] = await post(relay.url, path, body, head_received=head)

        tg.start_soon(call)
        with anyio.fail_after(10):
            await worker.model.started.wait()  # the model thinking
            await head.wait()  # and the stream open: its status line went out with the first keep-alive
        relay.proc.send_signal(signal.SIGTERM)
        response = await eventually(lambda: got.get("response"), what="the stream's end")
        assert await anyio.to_thread.run_sync(lambda: relay.proc.wait(15)) == 0
    assert response.status == 200
    assert (ending in response.body and b"relay_stopping" in response.body) or b"relay is stopping" in response.body
    assert response.body.endswith(b"\n\n")  # a complete last event, then the chunked body's end
