"""A second user on the machine: neither side trusts a socket another user could control (real
processes, both backends).

- The relay refuses a symlinked or foreign-owned socket directory instead of creating its socket there.
- mcptb-server refuses, before it says hello, a relay whose socket directory another uid owns, and a
  relay that runs under another uid in a directory of ours; the agent's next_request says what is
  wrong and how to fix it, and the impostor never receives a byte.

Impersonating another user needs root (to chown and setuid); elsewhere these tests skip, loudly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mcp_types as types
import pytest

from conftest import ROOT, mcp_worker_process, say

pytestmark = [pytest.mark.anyio, pytest.mark.real]

OTHER_UID = 65534  # nobody
IMPOSTOR = """
import os, socket, sys
path, uid, setuid_first = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if setuid_first:
    os.setuid(uid)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
os.chmod(path, 0o666)
if not setuid_first:
    os.setuid(uid)  # bound as root in root's private directory, listening as the other user
listener.listen()
print("READY", flush=True)
while True:
    conn, _ = listener.accept()
    conn.settimeout(3)
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    print(f"GOT {len(data)} {data[:60]!r}", flush=True)
    conn.close()
"""


@pytest.fixture
def as_root(request: pytest.FixtureRequest) -> None:
    if os.geteuid() != 0:
        reason = "SKIPPED: impersonating a second user needs root (chown, setuid)"
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mcptb-trust-"))  # short: socket paths stay under ~100 bytes
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def relay(socket: Path, backend: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", "--port", "0", "--socket", str(socket), "--backend", backend],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


def test_the_relay_refuses_a_symlinked_socket_directory(workdir, backend):
    target = workdir / "attacker"
    target.mkdir(mode=0o700)
    (workdir / "mcp-token-bridge").symlink_to(target)
    result = relay(workdir / "mcp-token-bridge" / "relay.sock", backend)
    assert result.returncode == 1, result.stderr
    assert "is a symbolic link" in result.stderr and "rm " in result.stderr
    assert list(target.iterdir()) == []  # nothing was created through the link


def test_the_relay_refuses_a_socket_directory_another_user_owns(as_root, workdir, backend):
    foreign = workdir / "mcp-token-bridge"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, OTHER_UID, OTHER_UID)
    result = relay(foreign / "relay.sock", backend)
    assert result.returncode == 1, result.stderr
    assert f"belongs to uid {OTHER_UID}" in result.stderr
    assert list(foreign.iterdir()) == []


@dataclass
class Impostor:
    socket: str
    proc: subprocess.Popen[str]

    def received(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out


def impostor(directory: Path, setuid_first: bool) -> Impostor:
    socket = directory / "relay.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", IMPOSTOR, str(socket), str(OTHER_UID), "1" if setuid_first else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", proc.stderr.read() if proc.stderr else line
    return Impostor(str(socket), proc)


def next_request_text(result: types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def test_mcptb_server_refuses_a_relay_in_a_directory_another_user_owns(as_root, workdir, backend):
    foreign = workdir / "mcp-token-bridge"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, OTHER_UID, OTHER_UID)
    fake = impostor(foreign, setuid_first=True)
    try:
        async with mcp_worker_process(fake, backend, sampling=False, wait_ready=False) as worker:
            text = next_request_text(await worker.session.call_tool("next_request", {"wait_seconds": 1}))
            stderr = worker.stderr
    finally:
        received = fake.received()
    assert f"belongs to uid {OTHER_UID}" in text and "another user may be intercepting" in text, text
    assert "refusing the relay's socket" in stderr
    assert "GOT" not in received  # it never even connected


async def test_mcptb_server_refuses_a_relay_running_as_another_user(as_root, workdir, backend):
    private = workdir / "mcp-token-bridge"
    private.mkdir(mode=0o700)  # ours (root's) and private: only the peer check can catch this one
    fake = impostor(private, setuid_first=False)
    try:
        async with mcp_worker_process(fake, backend, sampling=False, wait_ready=False) as worker:
            text = next_request_text(await worker.session.call_tool("next_request", {"wait_seconds": 1}))
    finally:
        received = fake.received()
    assert f"runs as uid {OTHER_UID}, not as you" in text, text
    assert all(line == "GOT 0 b''" for line in received.splitlines()), received  # no hello, no prompt
