"""mcptb-server finds the relay without --socket when its MCP client starts it with a minimal environment.

A relay started in a desktop terminal listens at ``$XDG_RUNTIME_DIR/mcp-token-bridge/relay.sock`` (or, on
a system whose per-user ``TMPDIR`` the client drops, ``$TMPDIR/mcp-token-bridge-<uid>/relay.sock``) and
records that path in ``~/.mcp-token-bridge/relay-socket``. Here HOME, XDG_RUNTIME_DIR and TMPDIR all point
into test directories (this machine runs the tests as root, without ``/run/user/0``), the relay gets the
full environment plus those, and mcptb-server is started through ``env -i`` with exactly ``HOME``,
``PATH`` and ``USER``: it connects, takes a request from ``next_request`` and its reply reaches the caller.

Also: the candidate order and ``MCPTB_SOCKET`` (pure), a pointer in a directory open to others or
replaced by a symlink is ignored, a relay given ``--socket`` records nothing, and one that stops removes
its record.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from agent_clis.harness import clean_env, start_default_relay
from mcp import ClientSession, StdioServerParameters, stdio_client

from mcp_server import _discovery
from shared_protocol import _paths

from _eventually import eventually
from _http_client import get_json, post
from conftest import ROOT, chat_body, start_relay

pytestmark = [pytest.mark.anyio, pytest.mark.real]


def minimal_server(home: Path, backend: str) -> StdioServerParameters:
    """mcptb-server with only HOME, PATH and USER in its environment (``env -i`` drops everything else,
    including what the mcp SDK's stdio client would add)."""
    keep = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": os.environ.get("USER", "root")}
    return StdioServerParameters(
        command=shutil.which("env") or "/usr/bin/env",
        args=["-i", *(f"{k}={v}" for k, v in keep.items()), sys.executable, "-m", "mcp_server", "--backend", backend],
        cwd=str(ROOT),
    )


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.mark.parametrize("session_kind", ["xdg", "tmpdir"])
async def test_a_minimal_environment_finds_a_relay_started_in_a_desktop_session(
    desktop, backend, tmp_path, session_kind
):
    if session_kind == "xdg":
        env = desktop.relay_env()
        expected = desktop.socket
    else:  # no runtime directory, a per-user TMPDIR (as macOS gives every session)
        env = {**clean_env(desktop.home), "TMPDIR": str(desktop.runtime)}
        expected = str(desktop.runtime / f"mcp-token-bridge-{os.getuid()}" / "relay.sock")
    relay = start_default_relay(backend, env)
    try:
        assert relay.socket == expected
        assert desktop.pointer.read_text().strip() == expected
        stderr = tmp_path / "server.log"
        with open(stderr, "w") as errlog:
            async with stdio_client(minimal_server(desktop.home, backend), errlog=errlog) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=30) as session:
                    await session.initialize()

                    async def connected() -> bool:
                        return bool((await get_json(relay.url + "/health"))["workers"])

                    await eventually(connected, timeout=15, what="the minimal-env mcptb-server in /health")
                    async with anyio.create_task_group() as tg:
                        answers: list[Any] = []

                        async def caller() -> None:
                            async def agent_waits() -> bool:
                                workers = (await get_json(relay.url + "/health"))["workers"]
                                return bool(workers and workers[0]["free_slots"])

                            await eventually(agent_waits, timeout=15, what="the agent waiting in next_request")
                            answers.append(await post(relay.url, "/v1/chat/completions", chat_body("hi")))

                        tg.start_soon(caller)
                        with anyio.fail_after(30):
                            pulled = text_of(await session.call_tool("next_request", {"wait_seconds": 20}))
                            assert pulled.startswith("request_id:"), pulled
                            rid = pulled.splitlines()[0].removeprefix("request_id:").strip()
                            replied = await session.call_tool("reply", {"request_id": rid, "content": "found you"})
                            assert not replied.is_error, text_of(replied)
        (answer,) = answers
        assert answer.status == 200 and answer.json()["choices"][0]["message"]["content"] == "found you"
        assert f"connected to the relay at {expected}" in stderr.read_text()
    finally:
        relay.stop()
    assert not desktop.pointer.exists(), "a relay that stops forgets its record"


def test_the_candidates_in_order(monkeypatch, tmp_path):
    monkeypatch.delenv(_paths.SOCKET_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    uid = os.getuid()
    pointed = "/somewhere/else/relay.sock"
    assert _paths.socket_candidates(pointed) == list(
        dict.fromkeys(
            [
                pointed,
                str(tmp_path / "mcp-token-bridge" / "relay.sock"),
                f"/run/user/{uid}/mcp-token-bridge/relay.sock",
                os.path.join(tempfile.gettempdir(), f"mcp-token-bridge-{uid}", "relay.sock"),
                f"/tmp/mcp-token-bridge-{uid}/relay.sock",
            ]
        )
    )
    monkeypatch.setenv(_paths.SOCKET_ENV, "/given/relay.sock")
    assert _paths.socket_candidates(pointed) == ["/given/relay.sock"]
    assert _paths.default_socket_path() == "/given/relay.sock"


def test_an_untrusted_pointer_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    directory = tmp_path / ".mcp-token-bridge"
    directory.mkdir(mode=0o700)
    pointer = directory / "relay-socket"
    pointer.write_text("/run/x/relay.sock\n")
    assert _discovery.recorded_socket() == "/run/x/relay.sock"
    directory.chmod(0o755)  # open to others: anyone could have written it
    assert _discovery.recorded_socket() is None
    directory.chmod(0o700)
    pointer.unlink()
    (tmp_path / "elsewhere").write_text("/evil/relay.sock\n")
    pointer.symlink_to(tmp_path / "elsewhere")
    assert _discovery.recorded_socket() is None
    pointer.unlink()
    pointer.write_text("relative/relay.sock\n")
    assert _discovery.recorded_socket() is None


def test_a_relay_given_a_socket_records_nothing(backend, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    directory = tempfile.mkdtemp(prefix="mcptb-")
    relay = start_relay(backend, os.path.join(directory, "relay.sock"), env={"HOME": str(home)})
    try:
        assert not (home / ".mcp-token-bridge").exists()
    finally:
        relay.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_mcptb_serve_passes_the_socket_of_the_relay_it_finds(desktop, backend, monkeypatch):
    """mcptb-serve run from a shell without the desktop's XDG_RUNTIME_DIR still hands Claude Code the socket
    of the running relay, found as mcptb-server finds it."""
    from mcp_server.serve import found_socket

    relay = start_default_relay(backend, desktop.relay_env())
    try:
        for name in ("XDG_RUNTIME_DIR", "TMPDIR", "MCPTB_SOCKET"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(desktop.home))
        assert found_socket() == desktop.socket
    finally:
        relay.stop()
