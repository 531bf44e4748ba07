"""Headless serving that stays up: ``mcptb-serve -- -p`` (or ``--headless``) runs ``claude -p`` sessions one
after another until it is stopped.

A ``claude -p`` session ends when its agent ends its turn for good: its budget was spent (``next_request``
said so: the context has grown, a fresh session costs less per request), the agent stopped serving and
the Stop hook let it (``_stop_hook``), or Claude Code failed or was killed. Each time, one line on stderr
says what the session did (requests served, characters handed to its agent, why it ended, from its
serving record) and the next session starts: at once after a spent budget, after a second when the
session served or ran for a while, else after a delay that doubles up to ``--max-restart-delay`` (a
session that keeps failing at start must not spin).

Each session runs in a process group of its own (Claude Code and the mcptb-server it started), with no
stdin (a terminal's Ctrl-C reaches this process only). SIGINT or SIGTERM stops the loop: the running
session's group gets SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds, and this process exits 0
with nothing left behind. The group is also cleared after every session that ended by itself.

:class:`Backoff` decides the delays from plain values (a unit test drives it); :func:`supervise` runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType

from . import _record as record
from ._record import Tally
from ._stop_hook import Notes

HEALTHY_SECONDS = 60.0
"""A session that ran this long, or served a request, was healthy: the next one starts after a second."""
STOP_GRACE = 5.0
"""Seconds a session's processes get to exit after SIGTERM before SIGKILL."""


@dataclass(frozen=True)
class Ended:
    """How one session ended."""

    status: int
    """Claude Code's exit status (negative: the signal that killed it)."""
    seconds: float
    tally: Tally
    why: str
    """Why its agent's turn was allowed to end (the Stop hook's notes), or empty."""


class Backoff:
    def __init__(self, max_delay: float) -> None:
        self.max_delay = max_delay
        self._delay = 1.0

    def after(self, ended: Ended) -> float:
        """Seconds to wait before the next session."""
        if ended.tally.spent:
            self._delay = 1.0
            return 0.0
        if ended.tally.served or ended.seconds >= HEALTHY_SECONDS:
            self._delay = 1.0
            return 1.0
        delay, self._delay = self._delay, min(self._delay * 2, self.max_delay)
        return min(delay, self.max_delay)


def report(number: int, ended: Ended, delay: float | None, name: str = "Claude Code") -> str:
    """The line printed when a session ends (``delay`` None: the supervisor is stopping); ``name``: the CLI."""
    if ended.status < 0:
        exit_text = f"{name} was killed by signal {-ended.status}"
    else:
        exit_text = f"{name} exited with status {ended.status}"
    why = "; ".join(filter(None, [ended.why, exit_text]))
    t = ended.tally
    served = f"{t.served} request{'' if t.served == 1 else 's'} served, {t.handed:,} characters handed to the agent"
    then = "stopping." if delay is None else "starting a fresh one now." if delay == 0 else f"next one in {delay:g} s."
    return f"mcptb-serve: session {number} ended after {_duration(ended.seconds)}: {served}; {why}; {then}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def supervise(
    command: Callable[[str], list[str]],
    env: Mapping[str, str],
    state_dir: str,
    max_restart_delay: float,
    name: str = "Claude Code",
) -> int:
    """Run ``command(session_id)`` again and again until SIGINT or SIGTERM; returns the exit status."""
    stopping: list[float] = []
    """When SIGINT or SIGTERM came (empty: still serving)."""
    running: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(time.monotonic())
        for proc in running:
            _signal_group(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    backoff = Backoff(max_restart_delay)
    number = 0
    try:
        while not stopping:
            number += 1
            session = str(uuid.uuid4())
            started = time.monotonic()
            proc = subprocess.Popen(
                command(session),
                env={**env, record.SERVE_SESSION_ENV: session},
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            running.append(proc)
            if stopping:  # the stop came between the check and here: this group was not told
                _signal_group(proc.pid, signal.SIGTERM)
            status = _wait(proc, stopping)
            running.clear()
            _clear_group(proc.pid)
            tally = record.read(state_dir, session, Tally) or Tally()
            notes = record.read(state_dir, session, Notes, "hook")
            record.remove(state_dir, session)
            ended = Ended(status, time.monotonic() - started, tally, notes.ended if notes else "")
            delay = None if stopping else backoff.after(ended)
            print(report(number, ended, delay, name), file=sys.stderr, flush=True)
            if delay:
                _sleep_unless_stopped(delay, stopping)
            if stopping and delay is not None:  # stopped between two sessions: the last line said one comes
                print("mcptb-serve: stopped before the next session.", file=sys.stderr, flush=True)
    finally:
        for proc in running:
            _clear_group(proc.pid)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _wait(proc: subprocess.Popen[bytes], stopping: list[float]) -> int:
    """The process's status; once stopping, its group gets SIGKILL after :data:`STOP_GRACE` seconds."""
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if stopping and time.monotonic() - stopping[0] > STOP_GRACE:
                _signal_group(proc.pid, signal.SIGKILL)


def _sleep_unless_stopped(seconds: float, stopping: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while not stopping and time.monotonic() < deadline:
        time.sleep(min(0.2, deadline - time.monotonic()))


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a zombie leader alone may refuse; treat as gone
        return False
    return True


def _clear_group(pgid: int) -> None:
    """No process of the group left: SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
