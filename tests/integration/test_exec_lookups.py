"""`shim exec` lookups that only a real run shows: which list element a `#/list/N` selector
picks, whose PATH finds the program, which variables `--import` may fill, and which path
options the fast path (shim/commands/fastpath.py) must hand to click.

Each test here was written against a change that passed every other test (issue 31); the
breakage table in docs/testing.md names it.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.hardening.conftest import NOBODY, as_nobody, nobody_python  # noqa: F401 - fixture
from tests.integration.test_devenv import repo  # noqa: F401 - fixture


# --- #/list/N selectors (shim/pipeline/resolve.py, _walk) ------------------------------------------------

def test_a_list_index_selects_exactly_that_element(run_shim, probe, canaries, tmp_path):
    first, middle, last = (canaries.new(label) for label in ("first", "middle", "last"))
    source = tmp_path / "app.json"
    source.write_text(json.dumps({"list": [first, middle, last]}))
    env = {"FIRST": f"ref+file://{source}#/list/0", "MIDDLE": f"ref+file://{source}#/list/1",
           "LAST": f"ref+file://{source}#/list/2"}
    result = run_shim(["exec", "--", *probe.argv], env, timeout=30)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["FIRST"], child["MIDDLE"], child["LAST"]) == (first, middle, last)


@pytest.mark.parametrize("index", ["-1", "3"])
def test_a_list_index_outside_the_list_is_not_found(run_shim, probe, canaries, tmp_path, index):
    source = tmp_path / "app.json"
    source.write_text(json.dumps({"list": [canaries.new("a"), canaries.new("b"), canaries.new("c")]}))
    result = run_shim(["exec", "--", *probe.argv], {"PICK": f"ref+file://{source}#/list/{index}"},
                      timeout=30)
    assert result.returncode == 66, result.stderr
    # The selector is quoted as #... (a value may look like one): its second key is missing.
    assert "key 2 of the #... selector does not exist in the secret" in result.stderr
    assert not probe.ran


# --- the program is looked up in its own PATH (shim/delivery/launch.py, candidate_paths) -----------------

def test_the_program_is_found_in_the_path_the_program_gets(run_shim, probe, shared_dir):
    """shim starts without PATH (its own lookups use the default /bin:/usr/bin); the env file
    gives the program one with a directory of its own: the program there is found (execvp in
    the child's environment, not shim's)."""
    tools = shared_dir / "only-the-program-has-this"
    tools.mkdir()
    program = tools / "app-only-here"
    program.write_text(f'#!/bin/sh\nexec {" ".join(probe.argv)}\n')
    program.chmod(0o755)
    env_file = shared_dir / "app.env"
    env_file.write_text(f"PATH={tools}:/usr/bin:/bin\n")
    result = run_shim(["exec", "--user", "nobody", "--env-file", str(env_file), "--",
                       "app-only-here"], {"LANG": "C.UTF-8"}, base_env=False, timeout=30)
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert record["uid"] == NOBODY
    assert record["env"]["PATH"] == f"{tools}:/usr/bin:/bin"


def test_a_program_only_in_shims_own_path_is_not_found(run_shim, shared_dir):
    env_file = shared_dir / "app.env"
    env_file.write_text(f"PATH={shared_dir}/empty\n")
    result = run_shim(["exec", "--env-file", str(env_file), "--", "true"], {"LANG": "C.UTF-8"},
                      base_env=False, timeout=30)
    assert result.returncode == 127, result.stderr
    assert "command 'true' not found in PATH" in result.stderr


# --- --import and SHIM_SKIP (shim/pipeline/imports.py, apply_imports) -------------------------------------

def test_an_import_never_fills_a_variable_shim_skip_names(run_shim, probe, canaries, tmp_path):
    store = tmp_path / "store.json"
    filled = canaries.new("filled")
    store.write_text(json.dumps({"KEPT_AS_IS": canaries.new("skipped"), "FILLED": filled}))
    env = {"SHIM_SKIP": "KEPT_AS_IS", "KEPT_AS_IS": "CHANGEME_LITERAL_THE_APP_WANTS",
           "FILLED": "CHANGEME_FILL_ME"}
    result = run_shim(["exec", "--import", f"file:{store}", "--log-format", "json", "--",
                       *probe.argv], env, timeout=30)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["KEPT_AS_IS"] == "CHANGEME_LITERAL_THE_APP_WANTS"
    assert child["FILLED"] == filled
    [applied] = [json.loads(line) for line in result.stderr.splitlines()
                 if '"import.applied"' in line]
    assert applied["kept"] == ["KEPT_AS_IS"] and applied["names"] == ["FILLED"]


# --- the fast path hands an unreadable path option to click (shim/commands/fastpath.py, _checked) ----------

@pytest.mark.parametrize("given", ["option", "variable"])
def test_an_unreadable_audit_file_is_refused_as_click_refuses_it(run_shim, probe, shared_dir,
                                                                 nobody_python, given):  # noqa: F811
    """Run as nobody (root reads every file): a 0200 audit file nobody owns is writable but not
    readable. click.Path refuses it (64); the fast path must hand it over, not accept it."""
    python, env = nobody_python
    audit = shared_dir / "audit.jsonl"
    audit.touch()
    os.chown(audit, NOBODY, NOBODY)
    audit.chmod(0o200)
    args = ["--audit-file", str(audit)] if given == "option" else []
    env = dict(env, SHIM_AUDIT_FILE=str(audit)) if given == "variable" else env
    result = run_shim(["exec", *args, "--", *probe.argv], env, python=python, cwd=shared_dir,
                      preexec_fn=as_nobody(), timeout=30)
    assert result.returncode == 64, result.stderr
    assert "is not readable" in result.stderr
    assert not probe.ran
    assert audit.stat().st_size == 0


# --- `shim run` resets signals 32/33 too (shim/delivery/launch.py, reset_signals) --------------------------

def _ignore_the_reserved_signals():
    """preexec_fn: ignore signals 32 and 33 (glibc's own; Python's signal module refuses them)."""
    import ctypes  # only in the forked child, before it becomes shim

    class Action(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                    ("restorer", ctypes.c_void_p), ("mask", ctypes.c_uint64)]

    libc = ctypes.CDLL(None, use_errno=True)
    number = {"x86_64": 13, "aarch64": 134}[os.uname().machine]
    for signum in (32, 33):
        assert libc.syscall(number, signum, ctypes.byref(Action(1, 0, None, 0)), None, 8) == 0


def test_shim_run_gives_the_program_the_reserved_signals_at_default(run_shim, probe, repo):  # noqa: F811
    """`exec` resets them before its privilege drop; `shim run` has no drop and relies on the
    reset just before execve."""
    result = run_shim(["run", "--", *probe.argv], {}, cwd=repo, timeout=30,
                      preexec_fn=_ignore_the_reserved_signals)
    assert result.returncode == 0, result.stderr
    assert probe.read()["sig_ign"] == "0000000000000000"
