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


def run_loop_with_helper(helper: str, program: str = "sleep 0.3; exit 7"):
    # As above, with a second child the loop is told to wait for (wait:PID, the --redact
    # redactor, which writes the program's last lines after the program is gone). The program
    # sleeps first so that it ends after sh became the loop (sh may reap a child before exec).
    script = (f'sh -c "{program}" & program=$!; sh -c "{helper}" & helper=$!; '
              'exec "$0" -I -S "$1" $program child wait:$helper')
    return subprocess.run(["sh", "-c", script, sys.executable, LOOP], capture_output=True,
                          text=True, timeout=15)


def test_the_loop_waits_for_a_helper_that_outlives_the_program(tmp_path):
    finished = tmp_path / "helper-finished"
    result = run_loop_with_helper(f"sleep 1; touch {finished}")
    assert result.returncode == 7, result.stderr
    assert finished.exists()


def test_the_loop_kills_a_helper_still_running_after_two_seconds(tmp_path):
    pid_file = tmp_path / "helper-pid"
    result = run_loop_with_helper(f"echo \\$\\$ > {pid_file}; exec sleep 60")
    assert result.returncode == 7, result.stderr
    helper = int(pid_file.read_text())
    assert not Path(f"/proc/{helper}").exists() or \
        Path(f"/proc/{helper}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
