"""The usage ledger (relay/_ledger.py) and ``mcptb-relay usage``: rows survive a restart, a failing disk
never fails a request, and no prompt or answer text is written. The relay in process, both backends."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import anyio
import pytest

from relay._ledger import Ledger, Row
from relay.cli import main as relay_main

from _http_client import post, request
from _inprocess import relay_in_process, worker_in_process
from conftest import chat_body

SECRET = "the-secret-prompt-words"


def row(model: str = "m", at: float = 1e9) -> Row:
    return Row(at, "/v1/chat/completions", model, "answered", "client", 200, "ok", 0.5, 0.1, 10, 20, False, None)


def usage_json(db: Path, capsys: pytest.CaptureFixture[str], days: int = 7) -> dict[str, object]:
    capsys.readouterr()
    assert relay_main(["usage", "--json", "--days", str(days), "--usage-db", str(db)]) == 0
    return json.loads(capsys.readouterr().out)


async def serve_requests(db: Path, count: int) -> None:
    async with relay_in_process(usage_db=str(db)) as relay, worker_in_process(relay.socket):
        for n in range(count):
            response = await post(relay.url, "/v1/chat/completions", chat_body(SECRET, model=f"m{n % 2}"))
            assert response.status == 200


async def test_a_thousand_requests_a_restart_and_a_thousand_more_are_all_counted(backend, tmp_path, capsys):
    db = tmp_path / "state" / "usage.sqlite3"
    await serve_requests(db, 1000)
    await serve_requests(db, 1000)
    rows = usage_json(db, capsys)["rows"]
    assert {r["model"]: r["requests"] for r in rows} == {"m0": 1000, "m1": 1000}  # type: ignore[index]
    assert all(r["estimated"] == 1000 and r["tokens_in"] > 0 and r["tokens_out"] > 0 for r in rows)  # type: ignore[index]
    assert SECRET.encode() not in db.read_bytes() and b"echo:" not in db.read_bytes()
    assert (db.stat().st_mode & 0o777) == 0o600 and (db.parent.stat().st_mode & 0o777) == 0o700


async def test_a_ledger_that_cannot_be_written_fails_no_request_and_warns_once(backend, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="mcptb.relay"):
        async with relay_in_process(usage_db=str(blocker / "usage.sqlite3")) as relay, worker_in_process(relay.socket):
            for _ in range(20):
                assert (await post(relay.url, "/v1/chat/completions", chat_body("hi"))).status == 200
                await anyio.sleep(0.1)  # the writer tries (and fails) more than once
            metrics = (await request(relay.url, "GET", "/metrics")).body.decode()
    lost = [line for line in metrics.splitlines() if line.startswith('mcptb_usage_rows_lost_total{reason="disk"}')]
    assert len(lost) == 1 and int(lost[0].split()[-1]) > 0  # what could not be written is counted
    warnings = [r for r in caplog.records if "usage ledger" in r.getMessage()]
    assert len(warnings) == 1 and "cannot write" in warnings[0].getMessage()


def test_rows_older_than_the_kept_days_are_deleted_when_the_ledger_opens(tmp_path):
    db = tmp_path / "usage.sqlite3"
    ledger = Ledger(str(db), days=90, clock=lambda: 100 * 86400.0)
    ledger.add(row("old", at=5 * 86400.0))  # 95 days before the clock: kept (it is written after the prune)
    ledger.close()
    again = Ledger(str(db), days=90, clock=lambda: 100 * 86400.0)
    again.add(row("new", at=99 * 86400.0))
    again.close()
    models = [m for (m,) in sqlite3.connect(db).execute("SELECT model FROM requests")]
    assert models == ["new"]


def test_the_usage_command_without_a_ledger_says_so(tmp_path, capsys):
    assert relay_main(["usage", "--usage-db", str(tmp_path / "none.sqlite3")]) == 1
    assert "no usage recorded yet" in capsys.readouterr().err


async def test_a_request_no_model_saw_is_a_row_without_tokens(backend, tmp_path):
    db = tmp_path / "usage.sqlite3"
    async with relay_in_process(usage_db=str(db), worker_grace=0) as relay:
        assert (await post(relay.url, "/v1/chat/completions", chat_body(SECRET, model="m"))).status == 503
    rows = sqlite3.connect(db).execute(
        "SELECT model, answered_by, status, outcome, tokens_in, tokens_out FROM requests"
    )
    assert list(rows) == [("m", "-", 503, "no_worker", 0, 0)]
