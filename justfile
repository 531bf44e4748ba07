# MCP Token Bridge tasks: ./just RECIPE (the wrapper beside this file; it brings just itself) or just RECIPE.
# Every recipe makes the venv (.venv) and installs what it needs; a second run skips the install when
# pyproject.toml has not changed. relay and serve need only the runtime, demo the runtime and the openai
# SDK; test, lint, fmt and bench install the test tools too.

set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")
venv := ".venv"
bin := venv + "/bin"
# What each install depends on (just's own hashing: macOS has no sha1sum)
hash_pyproject := sha256_file("pyproject.toml")
hash_dev := sha256(sha256_file("pyproject.toml") + sha256_file("tests/overrides.txt"))
hash_node := sha256_file("tests/node/package.json")

# Run the relay (the main job): just relay --port 8000
relay *ARGS: _runtime
    {{bin}}/mcptb-relay {{ARGS}}

# Serve relay requests from a dedicated Claude Code session that keeps serving: just serve [--headless | --cli codex]
serve *ARGS: _runtime
    {{bin}}/mcptb-serve {{ARGS}}

# The fast tier, after every change: lint and types, then every module's logic in process on asyncio and
# trio (tests marked `real`, which start programs, are left to test-all). Both tiers run in 4
# pytest-xdist workers: most tests wait (on a timeout, another task, another program), so 4 overlap
# well on 2 cores; -n 0 runs them one by one, in order
test *ARGS: _dev lint
    {{bin}}/python -m pytest -n 4 --dist loadgroup -m "not real" {{ARGS}}

# Everything, as CI runs it: lint and types, then both tiers (real processes, the Claude Code, Codex and
# Gemini CLIs, node, the litellm proxy, installs)
test-all *ARGS: _dev _node lint
    {{bin}}/python -m pytest -n 4 --dist loadgroup {{ARGS}}

# ruff (lint + format check) and mypy
lint: _dev
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy

# Format the code in place
fmt: _dev
    {{bin}}/ruff format .
    {{bin}}/ruff check --fix .

# Benchmarks: relay start, memory, throughput and latency against a bare h11 server
bench *ARGS: _dev
    {{bin}}/python -m bench {{ARGS}}

# Rounds of abandoned large answers, slow readers and hostile requests, then idle: does the relay give its memory back? just storm --backend trio
storm *ARGS: _dev
    {{bin}}/python -m bench.storm {{ARGS}}

# Regenerate the settings tables of docs/settings.md from the settings' declarations (tests/_settings_doc.py)
settings-doc: _runtime
    {{bin}}/python tests/_settings_doc.py

# Start a relay and a demo MCP client with a canned model, and stream one answer through it (openai SDK)
demo: _demo
    {{bin}}/python -m bench.demo

# The venv with uv in it, made by the ./just wrapper (which also copes with a Python without ensurepip)
_venv:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{bin}}/python ] || [ ! -x {{bin}}/uv ]; then {{python}} just --mcptb-venv; fi

_runtime: _venv
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.runtime-{{hash_pyproject}}
    if [ ! -f "$stamp" ]; then
      {{bin}}/uv pip install --python {{bin}}/python -q -e .
      rm -f {{venv}}/.runtime-*; touch "$stamp"
    fi

_demo: _runtime
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.demo-{{hash_pyproject}}
    if [ ! -f "$stamp" ]; then
      {{bin}}/uv pip install --python {{bin}}/python -q -e '.[demo]'
      rm -f {{venv}}/.demo-*; touch "$stamp"
    fi

_dev: _venv
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.dev-{{hash_dev}}
    if [ ! -f "$stamp" ]; then
      # litellm pins a certifi newer than some registries carry: tests/overrides.txt relaxes it (tests only)
      {{bin}}/uv pip install --python {{bin}}/python -q --override tests/overrides.txt -e '.[test,lint]'
      rm -f {{venv}}/.dev-*; touch "$stamp"
    fi

# The TypeScript MCP SDK client used by some tests (skipped, loudly, where npm is missing)
_node:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v npm >/dev/null; then echo "npm not found: TypeScript-client tests will be skipped"; exit 0; fi
    stamp=tests/node/node_modules/.stamp-{{hash_node}}
    if [ ! -f "$stamp" ]; then
      (cd tests/node && npm install --no-audit --no-fund --loglevel=error)
      touch "$stamp"
    fi
