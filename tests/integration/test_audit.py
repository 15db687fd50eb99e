"""Audit events and the rotation policy, seen in stderr (JSON) and in --audit-file."""

import json
import os
import time


def events(text):
    return [json.loads(line) for line in text.strip().splitlines() if line.startswith("{")]


def aged_file(path, value, days):
    path.write_text(value)
    moment = time.time() - days * 86400
    os.utime(path, (moment, moment))
    return path


def test_audit_file_answers_which_secrets_from_where_how_old(run_shim, canaries, tmp_path, probe):
    secret = aged_file(tmp_path / "pg", canaries.new(), days=3)
    audit = tmp_path / "audit.log"
    result = run_shim(["exec", "--user", "nobody", "--audit-file", str(audit), "--", *probe.argv],
                      {"PG": f"file:{secret}", "MISSING_OK": f"ref+file://{tmp_path}/nope?optional=true"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # text mode: audit events go to the file, not the terminal
    assert oct(audit.stat().st_mode & 0o777) == "0o600"
    text = audit.read_text()
    canaries.assert_absent(text, where="the audit file")
    records = events(text)
    resolved = [r for r in records if r["event"] == "secret.resolved"]
    assert [(r["variable"], r["provider"], r["reference"]) for r in resolved] == \
        [("PG", "file", f"ref+file://{secret}")]
    assert 3 * 86400 - 60 <= resolved[0]["age_seconds"] <= 3 * 86400 + 60
    dropped = next(r for r in records if r["event"] == "privileges.dropped")
    assert (dropped["user"], dropped["uid"], dropped["gid"]) == ("nobody", 65534, 65534)
    launched = next(r for r in records if r["event"] == "exec")
    assert launched["uid"] == 65534 and launched["command"] == probe.argv[0]


def test_failures_are_audited_with_their_class(run_shim, canaries, tmp_path):
    audit = tmp_path / "audit.log"
    result = run_shim(["exec", "--audit-file", str(audit), "--log-format", "json", "--", "true"],
                      {"A": f"file:{tmp_path}/absent", "B": "CHANGEME_B"})
    assert result.returncode == 66
    for text in (result.stderr, audit.read_text()):
        failed = [r for r in events(text) if r["event"] == "secret.failed"]
        assert [(r["variable"], r["failure"], r["exit_code"]) for r in failed] == \
            [("A", "not_found", 66), ("B", "config", 78)]


def test_json_log_format_emits_every_event_on_stderr(run_shim, canaries, tmp_path, probe):
    secret = aged_file(tmp_path / "s", canaries.new(), days=0)
    # --allow-root: shim runs as root here and the probe without --user, which warns otherwise.
    result = run_shim(["exec", "--log-format", "json", "--allow-root", "--", *probe.argv],
                      {"S": f"file:{secret}"})
    assert result.returncode == 0
    assert [r["event"] for r in events(result.stderr)] == ["secret.resolved", "exec"]


def test_rotation_overdue_is_logged_and_enforced(run_shim, canaries, tmp_path, probe):
    old = aged_file(tmp_path / "old", canaries.new(), days=100)
    fresh = aged_file(tmp_path / "fresh", canaries.new(), days=10)
    env = {"OLD": f"file:{old}", "FRESH": f"file:{fresh}",
           "OWN_POLICY": f"ref+file://{old}?max_age=365d"}
    logged = run_shim(["exec", "--max-age", "90d", "--log-format", "json", "--", *probe.argv], env)
    assert logged.returncode == 0
    overdue = [r for r in events(logged.stderr) if r["event"] == "secret.rotation_overdue"]
    assert [r["variable"] for r in overdue] == ["OLD"]
    assert overdue[0]["max_age_seconds"] == 90 * 86400
    enforced = run_shim(["exec", "--max-age", "90d", "--enforce-max-age", "--", *probe.argv],
                        {**env, "OWN_STRICT": f"ref+file://{fresh}?max_age=5d"})
    assert enforced.returncode == 78
    errors = [line for line in enforced.stderr.splitlines() if "error" in line]
    assert len(errors) == 2
    assert errors[0].startswith("shim: error: OLD") and errors[1].startswith("shim: error: OWN_STRICT")
    assert "rotation overdue" in errors[0]


def test_check_shows_age_and_never_values(run_shim, canaries, tmp_path):
    secret = aged_file(tmp_path / "s", canaries.new(), days=2)
    result = run_shim(["check", "--json"], {"S": f"file:{secret}"})
    assert result.returncode == 0
    row = json.loads(result.stdout)["variables"][0]
    assert row["variable"] == "S" and row["status"] == "ok"
    assert 2 * 86400 - 60 <= row["age_seconds"] <= 2 * 86400 + 60
    table = run_shim(["check"], {"S": f"file:{secret}"})
    assert "2d" in table.stdout


def test_unwritable_audit_file_is_77(run_shim, tmp_path):
    result = run_shim(["exec", "--audit-file", str(tmp_path / "no" / "dir" / "a.log"), "--", "true"], {})
    assert result.returncode == 77
    assert "--audit-file" in result.stderr


def test_errors_before_any_variable_reach_the_audit_file(run_shim, tmp_path):
    """docs/audit.md's `error` event: a bad --user or a bad duration, in both log formats."""
    for log_format in ("text", "json"):
        for args, code in ((["--user", "no-such-user-here"], 78), (["--deadline", "soon"], 64)):
            audit = tmp_path / f"{log_format}-{code}.log"
            result = run_shim(["exec", "--audit-file", str(audit), "--log-format", log_format,
                               *args, "--", "true"], {})
            assert result.returncode == code, result.stderr
            [record] = events(audit.read_text())
            assert (record["event"], record["level"], record["exit_code"]) == ("error", "error", code)
            assert time.strptime(record["time"], "%Y-%m-%dT%H:%M:%SZ")
            if log_format == "json":
                [shown] = events(result.stderr)
                assert shown == record
            else:
                assert result.stderr == f"shim: error: {record['message']}\n"


def test_audit_file_is_appended_to_never_truncated(run_shim, canaries, tmp_path):
    secret = aged_file(tmp_path / "s", canaries.new(), days=0)
    audit = tmp_path / "audit.log"
    audit.write_text('{"event": "earlier.run"}\n')
    for _ in range(2):
        assert run_shim(["exec", "--allow-root", "--audit-file", str(audit), "--", "true"],
                        {"S": f"file:{secret}"}).returncode == 0
    assert [r["event"] for r in events(audit.read_text())] == \
        ["earlier.run", "secret.resolved", "exec", "secret.resolved", "exec"]


def test_check_shows_overdue_secrets_in_table_and_json(run_shim, canaries, tmp_path):
    old = aged_file(tmp_path / "old", canaries.new(), days=100)
    fresh = aged_file(tmp_path / "fresh", canaries.new(), days=10)
    env = {"OLD": f"file:{old}", "FRESH": f"file:{fresh}"}
    for enforce, code, status in (([], 0, "overdue"), (["--enforce-max-age"], 78, "overdue (refused)")):
        result = run_shim(["check", "--json", "--max-age", "90d", *enforce], env)
        assert result.returncode == code, result.stderr
        rows = {row["variable"]: row for row in json.loads(result.stdout)["variables"]}
        assert rows["FRESH"]["status"] == "ok" and "max_age_seconds" not in rows["FRESH"]
        assert rows["OLD"]["status"] == status
        assert rows["OLD"]["max_age_seconds"] == 90 * 86400
        assert 10 * 86400 - 60 <= rows["OLD"]["overdue_seconds"] <= 10 * 86400 + 60
        table = run_shim(["check", "--max-age", "90d", *enforce], env)
        old_line = next(line for line in table.stdout.splitlines() if line.startswith("OLD "))
        assert status in old_line
