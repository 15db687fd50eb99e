"""Issue 12 item 11: --audit-file never follows a link, never stays open to others, never
truncates (docs/audit.md says: fixed to 0600 when ours, refused with 77 when not)."""

from __future__ import annotations

import os
import stat


def _check(run_shim, audit, probe):
    return run_shim(["exec", "--audit-file", str(audit), "--", *probe.argv], {})


def test_an_existing_world_writable_file_of_ours_is_made_0600_and_appended(run_shim, tmp_path, probe):
    audit = tmp_path / "audit.log"
    audit.write_text("earlier line\n")
    audit.chmod(0o666)
    result = _check(run_shim, audit, probe)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert audit.read_text().startswith("earlier line\n")  # appended, not truncated


def test_a_file_open_to_others_and_owned_by_someone_else_is_refused(run_shim, tmp_path, probe):
    audit = tmp_path / "audit.log"
    audit.write_text("")
    os.chown(audit, 65534, 65534)
    audit.chmod(0o644)
    result = _check(run_shim, audit, probe)
    assert result.returncode == 77, result.stderr
    assert result.stderr.splitlines() == [
        f"shim: error: --audit-file {audit}: is open to other users (mode 0644) and owned by "
        f"uid 65534; chmod 600 it, or let shim create it"]
    assert stat.S_IMODE(audit.stat().st_mode) == 0o644 and not probe.ran


def test_a_symlink_is_refused_and_its_target_untouched(run_shim, tmp_path, probe):
    target = tmp_path / "elsewhere"
    target.write_text("")
    target.chmod(0o644)
    audit = tmp_path / "audit.log"
    audit.symlink_to(target)
    result = _check(run_shim, audit, probe)
    assert result.returncode == 77, result.stderr
    assert "is a symbolic link" in result.stderr and not probe.ran
    assert target.read_text() == "" and stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_fifo_is_refused_without_waiting_for_a_reader(run_shim, tmp_path, probe):
    audit = tmp_path / "audit.fifo"
    os.mkfifo(audit)
    result = run_shim(["exec", "--audit-file", str(audit), "--", *probe.argv], {}, timeout=30)
    assert result.returncode == 77, result.stderr
    assert len(result.stderr.splitlines()) == 1 and not probe.ran
