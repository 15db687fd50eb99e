"""Dynamic credentials from the real OpenBao's database engine, minted in a real PostgreSQL:
they reach the program, PostgreSQL accepts them, `--watch` renews their lease and reads new
ones at the lease's max TTL, and `--revoke-on-exit` leaves no user behind.

Each test mounts its own database engine (and its own user-name prefix) on the session's
OpenBao; PostgreSQL is one throwaway cluster for the module. The passwords OpenBao makes are
registered as canaries once the program has them, so shim's output is checked for them too.
"""

from __future__ import annotations

import signal
import time

from tests.integration.test_supervise import finish, wait_for
from tests.real.postgres import (
    RECORD_CREDENTIALS, DatabaseRole, credentials_keep_working, credentials_seen, events,
    postgres,  # noqa: F401 - the fixture
)


def test_a_dynamic_credential_reaches_the_program_and_postgresql_accepts_it(
        openbao, postgres, run_shim, canaries, tmp_path):
    role = DatabaseRole(openbao, postgres)
    seen = tmp_path / "seen"
    result = run_shim(["exec", "--", "sh", "-c", f'echo "$DB_USER $DB_PASS" > {seen}'],
                      env={**openbao.vault_env(), **role.environment()}, timeout=60)
    assert result.returncode == 0, result.stderr
    [(user, password)] = credentials_seen(seen, canaries)
    # Username and password come from one read: one lease, one user.
    assert postgres.users(role.prefix) == {user}
    assert postgres.can_log_in(user, password)


def test_watch_renews_the_lease_then_replaces_it_before_its_max_ttl(
        openbao, postgres, start_shim, canaries, tmp_path):
    role = DatabaseRole(openbao, postgres, default_ttl="9s", max_ttl="24s")
    seen = tmp_path / "seen"
    # --watch 1h: nothing but the lease's upkeep makes shim talk to OpenBao in this test.
    process = start_shim(["exec", "--log-format", "json", "-v", "--watch", "1h", "--",
                          "sh", "-c", RECORD_CREDENTIALS.format(seen=seen)],
                         {**openbao.vault_env(), **role.environment()})
    assert wait_for(lambda: credentials_seen(seen, canaries), timeout=30)
    started = time.monotonic()
    [(first_user, first_password)] = credentials_seen(seen, canaries)
    assert postgres.users(role.prefix) == {first_user}
    # Until new credentials replace them, the program's credentials must work at every moment:
    # past the lease's first 9 s (only a renewal keeps OpenBao from revoking the lease and
    # PostgreSQL's VALID UNTIL from shutting the user out) and up to its max TTL of 24 s,
    # which no renewal passes: shim must have read new ones and restarted the program by then.
    credentials_keep_working(postgres, seen, canaries, process, until_starts=2, within=40)
    assert time.monotonic() > started + 12, "replaced before a single renewal was needed"
    second_user, second_password = credentials_seen(seen, canaries)[1]
    assert second_user != first_user
    assert postgres.can_log_in(second_user, second_password)
    # The first user is dropped at its max TTL; the second lives on.
    assert wait_for(lambda: first_user not in postgres.users(role.prefix), timeout=30)
    assert postgres.can_log_in(second_user, second_password)
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert events(stderr, "lease.expiring")
    assert events(stderr, "secret.changed")
    assert len(credentials_seen(seen, canaries)) == 2


def test_revoke_on_exit_leaves_no_user_in_postgresql(openbao, postgres, start_shim, canaries,
                                                    tmp_path):
    role = DatabaseRole(openbao, postgres)
    seen = tmp_path / "seen"
    process = start_shim(["exec", "--log-format", "json", "--watch", "1h", "--revoke-on-exit",
                          "--", "sh", "-c", RECORD_CREDENTIALS.format(seen=seen)],
                         {**openbao.vault_env(openbao.ok("POST", "auth/token/create", {
                             "policies": ["root"], "ttl": "1h"})["auth"]["client_token"]),
                          **role.environment()})
    assert wait_for(lambda: credentials_seen(seen, canaries), timeout=30)
    [(user, password)] = credentials_seen(seen, canaries)
    assert postgres.can_log_in(user, password)
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert postgres.users(role.prefix) == set()
    assert not postgres.can_log_in(user, password)
    assert events(stderr, "lease.revoked") and events(stderr, "token.revoked")
