"""The official TypeScript MCP SDK as the MCP client: HTTP caller -> relay -> mcptb-server -> TS SDK Client.

``tests/node/sampling_worker.mjs`` uses ``@modelcontextprotocol/sdk``'s ``Client`` (2025 handshake,
capabilities ``{sampling: {}}``) to spawn the real ``python -m mcp_server`` over stdio and answers
``sampling/createMessage`` with ``ts-sdk says: <last user text>`` from model ``ts-scripted-model``. It
prints ``READY`` once connected and one JSON line per sampling request it received, so these tests can
check both ends: what the HTTP caller got back, and what the TypeScript client was asked.

Needs node, npm and ``cd tests/node && npm install``; without them the tests skip, loudly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.streams.buffered
import pytest

from _eventually import eventually
from _http_client import get_json, post
from _sse import data_of
from conftest import ROOT, RelayProcess, no_workers, say, wait_for_workers

pytestmark = [pytest.mark.anyio, pytest.mark.node]


@pytest.fixture
def relay(relay_process):
    """Real clients meet the real relay process, as users run it."""
    return relay_process


NODE_DIR = ROOT / "tests" / "node"
SCRIPT = NODE_DIR / "sampling_worker.mjs"
CLIENT_NAME = "mcptb-ts-sdk-test-client"  # keep in step with sampling_worker.mjs
CLIENT_VERSION = "1.32.2-test"
TS_MODEL = "ts-scripted-model"
PATH = "/v1/chat/completions"
STREAM_ENDED = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)


def _skip_reason() -> str | None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"SKIPPED: {'/'.join(missing)} not found - the TypeScript MCP SDK client test did not run"
    if not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        return (
            "SKIPPED: tests/node/node_modules is missing (run: cd tests/node && npm install --no-audit "
            "--no-fund) - the TypeScript MCP SDK client test did not run"
        )
    return None


@pytest.fixture(autouse=True)
def _needs_node(request: pytest.FixtureRequest) -> None:
    """Skip without node/npm/node_modules, and say so on the real stderr, past pytest's capture."""
    reason = _skip_reason()
    if reason is None:
        return
    say(request.config, f"*** {reason} ***")
    pytest.skip(reason)


@dataclass
class TsWorker:
    """The running node process and what it printed. Its stdout is read on demand (no background task,
    so a failing test's exception is not wrapped in an exception group); it prints only a few lines."""

    process: anyio.abc.Process
    stderr_path: str
    lines: list[str] = field(default_factory=list)
    eof: bool = False
    returncode: int | None = None
    _stderr: str | None = None

    def __post_init__(self) -> None:
        assert self.process.stdout is not None
        self._stdout = anyio.streams.buffered.BufferedByteReceiveStream(self.process.stdout)

    @property
    def stderr(self) -> str:
        """Node's stderr, which also holds mcptb-server's (kept after the temporary file is gone)."""
        if self._stderr is not None:
            return self._stderr
        return Path(self.stderr_path).read_text(errors="replace")

    def keep_stderr(self) -> None:
        self._stderr = self.stderr

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    @property
    def sampling_requests(self) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("event") == "sampling"]

    async def _read_line(self) -> bool:
        """Read one more line of node's stdout; False at its end."""
        if self.eof:
            return False
        try:
            self.lines.append((await self._stdout.receive_until(b"\n", 1 << 20)).decode())
        except STREAM_ENDED:
            self.eof = True
        return not self.eof

    async def wait_for_ready(self) -> None:
        with anyio.move_on_after(30):
            while "READY" not in self.lines and await self._read_line():
                pass
        if "READY" not in self.lines:
            why = "exited" if self.eof else "did not print READY within 30 s"
            raise AssertionError(f"node {why}: {self.lines!r}; stderr:\n{self.stderr}")

    async def wait_for_sampling(self, count: int) -> list[dict[str, Any]]:
        """The node script logs a request before answering it, but we may not have read that line yet."""
        with anyio.move_on_after(10):
            while len(self.sampling_requests) < count and await self._read_line():
                pass
        requests = self.sampling_requests
        assert len(requests) >= count, (
            f"expected {count} sampling requests; node printed {self.lines!r}; stderr:\n{self.stderr}"
        )
        return requests

    async def read_to_end(self) -> None:
        with anyio.move_on_after(5):
            while await self._read_line():
                pass


async def _stop(process: anyio.abc.Process) -> None:
    """Close node's stdin (its signal to shut down cleanly), then SIGTERM, then SIGKILL."""
    if process.returncode is None and process.stdin is not None:
        with anyio.move_on_after(1):
            await process.stdin.aclose()
    with anyio.move_on_after(10):
        await process.wait()
        return
    process.terminate()
    with anyio.move_on_after(5):
        await process.wait()
        return
    process.kill()
    await process.wait()


@asynccontextmanager
async def ts_sdk_worker(relay: RelayProcess, backend: str, *server_args: str) -> AsyncIterator[TsWorker]:
    """``sampling_worker.mjs`` spawning ``mcptb-server`` for ``relay``; waits until it serves sampling.

    On leaving, the node process is asked to stop by closing its stdin (SIGTERM, then SIGKILL, if it
    does not); its exit code lands in ``worker.returncode`` and its remaining stdout in ``worker.lines``."""
    errlog, stderr_path = tempfile.mkstemp(prefix="mcptb-ts-worker-", suffix=".log")
    command = [
        "node",
        str(SCRIPT),
        sys.executable,
        relay.socket,
        backend,
        "--reconnect-max-delay",
        "0.5",
        *server_args,
    ]
    try:
        try:
            process = await anyio.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, cwd=ROOT
            )
        finally:
            os.close(errlog)
        worker = TsWorker(process, stderr_path)
        try:
            await worker.wait_for_ready()
            try:
                await wait_for_workers(relay, 1, sampling=True)
            except TimeoutError:
                health = await get_json(relay.url + "/health")
                raise AssertionError(
                    f"no sampling worker in /health within 20 s: {health}\n"
                    f"node stderr:\n{worker.stderr}\nrelay log:\n{relay.log}"
                ) from None
            yield worker
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await _stop(process)
                    worker.returncode = process.returncode
                    await worker.read_to_end()
                finally:
                    if process.returncode is None:
                        process.kill()
                    await process.aclose()
                    worker.keep_stderr()
    finally:
        os.unlink(stderr_path)


def _texts(message: dict[str, Any]) -> list[str]:
    """The text blocks of a sampling message as the TS client received it (one block or a list)."""
    content = message["content"]
    return [b["text"] for b in (content if isinstance(content, list) else [content]) if b["type"] == "text"]


def _body(**fields: Any) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", **fields}).encode()


async def test_non_stream_is_answered_by_the_typescript_sdk_client(relay, backend):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello from http"},
    ]
    async with ts_sdk_worker(relay, backend) as worker:
        health = await get_json(relay.url + "/health")
        response = await post(relay.url, PATH, _body(messages=messages, max_tokens=64))
        (params,) = await worker.wait_for_sampling(1)
        models = await get_json(relay.url + "/v1/models")

    # who the relay saw: the TypeScript SDK client, 2025 handshake, background sampling
    (info,) = health["workers"]
    assert info["client"] == {"name": CLIENT_NAME, "version": CLIENT_VERSION}
    assert info["modes"] == ["sampling", "agent"]
    assert info["protocol_version"] == "2025-11-25"

    # what the HTTP caller got
    assert response.status == 200, response.body
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == TS_MODEL
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "ts-sdk says: hello from http"
    assert choice["finish_reason"] == "stop"

    # what the TypeScript client was asked
    assert params["systemPrompt"] == "You are terse."
    assert params["maxTokens"] == 64
    assert [m["role"] for m in params["messages"]] == ["user"]
    assert _texts(params["messages"][0]) == ["hello from http"]
    assert params["modelPreferences"]["hints"] == [{"name": "gpt-4o-mini"}]

    ids = [m["id"] for m in models["data"]]
    assert ids[0] == CLIENT_NAME and TS_MODEL in ids

    # closing the TS client's stdin made it close the MCP session cleanly
    assert worker.returncode == 0, worker.stderr
    assert {"event": "closed"} in worker.events


async def test_stream_is_answered_by_the_typescript_sdk_client(relay, backend):
    messages = [
        {"role": "system", "content": "Stream it."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "stream from http"},
    ]
    body = _body(messages=messages, max_completion_tokens=99, stream=True, stream_options={"include_usage": True})
    async with ts_sdk_worker(relay, backend) as worker:
        response = await post(relay.url, PATH, body)
        (params,) = await worker.wait_for_sampling(1)

    assert response.status == 200, response.body
    assert response.headers["content-type"] == "text/event-stream"
    datas = data_of(response.body)
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    # the first chunk leaves before the worker answers, so it can only name the model that was asked for;
    # every chunk after it names the model that really answered
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["model"] in ("gpt-4o-mini", TS_MODEL)
    assert {c["model"] for c in chunks[1:]} == {TS_MODEL}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "ts-sdk says: stream from http"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    finishes = [f for f in finishes if f is not None]
    assert finishes == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0

    assert params["systemPrompt"] == "Stream it."
    assert params["maxTokens"] == 99
    assert [m["role"] for m in params["messages"]] == ["user", "assistant", "user"]
    assert [_texts(m) for m in params["messages"]] == [["first"], ["ok"], ["stream from http"]]
    assert worker.returncode == 0, worker.stderr


async def test_worker_leaves_the_relay_when_the_typescript_client_exits(relay, backend):
    async with ts_sdk_worker(relay, backend) as worker:
        for text in ("one", "two"):
            response = await post(relay.url, PATH, _body(messages=[{"role": "user", "content": text}]))
            assert response.json()["choices"][0]["message"]["content"] == f"ts-sdk says: {text}"
        requests = await worker.wait_for_sampling(2)
    assert [_texts(r["messages"][-1]) for r in requests] == [["one"], ["two"]]
    assert worker.returncode == 0, worker.stderr
    # the TS SDK closed mcptb-server's stdin; the server exited and its relay link went with it
    await eventually(
        lambda: no_workers(relay), what=f"mcptb-server gone; node stderr:\n{worker.stderr}\nrelay log:\n{relay.log}"
    )
    response = await post(relay.url, PATH, _body(messages=[{"role": "user", "content": "anyone?"}]))
    assert response.status == 503


async def test_concurrent_requests_each_get_their_own_answer(relay, backend):
    texts = [f"parallel {i}" for i in range(6)]
    answers: dict[str, str] = {}

    async def ask(text: str) -> None:
        response = await post(relay.url, PATH, _body(messages=[{"role": "user", "content": text}]))
        assert response.status == 200, response.body
        answers[text] = response.json()["choices"][0]["message"]["content"]

    async with ts_sdk_worker(relay, backend) as worker:
        async with anyio.create_task_group() as tg:
            for text in texts:
                tg.start_soon(ask, text)
        await worker.wait_for_sampling(len(texts))
    assert answers == {text: f"ts-sdk says: {text}" for text in texts}
    assert worker.returncode == 0, worker.stderr
