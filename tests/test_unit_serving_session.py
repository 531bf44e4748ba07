"""Unit tests of what keeps a serving session serving (issue 15): the Stop hook's decisions, the
headless supervisor's restart delays and its line per session, the worker's budget; and the hook as
Claude Code runs it (a process reading stdin, answering on stdout) with a real serving record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_server import _record as record
from mcp_server._core import WorkerCore
from mcp_server._effects import Waiting
from mcp_server._record import Tally
from mcp_server._serve_text import SERVE_START
from mcp_server._stop_hook import KEEP_SERVING, STOP_MARKER, Notes, command, on_prompt, on_stop
from mcp_server._supervisor import Backoff, Ended, report
from shared_protocol import Message, NeutralRequest, RequestFrame, TextBlock, WorkerInfo

ROOT = Path(__file__).resolve().parent.parent


def serving(waits: int, **notes: int | bool) -> tuple[Tally, Notes]:
    return Tally(waits=waits), Notes(**notes)  # type: ignore[arg-type]


def test_the_serve_prompt_is_kept_serving_even_before_the_first_next_request():
    notes = on_prompt(SERVE_START, Tally())
    block, notes = on_stop("", Tally(), notes, max_blocks=3)
    assert block == KEEP_SERVING and notes.blocks == 1
    assert on_prompt("/mcp__mcptb__serve", Tally(waits=7)).serve_prompt


def test_an_agent_that_calls_next_request_after_each_block_is_kept_serving_for_ever():
    notes = on_prompt(SERVE_START, Tally())
    for waits in range(1, 50):  # each turn ends after a reply; each block is followed by a call
        block, notes = on_stop("served one request", Tally(waits=waits, served=waits), notes, max_blocks=3)
        assert block == KEEP_SERVING and notes.blocks == 1


def test_an_agent_that_ignores_the_reminders_is_let_go_after_max_blocks():
    notes = on_prompt(SERVE_START, Tally())
    tally = Tally(waits=4)
    decisions = []
    for _ in range(4):
        block, notes = on_stop("I will not", tally, notes, max_blocks=3)
        decisions.append(block)
    assert decisions == [KEEP_SERVING] * 3 + [None]
    assert "did not call next_request after 3 reminders" in notes.ended


def test_a_prompt_of_the_users_own_ends_when_the_agent_does_not_serve_during_it():
    """After Esc (which Claude Code never reports to a Stop hook) the user asks something else: the
    agent answers and the session waits for the user, it is not sent back to serving."""
    notes = on_prompt("what is 2+2?", Tally(waits=12))
    block, notes = on_stop("4", Tally(waits=12), notes, max_blocks=3)
    assert block is None and "the user's own" in notes.ended
    # "serve again, please": the agent calls next_request during the prompt, and it serves on
    notes = on_prompt("serve again, please", Tally(waits=12))
    block, _ = on_stop("served one request", Tally(waits=13), notes, max_blocks=3)
    assert block == KEEP_SERVING


def test_the_user_asking_to_stop_and_a_spent_budget_end_the_turn():
    notes = on_prompt(SERVE_START, Tally())
    block, after = on_stop(f"Stopping as you asked.\n{STOP_MARKER}", Tally(waits=3), notes, max_blocks=3)
    assert block is None and after.ended == "the user asked it to stop serving"
    block, after = on_stop("", Tally(waits=3, spent=True), notes, max_blocks=3)
    assert block is None and after.ended == "its budget was spent"


@pytest.mark.real
def test_the_hook_as_claude_code_runs_it(tmp_path):
    """stdin JSON as Claude Code 2.1.197 and 2.1.33x send it; stdout a block decision or nothing."""
    session = "01a80a5c-0000-4000-8000-000000000001"
    state = str(tmp_path)

    def run(event: dict) -> str:
        base = {"session_id": session, "transcript_path": "/nowhere", "cwd": state, "prompt_id": "p1"}
        done = subprocess.run(
            command(state, 3), input=json.dumps(base | event), capture_output=True, text=True, cwd=ROOT, timeout=30
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        return done.stdout

    assert run({"hook_event_name": "UserPromptSubmit", "prompt": SERVE_START}) == ""  # stdout would reach the model
    record.write(state, session, Tally(waits=1, shown=1, handed=120, served=1))
    stop = {"hook_event_name": "Stop", "stop_hook_active": False, "last_assistant_message": "served one request"}
    assert json.loads(run(stop)) == {"decision": "block", "reason": KEEP_SERVING}
    record.write(state, session, Tally(waits=2, shown=1, handed=120, served=1, spent=True))
    assert run(stop | {"stop_hook_active": True}) == ""
    assert record.read(state, session, Notes, "hook") == Notes(serve_prompt=True, ended="its budget was spent")
    assert run({"hook_event_name": "Stop"}) == ""  # a record it cannot place is let go, never a crash
    for garbage in ("", "not json", "[]"):
        done = subprocess.run(command(state, 3), input=garbage, capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert done.returncode == 0 and done.stdout == "", done.stderr


def ended(status: int = 0, seconds: float = 5, **tally: int | bool) -> Ended:
    return Ended(status, seconds, Tally(**tally), "")  # type: ignore[arg-type]


def test_restarts_at_once_after_a_spent_budget_soon_after_a_healthy_session_and_back_off_after_failures():
    backoff = Backoff(max_delay=8)
    assert [backoff.after(ended(status=1)) for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    assert backoff.after(ended(served=1)) == 1
    assert backoff.after(ended(status=1)) == 1  # a healthy session reset the backoff
    assert backoff.after(ended(seconds=61)) == 1
    assert backoff.after(ended(spent=True, served=9)) == 0


def test_the_line_per_session_says_what_it_served_and_why_it_ended():
    line = report(3, Ended(0, 125.4, Tally(served=12, handed=45_000, spent=True), "its budget was spent"), 0)
    assert line == (
        "mcptb-serve: session 3 ended after 2m05s: 12 requests served, 45,000 characters handed to the agent; "
        "its budget was spent; Claude Code exited with status 0; starting a fresh one now."
    )
    assert "killed by signal 9; next one in 4 s." in report(4, ended(status=-9), 4)
    assert report(5, ended(served=1), None).endswith("1 request served, 0 characters handed to the agent; "
                                                      "Claude Code exited with status 0; stopping.")  # fmt: skip


def frame(text: str = "hi") -> RequestFrame:
    request = NeutralRequest(messages=[Message(role="user", content=[TextBlock(text=text)])], max_tokens=10)
    return RequestFrame(id="req_1", request=request, timeout=60)


@pytest.mark.parametrize("budget", [0, 1])
def test_past_its_budget_next_request_tells_the_agent_to_end_its_turn(budget):
    core = WorkerCore("/s", WorkerInfo(modes=["agent"], tools=True), budget=budget)
    core.link_up(core.described())
    step, _ = core.agent_waits({})
    assert isinstance(step, Waiting) and core.tally == Tally(waits=1)
    core.request(frame())
    shown, _ = core.show(step.waiter)
    assert shown is not None and core.tally.handed == len(shown.text) and core.tally.shown == 1
    after, effects = core.agent_waits({})
    if budget:
        assert not isinstance(after, Waiting) and "used its budget" in after.text and effects == []
        assert core.tally.spent and core.granted == 0  # no slot: the relay sends it nothing more
    else:
        assert isinstance(after, Waiting) and not core.tally.spent


def test_records_are_replaced_whole_and_read_back(tmp_path):
    state = str(tmp_path)
    assert record.read(state, "s", Tally) is None
    record.write(state, "s", Tally(served=2))
    assert record.read(state, "s", Tally) == Tally(served=2)
    (tmp_path / "s.record.json").write_text("{half")
    assert record.read(state, "s", Tally) is None
    record.write(state, "../../etc/x", Tally())  # a session id cannot leave the directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etcx.record.json", "s.record.json"]
    record.prune(state, now=10**12)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.real
def test_the_hook_module_needs_neither_mcp_nor_pydantic():
    """It runs at every end of a turn: it must start fast."""
    code = "import sys, mcp_server._stop_hook; print(sorted(m for m in ('mcp', 'pydantic') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.real
def test_the_record_is_named_by_mcptb_serve_so_a_new_claude_code_session_id_does_not_lose_it(tmp_path):
    """After /clear Claude Code has a new session id, but its MCP server (started before) and the hooks
    share mcptb-serve's key: the hook still finds what the agent did."""
    state = str(tmp_path)
    record.write(state, "serve-key", Tally(waits=1, served=1))
    record.write(state, "serve-key", on_prompt("serve again, please", Tally()), "hook")  # it served since
    event = {"hook_event_name": "Stop", "session_id": "after-clear", "last_assistant_message": "done"}
    env = {"PATH": "/usr/bin:/bin", "MCPTB_SERVE_SESSION": "serve-key"}
    done = subprocess.run(
        command(state, 3), input=json.dumps(event), capture_output=True, text=True, cwd=ROOT, timeout=30, env=env
    )
    assert json.loads(done.stdout)["decision"] == "block", done.stderr
    notes = record.read(state, "serve-key", Notes, "hook")
    assert notes is not None and notes.waits_at_block == 1 and notes.blocks == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serve-key.hook.json", "serve-key.record.json"]
    assert record.session_key({}, "claude-id") == "claude-id" and record.session_key({}, None) is None
