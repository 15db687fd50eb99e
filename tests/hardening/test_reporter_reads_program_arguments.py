"""Issue 22 item 12: the program's own arguments are not shim's options, even without `--`.

The error reporter used to look for --audit-file and --log-format anywhere before a `--`, so
`shim exec --user ghost prog --audit-file /etc/x` made shim, as root, create /etc/x (and a
`--log-format json` of the program's switched shim's error to JSON). Only shim's own options,
those before the command, count.
"""

from __future__ import annotations

import json

import pytest

from tests.hardening.conftest import one_line


@pytest.mark.parametrize("shim_args", [
    ["exec", "--user", "ghost-user-22"],                      # the control: the run's own log
    ["exec", "--deadline", "soon"],                           # a bad option value
    ["exec", "-q", "--stop-signal", "NOPE"],                  # flags before it
    ["run", "--deadline", "soon"],                            # click's path
], ids=["unknown-user", "bad-deadline", "flags-then-bad-signal", "run-bad-deadline"])
def test_an_audit_file_among_the_programs_arguments_is_not_created(run_shim, tmp_path, shim_args):
    target = tmp_path / "created-by-root"
    result = run_shim([*shim_args, "sh", "-c", "true", "--audit-file", str(target),
                       "--log-format", "json"], {}, cwd=tmp_path)
    assert result.returncode in (64, 78), result.stderr
    assert not target.exists()
    assert result.stderr.startswith("shim: error: "), result.stderr   # text, not the program's json


def test_an_equals_spelling_among_the_programs_arguments_is_not_created(run_shim, tmp_path):
    target = tmp_path / "created-by-root"
    result = run_shim(["exec", "--deadline", "soon", "prog", f"--audit-file={target}"], {})
    one_line(result, 64, "is not a duration")
    assert not target.exists()


def test_shims_own_audit_file_before_the_command_still_gets_the_error(run_shim, tmp_path):
    """The control: the same option given to shim (before the command) is honoured."""
    audit = tmp_path / "audit.jsonl"
    result = run_shim(["exec", "--audit-file", str(audit), "--user", "ghost-user-22", "sh", "-c",
                       "true", "--audit-file", str(tmp_path / "not-this")], {})
    assert result.returncode == 78, result.stderr
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [record["event"] for record in records] == ["error"]
    assert not (tmp_path / "not-this").exists()
