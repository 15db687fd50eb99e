"""The Vault provider end to end: shim runs as a real process against the Vault double.

Every secret is a canary, and so is every credential (tokens, role and secret ids, JWTs): the
`run_shim` fixture fails a test whose shim output contains one. LeaseKeeper methods are tested
in-process at the bottom.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest

from shim.delivery.audit import Log
from shim.tools.deadline import Deadline
from shim.providers.base import ProviderContext
from shim.providers.vault.provider import VaultProvider
from shim.syntax.refs import parse_reference
from tests.doubles.tls import make_test_pki
from tests.doubles.vault import VaultDouble
from tests.helpers.log_records import events

VAULT_VARIABLES = ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_TOKEN_FILE", "VAULT_ROLE_ID",
                   "VAULT_SECRET_ID", "VAULT_ROLE", "VAULT_PATH", "VAULT_AUTH_METHOD",
                   "VAULT_NAMESPACE", "VAULT_JWT")


@pytest.fixture
def vault():
    with VaultDouble() as double:
        yield double


@pytest.fixture
def home(tmp_path):
    """An empty HOME, so no ~/.vault-token on the machine is picked up by accident."""
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


def credential(canaries, value: str) -> str:
    """Register a credential as a canary: it must never appear in shim's output."""
    canaries.values.append(value)
    return value


def token_env(vault, canaries, home, token=None, **extra) -> dict:
    token = token or vault.root_token
    env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": credential(canaries, token),
           "HOME": str(home)}
    env.update(extra)
    return env


def exec_probe(run_shim, probe, env, *options, deadline="10s"):
    return run_shim(["exec", "--deadline", deadline, "--log-format", "json", *options, "--",
                     *probe.argv], env)


def reads(vault, path: str) -> int:
    return vault.count(path, "GET")


def preflights(vault) -> list[str]:
    return [r.path for r in vault.requests if "/sys/internal/ui/mounts/" in r.path]


# --- token auth, both syntaxes, KV v1 and v2 --------------------------------------------------

def test_token_kv2_both_syntaxes_one_read_and_nothing_of_vault_in_the_child(
        vault, run_shim, probe, canaries, home):
    password, user = canaries.new("pw"), canaries.new("user")
    vault.kv2_put("secret", "app", {"password": password, "user": user})
    env = token_env(vault, canaries, home,
                    A="vault:secret/data/app#password",
                    B="ref+vault://secret/app#/password",
                    C="ref+vault://secret/app#user",
                    URL="postgresql://${vault:secret/data/app#user}:"
                        "${ref+vault://secret/app#/password}@db/app")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["A"] == child["B"] == password
    assert child["C"] == user
    assert child["URL"] == f"postgresql://{user}:{password}@db/app"
    assert not [name for name in child if name.startswith("VAULT_")]
    # Two spellings, one API path: one read, one mount lookup.
    assert reads(vault, "secret/data/app") == 1
    assert preflights(vault) == ["/v1/sys/internal/ui/mounts/secret/data/app"]


def test_kv1_with_both_syntaxes(vault, run_shim, probe, canaries, home):
    value = canaries.new("kv1")
    vault.kv1_put("kv1", "team/app", {"password": value})
    env = token_env(vault, canaries, home, A="vault:kv1/team/app#password",
                    B="ref+vault://kv1/team/app#/password")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["A"] == child["B"] == value
    assert reads(vault, "kv1/team/app") == 1


def test_vals_without_a_key_delivers_the_map_as_json(vault, run_shim, probe, canaries, home):
    data = {"password": canaries.new(), "user": canaries.new()}
    vault.kv2_put("secret", "app", data)
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home,
                                                   APP="ref+vault://secret/app"))
    assert result.returncode == 0, result.stderr
    assert json.loads(probe.read()["env"]["APP"]) == data


def test_token_from_a_file_such_as_a_vault_agent_sink(vault, run_shim, probe, canaries, home,
                                                      tmp_path):
    value = canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    sink = tmp_path / "sink"
    sink.write_text(credential(canaries, vault.create_token(["secret/*"])) + "\n")
    env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN_FILE": str(sink), "HOME": str(home),
           "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["PASSWORD"] == value
    assert "VAULT_TOKEN_FILE" not in child


def test_token_from_home_vault_token(vault, run_shim, probe, canaries, home):
    value = canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    (home / ".vault-token").write_text(credential(canaries, vault.create_token(["secret/*"])))
    env = {"VAULT_ADDR": vault.url, "HOME": str(home),
           "PASSWORD": "ref+vault://secret/app#/password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PASSWORD"] == value


def test_token_and_token_file_together_are_refused(vault, run_shim, probe, canaries, home,
                                                   tmp_path):
    sink = tmp_path / "sink"
    sink.write_text(credential(canaries, vault.create_token(["secret/*"])))
    env = token_env(vault, canaries, home, VAULT_TOKEN_FILE=str(sink),
                    PASSWORD="vault:secret/data/app#password")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 78
    assert "both VAULT_TOKEN and VAULT_TOKEN_FILE are set" in result.stderr
    assert not probe.ran


def test_no_credentials_at_all_is_a_configuration_error(vault, run_shim, probe, home):
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 78
    assert "no Vault credentials" in result.stderr
    assert vault.requests == []


# --- AppRole, Kubernetes, JWT --------------------------------------------------------------

def test_approle_plain_and_from_files(vault, run_shim, probe, canaries, home, tmp_path):
    value, other = canaries.new(), canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    vault.kv1_put("kv1", "other", {"key": other})
    role_id = credential(canaries, vault.add_approle("app", ["secret/data/app", "kv1/other"]))
    secret_id = credential(canaries, vault.new_secret_id("app"))
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_ROLE_ID": role_id,
           "VAULT_SECRET_ID": secret_id, "PASSWORD": "vault:secret/data/app#password",
           "OTHER": "ref+vault://kv1/other#/key"}
    result = exec_probe(run_shim, probe, env, "-v")
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["PASSWORD"], child["OTHER"]) == (value, other)
    assert [e["method"] for e in events(result.stderr, "vault.auth")] == ["approle"]
    assert vault.count("auth/approle/login", "POST") == 1     # once per run, whatever reads
    del env["OTHER"]

    (tmp_path / "role_id").write_text(role_id + "\n")
    (tmp_path / "secret_id").write_text(secret_id + "\n")
    env = {"VAULT_ADDR": vault.url, "HOME": str(home),
           "VAULT_ROLE_ID_FILE": str(tmp_path / "role_id"),
           "VAULT_SECRET_ID_FILE": str(tmp_path / "secret_id"),
           "PASSWORD": "ref+vault://secret/app#/password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["PASSWORD"] == value
    assert "VAULT_ROLE_ID_FILE" not in child and "VAULT_SECRET_ID_FILE" not in child


def test_approle_with_a_response_wrapped_secret_id_works_once(vault, run_shim, probe, canaries,
                                                              home):
    value = canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    role_id = credential(canaries, vault.add_approle("app", ["secret/data/app"]))
    wrapped = credential(canaries, vault.wrapped_secret_id("app"))
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_ROLE_ID": role_id,
           "VAULT_SECRET_ID": wrapped, "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PASSWORD"] == value
    assert vault.count("sys/wrapping/unwrap", "POST") == 1

    # The wrapping token is single use: a second start is refused, loudly.
    result = exec_probe(run_shim, probe, dict(env, VAULT_SECRET_ID_WRAPPED="true"))
    assert result.returncode == 77
    assert "could not be unwrapped (HTTP 400: wrapping token is not valid" in result.stderr
    assert events(result.stderr, "auth.failed")


def test_approle_bad_secret_id_is_77_at_once(vault, run_shim, probe, canaries, home):
    role_id = credential(canaries, vault.add_approle("app", ["secret/data/app"]))
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_ROLE_ID": role_id,
           "VAULT_SECRET_ID": credential(canaries, "0c9a7a2e-3f4e-4a7e-9d43-cc1b2b0a9e11"),
           "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 77
    assert "PASSWORD (vault:secret/data/app#...)" in result.stderr
    assert ("approle login at auth/approle/login (HTTP 400: invalid role or secret ID)"
            in result.stderr)
    failed = events(result.stderr, "auth.failed")
    assert len(failed) == 1 and failed[0]["status"] == 400
    assert vault.count("auth/approle/login", "POST") == 1  # no retry
    assert not probe.ran


def test_credentials_echoed_in_vault_error_text_are_redacted(vault, run_shim, probe, canaries, home):
    """A Vault (or proxy) that quotes the request back: shim shows the error text, minus every
    credential it holds."""
    vault.echo_credentials = True
    role_id = credential(canaries, vault.add_approle("app", ["secret/data/app"]))
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_ROLE_ID": role_id,
           "VAULT_SECRET_ID": canaries.new("secret-id"), "PASSWORD": "vault:secret/data/app#password"}
    login = exec_probe(run_shim, probe, env)
    assert login.returncode == 77
    assert "request was:" in login.stderr and "<redacted>" in login.stderr  # the echo did happen
    token = vault.create_token(["secret/data/other"])
    denied = exec_probe(run_shim, probe, token_env(vault, canaries, home, token,
                                                   PASSWORD="vault:secret/data/app#password"))
    assert denied.returncode == 77
    assert "request was: <redacted>" in denied.stderr


def test_kubernetes_login_with_the_service_account_token(vault, run_shim, probe, canaries, home,
                                                         tmp_path):
    value = canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    jwt = credential(canaries, "eyJhbGciOiJSUzI1NiJ9." + canaries.new("jwt"))
    vault.add_kubernetes_role("app", jwt, ["secret/data/app"], mount="k8s-prod")
    token_file = tmp_path / "token"
    token_file.write_text(jwt)
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_ROLE": "app",
           "VAULT_PATH": "k8s-prod", "KUBERNETES_SERVICE_ACCOUNT_TOKEN": str(token_file),
           "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env, "-v")
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PASSWORD"] == value
    assert vault.count("auth/k8s-prod/login", "POST") == 1
    assert [e["method"] for e in events(result.stderr, "vault.auth")] == ["kubernetes"]


def test_kubernetes_rejected_service_account_is_77(vault, run_shim, probe, canaries, home,
                                                   tmp_path):
    vault.add_kubernetes_role("app", "the-real-jwt", ["secret/data/app"])
    token_file = tmp_path / "token"
    token_file.write_text(credential(canaries, "eyJ." + canaries.new("wrong-jwt")))
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_ROLE": "app",
           "KUBERNETES_SERVICE_ACCOUNT_TOKEN": str(token_file),
           "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 77
    assert ("kubernetes login at auth/kubernetes/login (HTTP 403: permission denied)"
            in result.stderr)


def test_kubernetes_without_a_service_account_token_is_a_configuration_error(
        vault, run_shim, probe, home, tmp_path):
    missing = tmp_path / "no-such-token"
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_ROLE": "app",
           "KUBERNETES_SERVICE_ACCOUNT_TOKEN": str(missing),
           "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 78
    assert f"service account token {missing} does not exist" in result.stderr
    assert vault.requests == []


def test_jwt_login(vault, run_shim, probe, canaries, home, tmp_path):
    value = canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    jwt = credential(canaries, "eyJhbGciOiJFUzI1NiJ9." + canaries.new("ci-jwt"))
    vault.add_jwt_role("ci", jwt, ["secret/data/app"])
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_AUTH_METHOD": "jwt",
           "VAULT_ROLE": "ci", "VAULT_JWT": jwt, "PASSWORD": "ref+vault://secret/app#/password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PASSWORD"] == value
    assert vault.count("auth/jwt/login", "POST") == 1

    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(jwt + "\n")
    env = dict(env, VAULT_JWT_FILE=str(jwt_file))
    del env["VAULT_JWT"]
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr


# --- KV detection without the preflight permission ------------------------------------------

def test_kv1_and_kv2_without_preflight_permission(vault, run_shim, probe, canaries, home):
    v2, v1 = canaries.new("v2"), canaries.new("v1")
    vault.kv2_put("secret", "app", {"password": v2})
    vault.kv1_put("kv1", "app", {"password": v1})
    token = vault.create_token(["secret/data/app", "kv1/app"], preflight=False)
    env = token_env(vault, canaries, home, token,
                    A="vault:secret/data/app#password", B="ref+vault://secret/app#/password",
                    C="vault:kv1/app#password", D="ref+vault://kv1/app#/password")
    result = exec_probe(run_shim, probe, env, "-v")
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["A"] == child["B"] == v2
    assert child["C"] == child["D"] == v1
    # One denied lookup per directory (secret/data/app and secret/app are in two: a sibling
    # directory may be another mount), then the documented fallback order.
    assert sorted(preflights(vault)) == ["/v1/sys/internal/ui/mounts/kv1/app",
                                         "/v1/sys/internal/ui/mounts/secret/app",
                                         "/v1/sys/internal/ui/mounts/secret/data/app"]
    assert reads(vault, "secret/data/app") == 1
    assert reads(vault, "kv1/app") == 1
    assert reads(vault, "kv1/data/app") == 1          # vals: KV v2 guessed first (403)
    assert len(events(result.stderr, "vault.mount_unknown")) == 3


def test_without_preflight_a_missing_secret_is_66_and_a_denied_one_77(vault, run_shim, probe,
                                                                     canaries, home):
    token = vault.create_token(["secret/data/app"], preflight=False)
    env = token_env(vault, canaries, home, token, MISSING="ref+vault://secret/app#/password")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 66
    assert "secret/data/app does not exist in Vault (HTTP 404)" in result.stderr

    env = token_env(vault, canaries, home, token, DENIED="ref+vault://secret/other#/password")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 77
    assert "HTTP 403" in result.stderr


def test_one_mount_lookup_per_mount_and_one_read_per_path(vault, run_shim, probe, canaries, home):
    env = {}
    for index in range(5):
        vault.kv2_put("secret", f"svc{index}", {"a": canaries.new(), "b": canaries.new()})
        env[f"A{index}"] = f"vault:secret/data/svc{index}#a"
        env[f"B{index}"] = f"ref+vault://secret/svc{index}#/b"
        env[f"C{index}"] = f"ref+vault://secret/svc{index}?optional=true#/a"
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home, **env))
    assert result.returncode == 0, result.stderr
    assert len(preflights(vault)) == 1
    for index in range(5):
        assert reads(vault, f"secret/data/svc{index}") == 1
    assert len(vault.requests) == 6


# --- versions, deleted and destroyed -------------------------------------------------------

def test_version_pinning_in_both_syntaxes(vault, run_shim, probe, canaries, home):
    first, second, third = canaries.new("v1"), canaries.new("v2"), canaries.new("v3")
    for value in (first, second, third):
        vault.kv2_put("secret", "app", {"password": value})
    env = token_env(vault, canaries, home, A="vault:secret/data/app#password#1",
                    B="ref+vault://secret/app?version=2#/password",
                    C="ref+vault://secret/app#/password")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["A"], child["B"], child["C"]) == (first, second, third)

    result = run_shim(["check", "--json"], env)
    assert result.returncode == 0, result.stderr
    versions = {row["variable"]: row["version"] for row in json.loads(result.stdout)["variables"]}
    assert versions == {"A": "1", "B": "2", "C": "3"}


def test_deleted_and_destroyed_versions_are_66(vault, run_shim, probe, canaries, home):
    for _ in range(3):
        vault.kv2_put("secret", "app", {"password": canaries.new()})
    vault.kv2_delete("secret", "app", versions=[2])
    vault.kv2_destroy("secret", "app", versions=[1])
    cases = {
        "vault:secret/data/app#password#2": "version 2 was deleted",
        "ref+vault://secret/app?version=1#/password": "version 1 was destroyed",
        "vault:secret/data/app#password#7": "secret/data/app version 7 does not exist",
    }
    for reference, message in cases.items():
        result = exec_probe(run_shim, probe, token_env(vault, canaries, home, PASSWORD=reference))
        assert result.returncode == 66, result.stderr
        assert message in result.stderr
        assert f"PASSWORD ({parse_reference(reference).shown})" in result.stderr
    vault.kv2_delete("secret", "app")  # the latest, version 3
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home,
                                                   PASSWORD="ref+vault://secret/app#/password"))
    assert result.returncode == 66
    assert "version 3 was deleted" in result.stderr
    assert not probe.ran


def test_a_version_on_kv1_is_66(vault, run_shim, probe, canaries, home):
    vault.kv1_put("kv1", "app", {"password": canaries.new()})
    env = token_env(vault, canaries, home, PASSWORD="ref+vault://kv1/app?version=2#/password")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 66
    assert "version 2 of kv1/app cannot exist: kv1/ is not a KV v2 mount" in result.stderr
    assert reads(vault, "kv1/app") == 0


def test_bank_vaults_path_without_data_gets_a_hint(vault, run_shim, probe, canaries, home):
    vault.kv2_put("secret", "app", {"password": canaries.new()})
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home,
                                                   PASSWORD="vault:secret/app#password"))
    assert result.returncode == 66
    assert "vault:secret/data/app#key" in result.stderr


# --- dynamic secrets -----------------------------------------------------------------------

def test_dynamic_credentials_come_from_one_read(vault, run_shim, probe, canaries, home):
    vault.add_database_role("app")
    env = token_env(vault, canaries, home,
                    DB_USER="vault:database/creds/app#username",
                    DB_PASSWORD="ref+vault://database/creds/app#/password",
                    DATABASE_URL="postgresql://${vault:database/creds/app#username}:"
                                 "${vault:database/creds/app#password}@db/app")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    issued = vault.issued_credentials("app")
    assert len(issued) == 1
    canaries.values.append(issued[0].password)
    canaries.assert_absent(result.stdout, result.stderr)
    child = probe.read()["env"]
    assert child["DB_USER"] == issued[0].username
    assert child["DB_PASSWORD"] == issued[0].password
    assert child["DATABASE_URL"] == f"postgresql://{issued[0].username}:{issued[0].password}@db/app"
    assert len(vault.live_leases()) == 1


def test_unknown_dynamic_role_is_66(vault, run_shim, probe, canaries, home):
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home,
                                                   DB="vault:database/creds/nope#password"))
    assert result.returncode == 66
    assert "HTTP 400: unknown role: nope" in result.stderr


# --- concurrency ---------------------------------------------------------------------------

def test_distinct_paths_are_read_concurrently(vault, run_shim, probe, canaries, home):
    paths, latency = 10, 0.4
    env = {}
    for index in range(paths):
        vault.kv2_put("secret", f"svc{index}", {"password": canaries.new()})
        env[f"P{index}"] = f"vault:secret/data/svc{index}#password"
    vault.latency = latency
    started = time.monotonic()
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home, **env))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert vault.max_in_flight >= paths // 2
    # Serial reads alone would take paths × latency (4 s); one lookup + one round of reads
    # plus interpreter start-up is about 1.5 s.
    assert elapsed < paths * latency * 0.75, elapsed


# --- transient and permanent failures ------------------------------------------------------

def test_sealed_at_start_unsealed_three_seconds_later_succeeds(vault, run_shim, probe, canaries,
                                                               home):
    value = canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    vault.seal()
    vault.unseal_after(3)
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home,
                                                   PASSWORD="vault:secret/data/app#password"),
                        deadline="20s")
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PASSWORD"] == value
    retries = events(result.stderr, "provider.retry")
    assert retries and retries[0]["reason"] == "HTTP 503: Vault is sealed"


def test_sealed_past_the_deadline_is_69_within_the_deadline(vault, run_shim, probe, canaries,
                                                            home):
    vault.seal()
    started = time.monotonic()
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home,
                                                   PASSWORD="vault:secret/data/app#password"),
                        deadline="3s")
    elapsed = time.monotonic() - started
    assert result.returncode == 69
    assert elapsed < 3 + 2.5, elapsed
    assert ("PASSWORD (vault:secret/data/app#...): Vault: HTTP 503: Vault is sealed "
            "on every attempt (") in result.stderr
    assert not probe.ran


def test_connection_refused_is_69(run_shim, probe, canaries, home):
    with VaultDouble() as gone:
        address = gone.url
    started = time.monotonic()
    env = {"VAULT_ADDR": address, "VAULT_TOKEN": credential(canaries, "hvs.not-used"),
           "HOME": str(home), "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env, deadline="2s")
    assert result.returncode == 69
    assert time.monotonic() - started < 2 + 2.5
    assert "Vault: connection refused on every attempt (" in result.stderr


def test_throttling_and_server_errors_are_retried(vault, run_shim, probe, canaries, home):
    value = canaries.new()
    vault.kv2_put("secret", "app", {"password": value})
    vault.fail_next(2, 429, path="secret/data/app")
    vault.fail_next(1, 502, path="secret/data/app")
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home,
                                                   PASSWORD="vault:secret/data/app#password"))
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PASSWORD"] == value
    assert reads(vault, "secret/data/app") == 4
    assert [e["attempt"] for e in events(result.stderr, "provider.retry")] == [1, 2, 3]


def test_permission_denied_is_77_without_retry(vault, run_shim, probe, canaries, home):
    vault.kv2_put("secret", "app", {"password": canaries.new()})
    token = vault.create_token(["secret/data/other"])
    result = exec_probe(run_shim, probe, token_env(vault, canaries, home, token,
                                                   PASSWORD="vault:secret/data/app#password"))
    assert result.returncode == 77
    assert ("PASSWORD (vault:secret/data/app#...): Vault denied reading secret/data/app "
            "(HTTP 403: permission denied)") in result.stderr
    assert reads(vault, "secret/data/app") == 1
    assert not events(result.stderr, "provider.retry")


def test_an_invalid_token_is_77_and_says_so(run_shim, probe, canaries, home):
    with VaultDouble(forbidden_style="multierror") as vault:
        token = vault.create_token(["secret/*"])
        vault.revoke_token(token)
        result = exec_probe(run_shim, probe, token_env(vault, canaries, home, token,
                                                       PASSWORD="vault:secret/data/app#password"))
    assert result.returncode == 77
    assert "invalid token" in result.stderr
    assert len(events(result.stderr, "auth.failed")) == 1


# --- environment, namespace, TLS -----------------------------------------------------------

def test_vault_variables_are_scrubbed_unless_passed_through(vault, run_shim, probe, canaries,
                                                            home):
    vault.kv2_put("secret", "app", {"password": canaries.new()})
    env = token_env(vault, canaries, home, VAULT_ROLE="app", VAULT_PATH="kubernetes",
                    VAULT_AUTH_METHOD="token", VAULT_NAMESPACE="",
                    VAULT_ROLE_ID=credential(canaries, "role-" + canaries.new()),
                    VAULT_SECRET_ID=credential(canaries, "sid-" + canaries.new()),
                    PASSWORD="vault:secret/data/app#password")
    result = exec_probe(run_shim, probe, env, "--passthrough", "VAULT_ADDR")
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["VAULT_ADDR"] == vault.url
    assert [name for name in child if name.startswith("VAULT_")] == ["VAULT_ADDR"]
    assert all(name not in child for name in VAULT_VARIABLES[1:])


def test_namespace_header(vault, run_shim, probe, canaries, home):
    value = canaries.new()
    vault.add_namespace("team-a")
    vault.kv2_put("secret", "app", {"password": value}, namespace="team-a")
    env = token_env(vault, canaries, home, VAULT_NAMESPACE="team-a",
                    PASSWORD="ref+vault://secret/app#/password")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PASSWORD"] == value
    assert {r.namespace for r in vault.requests} == {"team-a"}


def test_tls_with_vault_cacert_and_skip_verify(run_shim, probe, canaries, home, tmp_path):
    pki = make_test_pki(tmp_path / "pki")
    value = canaries.new()
    with VaultDouble(ssl_context=pki.server_context()) as vault:
        vault.kv2_put("secret", "app", {"password": value})
        base = token_env(vault, canaries, home, PASSWORD="vault:secret/data/app#password")

        result = exec_probe(run_shim, probe, dict(base, VAULT_CACERT=str(pki.ca_path)))
        assert result.returncode == 0, result.stderr
        assert probe.read()["env"]["PASSWORD"] == value

        result = exec_probe(run_shim, probe, base)
        assert result.returncode == 78
        assert "TLS verification of https://127.0.0.1" in result.stderr

        result = exec_probe(run_shim, probe, dict(base, VAULT_SKIP_VERIFY="true"))
        assert result.returncode == 0, result.stderr
        assert events(result.stderr, "vault.tls_unverified")
        assert "InsecureRequestWarning" not in result.stderr


def test_debug_logging_never_shows_values_or_credentials(vault, run_shim, probe, canaries, home):
    vault.kv2_put("secret", "app", {"password": canaries.new()})
    vault.add_database_role("app")
    env = token_env(vault, canaries, home, A="vault:secret/data/app#password",
                    B="vault:database/creds/app#password", C="vault:secret/data/missing#x")
    for log_format in ("json", "text"):
        result = run_shim(["check", "-vv", "--log-format", log_format], env)
        assert result.returncode == 66
        for issued in vault.issued_credentials():
            assert issued.password not in result.stdout + result.stderr


def test_no_sdk_is_imported_until_a_vault_reference_is_resolved():
    # The provider module itself imports hvac: the registry loads it only for a Vault
    # reference, and turns a missing SDK into "install shim-secrets[vault]".
    code = ("import sys, shim.providers.registry, shim.pipeline.resolve, shim.pipeline.plan; "
            "print(sorted(m for m in ('hvac', 'requests', 'tenacity') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


# --- LeaseKeeper, in-process -----------------------------------------------------------------

def provider_for(vault, **environ) -> tuple[VaultProvider, io.StringIO]:
    stream = io.StringIO()
    environ.setdefault("VAULT_ADDR", vault.url)
    context = ProviderContext(environ, Log("json", "debug", stream=stream))
    return VaultProvider(context), stream


def test_lease_renewal_is_capped_and_revocation_revokes(vault):
    vault.add_database_role("app", default_ttl=300, max_ttl=600)
    token = vault.create_token(["database/creds/app", "sys/leases/revoke"])
    provider, log = provider_for(vault, VAULT_TOKEN=token)
    reference = parse_reference("vault:database/creds/app#password")
    fetched = provider.fetch_all([reference], Deadline(10))[reference.fetch_key]
    lease_id = fetched.meta.lease_id
    assert lease_id.startswith("database/creds/app/")
    assert (fetched.meta.lease_duration, fetched.meta.renewable) == (300, True)

    vault.advance_clock(290)
    assert provider.renew_lease(lease_id, 300, Deadline(10)) == 300
    vault.advance_clock(290)
    granted = provider.renew_lease(lease_id, 300, Deadline(10))
    assert 0 < granted <= 20                      # capped by max_ttl (600 s after issue)

    provider.revoke_lease(lease_id, Deadline(10))
    assert [lease.lease_id for lease in vault.revoked_leases()] == [lease_id]
    for issued in vault.issued_credentials():
        assert issued.password not in log.getvalue()
    assert token not in log.getvalue()


def test_token_ttl_renew_and_revoke(vault):
    role_id = vault.add_approle("app", ["secret/*"], token_ttl=600, token_max_ttl=900)
    secret_id = vault.new_secret_id("app")
    provider, log = provider_for(vault, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    assert 590 <= provider.token_ttl() <= 600
    vault.advance_clock(250)
    assert 598 <= provider.renew_token(Deadline(10)) <= 600   # renewed: 600 s more
    login = [r for r in vault.requests if r.path.endswith("/login")]
    assert len(login) == 1                               # authenticated once
    first_token = provider.http.token
    vault.advance_clock(500)
    # The renewal comes back capped by the max TTL (900 s after login): shim logs in again,
    # and the new token's TTL is the one handed back (docs/vault.md).
    assert 590 <= provider.renew_token(Deadline(10)) <= 600
    assert 590 <= provider.token_ttl() <= 600
    login = [r for r in vault.requests if r.path.endswith("/login")]
    assert len(login) == 2 and provider.token_generation() == 2
    assert provider.http.token != first_token
    assert "reaches its max TTL" in log.getvalue()

    token = provider.http.token
    assert vault.token_info(token).path == "auth/approle/login"
    provider.revoke_token(Deadline(10))
    assert vault.token_info(token).revoked
    for secret in (secret_id, token):
        assert secret not in log.getvalue()


def test_token_method_ttl_from_lookup_and_non_renewable_token(vault):
    renewable = vault.create_token(["secret/*"], ttl=1200)
    provider, _ = provider_for(vault, VAULT_TOKEN=renewable)
    assert 1190 <= provider.token_ttl() <= 1200
    assert provider.renew_token(Deadline(10)) == 1200

    fixed = vault.create_token(["secret/*"], ttl=1200, renewable=False)
    provider, _ = provider_for(vault, VAULT_TOKEN=fixed)
    assert provider.renew_token(Deadline(10)) is None

    provider, _ = provider_for(vault, VAULT_TOKEN=vault.root_token)
    assert provider.token_ttl() is None                  # the root token never expires


def test_a_sops_files_transit_address_wins_over_bao_addr(vault, run_shim, probe, canaries, home,
                                                          tmp_path):
    # BAO_ADDR wins over VAULT_ADDR for references, but a sops file names its own Vault, and
    # once the operator lists that Vault (SHIM_SOPS_KEY_SERVICES: a file alone may never choose
    # where the token goes) the transit decryption goes there, whatever BAO_ADDR says (here:
    # nothing listens).
    from tests.helpers.sops_files import VaultTransitKey, sops_file

    value = canaries.new()
    path = sops_file(tmp_path / "app.enc.yaml", {"password": value}, [VaultTransitKey(vault)])
    env = {"PW": f"ref+sops://{path}#/password", "HOME": str(home),
           "VAULT_TOKEN": credential(canaries, vault.root_token), "BAO_ADDR": "http://127.0.0.1:9",
           "SHIM_SOPS_KEY_SERVICES": vault.url}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["PW"] == value and "BAO_ADDR" not in child


@pytest.mark.parametrize("variable", ["VAULT_NAMESPACE", "BAO_NAMESPACE"])
@pytest.mark.parametrize("namespace", ["team\nX-Injected: 1", "team app", "team\tapp"])
def test_a_namespace_no_header_can_carry_is_78_naming_the_namespace(
        vault, run_shim, probe, canaries, home, variable, namespace):
    env = token_env(vault, canaries, home, P="vault:secret/data/app#password",
                    **{variable: namespace})
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 78, result.stderr
    assert f"{variable} holds characters an HTTP header cannot carry" in result.stderr
    assert "token" not in result.stderr.lower() and "team" not in result.stderr
    assert not vault.requests
