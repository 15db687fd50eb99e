"""`render --watch` against the Vault double: lease renewal, SIGHUP, --revoke-on-exit, end to end.

shim runs as a real process; the double records every request, and its clock is advanced to prove
that a renewal really extended the lease (without the renewal it would have expired).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import finish_process
from tests.doubles.vault import VaultDouble
from tests.integration.test_supervise import wait_for


@pytest.fixture
def vault():
    with VaultDouble() as double:
        yield double


def default_sighup():
    """pytest may run with SIGHUP ignored (nohup, some CI runners): the test must not inherit it."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


RT_SIGTIMEDWAIT = {"x86_64": 128, "aarch64": 137}.get(os.uname().machine)


def sighup_blocked(pid: int) -> bool:
    """The watch loop holds SIGHUP: blocked, or (while it waits for it, the kernel lifting the
    block for the wait) the process sits in rt_sigtimedwait."""
    status = Path(f"/proc/{pid}/status").read_text()
    blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    if blocked & (1 << (signal.SIGHUP - 1)):
        return True
    call = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    return call.isdigit() and int(call) == RT_SIGTIMEDWAIT


def start_render(start_shim, vault, canaries, tmp_path, *extra):
    vault.add_database_role("app", default_ttl=3, max_ttl=3600)
    vault.kv2_put("secret", "app", {"api_key": canaries.new("v1")})
    token = vault.create_token(["database/creds/app", "secret/*", "sys/leases/revoke"], ttl=3600)
    canaries.values.append(token)
    out = tmp_path / "out"
    out.mkdir()
    env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token, "HOME": str(tmp_path),
           "DB_PASSWORD": "vault:database/creds/app#password",
           "API_KEY": "ref+vault://secret/app#/api_key"}
    process = start_shim(["render", "--dir", str(out), "--watch", "1h", "--log-format", "json", *extra],
                         env, preexec_fn=default_sighup)
    assert wait_for(lambda: (out / "API_KEY").exists())
    # The first files are written before the watch loop blocks its signals: until then a SIGHUP
    # would find its default action. Wait until the loop is the one that will receive it.
    assert wait_for(lambda: sighup_blocked(process.pid))
    canaries.values.extend(issued.password for issued in vault.issued_credentials("app"))
    return process, out, token


def test_watch_renews_the_lease_before_it_expires(start_shim, vault, canaries, tmp_path):
    process, _, _ = start_render(start_shim, vault, canaries, tmp_path)
    [lease] = vault.live_leases()
    assert wait_for(lambda: vault.count("/v1/sys/leases/renew") >= 1, timeout=10)
    # Two seconds on the double's clock: past the lease's first 3 s, within the renewed ones.
    vault.advance_clock(2)
    assert [live.lease_id for live in vault.live_leases()] == [lease.lease_id]
    process.send_signal(signal.SIGTERM)
    returncode, _, _ = finish_process(process, canaries)
    assert returncode == 0
    assert vault.revoked_leases() == []  # no --revoke-on-exit: the lease is left to expire


def test_sighup_re_resolves_at_once(start_shim, vault, canaries, tmp_path):
    process, out, _ = start_render(start_shim, vault, canaries, tmp_path)
    second = canaries.new("v2")
    vault.kv2_put("secret", "app", {"api_key": second})
    # --watch is 1h: only SIGHUP can make it read the store again now.
    process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: (out / "API_KEY").read_text() == second, timeout=10)
    assert process.poll() is None  # SIGHUP re-resolves; it does not stop the sidecar
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 0


def test_revoke_on_exit_revokes_the_lease_and_the_token(start_shim, vault, canaries, tmp_path):
    process, _, token = start_render(start_shim, vault, canaries, tmp_path, "--revoke-on-exit")
    [lease] = vault.live_leases()
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 0
    assert [revoked.lease_id for revoked in vault.revoked_leases()] == [lease.lease_id]
    assert vault.count("/v1/sys/leases/revoke") == 1
    assert vault.token_info(token).revoked
