"""Simon Willison's ``llm`` CLI (a real process) on the relay's Responses API: an answer is printed, and a
stream that fails after it started makes ``llm`` exit non-zero with the error - which it does only when the
stream ends as OpenAI's do (an ``error`` event with an ``error`` object, which the openai SDK raises; it
ignores ``response.failed``). The relay is a real process; a worker of the test's own, speaking the
protocol over the Unix socket, answers or fails half way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from shared_protocol import (
    PROTOCOL_VERSION,
    End,
    ErrorFrame,
    Hello,
    Ready,
    RelayFrameDecoder,
    RequestFrame,
    Start,
    TextDelta,
    WorkerInfo,
    encode,
)

from conftest import RelayProcess

pytestmark = pytest.mark.anyio

LLM = shutil.which("llm", path=str(Path(sys.executable).parent))


@pytest.fixture
def relay(relay_process: RelayProcess) -> RelayProcess:
    return relay_process


async def half_then_fail(relay: RelayProcess, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """A worker that answers 'hi' whole and anything with FAIL in it with some text, then an error."""
    async with await anyio.connect_unix(relay.socket) as link:
        await link.send(
            encode(
                Hello(
                    version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="half", modes=["sampling"], concurrency=1)
                )
            )
        )
        decoder = RelayFrameDecoder()
        list(decoder.feed(await link.receive()))  # welcome
        await link.send(encode(Ready(slots=1)))
        task_status.started()
        while True:
            for frame in decoder.feed(await link.receive()):
                if not isinstance(frame, RequestFrame):
                    continue
                text = str(frame.request.messages[-1].content[0].text)  # type: ignore[union-attr]
                frames = [Start(id=frame.id, model="half-model"), TextDelta(id=frame.id, text="Half an answer")]
                if "FAIL" in text:
                    frames.append(ErrorFrame(id=frame.id, code="client_error", message="the model broke off"))
                else:
                    frames.append(End(id=frame.id, stop_reason="endTurn"))
                await link.send(b"".join(encode(f) for f in frames) + encode(Ready(slots=1)))


def run_llm(relay: RelayProcess, home: Path, prompt: str) -> tuple[int, str, str]:
    assert LLM is not None, "the llm CLI is a test dependency (pyproject.toml): pip install -e '.[test]'"
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: bridge\n  model_name: any\n  api_base: {relay.url}/v1\n  responses: true\n"
    )
    env = {**os.environ, "LLM_USER_PATH": str(home), "OPENAI_API_KEY": "unused"}
    done = subprocess.run([str(LLM), "-m", "bridge", prompt], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


async def test_llm_prints_an_answer_and_fails_on_a_stream_that_fails(relay, backend, tmp_path):
    async with anyio.create_task_group() as tg:
        await tg.start(half_then_fail, relay)
        ok = await anyio.to_thread.run_sync(run_llm, relay, tmp_path, "hi")
        failed = await anyio.to_thread.run_sync(run_llm, relay, tmp_path, "FAIL please")
        tg.cancel_scope.cancel()
    assert ok[0] == 0 and ok[1].strip() == "Half an answer", ok
    code, _out, err = failed
    assert code != 0 and "the model broke off" in err, failed
