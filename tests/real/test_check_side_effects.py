"""`shim check` changes nothing in the store, on the real OpenBao (and PostgreSQL).

check resolves as exec would, but a read that would mint a credential (a database user per
check) and an unwrap that would use up a single-use secret id are not made: those references
are listed as `not read`, with the reason, and check still exits 0. A login made for check is
revoked before check exits.
"""

from __future__ import annotations

import json

from tests.real.conftest import unique_path
from tests.real.postgres import (
    DatabaseRole, credentials_seen,
    postgres,  # noqa: F401 - the fixture
)
from tests.real.test_vault_leases_relogin import approle_login, policy_for, wrapped_approle_login


def rows_of(result) -> dict[str, dict]:
    return {row["variable"]: row for row in json.loads(result.stdout)["variables"]}


def leases_under(openbao, prefix: str) -> list[str]:
    status, answer = openbao.request("LIST", f"sys/leases/lookup/{prefix}")
    return (answer.get("data") or {}).get("keys") or [] if status == 200 else []


def token_count(openbao) -> int:
    return len(openbao.ok("LIST", "auth/token/accessors")["data"]["keys"])


def test_check_mints_no_database_user(openbao, postgres, run_shim, canaries, tmp_path):
    role = DatabaseRole(openbao, postgres)
    kv_path = unique_path("check")
    openbao.put_kv2(kv_path, {"key": canaries.new("kv")})
    token = openbao.ok("POST", "auth/token/create", {"policies": ["root"], "ttl": "10m"})
    env = {**openbao.vault_env(token["auth"]["client_token"]), **role.environment(),
           "HOME": str(tmp_path), "APP_KEY": f"vault:secret/data/{kv_path}#key"}
    canaries.values.append(token["auth"]["client_token"])
    table = run_shim(["check"], env=env)
    result = run_shim(["check", "--json"], env=env)
    # Nothing was minted: no user in PostgreSQL, no lease in OpenBao.
    assert postgres.users(role.prefix) == set()
    assert leases_under(openbao, f"{role.mount}/") == []
    assert (table.returncode, result.returncode) == (0, 0), table.stderr + result.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert "not read (a read would mint a credential)" in lines["DB_PASS"]
    assert " ok " in lines["APP_KEY"]
    rows = rows_of(result)
    assert rows["APP_KEY"]["status"] == "ok"
    for name in ("DB_USER", "DB_PASS"):
        assert rows[name]["status"] == "not read"
        assert f"{role.mount}/creds/app is in a database secrets engine" in rows[name]["reason"]
    assert json.loads(result.stdout)["ok"] is True
    # exec, on the other hand, reads it: one user, which PostgreSQL accepts.
    seen = tmp_path / "seen"
    result = run_shim(["exec", "--", "sh", "-c", f'echo "$DB_USER $DB_PASS" > {seen}'], env=env)
    assert result.returncode == 0, result.stderr
    [(user, password)] = credentials_seen(seen, canaries)
    assert postgres.users(role.prefix) == {user}
    assert postgres.can_log_in(user, password)


def test_check_with_a_narrow_policy_mints_nothing_either(openbao, postgres, run_shim, canaries,
                                                        tmp_path):
    """A token that may read only the credential path, in both syntaxes."""
    role = DatabaseRole(openbao, postgres)
    token = openbao.ok("POST", "auth/token/create", {
        "policies": [policy_for(openbao, role.path)], "ttl": "10m"})["auth"]["client_token"]
    canaries.values.append(token)
    env = {**openbao.vault_env(token), "HOME": str(tmp_path),
           "DB_USER": f"vault:{role.path}#username", "DB_PASS": f"ref+vault://{role.path}#/password"}
    result = run_shim(["check", "--json"], env=env)
    assert postgres.users(role.prefix) == set()
    assert result.returncode == 0, result.stderr
    rows = rows_of(result)
    assert {rows[name]["status"] for name in ("DB_USER", "DB_PASS")} == {"not read"}


def test_check_leaves_a_wrapped_secret_id_for_exec(openbao, run_shim, canaries, probe, tmp_path):
    kv_path = unique_path("wrapped")
    value = canaries.new("kv")
    openbao.put_kv2(kv_path, {"key": value})
    login = wrapped_approle_login(openbao, policy_for(openbao, f"secret/data/{kv_path}"),
                                  canaries, token_ttl="5m", token_max_ttl="10m")
    env = {**login, "HOME": str(tmp_path),
           "APP_KEY": f"vault:secret/data/{kv_path}#key"}
    result = run_shim(["check", "--json"], env=env)
    assert result.returncode == 0, result.stderr
    row = rows_of(result)["APP_KEY"]
    assert row["status"] == "not read"
    assert row["effect"] == "logging in would use up the wrapped secret id"
    assert "it is valid" in row["reason"]
    # The wrapping token is still unused: exec unwraps it, logs in and reads the secret.
    result = run_shim(["exec", "--", *probe.argv], env=env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["APP_KEY"] == value
    # Used now: check says so with exec's exit code, without using anything.
    result = run_shim(["check"], env=env)
    assert result.returncode == 77, result.stderr
    assert "the response-wrapped VAULT_SECRET_ID is not valid (HTTP 400" in result.stderr


def test_check_revokes_the_token_its_login_made(openbao, run_shim, canaries, tmp_path):
    kv_path = unique_path("login")
    openbao.put_kv2(kv_path, {"key": canaries.new("kv")})
    login = approle_login(openbao, policy_for(openbao, f"secret/data/{kv_path}"), canaries,
                          token_ttl="5m", token_max_ttl="10m")
    env = {**login, "HOME": str(tmp_path), "APP_KEY": f"vault:secret/data/{kv_path}#key"}
    before = token_count(openbao)
    result = run_shim(["check", "--json", "--log-format", "json"], env=env)
    assert token_count(openbao) == before
    assert result.returncode == 0, result.stderr
    assert rows_of(result)["APP_KEY"]["status"] == "ok"
    assert '"event": "token.revoked"' in result.stderr
