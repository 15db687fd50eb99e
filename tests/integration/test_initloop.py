"""The lean loop (shim/initloop.py) run directly: the paths after the mode go once the program
has exited, and the program's status is the loop's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import shim.initloop

LOOP = shim.initloop.__file__


def run_loop(tmp_path, *paths, program="sleep 0.3; exit 7"):
    # sh starts the program in the background, then becomes the loop (same pid): the program
    # is the loop's child, as it is after Supervisor.hand_over().
    script = f'sh -c "{program}" & exec "$0" -I -S "$1" $! child "$@"'
    return subprocess.run(["sh", "-c", script.replace('"$@"', " ".join(str(p) for p in paths)),
                           sys.executable, LOOP], capture_output=True, text=True, timeout=30)


def test_the_loop_removes_its_paths_after_the_program_exits(tmp_path):
    written = tmp_path / "as-file"
    written.write_text("value")
    gone = tmp_path / "never-written"
    result = run_loop(tmp_path, written, gone)
    assert result.returncode == 7, result.stderr
    assert not written.exists()
    assert result.stderr == ""


def test_the_loop_refuses_a_relative_path(tmp_path):
    result = run_loop(tmp_path, "relative/path")
    assert result.returncode == 70
    assert "initloop takes CHILD_PID" in result.stderr
