"""Child processes of the bench: spawn, time to the banner line, resident memory, and cleanup.

Every process is started through :class:`Children`, whose ``close`` (also on Ctrl-C) terminates
whatever is still running, then kills what did not stop within a few seconds. stderr of a server goes
to a file in the bench's temp directory so a chatty log can never block it on a full pipe.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BANNER_TIMEOUT = 30.0


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    """``http://127.0.0.1:PORT`` from the banner line."""
    seconds_to_banner: float


def rss_mib(pid: int) -> float:
    """Resident set size (VmRSS) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_line(proc: subprocess.Popen[bytes], what: str, stderr_path: str | None = None) -> str:
    """The next stdout line of ``proc``; fails if it exits or stays silent for BANNER_TIMEOUT."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], BANNER_TIMEOUT)
    line = proc.stdout.readline().decode() if ready else ""
    if not line:
        log = Path(stderr_path).read_text()[-2000:] if stderr_path else ""
        raise RuntimeError(f"{what} printed nothing on stdout (exit code {proc.poll()}): {log}")
    return line


class Children:
    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self._procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], stderr: IO[bytes] | int | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
        )
        self._procs.append(proc)
        return proc

    def start_server(self, name: str, args: list[str]) -> Server:
        """Start a server that prints ``... listening on http://HOST:PORT ...`` first; time it."""
        stderr_path = os.path.join(self.log_dir, f"{name}-{len(self._procs)}.log")
        with open(stderr_path, "wb") as stderr:
            started = time.perf_counter()
            proc = self.spawn(args, stderr)
        line = read_line(proc, name, stderr_path)
        seconds = time.perf_counter() - started
        url = line.split(" listening on ")[1].split()[0]
        return Server(proc, url, seconds)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def print_logs(self) -> None:
        """The end of every child's stderr log, for a run that failed."""
        for path in sorted(Path(self.log_dir).glob("*.log")):
            tail = "".join(path.read_text(errors="replace").splitlines(keepends=True)[-20:])
            print(f"--- {path.name} (last lines) ---\n{tail}", file=sys.stderr)

    def close(self) -> None:
        for proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()


@contextmanager
def temporary_children(prefix: str) -> Iterator[tuple[Children, str]]:
    """Child processes with a temporary directory for their logs and sockets, always stopped; the end of
    their logs is printed if the block fails. Relays started here keep their usage ledger in that
    directory (``XDG_STATE_HOME``), not in the user's."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.environ["XDG_STATE_HOME"] = tmp
        children = Children(tmp)
        try:
            yield children, tmp
        except Exception:
            children.print_logs()
            raise
        finally:
            children.close()


def health(url: str) -> dict[str, Any]:
    """A relay's ``/health``."""
    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        answer: dict[str, Any] = json.load(response)
    return answer
