"""``mcptb-relay usage [--days N] [--json] [--usage-db PATH]``: what the usage ledger holds, per day
and model (requests, tokens in and out, how many were estimated). Reads the database read-only, so it
works while a relay writes to it and when none runs."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from ._ledger import default_path

QUERY = """SELECT date(at, 'unixepoch', 'localtime') AS day, model, count(*), sum(tokens_in), sum(tokens_out),
    sum(counted = 0), {handed} FROM requests WHERE at >= ? GROUP BY day, model ORDER BY day, model"""
DAILY = """SELECT date(at, 'unixepoch', 'localtime') AS day, coalesce(model, '-'), coalesce(client, '-'), count(*),
    coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0), {handed}
    FROM requests WHERE at >= ? AND at < ? GROUP BY day, model, client"""


def _read(path: str, query: str, *args: float) -> list[tuple[Any, ...]]:
    """``query``'s rows, the database opened read-only (``{handed}`` stands for the characters handed to
    agents: 0 in a ledger written before they were counted)."""
    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        columns = {column[1] for column in db.execute("PRAGMA table_info(requests)")}
        handed = "coalesce(sum(handed), 0)" if "handed" in columns else "0"
        return db.execute(query.format(handed=handed), args).fetchall()
    finally:
        db.close()


def totals(path: str, days: int) -> list[dict[str, Any]]:
    rows = _read(path, QUERY, time.time() - days * 86400)
    keys = ("day", "model", "requests", "tokens_in", "tokens_out", "estimated", "handed")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def daily(path: str, since: float, before: float) -> list[tuple[str, str, str, int, int, int, int]]:
    """(day, model, client, requests, tokens in, tokens out, characters handed) of the rows written from
    ``since`` to before ``before``: the status page's totals from before the relay started."""
    return [tuple(row) for row in _read(path, DAILY, since, before)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mcptb-relay usage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7, help="the last N days (default 7)")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.add_argument(
        "--usage-db",
        default=os.environ.get("MCPTB_USAGE_DB") or default_path(),
        help="the ledger (default: the relay's)",
    )
    args = parser.parse_args(argv)
    if not os.path.exists(args.usage_db):
        print(f"mcptb-relay usage: no usage recorded yet ({args.usage_db} does not exist)", file=sys.stderr)
        return 1
    try:
        rows = totals(args.usage_db, args.days)
    except sqlite3.Error as exc:
        print(f"mcptb-relay usage: cannot read {args.usage_db}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"usage_db": args.usage_db, "days": args.days, "rows": rows}, indent=2))
        return 0
    print(
        f"{'day':<10}  {'model':<32}  {'requests':>8}  {'tokens in':>10}  {'tokens out':>10}  {'estimated':>9}  "
        "handed to agents"
    )
    for row in rows:
        print(
            f"{row['day']:<10}  {row['model'][:32]:<32}  {row['requests']:>8}  {row['tokens_in']:>10}  "
            f"{row['tokens_out']:>10}  {row['estimated']:>9}  {row['handed']}"
        )
    if not rows:
        print(f"(nothing in the last {args.days} days)")
    return 0
