"""The package as users install it: ``uv build`` makes the sdist and, from it, the wheel; the wheel goes
into a fresh venv (``uv venv`` + ``uv pip install``, from the registry or uv's cache) and into a uv tool
environment (``uv tool install``) and a pipx one (``pipx install``), as the README says, and ``uvx
--from <wheel>`` runs it; the installed
commands run away from this checkout: ``--version`` of each, ``mcptb-relay --port 0``, and one request
answered through the installed ``mcptb-server`` under the tests' stdio MCP client with its scripted
sampling model.

Also checked: the wheel holds relay/, mcp_server/ and shared_protocol/ only (no tests, no bench) with
the three console scripts, and the fresh venv gets the runtime dependencies only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
import uv

from _http_client import post
from conftest import ROOT, chat_body, mcp_worker_process, short_socket_dir, start_relay

pytestmark = pytest.mark.real

COMMANDS = ("mcptb-relay", "mcptb-server", "mcptb-serve")
PACKAGES = {"relay", "mcp_server", "shared_protocol"}
NOT_RUNTIME = {"pytest", "hypothesis", "openai", "litellm", "anthropic", "openai-agents", "fastmcp", "ruff", "mypy"}
UV = uv.find_uv_bin()


@dataclass
class Built:
    wheel: Path
    sdist: Path
    venv: Path
    """A fresh venv with the wheel installed, made by uv from outside this checkout."""
    tool_bin: Path
    """The bin directory of ``uv tool install <wheel>``."""
    pipx_bin: Path
    """The bin directory of ``pipx install <wheel>``."""
    work: Path


def uv_run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [UV, *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"uv {' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    work = tmp_path_factory.mktemp("install")
    # Built from a copy of the tracked files, so the checkout gets no build/ or egg-info of its own.
    source = work / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = work / "dist"
    uv_run("build", "--quiet", "--out-dir", dist, source, cwd=work)  # the sdist, then the wheel from it
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    venv = work / "venv"
    uv_run("venv", "--quiet", "--python", sys.executable, venv, cwd=work)
    uv_run("pip", "install", "--quiet", "--python", venv / "bin" / "python", wheel, cwd=work)
    tools = {"UV_TOOL_DIR": str(work / "tools"), "UV_TOOL_BIN_DIR": str(work / "tool-bin")}
    uv_run("tool", "install", "--quiet", "--python", sys.executable, wheel, cwd=work, env=tools)
    pipx = {**os.environ, "PIPX_HOME": str(work / "pipx"), "PIPX_BIN_DIR": str(work / "pipx-bin")}
    done = subprocess.run(
        [sys.executable, "-m", "pipx", "install", "--python", sys.executable, str(wheel)],
        cwd=work,
        env=pipx,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"pipx install:\n{done.stdout}\n{done.stderr}"
    yield Built(wheel, sdist, venv, work / "tool-bin", work / "pipx-bin", work)


def test_wheel_holds_the_three_packages_and_the_console_scripts(built: Built) -> None:
    names = zipfile.ZipFile(built.wheel).namelist()
    dist_info = f"mcp_token_bridge-{version('mcp-token-bridge')}.dist-info"
    assert {name.split("/")[0] for name in names} == PACKAGES | {dist_info}
    assert not [n for n in names if re.search(r"(^|/)(tests?|bench)(/|$)|conftest", n)]
    entry_points = zipfile.ZipFile(built.wheel).read(f"{dist_info}/entry_points.txt").decode()
    for command in COMMANDS:
        assert re.search(rf"^{command} = \S+:main$", entry_points, re.M), entry_points
    with tarfile.open(built.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {
        "pyproject.toml",
        "README.md",
        "relay/cli.py",
        "mcp_server/cli.py",
        "shared_protocol/__init__.py",
    } <= members


def test_fresh_venv_has_the_runtime_dependencies_only(built: Built) -> None:
    listing = uv_run("pip", "list", "--format", "json", "--python", built.venv / "bin" / "python", cwd=built.work)
    installed = {p["name"].lower() for p in json.loads(listing)}
    assert {"mcp-token-bridge", "mcp", "anyio", "h11", "pydantic", "trio", "jsonschema"} <= installed
    assert not installed & NOT_RUNTIME
    where = subprocess.run(
        [built.venv / "bin" / "python", "-c", "import mcp_server, relay, shared_protocol as s; print(s.__file__)"],
        cwd=built.work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(built.venv)), where


@pytest.mark.parametrize("place", ["venv", "uv tool install", "pipx install", "uvx"])
def test_installed_commands_answer_version(built: Built, place: str) -> None:
    for command in COMMANDS:
        if place == "uvx":  # uvx --from <wheel> <command>: an ephemeral environment, nothing installed
            argv = [UV, "tool", "run", "--quiet", "--python", sys.executable, "--from", str(built.wheel), command]
        else:
            bin_dir = {"venv": built.venv / "bin", "uv tool install": built.tool_bin, "pipx install": built.pipx_bin}
            argv = [str(bin_dir[place] / command)]
        done = subprocess.run([*argv, "--version"], cwd=built.work, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, f"{command} {version('mcp-token-bridge')}\n"), done.stderr


@pytest.mark.anyio
async def test_installed_relay_and_server_answer_a_request(built: Built, backend: str) -> None:
    socket_dir = short_socket_dir()
    relay = start_relay(
        backend, os.path.join(socket_dir, "relay.sock"), command=[str(built.venv / "bin" / "mcptb-relay")]
    )
    try:
        assert relay.url.startswith("http://127.0.0.1:")
        server = [str(built.venv / "bin" / "mcptb-server")]
        async with mcp_worker_process(relay, backend, command=server) as worker:
            response = await post(relay.url, "/v1/chat/completions", chat_body("through the installed commands"))
        assert response.status == 200, response.body
        assert response.json()["choices"][0]["message"]["content"] == "echo: through the installed commands"
        assert len(worker.model.requests) == 1
    finally:
        relay.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
