"""``mcptb-serve --cli codex --headless`` with the real Codex CLI offline: ``codex exec`` sessions kept
serving by the Stop hook, under the supervisor.

The relay runs on its default path in a desktop-like environment (``agent_clis/harness.py``); Codex's
own configuration names only its model provider (the scripted Responses API, whose agent ends its turn
with "served one request" after every reply and calls ``next_request`` again when a Stop hook's reminder
arrives); mcptb-serve adds the bridge's server and the hooks with ``-c`` overrides. One run answers
callers across ended turns, is offered none of Codex's own tools that act, and stops on SIGINT with no
process left behind. Both backends (the relay's and mcptb-server's).
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from agent_clis.harness import CODEX, clean_env, skip_reason, start_default_relay
from agent_clis.scripted_apis import NEXT_REQUEST, ScriptedApis, ServingAgent
from claude_code.fake_model import ANSWER_PREFIX, SERVED
from claude_code.harness import Terminal, processes_left_with_home, start_background

from mcp_server._stop_hook import KEEP_SERVING

from _eventually import eventually
from _http_client import post
from conftest import ROOT, chat_body, say

pytestmark = [pytest.mark.anyio, pytest.mark.node]

LINE = re.compile(r"^mcptb-serve: session 1 ended after \S+: (\d+) requests? served, [\d,]+ characters handed")


async def test_codex_headless_keeps_serving_across_ended_turns_and_stops_on_sigint(request, desktop, backend, tmp_path):
    reason = skip_reason(CODEX, "Codex CLI")
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    relay = start_default_relay(backend, desktop.relay_env())
    apis = ScriptedApis(ServingAgent(next_args={"wait_seconds": 3}, max_polls=2))
    _configure_codex(desktop.home, apis)
    with open(desktop.home / ".codex" / "config.toml", "a") as config:  # a server of the user's own, which
        config.write(  # the serving session must not offer its agent
            f'[mcp_servers."my-files"]\ncommand = "{sys.executable}"\nargs = ["-m", "mcp_server", "--socket", "/no/s"]\n'
        )
    env = clean_env(desktop.home) | {"SCRIPTED_KEY": "x", "PYTHONPATH": str(ROOT), "MCPTB_BACKEND": backend}
    args = [sys.executable, "-m", "mcp_server.serve", "--cli", "codex", "--codex", str(CODEX), "--headless",
            "--socket", relay.socket]  # fmt: skip
    serve = start_background(args, env=env, cwd=ROOT, logdir=tmp_path / "serve")
    answers = []
    try:
        started = anyio.current_time()
        for i in range(3):  # the first one before Codex is up: it waits for the worker (--worker-grace)
            with anyio.fail_after(60):
                answers.append(await post(relay.url, "/v1/chat/completions", chat_body(f"question {i}")))
        elapsed = anyio.current_time() - started
        await eventually(lambda: sum(r.get("decision", {}).get("name") == NEXT_REQUEST for r in apis.requests) >= 4)
    except BaseException:
        print(serve.stderr[-3000:], serve.stdout[-3000:], "".join(relay.log_lines)[-3000:], apis.requests[-3:])
        raise
    finally:
        run = serve.finish()
        relay.stop()
        apis.close()
    why = f"{run.describe()}\n--- relay ---\n{''.join(relay.log_lines)}\n--- model ---\n" + "\n".join(
        f"{r['n']} {r.get('decision')}" for r in apis.requests
    )
    say(request.config, f"[Codex CLI, mcptb-serve --cli codex --headless, {backend}] 3 callers in {elapsed:.1f} s")
    assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [
        f"{ANSWER_PREFIX}question {i}" for i in range(3)
    ], why
    # the agent ended its turn after each reply, and the Stop hook sent it back to next_request
    decisions = [r.get("decision", {}) for r in apis.requests if r.get("api") == "responses"]
    for before, after in itertools.pairwise(decisions):
        if before.get("text") == SERVED:
            assert after.get("name") == NEXT_REQUEST, why
    assert sum(d.get("text") == SERVED for d in decisions) >= 3, why
    reminders = [r for r in apis.requests if KEEP_SERVING in json.dumps(r["body"])]
    assert reminders, why
    # offered the bridge's tools and none of Codex's own that act (shell, files, web, agents), nor the
    # user's other MCP servers; what is left reads MCP resources (the bridge has none) or asks the user
    for r in apis.requests:
        tools = r["body"].get("tools") or []
        own = {t.get("name") for t in tools if t.get("type") != "namespace"}
        assert own <= {"request_user_input", "list_mcp_resources", "list_mcp_resource_templates", "read_mcp_resource"}
        assert [t["name"] for t in tools if t.get("type") == "namespace"] == ["mcp__mcptb"], why
    lines = [line for line in run.stderr.splitlines() if line.startswith("mcptb-serve: session")]
    assert len(lines) == 1 and LINE.match(lines[0]) and lines[0].endswith("stopping."), why
    assert int(LINE.match(lines[0])[1]) == 3, why  # type: ignore[index]
    assert run.returncode == 0, why
    assert processes_left_with_home(desktop.home) == [], why


async def test_codex_interactive_keeps_serving_across_ended_turns_and_esc_stops_it(request, desktop, backend, tmp_path):
    """``mcptb-serve --cli codex`` on a pseudo-terminal: the interactive Codex session serves callers across
    turns its model ended (the Stop hook sends it back), and Esc, while its agent waits in next_request,
    stops serving: no more model requests, a caller gets 503 no_agent, the session stays open."""
    reason = skip_reason(CODEX, "Codex CLI")
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    relay = start_default_relay(backend, desktop.relay_env(), "--agent-grace", "2")
    apis = ScriptedApis(ServingAgent(next_args={"wait_seconds": 3}, max_polls=2))
    _configure_codex(desktop.home, apis)
    env = clean_env(desktop.home) | {"SCRIPTED_KEY": "x", "PYTHONPATH": str(ROOT), "MCPTB_BACKEND": backend}
    env["TERM"] = "xterm-256color"
    args = [sys.executable, "-m", "mcp_server.serve", "--cli", "codex", "--codex", str(CODEX), "--socket", relay.socket]
    terminal = Terminal(args, env, tmp_path)
    try:
        answers = []
        for i in range(3):
            with anyio.fail_after(60):
                answers.append(await post(relay.url, "/v1/chat/completions", chat_body(f"question {i}")))
            await eventually(lambda: _model_said(apis, SERVED) > len(answers) - 1, timeout=30)
        waiting = await eventually(lambda: _waiting_in_next_request(relay), timeout=30)
        before = len(apis.requests)
        terminal.send(b"\x1b")
        await eventually(lambda: _agent_away(relay), timeout=30, what="the agent away after Esc")
        refused = await post(relay.url, "/v1/chat/completions", chat_body("after Esc"))
        await anyio.sleep(1)  # would the model be asked again? (a Stop hook that fired would send it back)
        after = len(apis.requests)
        alive = terminal.proc.poll() is None
    finally:
        terminal.close()
        screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", terminal.screen.decode("utf-8", "replace"))
        relay.stop()
        apis.close()
    why = (
        f"--- screen ---\n{screen[-3000:]}\n--- relay ---\n{''.join(relay.log_lines)[-4000:]}\n--- model ---\n"
        + "\n".join(f"{r['n']} {r.get('decision')}" for r in apis.requests)
    )
    assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [
        f"{ANSWER_PREFIX}question {i}" for i in range(3)
    ], why
    assert waiting, why
    assert refused.status == 503 and refused.json()["error"]["code"] == "no_agent", why
    assert after == before and alive, why
    assert not any("after Esc" in json.dumps(r["body"]) for r in apis.requests), why


def _configure_codex(home: Path, apis: ScriptedApis) -> None:
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "config.toml").write_text(
        'model = "mcptb-test"\nmodel_provider = "scripted"\ncheck_for_update_on_startup = false\n'
        '[analytics]\nenabled = false\n[history]\npersistence = "none"\n'
        f'[model_providers.scripted]\nname = "scripted"\nbase_url = "{apis.url}/v1"\n'
        'wire_api = "responses"\nenv_key = "SCRIPTED_KEY"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
    )


def _model_said(apis: ScriptedApis, text: str) -> int:
    return sum(r.get("decision", {}).get("text") == text for r in apis.requests)


async def _workers(relay: Any) -> list[dict[str, Any]]:
    from _http_client import get_json

    workers: list[dict[str, Any]] = (await get_json(relay.url + "/health"))["workers"]
    return workers


async def _waiting_in_next_request(relay: Any) -> bool:
    return any(w["free_slots"] > 0 for w in await _workers(relay))


async def _agent_away(relay: Any) -> bool:
    return all(w.get("agent") == "away" for w in await _workers(relay))
