"""The relay's worker socket and the MCP server's process behaviour, with real processes.

Raw-socket peers here speak the protocol deliberately wrong (bad versions, garbage lines) to show the
relay answers in a bounded way and keeps serving; the MCP server is checked for stdout purity, for
both MCP protocol eras, and for honouring its concurrency limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from test_faults import no_workers

from relay import _worker_link
from shared_protocol import (
    PROTOCOL_VERSION,
    End,
    Hello,
    Ready,
    RelayFrameDecoder,
    Release,
    Start,
    TextDelta,
    WorkerInfo,
    encode,
)
from shared_protocol._unix import connect_unix

from _eventually import eventually
from _http_client import get_json, post
from _inprocess import relay_in_process
from conftest import ROOT, chat_body, mcp_worker, server_params, wait_for_workers

pytestmark = pytest.mark.anyio


async def read_frames(stream, count: int) -> list:
    decoder, frames = RelayFrameDecoder(), []
    with anyio.fail_after(10):
        while len(frames) < count:
            data = await stream.receive()
            frames += list(decoder.feed(data))
    return frames


async def test_a_worker_speaking_another_protocol_version_is_refused_with_a_reason(relay):
    async with await connect_unix(relay.socket) as stream:
        await stream.send(encode(Hello(version=PROTOCOL_VERSION + 1, worker=WorkerInfo())))
        (frame,) = await read_frames(stream, 1)
    assert frame.type == "refused" and frame.code == "version"
    assert "upgrade the relay" in frame.message


async def test_garbage_from_a_worker_gets_bounded_error_frames_then_the_link_is_dropped(relay):
    async with await connect_unix(relay.socket) as stream:
        await stream.send(encode(Hello(version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="rude"))))
        (welcome,) = await read_frames(stream, 1)
        assert welcome.type == "welcome"
        await stream.send(
            b"this is not json\n" + b'{"type":"teleport"}\n' + b'{"type":"text","id":1,"text":"SECRET-ANSWER"}\n'
        )
        errors = await read_frames(stream, 3)
        assert [e.code for e in errors] == ["bad_frame", "bad_frame", "bad_frame"]
        # a malformed frame is reported without its content (answer text is logged only with --log-content)
        assert not any("SECRET" in e.message for e in errors) and "SECRET" not in relay.log
        assert len((await get_json(relay.url + "/health"))["workers"]) == 1  # still connected
        await stream.send(b"nope\n" * 30)
        await eventually(lambda: no_workers(relay), what="the rude worker dropped")
    assert (await get_json(relay.url + "/health"))["status"] == "ok"


async def test_first_frame_must_be_hello(relay):
    async with await connect_unix(relay.socket) as stream:
        await stream.send(b'{"type":"ready","slots":1}\n')
        (frame,) = await read_frames(stream, 1)
    assert frame.type == "refused" and frame.code == "bad_hello"


@pytest.mark.real
def test_mcp_server_writes_nothing_but_json_rpc_on_stdout(tmp_path):
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"sampling": {}},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    ]
    socket = os.path.join(str(tmp_path)[:40], "nowhere.sock")  # no relay: it must still behave
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "--socket", socket, "--log-level", "debug"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        proc.stdin.flush()
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # the two answers...
        rest, stderr = proc.communicate(timeout=30)  # ...then EOF on stdin: it must exit
    finally:
        proc.kill()
    assert rest == "" and proc.returncode == 0
    assert [json.loads(line)["id"] for line in lines] == [0, 1]
    assert json.loads(lines[0])["result"]["serverInfo"]["name"] == "mcp-token-bridge"
    assert "cannot reach the relay" in stderr and "mcptb-relay" in stderr


@pytest.mark.real
async def test_a_2026_era_client_is_recognised_and_stays_connected_without_sampling(relay, backend):
    params = server_params(relay.socket, backend)
    async with Client(
        StdioServerParameters(command=params.command, args=params.args, cwd=params.cwd),
        mode="auto",
        client_info=types.Implementation(name="modern-client", version="9"),
    ) as client:
        await client.list_tools()
        await wait_for_workers(relay, 1, sampling=False)

        async def recognised() -> dict | None:
            health = await get_json(relay.url + "/health")
            return health if health["workers"][0]["client"]["name"] == "modern-client" else None

        health = await eventually(recognised, what="the client's name from _meta")
    worker = health["workers"][0]
    assert worker["protocol_version"] == "2026-07-28"
    assert worker["modes"] == ["agent"] and worker["models"] == ["modern-client"]


async def test_concurrency_limit_is_honoured(relay, backend):
    async with mcp_worker(relay, backend, "--concurrency", "2") as worker:
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(post, relay.url, "/v1/chat/completions", chat_body(f"SLOW {i}"))

            async def two_sampling_one_queued() -> dict | None:
                health = await get_json(relay.url + "/health")
                return health if (health["in_flight"], health["queue_depth"]) == (2, 1) else None

            health = await eventually(two_sampling_one_queued)
            # the third waits at the relay because the worker grants no third slot, not by chance
            assert health["workers"][0]["free_slots"] == 0
            await eventually(lambda: len(worker.model.requests) == 2, what="two sampling requests at the model")
            tg.cancel_scope.cancel()
        await post(relay.url, "/v1/chat/completions", chat_body("after"))
        assert "deprecated" not in worker.stderr  # the SDK's sampling deprecation warning is silenced


async def test_a_worker_that_starts_then_hands_back_ends_the_request_at_once(relay_process):
    """start, then release: a protocol violation. The caller gets a clear 502 at once, not a wait until
    --request-timeout (600 s by default)."""
    relay = relay_process
    async with await connect_unix(relay.socket) as stream, anyio.create_task_group() as tg:
        await stream.send(encode(Hello(version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="confused"))))
        (welcome,) = await read_frames(stream, 1)
        await stream.send(encode(Ready(slots=1)))
        answer = {}

        async def call() -> None:
            answer["response"] = await post(relay.url, "/v1/chat/completions", chat_body("hi"))

        tg.start_soon(call)
        (request,) = await read_frames(stream, 1)
        assert request.type == "request"
        await stream.send(encode(Start(id=request.id, model="m")) + encode(Release(id=request.id)))
        response = await eventually(lambda: answer.get("response"), what="the caller's answer")
    assert welcome.type == "welcome" and response.status == 502
    error = response.json()["error"]
    assert error["code"] == "protocol_violation" and "handed this request back after it had started" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_thousands_of_one_character_deltas_in_one_write_all_reach_the_caller(relay_process, stream):
    relay = relay_process
    answer = "".join(str(i % 10) for i in range(5000))
    async with await connect_unix(relay.socket) as link, anyio.create_task_group() as tg:
        await link.send(encode(Hello(version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="chatty"))))
        await read_frames(link, 1)
        await link.send(encode(Ready(slots=1)))
        got = {}

        async def call() -> None:
            got["response"] = await post(relay.url, "/v1/chat/completions", chat_body("talk", stream=stream))

        tg.start_soon(call)
        (request,) = await read_frames(link, 1)
        frames = [Start(id=request.id, model="m"), *(TextDelta(id=request.id, text=c) for c in answer)]
        await link.send(b"".join(map(encode, [*frames, End(id=request.id, stop_reason="endTurn")])))
        response = await eventually(lambda: got.get("response"), what="the caller's answer")
    assert response.status == 200
    if stream:
        chunks = [json.loads(e.removeprefix("data: ")) for e in response.sse_events[:-1] if e.startswith("data: ")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert len(response.sse_events) < 50  # batched, not one frame per character
    else:
        text = response.json()["choices"][0]["message"]["content"]
    assert text == answer


async def test_a_stuck_worker_does_not_take_everything(backend):
    """A worker that grants 100 slots and never answers (in real life: VS Code waiting for a consent
    click nobody gives) connected first, a healthy one beside it: requests spread by requests in
    flight, and the stuck worker's ones move to the healthy worker after --start-timeout."""
    async with relay_in_process(start_timeout=1) as relay:
        async with await connect_unix(relay.socket) as stuck, anyio.create_task_group() as tg:
            await stuck.send(encode(Hello(version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="stuck"))))
            await read_frames(stuck, 1)
            await stuck.send(encode(Ready(slots=100)))
            async with mcp_worker(relay, backend, wait_ready=False) as healthy:
                await wait_for_workers(relay, 2, sampling=False)
                answers: dict[int, str] = {}

                async def call(i: int) -> None:
                    response = await post(relay.url, "/v1/chat/completions", chat_body(f"caller {i}"))
                    answers[i] = response.json()["choices"][0]["message"]["content"]

                for i in range(6):
                    tg.start_soon(call, i)
                await eventually(lambda: len(answers) == 6, timeout=20, what="all six answers")
                assert len(healthy.model.requests) == 6
            frames, decoder = [], RelayFrameDecoder()
            with anyio.fail_after(10):
                while not any(f.type == "cancel" for f in frames):
                    frames += list(decoder.feed(await stuck.receive()))
            cancels = [f for f in frames if f.type == "cancel"]
        assert answers == {i: f"echo: caller {i}" for i in range(6)}
        assert cancels and "relay --start-timeout" in cancels[0].reason
        assert "moving it to another worker" in relay.log


@pytest.mark.real
async def test_mcptb_server_started_by_hand_in_a_terminal_says_how_to_start_it_and_exits(relay, backend):
    """stdin (and stdout) a real pseudo-terminal, as when typed at a shell prompt: instead of waiting
    silently for MCP and counting as a worker, it says on stderr who starts it and how, and exits 2."""
    import pty

    from mcp_server._terminal import EXIT_TERMINAL

    master, slave = pty.openpty()
    try:
        with anyio.fail_after(30):
            done = await anyio.run_process(
                [sys.executable, "-m", "mcp_server", "--socket", relay.socket, "--backend", backend],
                stdin=slave,
                stdout=slave,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                check=False,
            )
        os.set_blocking(master, False)
        try:
            on_terminal = os.read(master, 4096)
        except BlockingIOError:
            on_terminal = b""
    finally:
        os.close(slave)
        os.close(master)
    stderr = done.stderr.decode()
    assert done.returncode == EXIT_TERMINAL, stderr
    assert on_terminal == b""  # nothing on stdout, which belongs to MCP
    assert "an MCP client starts it" in stderr and "mcptb-serve" in stderr
    assert "claude mcp add --scope user mcptb -- " in stderr and f"--socket {relay.socket}" in stderr
    assert await no_workers(relay)


async def test_a_worker_that_stops_reading_its_frames_is_dropped_and_its_callers_answered(backend, monkeypatch):
    """A worker that grants slots and then reads nothing: once the kernel's socket buffer is full and
    OUTBOUND_BUFFER frames wait behind it (4 here), the relay drops the worker - its link ends while a
    write to it is stuck - and its callers get an answer instead of waiting for --request-timeout
    (before, the worker stayed connected and every caller waited)."""
    monkeypatch.setattr(_worker_link, "OUTBOUND_BUFFER", 4)
    async with relay_in_process(request_timeout=120, worker_grace=0.5) as relay:
        async with await connect_unix(relay.socket) as deaf, anyio.create_task_group() as tg:
            await deaf.send(encode(Hello(version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="deaf"))))
            await read_frames(deaf, 1)  # the welcome; nothing is read after it
            await deaf.send(encode(Ready(slots=64)))
            await wait_for_workers(relay, 1, sampling=False)
            statuses: list[int] = []
            # a few frames fill the relay's socket buffer to the worker, whatever the host's default
            body_size = max(200_000, int(Path("/proc/sys/net/core/wmem_default").read_text()) // 2)

            async def call(i: int) -> None:
                body = chat_body(f"caller {i} " + "x" * body_size)
                statuses.append((await post(relay.url, "/v1/chat/completions", body)).status)

            for i in range(12):
                tg.start_soon(call, i)
            await eventually(lambda: "is not reading its frames; dropping it" in relay.log, timeout=20, what="the drop")
            await eventually(lambda: len(statuses) == 12, timeout=20, what="every caller answered")
            health = await get_json(relay.url + "/health")
    assert not health["workers"], health
    assert statuses == [503] * 12  # nobody left to serve them (after --worker-grace)
