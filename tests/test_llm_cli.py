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

from _scripted import half_then_fail
from conftest import RelayProcess

pytestmark = pytest.mark.anyio

LLM = shutil.which("llm", path=str(Path(sys.executable).parent))


@pytest.fixture
def relay(relay_process: RelayProcess) -> RelayProcess:
    return relay_process


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
        await tg.start(half_then_fail, relay.socket)
        ok = await anyio.to_thread.run_sync(run_llm, relay, tmp_path, "hi")
        failed = await anyio.to_thread.run_sync(run_llm, relay, tmp_path, "FAIL please")
        tg.cancel_scope.cancel()
    assert ok[0] == 0 and ok[1].strip() == "Half an answer", ok
    code, _out, err = failed
    assert code != 0 and "the model broke off" in err, failed
