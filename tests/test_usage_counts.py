"""What a request cost, where it is counted: tokens a client reports with its sampling result, and the
characters of a request handed to a serving agent - in the response, on the status page, on /metrics
and in the usage ledger. The relay and mcptb-server in process, both backends."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import anyio
import mcp_types as types
import pytest

from mcp_server._sampling import reported_usage
from relay._ledger import Ledger, Row
from relay.cli import main as relay_main

from _http_client import post, request
from _inprocess import relay_in_process, worker_in_process
from _scripted import ScriptedModel
from conftest import chat_body, wait_for_workers

SECRET = "the-secret-prompt-words"


class CountingModel(ScriptedModel):
    """Answers as the scripted model does, and says in the result's ``_meta`` what it cost."""

    async def __call__(self, ctx: Any, params: types.CreateMessageRequestParams) -> Any:
        result = await super().__call__(ctx, params)
        return result.model_copy(update={"meta": {"usage": {"inputTokens": 1234, "outputTokens": 56}}})


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def metric(metrics: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))


async def test_tokens_a_client_reports_with_its_sampling_result_are_counted_everywhere(backend, tmp_path):
    db = tmp_path / "usage.sqlite3"
    async with relay_in_process(usage_db=str(db)) as relay, worker_in_process(relay.socket, model=CountingModel()):
        await wait_for_workers(relay, 1)
        plain = await post(relay.url, "/v1/chat/completions", chat_body(SECRET))
        streamed = await post(
            relay.url,
            "/v1/chat/completions",
            chat_body(SECRET, stream=True, stream_options={"include_usage": True}),
        )
        hi = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        message = await post(relay.url, "/v1/messages", json.dumps(hi).encode())
        status = (await request(relay.url, "GET", "/status")).json()
        metrics = (await request(relay.url, "GET", "/metrics")).body.decode()
    assert plain.headers["x-mcptb-usage"] == "counted"
    assert plain.json()["usage"] == {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}
    assert '"usage":{"prompt_tokens":1234,"completion_tokens":56,"total_tokens":1290}' in streamed.body.decode()
    assert message.headers["x-mcptb-usage"] == "counted"
    assert message.json()["usage"]["input_tokens"] == 1234 and message.json()["usage"]["output_tokens"] == 56
    assert [(r["tokens_in"], r["tokens_out"], r["counted"]) for r in status["recent"]] == [(1234, 56, True)] * 3
    counted = 'gen_ai_client_token_usage_sum{api="/v1/chat/completions",model="test-model",gen_ai_token_type="input",'
    assert metric(metrics, counted + 'count="counted"}') == 2 * 1234
    assert metric(metrics, counted + 'count="estimated"}') == 0
    rows = sqlite3.connect(db).execute("SELECT tokens_in, tokens_out, counted FROM requests").fetchall()
    assert rows == [(1234, 56, 1)] * 3


async def test_without_a_report_the_tokens_are_estimated_and_marked_so(backend):
    async with relay_in_process(usage_db="") as relay, worker_in_process(relay.socket):
        await wait_for_workers(relay, 1)
        plain = await post(relay.url, "/v1/chat/completions", chat_body(SECRET))
        status = (await request(relay.url, "GET", "/status")).json()
    assert plain.headers["x-mcptb-usage"] == "estimated"
    assert [r["counted"] for r in status["recent"]] == [False]


@pytest.mark.parametrize(
    "meta",
    [
        None,
        {},
        {"usage": "lots"},
        {"usage": {"inputTokens": 5}},
        {"usage": {"inputTokens": -1, "outputTokens": 2}},
        {"usage": {"inputTokens": True, "outputTokens": 2}},
        {"usage": {"inputTokens": 1.5, "outputTokens": 2}},
        {"usage": {"inputTokens": 2**60, "outputTokens": 2}},
        {"usage": {"input_tokens": 1, "output_tokens": 2}},
    ],
)
def test_a_usage_report_in_any_other_shape_is_not_taken(meta):
    result = types.CreateMessageResult(role="assistant", model="m", content=types.TextContent(text="x"), _meta=meta)
    assert reported_usage(result) is None


async def test_the_characters_handed_to_a_serving_agent_are_shown_counted_and_kept(backend, tmp_path):
    db = tmp_path / "usage.sqlite3"
    async with relay_in_process(usage_db=str(db)) as relay, worker_in_process(relay.socket, sampling=False) as agent:
        await wait_for_workers(relay, 1, sampling=False)
        async with anyio.create_task_group() as tg:
            answers: list[Any] = []

            async def ask() -> None:
                answers.append(await post(relay.url, "/v1/chat/completions", chat_body(SECRET, model="agent-model")))

            tg.start_soon(ask)
            pulled = text_of(await agent.session.call_tool("next_request", {"wait_seconds": 10}))
            request_id = pulled.split('request_id "', 1)[1].split('"', 1)[0]
            await agent.session.call_tool("reply", {"request_id": request_id, "content": "done"})
        status = (await request(relay.url, "GET", "/status")).json()
        metrics = (await request(relay.url, "GET", "/metrics")).body.decode()
    assert answers[0].status == 200
    handed = len(pulled)
    assert [r["handed"] for r in status["recent"]] == [handed]
    assert status["totals"]["today"]["model"] == [
        {"name": "agent-model", "requests": 1, "tokens_in": status["recent"][0]["tokens_in"], "tokens_out": 1}
        | {"handed": handed}
    ]
    series = 'mcptb_agent_handed_characters_total{api="/v1/chat/completions",model="agent-model"}'
    assert metric(metrics, series) == handed
    assert sqlite3.connect(db).execute("SELECT handed FROM requests").fetchall() == [(handed,)]
    assert SECRET not in str(status) and SECRET not in metrics


async def test_the_page_totals_include_the_ledger_days_before_the_relay_started(backend, tmp_path, capsys):
    db = tmp_path / "usage.sqlite3"
    ledger = Ledger(str(db), days=90)
    yesterday = time.time() - 86400
    for at, model in ((yesterday, "old-model"), (yesterday, "old-model"), (time.time() - 30 * 86400, "older")):
        ledger.add(Row(at, "/v1/messages", model, model, "claude-code", 200, "ok", 1.0, 0.5, 100, 10, False, 700))
    ledger.close()
    async with relay_in_process(usage_db=str(db)) as relay:
        for _ in range(100):
            status = (await request(relay.url, "GET", "/status")).json()
            if status["totals"]["week"]["model"]:
                break
            await anyio.sleep(0.02)
    assert status["totals"]["week"]["model"] == [
        {"name": "old-model", "requests": 2, "tokens_in": 200, "tokens_out": 20, "handed": 1400}
    ]
    assert status["totals"]["week"]["client"][0]["name"] == "claude-code"
    assert status["totals"]["today"]["model"] == []  # yesterday's rows are not today's
    capsys.readouterr()
    assert relay_main(["usage", "--days", "90", "--usage-db", str(db)]) == 0
    assert "handed to agents" in capsys.readouterr().out


def test_a_ledger_written_before_handed_characters_were_kept_is_read_and_extended(tmp_path, capsys):
    db = tmp_path / "usage.sqlite3"
    old = sqlite3.connect(db)
    old.execute(
        "CREATE TABLE requests (at REAL NOT NULL, api TEXT NOT NULL, model TEXT NOT NULL, answered_by TEXT NOT NULL,"
        " client TEXT NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL, seconds REAL NOT NULL,"
        " first_byte REAL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, counted INTEGER NOT NULL)"
    )
    old.execute(
        "INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (time.time(), "/v1/x", "m", "m", "c", 200, "ok", 1, 1, 5, 6, 0),
    )
    old.commit()
    old.close()
    capsys.readouterr()
    assert relay_main(["usage", "--json", "--usage-db", str(db)]) == 0  # read as it is: handed 0
    assert '"handed": 0' in capsys.readouterr().out
    ledger = Ledger(str(db), days=90)
    ledger.add(Row(time.time(), "/v1/x", "m", "m", "c", 200, "ok", 1.0, None, 5, 6, False, 42))
    ledger.close()
    rows = sqlite3.connect(db).execute("SELECT tokens_in, handed FROM requests ORDER BY rowid").fetchall()
    assert rows == [(5, None), (5, 42)]
