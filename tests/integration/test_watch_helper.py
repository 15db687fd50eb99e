"""--watch resolves in short-lived helper processes: the supervisor never loads a store SDK,
logs in to Vault once, keeps leased credentials across ticks and still revokes on exit."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.doubles.vault import VaultDouble
from tests.integration.test_supervise import finish, wait_for


@pytest.fixture
def vault():
    with VaultDouble() as double:
        yield double


def events(stderr: str, name: str) -> list[dict]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == name]


def app_requests(vault) -> int:
    """Reads and change probes of the KV secret: a tick asks for its metadata, and reads the
    value only when that changed (shim/pipeline/probes.py)."""
    return vault.count("secret/data/app", "GET") + vault.count("secret/metadata/app", "GET")


def loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def approle_watch(start_shim, vault, canaries, tmp_path, *extra_options):
    """exec --watch with AppRole, one KV secret and one dynamic credential; returns the process,
    the KV canary and the file the child writes its DB password into."""
    role_id = vault.add_approle("app", ["secret/*", "database/*", "sys/leases/*"], token_ttl=10,
                                token_max_ttl=600)
    canaries.values.append(role_id)
    secret_id = vault.new_secret_id("app")
    canaries.values.append(secret_id)
    vault.add_database_role("app", default_ttl=10, max_ttl=600)
    kv_value = canaries.new("kv")
    vault.kv2_put("secret", "app", {"password": kv_value})
    seen = tmp_path / "seen"
    home = tmp_path / "home"
    home.mkdir()
    process = start_shim(
        ["exec", "-vv", "--log-format", "json", "--watch", "300ms", *extra_options, "--",
         "sh", "-c", f'echo "$APP_PASSWORD $DB_PASSWORD" > {seen}; exec sleep 60'],
        {"VAULT_ADDR": vault.url, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id,
         "HOME": str(home), "APP_PASSWORD": "vault:secret/data/app#password",
         "DB_PASSWORD": "vault:database/creds/app#password"},
        pid_namespace=False)
    return process, kv_value, seen


def test_watch_resolves_in_helpers_and_the_supervisor_loads_no_sdk(start_shim, vault, canaries, tmp_path):
    process, kv_value, seen = approle_watch(start_shim, vault, canaries, tmp_path)
    assert wait_for(lambda: seen.exists() and seen.read_text().strip())
    # Several re-resolutions, a lease renewal and a token renewal (TTLs of 10 s, renewed at 2/3: a helper may take seconds on a loaded machine).
    assert wait_for(lambda: app_requests(vault) >= 5
                    and vault.count("sys/leases/renew", "PUT") >= 1
                    and vault.count("auth/token/renew-self", "POST") >= 1, timeout=30)
    libraries = loaded_libraries(process.pid)
    assert "_ssl" not in libraries and "libssl" not in libraries, "the supervisor loaded TLS"
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert seen.read_text().split()[0] == kv_value

    helper_pids = {event["pid"] for event in events(stderr, "helper.ran")}
    assert len(helper_pids) >= 4 and process.pid not in helper_pids
    started = [event for event in events(stderr, "helper.started")]
    assert helper_pids <= {event["pid"] for event in started}
    assert {event["job"] for event in started} >= {"resolve", "renew_lease", "renew_token"}
    # One login for the whole run: the token travels from helper to helper.
    assert vault.count("auth/approle/login", "POST") == 1
    # The dynamic credential was read once and kept (renewed), not minted on every tick.
    assert len(vault.issued_credentials("app")) == 1
    assert vault.count("database/creds/app", "GET") == 1


def test_revoke_on_exit_revokes_through_a_helper(start_shim, vault, canaries, tmp_path):
    process, _, seen = approle_watch(start_shim, vault, canaries, tmp_path, "--revoke-on-exit")
    assert wait_for(lambda: seen.exists() and seen.read_text().strip())
    assert wait_for(lambda: app_requests(vault) >= 3)
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert len(vault.revoked_leases()) == 1
    assert vault.count("auth/token/revoke-self", "POST") == 1
    assert events(stderr, "lease.revoked") and events(stderr, "token.revoked")
    assert vault.count("auth/approle/login", "POST") == 1


def test_a_failed_re_resolution_keeps_the_running_child(start_shim, vault, canaries, tmp_path):
    """The store going away makes each helper fail: the child keeps running, untouched."""
    process, _, seen = approle_watch(start_shim, vault, canaries, tmp_path, "--deadline", "1s")
    assert wait_for(lambda: seen.exists() and seen.read_text().strip())
    child_line = seen.read_text()
    vault.seal()
    reads = app_requests(vault)
    assert wait_for(lambda: app_requests(vault) >= reads + 4)
    assert wait_for(lambda: app_requests(vault) >= reads + 8)
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert events(stderr, "watch.failed")
    assert not events(stderr, "child.restarted")
    assert seen.read_text() == child_line


def helper_children(pid: int) -> list[int]:
    # Helpers are started from the watcher's thread: children are listed per thread.
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += (task / "children").read_text().split()
        except FileNotFoundError:
            continue
    helpers = []
    supervisor = Path(f"/proc/{pid}/cmdline").read_bytes()
    for child in children:
        try:
            # A helper is a fork of the supervisor: the same command line (the program is not).
            if Path(f"/proc/{child}/cmdline").read_bytes() == supervisor:
                helpers.append(int(child))
        except FileNotFoundError:
            continue
    return helpers


def test_a_hung_helper_is_killed_and_the_child_keeps_running(start_shim, canaries, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(canaries.new("file"))
    seen = tmp_path / "seen"
    process = start_shim(["exec", "--log-format", "json", "--deadline", "1s", "--watch", "200ms",
                          "--", "sh", "-c", f'echo "$SECRET" >> {seen}; exec sleep 60'],
                         {"SECRET": f"file:{secret}"}, pid_namespace=False)
    assert wait_for(lambda: seen.exists())
    stopped = []

    def stop_a_helper():
        for helper in helper_children(process.pid):
            try:
                os.kill(helper, signal.SIGSTOP)    # hung: it will never answer
            except ProcessLookupError:
                continue
            stopped.append(helper)
            return True
        return False

    assert wait_for(stop_a_helper, interval=0.002)   # caught while its interpreter starts
    # Killed at --deadline + the start-up allowance, and reaped.
    assert wait_for(lambda: not Path(f"/proc/{stopped[0]}").exists(), timeout=20)
    # The next tick starts a new helper: the failure has been handled (and logged) by then.
    assert wait_for(lambda: helper_children(process.pid), interval=0.002)
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    failures = [event["message"] for event in events(stderr, "watch.failed")]
    assert any("did not answer within 6s; killed it" in message for message in failures), failures
    assert not events(stderr, "child.restarted")
    assert len(seen.read_text().splitlines()) == 1
