"""Issue 12 item 15: after the drop to --user shim imports nothing, error reporting included.

shim runs from a root-only location: the interpreter's standard library, shim and its
dependencies are copied into a 0700 root directory (as with `pip install --user` as root, or
an interpreter under /root). After setuid nothing there can be read, so any import after the
drop fails. A program the target user may not execute must still end in one line and 126.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click
import dotenv
import pytest

from tests.conftest import ROOT, SYSTEM_PYTHON

_SKIP = shutil.ignore_patterns("__pycache__", "test", "tests", "idlelib", "tkinter", "ensurepip",
                               "lib2to3", "pydoc_data", "dist-packages", "site-packages")


@pytest.fixture(scope="module")
def root_only_python(tmp_path_factory):
    """(python, env): the system interpreter whose every module lives under a 0700 root dir."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path("/usr/lib") / version
    if not os.path.exists(SYSTEM_PYTHON) or not stdlib.is_dir():
        pytest.skip("needs the system Python and its standard library")
    home = tmp_path_factory.mktemp("root-only")
    os.chmod(home, 0o700)
    shutil.copytree(stdlib, home / "usr" / "lib" / version, ignore=_SKIP, symlinks=True)
    packages = home / "packages"
    for source in (Path(click.__file__).parent, Path(dotenv.__file__).parent, ROOT / "shim"):
        shutil.copytree(source, packages / source.name, ignore=_SKIP)
    return SYSTEM_PYTHON, {"PYTHONHOME": str(home / "usr"), "PYTHONPATH": str(packages),
                           "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def forbidden_program(tmp_path):
    """A program nobody may execute: it sits in a 0700 root directory."""
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    program = directory / "program"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return str(program)


@pytest.mark.parametrize("options", [[], ["--log-format", "json"], ["--init"],
                                     ["--init", "--no-new-privs"]],
                         ids=["text", "json", "init", "init-no-new-privs"])
def test_a_program_the_user_may_not_run_is_126_in_one_line(run_shim, root_only_python,
                                                          forbidden_program, options):
    python, env = root_only_python
    result = run_shim(["exec", "--user", "nobody", *options, "--", forbidden_program], env,
                      python=python)
    lines = result.stderr.splitlines()
    if "--log-format" in options:  # json also logs the drop and the exec: one error line
        errors = [json.loads(line) for line in lines if '"level": "error"' in line]
        assert len(errors) == 1 and errors[0]["exit_code"] == 126, result.stderr
    else:
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("shim: error: cannot execute ") and "Permission denied" in lines[0]
    assert result.returncode == 126, result.stderr


def test_the_control_run_works_from_the_root_only_location(run_shim, root_only_python):
    python, env = root_only_python
    result = run_shim(["exec", "--user", "nobody", "--", "id", "-u"], env, python=python)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "65534"
