"""Issue 12 item 12 (local part): every file shim reads is opened non-blocking, must be a
regular file and is read with a size cap; the inline ${ scan is linear.

A FIFO (nobody ever writes to it), /dev/zero and an oversized file, as --env-file, as a
file: reference and as NAME_FILE: one line, the documented exit code, no hang (the
subprocess timeout is the only clock here).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.hardening.conftest import one_line


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory"])
def test_env_file_that_is_not_a_regular_file(run_shim, probe, tmp_path, fifo, kind):
    path = {"fifo": fifo, "/dev/zero": "/dev/zero", "directory": str(tmp_path)}[kind]
    result = run_shim(["exec", "--env-file", path, "--", *probe.argv], {}, timeout=30)
    one_line(result, 66, f"env file {path}", "not a regular file" if kind != "directory"
              else "is a directory")
    assert not probe.ran


def test_env_file_too_large(run_shim, probe, tmp_path):
    path = tmp_path / "huge.env"
    path.write_text("A=b\n" * 300_000)
    result = run_shim(["exec", "--env-file", str(path), "--", *probe.argv], {}, timeout=30)
    one_line(result, 65, "is larger than 1 MiB")
    assert not probe.ran


@pytest.mark.parametrize("how", ["reference", "file-var"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_secret_file_that_is_not_a_regular_file(run_shim, probe, fifo, kind, how):
    path = fifo if kind == "fifo" else "/dev/zero"
    env = {"X": f"file:{path}"} if how == "reference" else {"X_FILE": path}
    result = run_shim(["exec", "--file-vars", "X", "--", *probe.argv], env, timeout=30)
    one_line(result, 66, "not a regular file")
    assert not probe.ran


@pytest.mark.parametrize("unit", ["${", "${x", "$${"])
def test_a_2_mb_value_with_many_inline_openings_is_scanned_in_linear_time(unit):
    """Was quadratic: every ${ searched (and copied) the rest of the value for its }.

    No environment or env file can carry 2 MB to shim (execve caps one string at 128 KiB,
    env files at 1 MiB), so the planner is driven directly, in a process of its own whose
    timeout is the only clock. A quadratic scan of this value takes hours.
    """
    value_size = 2 * 1024 * 1024 // len(unit)
    code = ("from shim.pipeline.plan import _split_inline; "
            f"pieces = _split_inline({unit!r} * {value_size}); "
            "print(len(''.join(pieces)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    expected = {"${": 2, "${x": 3, "$${": 2}[unit] * value_size
    assert int(result.stdout) == expected
