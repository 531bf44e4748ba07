"""The usage ledger: one row per finished model request, in an SQLite database that outlives the relay.

Rules worth knowing:
- Rows say what was served and what it cost, never what was said: when, the route, the model asked
  for and the one that answered, the worker's MCP client, status and outcome, seconds, time to the
  first byte, tokens in and out and whether they were counted or estimated. No prompt or answer text.
- The event loop never waits for the disk: :meth:`Ledger.add` appends the row to a list, and one
  writer thread takes the list and writes it in one transaction, once a second (WAL journal, so
  ``mcptb-relay usage`` reads while the relay writes). At most :data:`MAX_WAITING` rows wait; more
  are dropped and counted, so a stuck disk costs bounded memory.
- A disk that is full, read-only or gone never fails a request: the first failure is logged as a
  warning, the rows lost are counted, and the writer tries again with the next batch.
- Rows older than ``--usage-days`` are deleted when the ledger opens (at the relay's first model
  request) and once a day after.
- The file is created 0600 in a 0700 directory: what you use is nobody else's business.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ._responder import RequestLog

if TYPE_CHECKING:
    import sqlite3  # imported by the writer thread when it opens the file: not at the relay's start

log = logging.getLogger("mcptb.relay")

MAX_WAITING = 10_000
FLUSH_SECONDS = 1.0
PRUNE_SECONDS = 24 * 3600.0
SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
    at REAL NOT NULL,
    api TEXT NOT NULL,
    model TEXT NOT NULL,
    answered_by TEXT NOT NULL,
    client TEXT NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    seconds REAL NOT NULL,
    first_byte REAL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    counted INTEGER NOT NULL,
    handed INTEGER
);"""
"""No index: one on ``at`` cost every insert, and the report and the daily prune read the table once."""


def default_path() -> str:
    """``$XDG_STATE_HOME/mcp-token-bridge/usage.sqlite3``, else under ``~/.local/state``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "mcp-token-bridge", "usage.sqlite3")


class Row(NamedTuple):
    at: float
    """When the request ended (Unix seconds)."""
    api: str
    model: str
    """The model the caller asked for."""
    answered_by: str
    """The model that answered, as the worker said (``-`` when none did)."""
    client: str
    """The worker's MCP client (``-`` when no worker took it, or it had gone when the request ended)."""
    status: int
    outcome: str
    """``ok``, or the kind of error."""
    seconds: float
    first_byte: float | None
    tokens_in: int
    tokens_out: int
    counted: bool
    """The tokens were reported by the model's side; else estimated."""
    handed: int | None
    """Characters of the request handed to a serving agent (None: none was, or its worker did not say)."""


INSERT = f"INSERT INTO requests ({', '.join(Row._fields)}) VALUES ({', '.join('?' * len(Row._fields))})"

MAX_TEXT = 128
"""Characters kept of a model or client name (the caller chooses the model's)."""


def row_of(record: RequestLog, seconds: float) -> Row:
    """The row of a finished model request (``seconds`` after it began)."""
    return Row(
        time.time(),
        record.api,
        record.model[:MAX_TEXT],
        record.answered_by[:MAX_TEXT],
        record.client[:MAX_TEXT],
        record.status,
        record.result,
        seconds,
        record.first_byte_seconds,
        record.tokens_in or 0,
        record.tokens_out,
        record.tokens_counted,
        record.handed,
    )


class Ledger:
    def __init__(self, path: str, days: int, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.days = days
        self._clock = clock
        self._pending: list[Row] = []
        """Rows the writer has not taken yet (appended here, taken by swapping the list)."""
        self.dropped = 0
        """Rows not written because too many were waiting."""
        self.failed = 0
        """Rows lost to a failing disk."""
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        """The writer, started with the first row (a relay that serves nothing opens no file)."""

    def add(self, row: Row) -> None:
        if len(self._pending) >= MAX_WAITING:
            self.dropped += 1
            return
        self._pending.append(row)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mcptb-usage-ledger", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what waits, then stop the writer (waiting at most ``timeout`` seconds)."""
        if self._thread is not None:
            self._closing.set()
            self._thread.join(timeout)

    # --- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        import sqlite3

        """Every :data:`FLUSH_SECONDS` (or at once when closing), take the rows that gathered - the list
        is swapped, not emptied row by row - and write them in one transaction. The thread sleeps in
        between: a wake or a lock per row would take the interpreter's lock from the event loop once
        per request."""
        db: sqlite3.Connection | None = None
        pruned = -PRUNE_SECONDS
        warned = False
        while True:
            done = self._closing.wait(FLUSH_SECONDS)
            rows, self._pending = self._pending, []
            try:
                if db is None and (rows or done):
                    db = self._open()
                if db is not None and self._clock() - pruned >= PRUNE_SECONDS:
                    with db:
                        db.execute("DELETE FROM requests WHERE at < ?", (self._clock() - self.days * 86400,))
                    pruned = self._clock()
                if db is not None and rows:
                    with db:
                        db.executemany(INSERT, rows)
            except (sqlite3.Error, OSError) as exc:
                self.failed += len(rows)
                if not warned:
                    warned = True
                    log.warning(
                        "usage ledger %s: cannot write (%s); requests go on, their rows are lost", self.path, exc
                    )
                if db is not None:
                    db.close()
                db = None
            if done:
                if db is not None:
                    db.close()
                return

    def _open(self) -> sqlite3.Connection:
        import sqlite3

        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        db = sqlite3.connect(self.path, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        if "handed" not in {column[1] for column in db.execute("PRAGMA table_info(requests)")}:
            try:  # a ledger written before handed characters were kept
                db.execute("ALTER TABLE requests ADD COLUMN handed INTEGER")
            except sqlite3.OperationalError as exc:  # another relay added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        return db
