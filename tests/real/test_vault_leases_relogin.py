"""`--watch` past the max TTL of shim's own Vault token, on the real OpenBao.

A token obtained by login (AppRole and JWT here) cannot be renewed past its max TTL, and OpenBao
revokes every lease the token read when it expires: the database user the program logs in
with is dropped with it. shim must log in again before then, say so (`vault.relogin`), and
replace the credentials the old token read. A token the environment gives cannot be replaced
by shim: when it expires, the failure names it as expired, not as a policy problem.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from shim.delivery.audit import Log
from shim.tools.deadline import Deadline
from shim.providers.vault.http import Connection, VaultHttp
from tests.integration.test_supervise import finish, wait_for
from tests.real.conftest import unique_path
from tests.real.vault_tier import approle_mount, jwt_mount, new_secret_id, signed_jwt
from tests.real.postgres import (
    RECORD_CREDENTIALS, DatabaseRole, credentials_keep_working, credentials_seen, events,
    postgres,  # noqa: F401 - the fixture
)


def policy_for(openbao, *paths: str) -> str:
    name = unique_path("policy")
    rules = "".join(f'path "{path}" {{ capabilities = ["read"] }}\n' for path in paths)
    rules += 'path "sys/leases/*" { capabilities = ["update"] }\n'
    openbao.ok("PUT", f"sys/policies/acl/{name}", {"policy": rules})
    return name


def approle_login(openbao, policy: str, canaries, *, token_ttl: str, token_max_ttl: str) -> dict:
    """An AppRole mount of the test's own; the variables shim logs in with."""
    mount, role_id = approle_mount(openbao, canaries, policy, token_ttl=token_ttl,
                                   token_max_ttl=token_max_ttl)
    return {"VAULT_ADDR": openbao.address, "VAULT_ROLE_ID": role_id,
            "VAULT_SECRET_ID": new_secret_id(openbao, canaries, mount), "VAULT_PATH": mount}


def jwt_login(openbao, policy: str, canaries, *, token_ttl: str, token_max_ttl: str) -> dict:
    """OpenBao's jwt method on a mount of the test's own, trusting a key made here; a JWT
    signed with it (RS256) in VAULT_JWT_FILE."""
    mount, key = jwt_mount(openbao, policy, role="app", audience="shim-test",
                           token_ttl=token_ttl, token_max_ttl=token_max_ttl)
    now = int(time.time())
    jwt = signed_jwt(key, {"sub": "app", "aud": "shim-test", "iat": now, "nbf": now - 5,
                           "exp": now + 3600})
    token_file = openbao.directory / f"{mount}.jwt"
    token_file.write_text(f"{jwt}\n")
    canaries.values.append(jwt.rsplit(".", 1)[1])
    return {"VAULT_ADDR": openbao.address, "VAULT_AUTH_METHOD": "jwt", "VAULT_ROLE": "app",
            "VAULT_JWT_FILE": str(token_file), "VAULT_PATH": mount}


def wrapped_approle_login(openbao, policy: str, canaries, **ttls) -> dict:
    """As approle_login, with the secret id response-wrapped (it can be unwrapped once)."""
    login = approle_login(openbao, policy, canaries, **ttls)
    return {**login, "VAULT_SECRET_ID": new_secret_id(openbao, canaries, login["VAULT_PATH"],
                                                      wrap_ttl="120s")}


@pytest.mark.parametrize("method", ["approle", "approle-wrapped", "jwt"])
def test_watch_logs_in_again_at_the_tokens_max_ttl_and_replaces_its_leases(
        method, openbao, postgres, start_shim, canaries, tmp_path):
    role = DatabaseRole(openbao, postgres)        # the lease itself may live for a day
    kv_path = unique_path("relogin")
    openbao.put_kv2(kv_path, {"key": canaries.new("kv")})
    policy = policy_for(openbao, role.path, f"secret/data/{kv_path}")
    logins = {"approle": approle_login, "approle-wrapped": wrapped_approle_login, "jwt": jwt_login}
    login = logins[method](openbao, policy, canaries, token_ttl="6s", token_max_ttl="15s")
    seen = tmp_path / "seen"
    home = tmp_path / "home"
    home.mkdir()
    process = start_shim(["exec", "--log-format", "json", "--watch", "2s", "--",
                          "sh", "-c", RECORD_CREDENTIALS.format(seen=seen)],
                         {**login, **role.environment(), "HOME": str(home),
                          "APP_KEY": f"vault:secret/data/{kv_path}#key"})
    assert wait_for(lambda: credentials_seen(seen, canaries), timeout=30)
    # The first token dies at 15 s, and the database user its lease made dies with it: by then
    # shim has logged in again and restarted the program with credentials the new token read.
    # The second token meets the same end about 15 s later (--watch 2s reads the store all along).
    credentials_keep_working(postgres, seen, canaries, process, until_starts=3, within=60)
    user, password = credentials_seen(seen, canaries)[-1]
    assert postgres.can_log_in(user, password)
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert not events(stderr, "watch.failed"), events(stderr, "watch.failed")
    relogins = events(stderr, "vault.relogin")
    assert relogins and all(event["method"] == method.split("-")[0] for event in relogins)
    assert "max TTL" in relogins[0]["message"] or "expire" in relogins[0]["message"]


def test_an_expired_token_from_the_environment_is_named_expired(openbao, start_shim, canaries,
                                                               tmp_path):
    kv_path = unique_path("expired")
    openbao.put_kv2(kv_path, {"key": canaries.new("kv")})
    policy = policy_for(openbao, f"secret/data/{kv_path}")
    token = openbao.ok("POST", "auth/token/create", {"policies": [policy], "ttl": "4s",
                                                     "explicit_max_ttl": "4s"})["auth"]["client_token"]
    canaries.values.append(token)
    seen = tmp_path / "seen"
    process = start_shim(["exec", "--log-format", "json", "--watch", "1s", "--",
                          "sh", "-c", f'echo started >> {seen}; exec sleep 600 </dev/null >/dev/null 2>&1'],
                         {**openbao.vault_env(token), "HOME": str(tmp_path),
                          "APP_KEY": f"vault:secret/data/{kv_path}#key"})
    assert wait_for(seen.exists, timeout=30)
    time.sleep(8)       # the token lives 4 s; --watch 1s reads the store after that too
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    failures = [event for event in events(stderr, "watch.failed") if event.get("exit_code") == 77]
    assert failures, stderr[-2000:]
    assert all("token expired" in event["message"] for event in failures), failures
    assert seen.read_text().splitlines() == ["started"]    # the program kept running, untouched


def test_a_renewal_in_the_tokens_last_second_is_not_retried(openbao, tmp_path):
    """OpenBao answers HTTP 500 "past the max TTL, cannot renew" there: asking again cannot
    help (the next answer is 403, the token gone), so shim takes it as the final answer."""
    token = openbao.ok("POST", "auth/token/create", {"ttl": "2s", "explicit_max_ttl": "2s",
                                                     "policies": ["default"]})
    created = time.monotonic()
    token_value = token["auth"]["client_token"]
    audit = tmp_path / "audit.log"
    log = Log("json", "debug", stream=open("/dev/null", "w"), audit_file=str(audit))
    http = VaultHttp(Connection.from_environ({"VAULT_ADDR": openbao.address}), log)
    http.open()
    http.use_token(token_value)
    time.sleep(max(0.0, created + 1.2 - time.monotonic()))
    # Renewals 50 ms apart until one is not granted: the first refusal is the last second's.
    while True:
        answer = http.request("POST", "auth/token/renew-self", Deadline(5), "token renewal",
                              json={})
        if answer.status != 200 or time.monotonic() > created + 5:
            break
        time.sleep(0.05)
    assert answer.status == 500 and "past the max TTL" in " ".join(answer.errors), answer
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert not [r for r in records if r["event"] == "provider.retry"], records
