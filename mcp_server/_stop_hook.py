"""``mcptb-serve``'s hooks (Claude Code's, which Codex CLI shares): a serving session keeps serving until the
user stops it.

``mcptb-serve`` hands the session two command hooks on its command line (``--settings``; nothing is
written to the user's configuration), both this module: ``UserPromptSubmit`` notes where each prompt
starts, ``Stop`` decides whether the end of a turn is allowed. The facts come from the session's serving
record, which its mcptb-server writes (``_record``), and from the hook's own notes beside it; Claude
Code's transcript is not read (it is written behind the hooks, often missing or stale when they run).

The Stop hook blocks the end of a turn, telling the agent to call ``next_request`` again, while the
session serves: its prompt was the serve loop (``mcptb-serve``'s first prompt, ``/mcp__mcptb__serve``)
or the agent called ``next_request`` during it. It lets the turn end when

- the user typed a prompt of their own and the agent did not serve during it (Esc during a turn never
  reaches a Stop hook: Claude Code skips it for an interrupted turn, so Esc always stops serving);
- the agent's last message says the user asked it to stop (:data:`STOP_MARKER`, which the block's
  reason tells it to write in that case, e.g. for a message the user queued while it waited);
- the session's budget is spent (``next_request`` told the agent to end its turn: the supervisor
  starts a fresh session);
- the agent ignored ``max_blocks`` blocks in a row (no ``next_request`` call after any of them): a
  broken session must not loop for ever. Claude Code's own cap (8 blocks with no tool call between)
  never comes first.

:func:`on_prompt` and :func:`on_stop` decide, from plain values; :func:`main` reads and writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _record as record
from ._record import Tally

STOP_MARKER = "mcptb: stopped serving"
KEEP_SERVING = (
    "Keep serving: call next_request now (the MCP Token Bridge serve loop). Only if the user asked you to stop "
    f"serving, end your turn with the line: {STOP_MARKER}"
)
SERVE_PROMPTS = ("/mcp__mcptb__serve", "You are serving requests from the MCP Token Bridge")
"""How the prompts that start serving begin (the slash command, and ``mcptb-serve``'s first prompt)."""
DEFAULT_MAX_BLOCKS = 3


@dataclass(frozen=True)
class Notes:
    """What the hooks remember of a session between two runs."""

    waits_at_prompt: int = 0
    """The record's ``next_request`` calls when the current prompt was submitted."""
    serve_prompt: bool = True
    """The current prompt is the serve loop (a session's first prompt is, until a hook says otherwise)."""
    waits_at_block: int = -1
    """The record's calls at the last block (-1: no block in this prompt yet)."""
    blocks: int = 0
    """Blocks in a row that no ``next_request`` call followed."""
    ended: str = ""
    """Why the last turn was allowed to end (the supervisor's line), empty while serving."""


def on_prompt(prompt: str, tally: Tally) -> Notes:
    return Notes(waits_at_prompt=tally.waits, serve_prompt=prompt.lstrip().startswith(SERVE_PROMPTS))


def on_stop(last_message: str, tally: Tally, notes: Notes, max_blocks: int) -> tuple[str | None, Notes]:
    """The reason to block the end of this turn (None: let it end), and the notes to keep."""
    fresh = dataclasses.replace(notes, waits_at_block=-1, blocks=0)
    if tally.spent:
        return None, dataclasses.replace(fresh, ended="its budget was spent")
    if STOP_MARKER in last_message:
        return None, dataclasses.replace(fresh, ended="the user asked it to stop serving")
    if not notes.serve_prompt and tally.waits == notes.waits_at_prompt:
        return None, dataclasses.replace(fresh, ended="a prompt of the user's own, not serving")
    blocks = 1 if tally.waits > notes.waits_at_block else notes.blocks + 1
    if blocks > max_blocks:
        return None, dataclasses.replace(
            fresh, ended=f"the agent did not call next_request after {max_blocks} reminders in a row"
        )
    return KEEP_SERVING, dataclasses.replace(notes, waits_at_block=tally.waits, blocks=blocks, ended="")


def command(state_dir: str, max_blocks: int) -> list[str]:
    """The hook's command line (one for both events)."""
    return [sys.executable, "-m", "mcp_server._stop_hook", "--state", state_dir, "--max-blocks", str(max_blocks)]


def settings(command_line: str) -> dict[str, Any]:
    """The ``--settings`` object that installs the hooks for one session."""
    hook = [{"hooks": [{"type": "command", "command": command_line}]}]
    return {"hooks": {"UserPromptSubmit": hook, "Stop": hook}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_server._stop_hook", description=__doc__)
    parser.add_argument("--state", required=True)
    parser.add_argument("--max-blocks", type=int, default=DEFAULT_MAX_BLOCKS)
    args = parser.parse_args(argv)
    try:
        event = json.load(sys.stdin)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        return 0  # not from Claude Code: nothing to decide
    session = record.session_key(os.environ, str(event.get("session_id") or "") or os.environ.get(record.SESSION_ENV))
    if not session:
        return 0
    tally = record.read(args.state, session, Tally) or Tally()
    notes = record.read(args.state, session, Notes, "hook") or Notes()
    block = None
    if event.get("hook_event_name") == "UserPromptSubmit":
        notes = on_prompt(str(event.get("prompt") or ""), tally)
    elif event.get("hook_event_name") == "Stop":
        block, notes = on_stop(str(event.get("last_assistant_message") or ""), tally, notes, args.max_blocks)
    else:
        return 0
    try:
        record.write(args.state, session, notes, "hook")
    except OSError as exc:  # without its notes the hook cannot count: let the session end rather than loop
        print(f"mcptb-serve's Stop hook cannot write in {args.state}: {exc}", file=sys.stderr)
        return 0
    if block is not None:
        print(json.dumps({"decision": "block", "reason": block}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
