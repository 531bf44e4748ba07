"""The real litellm proxy for the tests, started once per test session (conftest's ``litellm_proxies``).

The proxy takes 10-20 s to start on a small machine, so one set serves every proxy test: relay
processes on asyncio and on trio (each test's worker runs on the test's backend), and two proxies
started side by side, because ``use_chat_completions_url_for_anthropic_messages`` is a global litellm
setting:

- ``default``: per backend ``bridge-<b>`` and ``errors-<b>`` (``anthropic/``, a relay started with
  ``--api-key`` = the deployments' key, so the proxy's key handling is part of the path; ``errors`` so
  that a router cooldown after an error cannot touch other tests), ``resp-<b>`` (``openai/``),
  ``vllm-<b>`` (``hosted_vllm/``), ``pass-<b>`` (``openai/`` whose ``supported_endpoints`` list
  ``/v1/messages``) and ``team-<b>`` (two ``openai/`` deployments, one model group, on
  two relays that want the deployments' ``api_key``);
- ``chat_flag``: per backend ``chat-<b>`` (``openai/``) with the chat-completions flag.

No database, ``num_retries: 0``, a master key; the cost map from the package (no internet).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from conftest import RelayProcess, short_socket_dir, start_relay

MASTER_KEY = "sk-proxy-master"
RELAY_KEY = "sk-relay-secret"
"""The key of the relay behind the ``anthropic/`` deployments."""
TEAM_KEY = "sk-team-relay"
"""The key of the two team relays (as a relay on another machine must have)."""
UPSTREAM_MODEL = "bridged-model"
"""What the relay sees: the deployment's model without its provider prefix."""
BACKENDS = ("asyncio", "trio")
RELAY_NAMES = ("anthropic", "main", "team-a", "team-b")
STARTUP_TIMEOUT = 120.0
REQUEST_TIMEOUT = 60.0
COOLDOWN_TIME = 5
"""router_settings.cooldown_time of the default proxy (the team test waits this long)."""
LITELLM = Path(sys.executable).parent / "litellm"
SHORT_GRACE = ("--worker-grace", "1")
"""Every test starts its worker and waits for it before it asks, so a request that finds none is the
no-worker test's: its 503 comes after 1 s instead of the default 10."""


def skip_reason() -> str | None:
    """Cheap checks only: importing litellm costs seconds (the proxy itself says what else is missing)."""
    missing = [name for name in ("litellm", "fastapi", "uvicorn", "backoff") if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"SKIPPED: litellm[proxy] is not installed (missing {', '.join(missing)}; run `just test-all`, or "
            "uv pip install --override tests/overrides.txt -e '.[test]') - the litellm proxy tests did not run"
        )
    if not LITELLM.is_file():
        return f"SKIPPED: the litellm proxy command is not installed at {LITELLM} - the proxy tests did not run"
    return None


@dataclass
class Proxy:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    startup: float = 0.0

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the proxy and its children
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class Proxies:
    default: Proxy
    chat_flag: Proxy
    relays: dict[str, dict[str, RelayProcess]]
    """Per backend, per name in :data:`RELAY_NAMES`."""


def _deployment(name: str, model: str, api_base: str, api_key: str) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": model, "api_base": api_base, "api_key": api_key}}


def default_config(relays: dict[str, dict[str, RelayProcess]]) -> dict[str, Any]:
    deployments = []
    for backend, mine in relays.items():
        anthropic, main = mine["anthropic"], mine["main"]
        for group in ("bridge", "errors"):
            deployments.append(
                _deployment(f"{group}-{backend}", f"anthropic/{UPSTREAM_MODEL}", anthropic.url, RELAY_KEY)
            )
        deployments.append(_deployment(f"resp-{backend}", f"openai/{UPSTREAM_MODEL}", main.url + "/v1", "anything"))
        deployments.append(
            _deployment(f"vllm-{backend}", f"hosted_vllm/{UPSTREAM_MODEL}", main.url + "/v1", "anything")
        )
        passthrough = _deployment(f"pass-{backend}", f"openai/{UPSTREAM_MODEL}", main.url + "/v1", "anything")
        passthrough["model_info"] = {"supported_endpoints": ["/v1/chat/completions", "/v1/messages"]}
        deployments.append(passthrough)  # docs/litellm-proxy.md: Anthropic requests passed through
        for team in (mine["team-a"], mine["team-b"]):
            deployments.append(_deployment(f"team-{backend}", f"openai/{UPSTREAM_MODEL}", team.url + "/v1", TEAM_KEY))
    return {
        "model_list": deployments,
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"num_retries": 0, "request_timeout": REQUEST_TIMEOUT},
        "router_settings": {"cooldown_time": COOLDOWN_TIME},
    }


def chat_flag_config(relays: dict[str, dict[str, RelayProcess]]) -> dict[str, Any]:
    return {
        "model_list": [
            _deployment(f"chat-{backend}", f"openai/{UPSTREAM_MODEL}", mine["main"].url + "/v1", "anything")
            for backend, mine in relays.items()
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {
            "num_retries": 0,
            "request_timeout": REQUEST_TIMEOUT,
            "use_chat_completions_url_for_anthropic_messages": True,
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(workdir: Path, name: str, config: dict[str, Any]) -> Proxy:
    path = workdir / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = _free_port()
    log_path = workdir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "DATABASE_URL"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # do not fetch the cost map from the internet
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    return Proxy(f"http://127.0.0.1:{port}", proc, log_path)


def _wait_until_ready(proxy: Proxy, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.proc.poll() is not None:
            raise AssertionError(f"the litellm proxy exited with {proxy.proc.returncode}:\n{proxy.log[-5000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(proxy.url + "/health/liveliness", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise AssertionError(f"the litellm proxy was not ready within {timeout} s:\n{proxy.log[-5000:]}")


@contextlib.contextmanager
def running_proxies(workdir: Path) -> Iterator[Proxies]:
    """The relays and both proxies, ready; all stopped on exit."""
    dirs: list[str] = []
    relays: dict[str, dict[str, RelayProcess]] = {}
    proxies: list[Proxy] = []
    try:
        for backend in BACKENDS:
            relays[backend] = {}
            for name in RELAY_NAMES:
                dirs.append(short_socket_dir())
                key = {"anthropic": RELAY_KEY, "team-a": TEAM_KEY, "team-b": TEAM_KEY}.get(name)
                args = ("--api-key", key) if key else ()
                relays[backend][name] = start_relay(backend, os.path.join(dirs[-1], "relay.sock"), *args, *SHORT_GRACE)
        started = time.monotonic()
        proxies.append(_launch(workdir, "default", default_config(relays)))
        proxies.append(_launch(workdir, "chat-flag", chat_flag_config(relays)))
        for proxy in proxies:
            _wait_until_ready(proxy, STARTUP_TIMEOUT)
            proxy.startup = time.monotonic() - started
        yield Proxies(proxies[0], proxies[1], relays)
    finally:
        for proxy in proxies:
            proxy.stop()
        for mine in relays.values():
            for relay in mine.values():
                relay.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
