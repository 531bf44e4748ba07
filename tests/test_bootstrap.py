"""``./just``, the README's first command, on the Python it is hardest on: one like Debian's or Ubuntu's
without the python3-venv package, whose ``python3 -m venv`` makes the venv but fails to put pip in it
(no ensurepip). The wrapper then makes the venv ``--without-pip``, fetches pip's wheel from the index
(sha256 checked) and installs with it. ``.ci/run`` runs the ordinary path (``./just test-all`` on a clean
clone) on every submission; this is the fallback.

A stand-in plays that Python: it runs the real one, except that ``-m venv`` without ``--without-pip``
leaves a venv without pip and fails with Debian's message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.real

NO_ENSUREPIP_PYTHON = f"""#!{sys.executable}
import os, subprocess, sys
REAL = {sys.executable!r}
args = sys.argv[1:]
if args[:2] == ["-m", "venv"] and "--without-pip" not in args:
    subprocess.run([REAL, "-m", "venv", "--without-pip", *args[2:]], check=True)
    sys.exit("The virtual environment was not created successfully because ensurepip is not available. "
             "On Debian/Ubuntu systems, you need to install the python3-venv package")
os.execv(REAL, [REAL, *args])
"""


def run_wrapper(tree: Path, *args: str, python: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        [str(tree / "just"), *args],
        cwd=tree,
        env={**env, "PYTHON": str(python)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_wrapper_without_ensurepip_makes_the_venv_and_runs_just(tmp_path: Path) -> None:
    python = tmp_path / "python3"
    python.write_text(NO_ENSUREPIP_PYTHON)
    python.chmod(0o755)
    tree = tmp_path / "clone"
    tree.mkdir()
    for name in ("just", "justfile"):
        shutil.copy2(ROOT / name, tree / name)
    bin_dir = tree / ".venv" / "bin"

    # What the justfile's recipes run under a `just` of the user's own: the venv with uv, no just.
    venv_only = run_wrapper(tree, "--mcptb-venv", python=python)
    assert venv_only.returncode == 0, venv_only.stderr
    assert "without pip" in venv_only.stderr and "fetching pip from" in venv_only.stderr, venv_only.stderr
    assert (bin_dir / "uv").exists() and (bin_dir / "pip").exists() and not (bin_dir / "just").exists()

    first = run_wrapper(tree, "--version", python=python)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("just 1."), first.stdout
    assert "installing rust-just" in first.stderr and "fetching pip" not in first.stderr, first.stderr

    started = time.monotonic()
    again = run_wrapper(tree, "--version", python=python)
    assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, "")
    assert time.monotonic() - started < 5  # straight to .venv/bin/just
