"""The fenced blocks of README.md, CONTRIBUTING.md and docs/*.md, each with the mark that says how the tests
treat it.

A mark is an HTML comment (invisible on GitHub) on the last non-blank line before the opening fence:

    <!-- snippet: run -->                  executed: python in a fresh interpreter, sh with bash, js with node
    <!-- snippet: config KIND -->          parsed and checked against what the code accepts (CONFIG_KINDS)
    <!-- snippet: skip REASON -->          not run, for the reason given (say which test covers it)
    <!-- snippet: text -->                 not code: a diagram, program output, a format sample

docs/tested-docs.md says why and how; tests/test_docs.py runs the blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("run", "config", "skip", "text")
CONFIG_KINDS = (
    "vscode-mcp",
    "claude-mcp-json",
    "claude-settings",
    "codex",
    "codex-mcp",
    "gemini-settings",
    "litellm-proxy",
    "protocol-exchange",
    "mcptb-serve-command",
)
HOW_TO_MARK = (
    "put a mark on the line before the block's opening fence: <!-- snippet: run -->, "
    "<!-- snippet: config KIND --> (KIND one of "
    + ", ".join(CONFIG_KINDS)
    + "), <!-- snippet: skip REASON --> or <!-- snippet: text -->; see docs/tested-docs.md"
)

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARK = re.compile(r"^\s*<!--\s*snippet:\s*(?P<kind>\S+)\s*(?P<arg>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    lang: str
    text: str  # the block's lines, without the fences and the fence's indentation
    kind: str | None  # None: unmarked
    arg: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]]
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = _MARK.match(before)
        found.append(
            Block(
                path=str(path.relative_to(ROOT)),
                line=i + 1,
                lang=opening["info"].split()[0] if opening["info"].split() else "",
                text="\n".join(body) + "\n",
                kind=mark["kind"] if mark else None,
                arg=mark["arg"] if mark else "",
            )
        )
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in doc_files() for block in blocks_of(path)]


def problem(block: Block) -> str | None:
    """What is wrong with a block's mark, or None."""
    if block.kind is None:
        return f"{block.where}: a {block.lang or 'plain'} block without a mark; {HOW_TO_MARK}"
    if block.kind not in KINDS:
        return f"{block.where}: unknown mark {block.kind!r}; {HOW_TO_MARK}"
    if block.kind == "run" and (block.lang not in ("python", "sh", "js") or block.arg):
        return f"{block.where}: `run` is for python, sh and js blocks, and takes no argument"
    if block.kind == "config" and block.arg not in CONFIG_KINDS:
        return f"{block.where}: config kind {block.arg!r} is not one of {', '.join(CONFIG_KINDS)}"
    if block.kind == "skip" and len(block.arg) < 10:
        return f"{block.where}: `skip` needs a reason (and the test that covers the block, if one does)"
    return None
