"""The docs match the code: every fenced block of README.md, CONTRIBUTING.md and docs/*.md is run,
checked, or skipped for a stated reason (tests/_doc_blocks.py has the marks, docs/tested-docs.md the design).

- ``run`` python blocks execute as written in a fresh interpreter against a live relay and worker that
  the test starts (in-process, on both backends; a scripted model answers ``echo: <text>``, and a request
  for structured output a JSON object whose string properties are each ``echo: <text>``); the only
  change made to them is the relay's address (``127.0.0.1:8000`` becomes the test relay's port). They
  must print the answer, and must not make litellm fetch its cost map (the blocks set what prevents it;
  the test does not). ``run`` sh blocks run with bash, the same address change, and a 20 s limit; ``run``
  js blocks run as ES modules with node, importing the packages installed in tests/node (skipped, loudly,
  without node or them).
- ``config`` blocks are parsed and checked against what the code accepts (flags, tool names, frames).
- Facts the prose states that the code decides: the modules in docs/architecture.md, the default
  socket path, the model ids the examples use, the settings tables (generated: tests/_settings_doc.py).
- Links: every relative link and #anchor resolves; the README stays short and links every doc.
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml

from mcp_server._core import MAX_WAIT_SECONDS
from mcp_server._serve_session import TOOLS, Session, claude_arguments
from mcp_server.cli import parse_args as server_args
from shared_protocol import RelayFrameDecoder, WorkerFrameDecoder, default_socket_path
from shared_protocol._codec import ProtocolError

from _doc_blocks import FENCE, ROOT, Block, all_blocks, doc_files, problem
from _scripted import MODEL, ScriptedModel, last_user_text
from _settings_doc import COMMAND as SETTINGS_COMMAND
from _settings_doc import generate as settings_tables
from conftest import mcp_worker, say

BLOCKS = all_blocks()
RUN = [b for b in BLOCKS if b.kind == "run"]
CONFIG = [b for b in BLOCKS if b.kind == "config"]
DEFAULT_ADDRESS = re.compile(r"(127\.0\.0\.1|localhost):8000")
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
# the schema mcptb-server puts at the end of the system prompt (mcp_server/_structured.py's instruction())
WANTED_SCHEMA = re.compile(r"valid against this JSON Schema[^\n]*:\n(?P<schema>\{.*\})\s*\Z", re.S)


class DocsModel(ScriptedModel):
    """The scripted model, which cannot write JSON: asked for structured output (and offered no tools), it
    answers a JSON object with each of the schema's properties ``echo: <text>``. So a structured-output
    recipe prints ``echo: Hello!`` from a field of the object its SDK asked for, got checked and parsed."""

    async def __call__(self, ctx: Any, params: types.CreateMessageRequestParams) -> Any:
        wanted = WANTED_SCHEMA.search(params.system_prompt or "")
        if wanted is None or params.tools:
            return await super().__call__(ctx, params)
        self.requests.append(params)
        echo = f"echo: {last_user_text(params)}"
        answer = {name: echo for name in json.loads(wanted["schema"]).get("properties", {})}
        return types.CreateMessageResult(
            role="assistant", model=MODEL, stop_reason="endTurn", content=types.TextContent(text=json.dumps(answer))
        )


def _node_missing(block: Block) -> str | None:
    """Why a js block cannot run here (no node, or a package it imports is not installed in tests/node)."""
    if shutil.which("node") is None:
        return f"SKIPPED: node not found - {block.where} did not run"
    imported = {m[1] for m in re.finditer(r'from "((?:@[^/"]+/)?[^/".][^/"]*)', block.text) if ":" not in m[1]}
    missing = sorted(name for name in imported if not (NODE_MODULES / name).is_dir())
    if missing:
        return (
            f"SKIPPED: {', '.join(missing)} not in tests/node/node_modules (run: cd tests/node && npm install "
            f"--no-audit --no-fund) - {block.where} did not run"
        )
    return None


def test_every_block_in_the_docs_is_marked_run_config_skip_or_text():
    problems = [p for p in map(problem, BLOCKS) if p is not None]
    assert not problems, "\n".join(problems)


def test_skipped_blocks_name_tests_that_exist():
    named = {(b.where, m) for b in BLOCKS if b.kind == "skip" for m in re.findall(r"tests/[\w/]+\.py", b.arg)}
    assert [(where, test) for where, test in named if not (ROOT / test).exists()] == []


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, marks=[pytest.mark.node] if b.lang == "js" else []) for b in RUN],
    ids=[b.where for b in RUN],
)
@pytest.mark.real
async def test_run_blocks_work_as_written_against_a_live_relay(block: Block, relay, backend, tmp_path, request):
    program = DEFAULT_ADDRESS.sub("127.0.0.1:" + relay.url.rsplit(":", 1)[1], block.text)
    if block.lang == "python":
        (tmp_path / "snippet.py").write_text(program)
        command = [sys.executable, str(tmp_path / "snippet.py")]
    elif block.lang == "js":
        if (reason := _node_missing(block)) is not None:
            say(request.config, f"*** {reason} ***")
            pytest.skip(reason)
        (tmp_path / "snippet.mjs").write_text(program)
        (tmp_path / "node_modules").symlink_to(NODE_MODULES)  # an ES module finds packages beside it, not on NODE_PATH
        command = ["node", str(tmp_path / "snippet.mjs")]
    else:
        command = ["bash", "-euo", "pipefail", "-c", program]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MCPTB_", "LITELLM_"))}
    async with mcp_worker(relay, backend, model=DocsModel()):
        with anyio.fail_after(90):  # a guard against a hang, not a speed check: an SDK's import alone took
            # 20 s on this 2-core machine at a load of 8 (the other test workers and a benchmark)
            done = await anyio.run_process(command, cwd=tmp_path, env=environ, check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{block.where} failed:\n{out}\n{err}"
    assert "echo: Hello!" in out, f"{block.where}: the answer is not printed:\n{out}\n{err}"
    assert "model cost map" not in err, f"{block.where}: litellm fetched its cost map:\n{err}"


def _check_server_command(command: str, args: list[str]) -> None:
    assert Path(command).name == "mcptb-server", command
    server_args(args)  # the flags mcptb-server accepts (a usage error exits)


def _vscode_mcp(text: str) -> None:
    server = json.loads(text)["servers"]["mcptb"]
    assert server["type"] == "stdio"
    _check_server_command(server["command"], server.get("args", []))


def _claude_mcp_json(text: str) -> None:
    server = json.loads(text)["mcpServers"]["mcptb"]
    _check_server_command(server["command"], server.get("args", []))


def _claude_settings(text: str) -> None:
    assert json.loads(text)["permissions"]["allow"] == list(TOOLS)


def _codex(text: str) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads(text)
    provider = config["model_providers"][config["model_provider"]]
    assert provider["base_url"] == "http://127.0.0.1:8000/v1" and provider["wire_api"] == "responses"
    assert provider["env_key"]
    assert provider.get("supports_websockets") is False  # tests/test_codex_cli.py runs Codex with this table


def _codex_mcp(text: str) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    server = tomllib.loads(text)["mcp_servers"]["mcptb"]
    _check_server_command(server["command"], server.get("args", []))
    assert server["required"] is True
    assert server["tool_timeout_sec"] > MAX_WAIT_SECONDS  # next_request's longest wait fits


def _gemini_settings(text: str) -> None:
    server = json.loads(text)["mcpServers"]["mcptb"]
    _check_server_command(server["command"], server.get("args", []))
    assert server["trust"] is True


def _litellm_proxy(text: str) -> None:
    config = yaml.safe_load(text)
    for deployment in config["model_list"]:
        params = deployment["litellm_params"]
        prefix = params["model"].split("/", 1)[0]
        assert prefix in ("openai", "hosted_vllm", "anthropic"), params["model"]
        # the relay's OpenAI APIs are under /v1; Anthropic clients add /v1/messages to the root themselves
        assert params["api_base"].endswith("/v1") == (prefix != "anthropic"), params
    assert config["litellm_settings"]["num_retries"] == 0


def _protocol_exchange(text: str) -> None:
    decoders = {"worker → relay": WorkerFrameDecoder(), "relay → worker": RelayFrameDecoder()}
    for line in text.splitlines():
        direction, frame = line[:14], line[14:].strip()
        frames = list(decoders[direction].feed(frame.encode() + b"\n"))
        assert len(frames) == 1 and not isinstance(frames[0], ProtocolError), (line, frames)


def _mcptb_serve_command(text: str) -> None:
    """The command docs/serving.md says mcptb-serve runs has the flags mcptb-serve passes."""
    shown = shlex.split(text.replace("\\\n", " ").replace("[your arguments]", ""))
    real = claude_arguments("claude", "/s.sock", [], {}, Session("/state", 3))
    assert shown[0] == "MCP_CONNECTION_NONBLOCKING=0" and shown[1] == "claude"
    flags = [a for a in shown if a.startswith("--")]
    assert flags == [a for a in real if a.startswith("--")], (flags, real)
    for flag in ("--tools", "--allowedTools"):
        assert shown[shown.index(flag) + 1] == real[real.index(flag) + 1], flag


CHECKS: dict[str, Any] = {
    "vscode-mcp": _vscode_mcp,
    "claude-mcp-json": _claude_mcp_json,
    "claude-settings": _claude_settings,
    "codex": _codex,
    "codex-mcp": _codex_mcp,
    "gemini-settings": _gemini_settings,
    "litellm-proxy": _litellm_proxy,
    "protocol-exchange": _protocol_exchange,
    "mcptb-serve-command": _mcptb_serve_command,
}


@pytest.mark.parametrize("block", CONFIG, ids=[b.where for b in CONFIG])
def test_config_blocks_are_what_the_code_accepts(block: Block):
    CHECKS[block.arg](block.text)


def _architecture_tables() -> dict[str, set[str]]:
    """package -> the modules docs/architecture.md names in that package's section."""
    named: dict[str, set[str]] = {}
    package = None
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        heading = re.match(r"^## (\w+)/$", line)
        if heading:
            package = heading[1]
        elif line.startswith("## "):
            package = None
        elif package:
            named.setdefault(package, set()).update(re.findall(r"`(\w+\.py)`", line.split(" | ")[0]))
    return named


def test_architecture_names_every_module_and_only_modules_that_exist():
    named = _architecture_tables()
    assert set(named) == {"relay", "mcp_server", "shared_protocol"}
    for package, modules in named.items():
        present = {p.name for p in (ROOT / package).glob("*.py") if not p.name.startswith("__")}
        assert sorted(present - modules) == [], f"docs/architecture.md's {package}/ table lacks these"
        assert sorted(modules - present) == [], f"docs/architecture.md's {package}/ table names missing modules"


SOCKET_PATH = re.compile(r"(\$XDG_RUNTIME_DIR|\$TMPDIR|<tempdir>)(/[\w<>-][\w<>.-]*)*/relay\.sock")


def test_the_docs_state_the_default_socket_path_the_code_uses(monkeypatch, tmp_path):
    """Every ``$XDG_RUNTIME_DIR/.../relay.sock`` and ``$TMPDIR/.../relay.sock`` (or ``<tempdir>/...``) in the
    docs, the generated settings tables (the --help texts) included, is what default_socket_path() makes."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    uid = str(os.getuid())
    monkeypatch.delenv("MCPTB_SOCKET", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    in_runtime = default_socket_path()[len(str(runtime)) :]
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    fallback = default_socket_path()[len(str(tmp_path)) :].replace(uid, "<uid>")
    expected = {"$XDG_RUNTIME_DIR": in_runtime, "$TMPDIR": fallback, "<tempdir>": fallback}
    wrong, in_settings = [], set()
    for path in doc_files():
        for match in SOCKET_PATH.finditer(html.unescape(path.read_text())):
            if match[0] != match[1] + expected[match[1]]:
                wrong.append(f"{path.relative_to(ROOT)}: {match[0]}, not {match[1] + expected[match[1]]}")
            if path.name == "settings.md":
                in_settings.add(match[1])
    assert wrong == []
    assert in_settings >= {"$XDG_RUNTIME_DIR", "<tempdir>"}, "docs/settings.md's --socket rows name no default path"


def test_examples_name_any_model_or_an_id_the_relay_lists():
    """Any name goes to any worker (``any`` says so); a listed id comes from the client's name
    (``claude-code``, ``visual-studio-code``). The examples once named ``vs-code``, which picks nothing."""
    listed = {"any", "claude-code", "visual-studio-code"}
    for block in RUN:
        for name in re.findall(r"""["']?model["']?\s*[=:]\s*["']([^"']+)["']""", block.text):
            assert name.removeprefix("openai/") in listed, f"{block.where}: model {name!r}"


def test_the_settings_reference_is_what_the_declarations_generate():
    """docs/settings.md's tables come from the settings' one declaration (tests/_settings_doc.py)."""
    text = (ROOT / "docs" / "settings.md").read_text()
    assert text == settings_tables(text), f"docs/settings.md is not what the settings declare: run {SETTINGS_COMMAND}"


def _outside_fences(path: Path) -> list[tuple[int, str]]:
    """A doc's lines that are not inside a fenced block, with their numbers."""
    lines, fence = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if fence is None and (opening := FENCE.match(line)):
            fence = opening["fence"]
        elif fence is not None and stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def anchors(path: Path) -> set[str]:
    """The ``#anchors`` GitHub makes for a doc's headings: the text without markup, lowercase, punctuation
    but ``-`` and ``_`` dropped, spaces as ``-``; a repeated one gets ``-1``, ``-2``..."""
    made: set[str] = set()
    for _, line in _outside_fences(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading[1]).lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in made:
            n += 1
            anchor = f"{slug}-{n}"
        made.add(anchor)
    return made


def links(path: Path) -> list[tuple[int, str]]:
    """A doc's Markdown link targets outside code (fenced blocks, and inline spans, which may run over a
    line break), with their lines."""
    kept = dict(_outside_fences(path))
    text = "\n".join(kept.get(n, "") for n in range(1, len(path.read_text().splitlines()) + 1))
    text = re.sub(r"`[^`]*`", lambda span: re.sub(r"[^\n]", " ", span[0]), text)  # same lines, no code
    return [(text.count("\n", 0, m.start()) + 1, m[1]) for m in re.finditer(r"\]\(([^)\s]*)\)", text)]


def test_every_relative_link_and_anchor_in_the_docs_resolves():
    broken = []
    for path in doc_files():
        for number, target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            aimed = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if not aimed.exists() or ROOT not in aimed.parents:
                broken.append(f"{where} (no such file in the repository)")
            elif anchor and aimed.suffix == ".md" and anchor not in anchors(aimed):
                broken.append(f"{where} (no heading makes #{anchor} in {aimed.relative_to(ROOT)})")
    assert broken == [], "\n".join(broken)


def test_the_readme_is_short_links_every_doc_and_shows_a_runnable_example_early():
    """The README reads in five minutes; the rest is one click away (docs/tested-docs.md)."""
    readme = ROOT / "README.md"
    assert len(readme.read_bytes()) < 15_000, "README.md has grown past 15,000 bytes: move detail to docs/"
    first_run = next(b.line for b in RUN if b.path == "README.md")
    assert first_run < 120, f"README.md's first runnable example starts at line {first_run}"
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in links(readme)}
    unlinked = [p.relative_to(ROOT) for p in doc_files()[1:] if p.resolve() not in linked]
    assert unlinked == [], f"README.md links none of these: {unlinked}"


def test_the_retry_table_in_the_docs_is_the_relays_table():
    """docs/apis.md#errors-and-retries lists every error kind once, with the status and retry advice
    relay/_errors.py's TABLE gives it."""
    from relay._errors import TABLE

    text = (ROOT / "docs" / "apis.md").read_text()
    table = text.split("<!-- retry table:", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, tuple[int, bool]] = {}
    for row in table.splitlines()[3:]:
        kinds, status, retry, _why = (cell.strip() for cell in row.strip("|").split("|"))
        for kind in re.findall(r"`([a-z_]+)`", kinds):
            assert kind not in documented, f"{kind} is in the retry table twice"
            documented[kind] = (int(status), {"yes": True, "no": False}[retry])
    assert documented == {kind: (shape.status, shape.retryable) for kind, shape in TABLE.items()}
