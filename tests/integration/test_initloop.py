"""The lean loop (shim/delivery/initloop.py) run directly: the paths after the mode go once the program
has exited, and the program's status is the loop's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import shim.delivery.initloop

LOOP = shim.delivery.initloop.__file__


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


# Forks a program that exits at once, waits until it is a zombie nobody has reaped (SIGCHLD at
# its default is discarded, so none is pending), then becomes the loop: same pid, same child.
_ENDED_BEFORE_THE_LOOP = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(5)
while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
    time.sleep(0.01)
os.execv(sys.executable, [sys.executable, "-I", "-S", sys.argv[1], str(pid), "group"])
"""


def test_a_program_that_ended_before_the_loop_started_is_reaped():
    """Only the loop's first reap, before it waits for signals, collects a program that ended
    before the loop started. Without it PID 1 waits for a SIGCHLD that never comes."""
    result = subprocess.run([sys.executable, "-c", _ENDED_BEFORE_THE_LOOP, LOOP],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 5, result.stderr
