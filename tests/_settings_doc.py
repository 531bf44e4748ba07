"""The tables of docs/settings.md, generated from the settings' one declaration (the dataclass fields and
their ``setting(...)`` metadata, ``shared_protocol/_settings.py``): the flag and the ``MCPTB_*`` variable
from the field's name, the default from the field (or its ``shown_default``), what it accepts from its
type, choices and bounds, and the ``--help`` text.

Each table sits between two marks in docs/settings.md, which the prose around them leaves alone:

    <!-- settings: mcptb-relay -->
    ...generated...
    <!-- /settings -->

Regenerate after changing a setting: ``./just settings-doc`` (``python tests/_settings_doc.py``).
``tests/test_docs.py`` fails, naming that command, when the file differs from what this produces.
"""

from __future__ import annotations

import dataclasses
import html
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "docs" / "settings.md"
COMMAND = "./just settings-doc"
_TABLES = re.compile(r"(<!-- settings: (?P<command>[\w-]+) -->\n)(?P<body>.*?)(<!-- /settings -->)", re.S)
_SECONDS = ("_timeout", "_grace", "_hold", "_interval", "_delay")
_BYTES = ("_bytes", "_memory")


def declarations() -> dict[str, type]:
    """Each command and the dataclass that declares its settings."""
    sys.path.insert(0, str(ROOT))
    from mcp_server.cli import ServerOptions
    from mcp_server.serve import ServeOptions
    from relay._config import Config

    return {"mcptb-relay": Config, "mcptb-server": ServerOptions, "mcptb-serve": ServeOptions}


def _cell(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|")


def _size(value: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value and value % (1 << shift) == 0:
            return f"{value >> shift} {unit}"
    return f"{value:,}"


def _default(field: dataclasses.Field[Any]) -> str:
    value, shown = field.default, field.metadata["shown_default"]
    if shown is not None:
        return _cell(shown)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == "":
        return "none"
    if isinstance(value, float):
        if not field.name.endswith(_SECONDS):
            raise ValueError(f"{field.name}: a float setting that is not in seconds; say how to show it here")
        return f"{value:g} s"
    if isinstance(value, int):
        if field.name.endswith(_BYTES):
            return _size(value)
        return f"{value:,}" if value >= 10_000 and field.name != "port" else str(value)
    return f"`{value}`"


def _accepts(field: dataclasses.Field[Any]) -> str:
    meta, kind = field.metadata, str(field.type)
    if meta["choices"]:
        return ", ".join(f"`{choice}`" for choice in meta["choices"])
    if kind == "bool":
        return f"on/off (`--no-{field.name.replace('_', '-')}`)"
    if kind in ("int", "float"):
        noun = "seconds" if kind == "float" else "integer"
        if meta["positive"]:
            return f"{noun} > 0"
        if meta["minimum"] is not None:
            return f"{noun} ≥ {meta['minimum']:g}"
        return noun
    return "text"


def table(kind: type) -> str:
    from shared_protocol._settings import env_name, flag_name

    rows = ["| flag | environment variable | default | accepts | what it does (`--help`) |", "|---|---|---|---|---|"]
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        rows.append(
            f"| `{flag_name(field.name)}` | `{env_name(field.name)}` | {_default(field)} | {_accepts(field)} "
            f"| {_cell(field.metadata['help'])} |"
        )
    return "\n".join(rows) + "\n"


def generate(text: str) -> str:
    """``text`` (docs/settings.md) with every marked table made anew from the declarations."""
    kinds = declarations()
    seen: list[str] = []

    def fill(match: re.Match[str]) -> str:
        command = match["command"]
        if command not in kinds:
            raise ValueError(f"docs/settings.md: no settings are declared for {command!r}")
        seen.append(command)
        return match[1] + table(kinds[command]) + match[4]

    made = _TABLES.sub(fill, text)
    missing = sorted(set(kinds) - set(seen))
    if missing:
        raise ValueError(f"docs/settings.md has no table for {', '.join(missing)}: add <!-- settings: NAME --> marks")
    return made


def main() -> None:
    text = PATH.read_text()
    made = generate(text)
    if made != text:
        PATH.write_text(made)
        print(f"rewrote {PATH.relative_to(ROOT)}")
    else:
        print(f"{PATH.relative_to(ROOT)} is up to date")


if __name__ == "__main__":
    main()
