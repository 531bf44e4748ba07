"""``mcptb-serve`` keeps a Claude Code session serving, with the real Claude Code CLI offline and a real relay.

- Headless (``--headless``): the supervisor runs ``claude -p`` sessions one after another. One run answers
  six callers spread over time: one that came before any MCP server was connected (the relay's
  ``--worker-grace`` holds it), one after an idle ``next_request`` that ended the model's turn (the Stop
  hook sent it back), one after the session's Claude Code was killed (SIGKILL: the supervisor starts a
  new session), two after the relay was restarted on the same socket (the session's mcptb-server
  reconnects). Ctrl-C (SIGINT to mcptb-serve's process group) stops it: exit 0, one line per session,
  no process left.
- Rotation: with ``--session-budget 1`` a session ends after its first request and a fresh one (another
  Claude Code session id, a context without the earlier request) serves the next caller.
- Interactive, on a pseudo-terminal: the Stop hook keeps one session serving across five turns the model
  ended after each reply; Esc while the agent waits in next_request stops serving (a caller then gets
  503 no_agent after the relay's short ``--agent-grace``), and the session stays open.

The scripted model (tests/claude_code/fake_model.py) ends its turn after every delivered reply and waits
``FAKE_WAIT_SECONDS`` (5 here) per idle ``next_request``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from functools import partial
from typing import Any

import anyio
import openai
import pytest
from claude_code.fake_model import ANSWER_PREFIX, GAVE_UP, NEXT_REQUEST, REPLY, SERVED
from claude_code.harness import (
    Background,
    ClaudeCode,
    FakeModelProcess,
    Run,
    Terminal,
    children,
    group_members,
    processes_left_with_home,
    start_background,
)
from test_claude_code import MODEL_ID, _diagnostics
from test_serve_command import _answer_first_run_questions, _serve_command, _serve_env

from mcp_server._stop_hook import KEEP_SERVING

from _eventually import eventually
from _http_client import get_json
from conftest import RelayProcess, say

pytestmark = [pytest.mark.anyio, pytest.mark.node]

WAIT_SECONDS = "5"
"""The fake model's wait_seconds per next_request: an idle poll ends quickly."""
SESSION_LINE = re.compile(
    r"^mcptb-serve: session (?P<n>\d+) ended after \S+: (?P<served>\d+) requests? served, "
    r"(?P<handed>[\d,]+) characters handed to the agent; (?P<why>.*); (?P<then>[^;]*)$"
)
SESSION_HEADER = "x-claude-code-session-id"


# --- helpers ---------------------------------------------------------------------------------------------


def _ask(relay: RelayProcess, text: str, stream: bool = True, timeout: float = 45) -> str:
    """One chat completion from a real OpenAI client (no retries)."""
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=timeout)
    messages: Any = [{"role": "user", "content": text}]
    if not stream:
        return client.chat.completions.create(model=MODEL_ID, messages=messages).choices[0].message.content or ""
    chunks = client.chat.completions.create(model=MODEL_ID, stream=True, messages=messages)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def ask(relay: RelayProcess, text: str, **kwargs: Any) -> str:
    return await anyio.to_thread.run_sync(partial(_ask, relay, text, **kwargs))


async def _workers(relay: RelayProcess) -> list[dict[str, Any]]:
    return list((await get_json(relay.url + "/health"))["workers"])


async def agent_waiting(relay: RelayProcess, timeout: float = 30) -> dict[str, Any]:
    """The one worker, once its agent waits in next_request (``agent: serving`` with a free slot)."""

    async def waiting() -> dict[str, Any] | None:
        workers = await _workers(relay)
        if len(workers) == 1 and workers[0]["agent"] == "serving" and workers[0]["free_slots"] > 0:
            return workers[0]
        return None

    return await eventually(waiting, timeout=timeout, interval=0.1, what="an agent waiting in next_request")


def _names(fake: FakeModelProcess) -> list[str]:
    return [r["decision"].get("name", r["decision"].get("text")) for r in fake.messages_requests]


def _serving_requests(fake: FakeModelProcess, question: str) -> list[dict[str, Any]]:
    """The logged model requests whose decision was the reply answering ``question``."""
    return [
        r
        for r in fake.messages_requests
        if r["decision"].get("name") == REPLY and r["decision"]["input"].get("content") == ANSWER_PREFIX + question
    ]


def _session_of(logged: dict[str, Any]) -> str:
    (session,) = [v for k, v in logged["headers"] if k.lower() == SESSION_HEADER]
    return str(session)


def _session_lines(stderr: str) -> list[re.Match[str]]:
    return [m for m in map(SESSION_LINE.match, stderr.splitlines()) if m]


def _headless(claude: ClaudeCode, relay: RelayProcess, backend: str, *flags: str) -> Background:
    args = _serve_command(
        "--claude", str(claude.binary), "--socket", relay.socket, "--headless", *flags,
        "--", "--output-format", "stream-json", "--verbose",
    )  # fmt: skip
    return start_background(
        args, env=_serve_env(claude, backend), cwd=claude.project, logdir=claude.workdir / "serve", groups=claude.groups
    )


def _why(serving: Background | None, fake: FakeModelProcess, *relays: RelayProcess) -> str:
    run = serving.run() if serving is not None else None
    return "\n".join(_diagnostics(run, fake, relay) for relay in relays[-1:]) + "".join(
        f"\n--- earlier relay log ---\n{relay.log}" for relay in relays[:-1]
    )


def _claude_of(serving: Background, claude: ClaudeCode) -> int:
    """The pid of the Claude Code the supervisor runs now (its only child)."""
    (pid,) = [child for child in children(serving.proc.pid) if os.readlink(f"/proc/{child}/exe") == str(claude.binary)]
    return pid


# --- headless, supervised ----------------------------------------------------------------------------------


async def test_headless_serving_outlives_ended_turns_a_killed_claude_and_a_relay_restart(
    request, claude, relay_factory, backend, fake_model
):
    fake = fake_model(FAKE_WAIT_SECONDS=WAIT_SECONDS)
    claude.model_url = fake.url
    grace = ("--keepalive-interval", "0.5", "--worker-grace", "30")
    relays = [relay_factory(*grace)]
    serving: Background | None = None
    answers: dict[int, str] = {}
    started = time.monotonic()
    marks: list[str] = []

    def mark(what: str) -> None:
        marks.append(f"{time.monotonic() - started:5.1f} s  {what}")

    async def caller(n: int) -> None:
        answers[n] = await ask(relays[-1], f"question {n}")
        mark(f"caller {n} answered")

    try:
        with anyio.fail_after(85):
            # 1: a caller before any MCP server is connected waits for the session that starts
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller, 1)
                await eventually(lambda: _queued(relays[-1]), timeout=10, what="caller 1 queued")
                assert await _workers(relays[-1]) == []  # no MCP server connected yet
                serving = _headless(claude, relays[-1], backend)
                mark("mcptb-serve started")
            # 2: at once; the model ended its turn after reply 1 and the Stop hook sent it back
            await caller(2)
            first_claude = _claude_of(serving, claude)
            # 3: after an idle next_request: the model gave up ("gave up"), and was sent back again
            replied = max(r["n"] for r in fake.messages_requests if r["decision"].get("name") == REPLY)
            await eventually(
                lambda: any(r["n"] > replied and r["decision"].get("text") == GAVE_UP for r in fake.messages_requests),
                timeout=20, what="an idle next_request that ended the model's turn",
            )  # fmt: skip
            await agent_waiting(relays[-1])
            await caller(3)
            # 4: Claude Code killed: the supervisor clears its group and starts a new session
            os.kill(first_claude, signal.SIGKILL)
            mark("claude killed")
            await eventually(lambda: _session_lines(serving.stderr), timeout=20, what="session 1's line")
            assert group_members(first_claude) == [], _why(serving, fake, *relays)
            await caller(4)
            second_claude = _claude_of(serving, claude)
            worker = await agent_waiting(relays[-1])
            # 5, 6: the relay restarted on the same socket: the session's mcptb-server reconnects
            relays[-1].stop()
            mark("relay stopped")
            relays.append(relay_factory(*grace, socket=relays[-1].socket))
            await caller(5)
            await caller(6)
            (again,) = await _workers(relays[-1])
            assert again["pid"] == worker["pid"], _why(serving, fake, *relays)  # the same mcptb-server
            assert _claude_of(serving, claude) == second_claude
            # Ctrl-C stops serving
            run = await anyio.to_thread.run_sync(serving.finish)
            mark("mcptb-serve stopped")
    finally:
        if serving is not None:
            serving.finish(signal.SIGKILL, timeout=10)
    why = f"{_why(serving, fake, *relays)}\n--- timeline ---\n" + "\n".join(marks)
    assert answers == {n: f"{ANSWER_PREFIX}question {n}" for n in range(1, 7)}, why
    assert run.returncode == 0, why
    lines = _session_lines(run.stderr)
    assert [(m["n"], m["served"], m["then"]) for m in lines] == [
        ("1", "3", "next one in 1 s."), ("2", "3", "stopping.")
    ], why  # fmt: skip
    assert "Claude Code was killed by signal 9" in lines[0]["why"], why
    assert all(int(m["handed"].replace(",", "")) > 0 for m in lines), why
    assert run.stderr.rstrip().endswith("stopping."), why
    # nothing left: not mcptb-serve, not either session's Claude Code or mcptb-server, no hook
    assert processes_left_with_home(claude.home) == [], why
    assert group_members(first_claude) == group_members(second_claude) == [], why
    # two Claude Code sessions served, three callers each; every turn the model ended after a reply
    # (and every idle "gave up") was followed by another next_request in that session
    sessions = [_session_of(_serving_requests(fake, f"question {n}")[0]) for n in range(1, 7)]
    assert len(set(sessions[:3])) == len(set(sessions[3:])) == 1 and sessions[0] != sessions[3], why
    names = _names(fake)
    # the turns the model ended after q1, q2, q4 and q5 (q3's session may be killed and q6's stopped
    # before the model ends that turn), and after the idle poll
    assert names.count(SERVED) >= 4 and GAVE_UP in names, why
    kept = [r for r in fake.messages_requests if KEEP_SERVING in json.dumps(r["body"]["messages"][-2:])]
    assert len(kept) >= 5 and all(r["decision"].get("name") == NEXT_REQUEST for r in kept), why
    say(request.config, f"[Claude Code {claude.version}, {backend}, supervised headless] " + "; ".join(marks))


async def _queued(relay: RelayProcess) -> bool:
    return bool((await get_json(relay.url + "/health"))["queue_depth"] >= 1)


async def test_a_session_whose_budget_is_spent_hands_over_to_a_fresh_one(
    request, claude, relay_factory, backend, fake_model
):
    fake = fake_model(FAKE_WAIT_SECONDS=WAIT_SECONDS)
    claude.model_url = fake.url
    relay = relay_factory("--keepalive-interval", "0.5", "--worker-grace", "30")
    serving: Background | None = None
    started = time.monotonic()
    try:
        with anyio.fail_after(80):
            serving = _headless(claude, relay, backend, "--session-budget", "1")
            first = await ask(relay, "question 1")
            await eventually(lambda: _session_lines(serving.stderr), timeout=30, what="session 1's line")
            second = await ask(relay, "question 2")
            # session 2 spends its budget too; stop while session 3 waits
            await eventually(lambda: len(_session_lines(serving.stderr)) == 2, timeout=30, what="session 2's line")
            await agent_waiting(relay)
            run = await anyio.to_thread.run_sync(serving.finish)
    finally:
        if serving is not None:
            serving.finish(signal.SIGKILL, timeout=10)
    wall = time.monotonic() - started
    why = _why(serving, fake, relay)
    assert (first, second) == (ANSWER_PREFIX + "question 1", ANSWER_PREFIX + "question 2"), why
    assert run.returncode == 0, why
    lines = _session_lines(run.stderr)
    assert [(m["n"], m["served"], m["then"]) for m in lines] == [
        ("1", "1", "starting a fresh one now."), ("2", "1", "starting a fresh one now."), ("3", "0", "stopping."),
    ], why  # fmt: skip
    for line in lines[:2]:
        assert line["why"] == "its budget was spent; Claude Code exited with status 0", why
        assert int(line["handed"].replace(",", "")) > 1, why
    assert processes_left_with_home(claude.home) == [], why
    # the second request went to another Claude Code session, whose context starts afresh
    (one,), (two,) = _serving_requests(fake, "question 1"), _serving_requests(fake, "question 2")
    assert _session_of(one) != _session_of(two), why
    assert "question 1" not in json.dumps(two["body"]["messages"]), why
    assert "has used its budget" in json.dumps(fake.messages_requests), why  # next_request said so
    say(request.config, f"[Claude Code {claude.version}, {backend}, rotation] 2 callers, 3 sessions: {wall:.1f} s")


# --- interactive, on a pseudo-terminal -------------------------------------------------------------------


async def test_an_interactive_session_serves_turn_after_turn_until_esc(
    request, claude, relay_factory, backend, fake_model
):
    fake = fake_model(FAKE_WAIT_SECONDS=WAIT_SECONDS)
    claude.model_url = fake.url
    _answer_first_run_questions(claude)
    relay = relay_factory("--keepalive-interval", "0.5", "--worker-grace", "30", "--agent-grace", "3")
    args = _serve_command("--claude", str(claude.binary), "--socket", relay.socket)
    terminal = Terminal(args, _serve_env(claude, backend) | {"TERM": "xterm-256color"}, claude.project, claude.groups)
    answers: list[str] = []
    workers: list[dict[str, Any]] = []
    refused: openai.APIStatusError | None = None
    started = time.monotonic()
    timings: list[str] = []

    def why() -> str:
        run = Run(args, terminal.proc.poll() or 0, terminal.screen.decode("utf-8", "replace")[-3000:], "", 0)
        return _diagnostics(run, fake, relay)

    try:
        with anyio.fail_after(80):
            for n in range(1, 6):
                workers.append(await agent_waiting(relay, timeout=40))
                answers.append(await ask(relay, f"question {n}"))
                await eventually(lambda n=n: _names(fake).count(SERVED) >= n, timeout=15, what=f"turn {n} ended")
                timings.append(f"{time.monotonic() - started:.1f}")
            # Esc while the agent waits in next_request: the call is cancelled, the agent is away
            await agent_waiting(relay)
            terminal.send(b"\x1b")
            away = await eventually(
                lambda: _away(relay), timeout=15, what="the agent away after Esc (next_request cancelled)"
            )
            asked = len(fake.messages_requests)
            try:
                await ask(relay, "question 6", stream=False, timeout=30)
            except openai.APIStatusError as error:
                refused = error
            alive = terminal.proc.poll() is None
            still = await _workers(relay)
            after = fake.messages_requests[asked:]
    finally:
        terminal.close()
    assert answers == [f"{ANSWER_PREFIX}question {n}" for n in range(1, 6)], why()
    # one session served all five: the same mcptb-server, the same Claude Code session id
    assert len({w["pid"] for w in workers}) == 1 and away["pid"] == workers[0]["pid"], why()
    sessions = {_session_of(_serving_requests(fake, f"question {n}")[0]) for n in range(1, 6)}
    assert len(sessions) == 1, why()
    # each of the five turns the model ended after a reply was sent back to next_request by the Stop hook
    # (the serving turns: 2.1.197 also asks its model for a session title, with no tools)
    turns = [r for r in fake.messages_requests if r["body"].get("tools")]
    names = [r["decision"].get("name", r["decision"].get("text")) for r in turns]
    ends = [i for i, name in enumerate(names) if name == SERVED]
    assert len(ends) == 5 and all(names[i + 1] == NEXT_REQUEST for i in ends), why()
    for i in ends:
        assert KEEP_SERVING in json.dumps(turns[i + 1]["body"]["messages"][-2:]), why()
    # after Esc: no agent took the caller (503 no_agent after --agent-grace), the session stays open
    assert refused is not None and refused.status_code == 503, why()
    assert "no_agent" in json.dumps(refused.body), (refused.body, why())
    assert not any("question 6" in json.dumps(r["body"]) for r in after), why()
    assert alive and len(still) == 1 and still[0]["pid"] == workers[0]["pid"], why()
    say(
        request.config,
        f"[Claude Code {claude.version}, {backend}, interactive] callers answered at {', '.join(timings)} s; "
        f"Esc, then 503 no_agent; {time.monotonic() - started:.1f} s",
    )


async def _away(relay: RelayProcess) -> dict[str, Any] | None:
    workers = await _workers(relay)
    return workers[0] if len(workers) == 1 and workers[0]["agent"] == "away" else None
