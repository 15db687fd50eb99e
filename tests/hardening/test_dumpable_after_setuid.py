"""After the drop to --user, shim stays non-dumpable until its execve (issue 31).

A uid change sets a process's dumpability to fs.suid_dumpable. At 0 (this kernel's default)
the kernel itself leaves shim non-dumpable, so the check would pass whatever shim does; at 1,
which some hosts set, only shim's own re-assert (privileges.drop_privileges) keeps a program of
the target uid from reading shim's environment, store credentials included, between the drop
and the execve. So this test sets fs.suid_dumpable to 1 for its few seconds (restored after;
shim re-asserts, so shim's other tests are unaffected) and holds shim in that window: its
stderr pipe is filled to a few bytes short of full by the log lines shim writes before the drop,
so the first line after it (`privileges.dropped`) blocks until the test reads the pipe.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import finish_process, unavailable
from tests.hardening.conftest import NOBODY, as_nobody
from tests.integration.test_supervise import wait_for

SUID_DUMPABLE = Path("/proc/sys/fs/suid_dumpable")
PIPE_CAPACITY = 65536            # Linux's default pipe buffer
ARGS = ["exec", "--user", "nobody", "--log-format", "json", "--", "true"]


@pytest.fixture
def suid_dumpable_1():
    try:
        before = SUID_DUMPABLE.read_text().strip()
        SUID_DUMPABLE.write_text("1")
    except OSError as error:
        unavailable(f"cannot set fs.suid_dumpable ({error.strerror}): needs root on the host kernel")
    try:
        yield
    finally:
        SUID_DUMPABLE.write_text(before)


def _environment(token: str, padding: int) -> dict:
    # A *_FILE variable outside every secrets dir is left as is, with one info line that
    # names it: its name's length sets how much shim writes before the drop.
    return {"VAULT_TOKEN": token, "PAD" + "X" * padding + "_FILE": "/etc/hostname"}


def _written_before_the_drop(run_shim, token: str, padding: int) -> int:
    result = run_shim(ARGS, _environment(token, padding), timeout=30)
    assert result.returncode == 0, result.stderr[-500:]
    text = result.stderr.encode()
    return text.index(b'{"time"', text.index(b'"file_var.left_as_is"'))


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_shim_is_not_dumpable_between_the_drop_and_its_execve(run_shim, start_shim, canaries,
                                                              suid_dumpable_1):
    token = canaries.new("vault-token")
    # Calibrate: how much shim writes before the drop, and how that grows with the padding.
    small, large = 20000, 20100
    first = _written_before_the_drop(run_shim, token, small)
    per_character = (_written_before_the_drop(run_shim, token, large) - first) / (large - small)
    dropped_line = 100       # `privileges.dropped` is longer than this
    padding = small + int((PIPE_CAPACITY - dropped_line // 2 - first) / per_character)
    assert padding > 0

    process = start_shim(ARGS, _environment(token, padding))
    try:
        assert wait_for(lambda: process.poll() is not None or _uid(process.pid) == NOBODY,
                        timeout=15)
        assert process.poll() is None, "shim did not stop at its first line after the drop"
        attacker = subprocess.run(["cat", f"/proc/{process.pid}/environ"], capture_output=True,
                                  preexec_fn=as_nobody(), timeout=10)
        assert _uid(process.pid) == NOBODY
        # (Not /proc/PID's owner: the kernel may keep the owner it gave the inode at the drop.)
        # A boolean, so that a failure report cannot show what was read.
        read_it = attacker.returncode == 0 or bool(attacker.stdout)
        assert not read_it, "a process of the target uid read shim's environment after the drop"
        assert b"Permission denied" in attacker.stderr
    finally:
        code, _, stderr = finish_process(process, canaries, timeout=20)   # drains the pipe
    assert code == 0, stderr[-500:]
