"""Settings of both programs: one declaration gives the flag and the MCPTB_* variable, and a value from
the environment is checked exactly like a flag (a one-line usage error, never a traceback or a silent
default)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcp_server.cli import parse_args as server_args
from relay._config import parse_args as relay_args
from shared_protocol._settings import parse_settings, setting

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sample:
    name: str = field(default="x", metadata=setting("a name"))
    count: int = field(default=2, metadata=setting("how many", positive=True))
    color: str = field(default="red", metadata=setting("a color", choices=["red", "blue"]))
    loud: bool = field(default=False, metadata=setting("shout"))
    nickname: str | None = field(default=None, metadata=setting("optional"))


def parse(argv: list[str], env: dict[str, str]) -> Sample:
    return parse_settings(Sample, argv, env, prog="sample", description="d")[0]


def test_defaults_environment_and_flags_in_that_order():
    assert parse([], {}) == Sample()
    env = {"MCPTB_COUNT": "5", "MCPTB_COLOR": "blue", "MCPTB_LOUD": "yes", "MCPTB_NICKNAME": "n"}
    assert parse([], env) == Sample(count=5, color="blue", loud=True, nickname="n")
    assert parse(["--count", "7", "--no-loud"], env) == Sample(count=7, color="blue", loud=False, nickname="n")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"MCPTB_COLOR": "green"}, "MCPTB_COLOR='green': must be one of red, blue"),
        ([], {"MCPTB_COUNT": "many"}, "MCPTB_COUNT='many': 'many' is not an integer"),
        ([], {"MCPTB_COUNT": "0"}, "MCPTB_COUNT='0': '0' must be positive"),
        ([], {"MCPTB_LOUD": "loud"}, "MCPTB_LOUD='loud': must be one of 1, true, yes, on, 0, false, no, off"),
        (["--count", "-1"], {}, "argument --count: '-1' must be positive"),
        (["--color", "green"], {}, "argument --color: invalid choice: 'green'"),
    ],
)
def test_a_bad_value_is_a_one_line_usage_error(capsys, argv, env, message):
    with pytest.raises(SystemExit) as exit_:
        parse(argv, env)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_mcptb_server_refuses_a_bad_mode_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("MCPTB_MODE", "bogus")
    with pytest.raises(SystemExit):
        server_args([])
    assert "MCPTB_MODE='bogus': must be one of auto, sampling, agent" in capsys.readouterr().err


def test_mcptb_server_settings_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("MCPTB_TOOL_EMULATION", "off")
    monkeypatch.setenv("MCPTB_SOCKET", "/tmp/x/relay.sock")
    options = server_args(["--concurrency", "2", "--mode", "agent"])
    assert (options.concurrency, options.mode, options.tool_emulation) == (2, "agent", "off")
    assert options.socket == "/tmp/x/relay.sock"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MCPTB_BACKEND", "bogus", "MCPTB_BACKEND='bogus': must be one of asyncio, trio"),
        ("MCPTB_LOG_LEVEL", "loud", "MCPTB_LOG_LEVEL='loud': must be one of debug, info, warning, error"),
        ("MCPTB_MAX_BODY_BYTES", "lots", "MCPTB_MAX_BODY_BYTES='lots': 'lots' is not an integer"),
    ],
)
@pytest.mark.real
def test_mcptb_relay_refuses_a_bad_environment_value_in_one_line(variable, value, message):
    result = subprocess.run(
        [sys.executable, "-m", "relay", "--port", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, variable: value},
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"mcptb-relay: error: {message}"
    assert "Traceback" not in result.stderr


def test_relay_settings_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("MCPTB_QUEUE_TIMEOUT", "2.5")
    monkeypatch.setenv("MCPTB_LOG_CONTENT", "true")
    config = relay_args(["--max-queue", "3", "--socket", "/tmp/x/relay.sock"])
    assert (config.queue_timeout, config.log_content, config.max_queue) == (2.5, True, 3)


@pytest.mark.real
def test_a_body_limit_the_worker_link_cannot_carry_is_refused_at_start():
    result = subprocess.run(
        [sys.executable, "-m", "relay", "--port", "0", "--max-body-bytes", str(64 << 20)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2 and "--max-body-bytes must be at most" in result.stderr


def test_body_memory_smaller_than_one_body_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        relay_args(["--max-body-bytes", "2000000", "--max-body-memory", "1000000"])
    assert exit_.value.code == 2
    assert "--max-body-memory (1000000) must be at least --max-body-bytes (2000000)" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--head-timeout", "--send-timeout", "--agent-grace", "--max-unread"])
def test_the_new_limits_must_be_positive(capsys, flag):
    with pytest.raises(SystemExit):
        relay_args([flag, "0"])
    assert flag in capsys.readouterr().err


def test_continuation_hold_may_be_zero():
    assert relay_args(["--continuation-hold", "0"]).continuation_hold == 0
