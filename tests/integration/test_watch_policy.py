"""`exec --watch`'s rules, each seen from outside a real supervisor (PID 1 of a PID namespace):
a change is applied only once a second resolution confirms it, a failing store is asked again
once per interval (not at once), the rotation policy holds in the helpers too, signals go to
the program's whole group, and a lease whose renewal was capped is read again before it ends.

Each test here was written against a change that passed every other test (issue 31); the
breakage table in docs/testing.md names it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.doubles.vault import VaultDouble
from tests.integration.test_supervise import finish, shim_pid_inside, start_shim, wait_for  # noqa: F401

# Every wait below is bounded: a supervisor that hangs fails the test in seconds.
STOP_TIMEOUT = 20


def json_events(stderr: str, name: str | None = None) -> list[dict]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if name is None or record.get("event") == name]


def recording_child(starts: Path) -> list[str]:
    """A program that records the value it started with, then waits."""
    return ["sh", "-c", f'echo "$SECRET" >> {starts}; exec sleep 60']


def rotate(path: Path, value: str) -> None:
    """Replace the secret at once (write_text truncates first: a tick could read it empty)."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(value)
    staged.rename(path)


def stop(process, canaries):
    os.kill(shim_pid_inside(process), signal.SIGTERM)
    return finish(process, canaries, timeout=STOP_TIMEOUT)


def test_a_change_is_applied_only_after_a_second_resolution_agrees(start_shim, canaries, tmp_path,
                                                                    shared_dir):
    first, second = canaries.new("v1"), canaries.new("v2")
    secret = tmp_path / "secret"
    secret.write_text(first)
    starts = shared_dir / "starts"
    process = start_shim(["exec", "--watch", "1s", "--log-format", "json", "-vv", "--",
                          *recording_child(starts)], {"SECRET": f"file:{secret}"})
    assert wait_for(lambda: starts.exists() and starts.read_text().split() == [first])
    rotate(secret, second)
    assert wait_for(lambda: starts.read_text().split() == [first, second], timeout=20)
    code, _, stderr = stop(process, canaries)
    assert code == 143, stderr
    events = json_events(stderr)
    names = [event["event"] for event in events]
    applied = names.index("secret.changed")
    assert "secret.change_seen" in names[:applied], "the change was applied on first sight"
    seen = max(i for i in range(applied) if names[i] == "secret.change_seen")
    assert events[seen]["changed"] == events[applied]["variables"] == ["SECRET"]
    confirming = [event for event in events[seen + 1:applied]
                  if event["event"] == "helper.started" and event["job"] == "resolve"]
    assert len(confirming) == 1, "no second resolution between seeing the change and applying it"


def test_a_failing_store_is_asked_again_once_per_interval_not_at_once(start_shim, canaries,
                                                                       tmp_path, shared_dir):
    interval = 2.0
    secret = tmp_path / "secret"
    secret.write_text(canaries.new())
    starts = shared_dir / "starts"
    process = start_shim(["exec", "--watch", f"{interval:g}s", "--log-format", "json", "--",
                          *recording_child(starts)], {"SECRET": f"file:{secret}"})
    assert wait_for(starts.exists)
    secret.unlink()      # the store fails from now on, for three intervals and more
    failing_since = time.monotonic()
    time.sleep(3.5 * interval)
    code, _, stderr = stop(process, canaries)
    window = time.monotonic() - failing_since
    assert code == 143, stderr
    failures = json_events(stderr, "watch.failed")
    # The next try is a jittered interval (at least 0.9 of it) after the previous one ended.
    allowed = int(window / (0.9 * interval)) + 1
    assert 2 <= len(failures) <= allowed, (len(failures), allowed)
    assert starts.read_text().count("\n") == 1     # the program kept running, never restarted


def test_enforce_max_age_is_enforced_by_the_watch_helpers_too(start_shim, canaries, tmp_path,
                                                              shared_dir):
    first, too_old, fresh = canaries.new("v1"), canaries.new("old"), canaries.new("v3")
    secret = tmp_path / "secret"
    secret.write_text(first)
    starts = shared_dir / "starts"
    process = start_shim(["exec", "--watch", "300ms", "--max-age", "1d", "--enforce-max-age",
                          "--log-format", "json", "--", *recording_child(starts)],
                         {"SECRET": f"file:{secret}"})
    assert wait_for(lambda: starts.exists() and starts.read_text().split() == [first])
    staged = secret.with_name("staged")
    staged.write_text(too_old)
    two_days_ago = time.time() - 2 * 86400
    os.utime(staged, (two_days_ago, two_days_ago))
    staged.rename(secret)
    time.sleep(3.0)      # ten ticks and more: each refuses the overdue secret
    assert starts.read_text().split() == [first]
    rotate(secret, fresh)        # rotated: a fresh value is applied as usual
    assert wait_for(lambda: starts.read_text().split() == [first, fresh], timeout=20)
    code, _, stderr = stop(process, canaries)
    assert code == 143, stderr
    refused = [event for event in json_events(stderr, "watch.failed") if event["exit_code"] == 78]
    assert refused and "rotation overdue" in refused[0]["message"]


def test_watch_forwards_signals_to_the_programs_whole_group(start_shim, canaries, tmp_path):
    """The lean loop's forwarding is tested elsewhere; under --watch the full supervisor stays,
    and its forwarding must reach the program's children too (--forward-to group, the default)."""
    secret = tmp_path / "secret"
    secret.write_text(canaries.new())
    log = tmp_path / "usr1"
    script = (f"trap 'echo parent >> {log}; wait; exit 0' USR1; "
              f"sh -c \"trap 'echo grandchild >> {log}; exit 0' USR1; touch {log}.g; "
              f"while :; do sleep 0.05; done\" & "
              f"touch {log}.p; wait")
    process = start_shim(["exec", "--watch", "1h", "--", "sh", "-c", script],
                         {"SECRET": f"file:{secret}"})
    assert wait_for(lambda: Path(f"{log}.p").exists() and Path(f"{log}.g").exists())
    os.kill(shim_pid_inside(process), signal.SIGUSR1)
    code, _, stderr = finish(process, canaries, timeout=STOP_TIMEOUT)
    assert code == 0, stderr
    assert sorted(log.read_text().split()) == ["grandchild", "parent"]


def test_a_lease_whose_renewal_was_capped_is_read_again_before_it_expires(start_shim, canaries,
                                                                          shared_dir):
    """max_ttl 16 s, TTL 12 s: the renewal at 8 s is capped to what is left (under 12 s), so the
    lease cannot be renewed again; shim must read new credentials before the 16 s are over and
    restart the program with them, never renewing a capped lease a second time."""
    with VaultDouble() as vault:
        vault.add_database_role("app", default_ttl=12, max_ttl=16)
        token = vault.create_token(["database/creds/app", "sys/leases/renew"], ttl=3600)
        canaries.values.append(token)
        starts = shared_dir / "starts"
        process = start_shim(["exec", "--watch", "1h", "--", "sh", "-c",
                              f'echo "$DB_PASSWORD" >> {starts}; exec sleep 60'],
                             {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
                              "DB_PASSWORD": "vault:database/creds/app#password"})
        assert wait_for(lambda: len(vault.issued_credentials("app")) >= 2, timeout=40)
        assert wait_for(lambda: starts.exists() and len(starts.read_text().split()) == 2,
                        timeout=15)
        issued = vault.issued_credentials("app")
        canaries.values.extend(credential.password for credential in issued)
        code, _, stderr = stop(process, canaries)
        assert code == 143, stderr
        first, second = sorted(vault.leases(), key=lambda lease: lease.issued)[:2]
        assert first.lease_id == issued[0].lease_id
        assert first.renewals == 1, "a capped lease was renewed again instead of read again"
        assert second.issued < first.max_expires, "new credentials came after the old expired"
        assert starts.read_text().split() == [issued[0].password, issued[1].password]


def test_a_lease_kept_across_ticks_does_not_stop_the_reads_after_it(start_shim, canaries,
                                                                     shared_dir):
    """The leased credentials are reused, not read again, at every tick; the secrets listed after
    them must still be read (a rotated KV value reaches the program, no new credentials)."""
    first, second = canaries.new("v1"), canaries.new("v2")
    with VaultDouble() as vault:
        vault.add_database_role("app", default_ttl=3600, max_ttl=7200)
        vault.kv2_put("secret", "app", {"api_key": first})
        token = vault.create_token(["database/creds/app", "secret/*"], ttl=3600)
        canaries.values.append(token)
        starts = shared_dir / "starts"
        process = start_shim(["exec", "--watch", "500ms", "--", "sh", "-c",
                              f'echo "$Z_API_KEY" >> {starts}; exec sleep 60'],
                             {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
                              "A_DB_PASSWORD": "vault:database/creds/app#password",
                              "Z_API_KEY": "vault:secret/data/app#api_key"})
        assert wait_for(lambda: starts.exists() and starts.read_text().split() == [first])
        vault.kv2_put("secret", "app", {"api_key": second})
        assert wait_for(lambda: starts.read_text().split() == [first, second], timeout=20)
        canaries.values.extend(credential.password for credential in vault.issued_credentials())
        code, _, stderr = stop(process, canaries)
        assert code == 143, stderr
        assert len(vault.issued_credentials("app")) == 1   # the lease was reused, never re-read



def test_every_lease_due_is_renewed_whatever_its_place(start_shim, canaries, shared_dir):
    """Two leases, the first far from due: the second (TTL 6 s) is still renewed at its time."""
    with VaultDouble() as vault:
        vault.add_database_role("long", default_ttl=3600, max_ttl=7200)
        vault.add_database_role("short", default_ttl=6, max_ttl=3600)
        token = vault.create_token(["database/creds/long", "database/creds/short",
                                    "sys/leases/renew"], ttl=3600)
        canaries.values.append(token)
        starts = shared_dir / "starts"
        process = start_shim(["exec", "--watch", "1h", "--", "sh", "-c",
                              f'echo started >> {starts}; exec sleep 60'],
                             {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
                              "A_LONG": "vault:database/creds/long#password",
                              "B_SHORT": "vault:database/creds/short#password"})
        assert wait_for(starts.exists)
        canaries.values.extend(credential.password for credential in vault.issued_credentials())

        def short_renewed():
            return any(lease.role == "short" and lease.renewals >= 1 for lease in vault.leases())

        renewed = wait_for(short_renewed, timeout=15)
        code, _, stderr = stop(process, canaries)
        assert renewed, "the lease due was not renewed: the loop stopped at the one before it"
        assert code == 143, stderr
        assert len(vault.issued_credentials()) == 2      # renewed, not read again
