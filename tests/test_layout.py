"""The code's shape, as CONTRIBUTING.md states it: no module of the three packages over 450 lines
(split by purpose when one grows), and no import cycle among their modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("relay", "mcp_server", "shared_protocol")
MAX_LINES = 450


def modules() -> dict[str, Path]:
    return {
        f"{package}.{path.stem}" if path.stem != "__init__" else package: path
        for package in PACKAGES
        for path in sorted((ROOT / package).glob("*.py"))
    }


def test_no_module_is_over_450_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports at its top level (not inside functions: those run later)."""
    package = name.split(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = (package + ("." + node.module if node.module else "")) if node.level else (node.module or "")
            found |= {c for c in [base, *(f"{base}.{a.name}" for a in node.names)] if c in known}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    return found - {name, *PACKAGES}  # a package's __init__ only re-exports


def test_no_import_cycle():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            assert state.get(other) != "open", " -> ".join([*trail, name, other])
            if other not in state:
                visit(other, [*trail, name])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])
    assert sum(map(len, graph.values())) > 100  # the scan sees the imports
