"""--fallback-cache against the real OpenBao (and the Vault double for a sealed store and leases).

The cache is written by one run, the store is then stopped (or denies, or seals), and a second
run must serve exactly the rules: only 69 is covered, only young entries, never a lease; a
damaged cache is 65, another key's 78; no canary in the cache's bytes or in any output.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from pathlib import Path

import pytest

from tests.doubles.vault import VaultDouble
from tests.real.conftest import unique_path

CACHE = "shim-fallback.age"


@pytest.fixture
def cache(tmp_path, age_identity):
    """(cache directory, key file) owned by root, 0700 / 0600."""
    directory = tmp_path / "cache"
    _, key = age_identity("fallback")
    os.chmod(key, 0o600)
    return directory, key


def fallback_args(directory, key, *more):
    return ["--fallback-cache", str(directory), "--fallback-key-file", str(key), *more]


def events(stderr: str, name: str) -> list[dict]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def seed(openbao, canaries, names=("DB_PASSWORD", "API_KEY")) -> tuple[dict, dict]:
    """A KV v2 secret per variable: (env of references, expected values)."""
    env, expected = {}, {}
    for name in names:
        path = unique_path("fb")
        value = canaries.new(name.lower())
        openbao.put_kv2(path, {"value": value})
        env[name] = f"ref+vault://secret/{path}#/value"
        expected[name] = value
    return env, expected


def cached_api_key(server, run_shim, canaries, probe, directory, key) -> dict:
    """API_KEY in the server, read once with the cache on (which writes it); the env to reuse."""
    references, _ = seed(server, canaries, names=("API_KEY",))
    env = {**server.vault_env(), **references}
    assert run_shim(["exec", *fallback_args(directory, key), "--", *probe.argv],
                    env=env).returncode == 0
    probe.output.unlink()
    return env


def test_a_store_outage_is_covered_by_the_cache_with_one_stale_event_per_variable(
        fresh_openbao, run_shim, canaries, probe, cache):
    server = fresh_openbao()
    directory, key = cache
    references, expected = seed(server, canaries)
    env = {**server.vault_env(), **references}
    first = run_shim(["exec", *fallback_args(directory, key), "--", *probe.argv], env=env)
    assert first.returncode == 0, first.stderr
    assert {name: probe.read()["env"][name] for name in expected} == expected
    written = (directory / CACHE).read_bytes()
    assert written.startswith(b"shim-fallback-cache 1\n")
    canaries.assert_absent(written.decode("latin-1"), where="the cache file")
    assert (directory / CACHE).stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700

    server.kill()
    probe.output.unlink()
    second = run_shim(["exec", *fallback_args(directory, key), "--deadline", "3s",
                       "--log-format", "json", "--", *probe.argv], env=env)
    assert second.returncode == 0, second.stderr
    assert {name: probe.read()["env"][name] for name in expected} == expected
    stale = events(second.stderr, "secret.stale")
    assert sorted(event["variable"] for event in stale) == sorted(expected)
    assert all(event["exit_code"] == 69 and event["age_seconds"] >= 0 for event in stale)
    # Nothing was served from the cache: it is not rewritten with the stale copy.
    assert (directory / CACHE).read_bytes() == written


def test_the_audit_file_and_check_show_the_stale_value(fresh_openbao, run_shim, canaries,
                                                       probe, cache, tmp_path):
    server = fresh_openbao()
    directory, key = cache
    env = cached_api_key(server, run_shim, canaries, probe, directory, key)
    server.kill()
    audit = tmp_path / "audit.jsonl"
    checked = run_shim(["check", "--json", *fallback_args(directory, key), "--deadline", "3s",
                        "--audit-file", str(audit)], env=env)
    assert checked.returncode == 0, checked.stderr
    [row] = [row for row in json.loads(checked.stdout)["variables"] if row["variable"] == "API_KEY"]
    assert row["status"] == "stale" and row["stale_seconds"] >= 0
    recorded = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [event["variable"] for event in recorded if event["event"] == "secret.stale"] == ["API_KEY"]
    canaries.assert_absent(audit.read_text(), where="the audit file")


def test_past_the_max_age_the_outage_is_the_run_s_failure(fresh_openbao, run_shim, canaries,
                                                           probe, cache):
    server = fresh_openbao()
    directory, key = cache
    env = cached_api_key(server, run_shim, canaries, probe, directory, key)
    server.kill()
    time.sleep(1.2)    # the entry is now older than --fallback-max-age 1s
    result = run_shim(["exec", *fallback_args(directory, key, "--fallback-max-age", "1s"),
                       "--deadline", "3s", "--", *probe.argv], env=env)
    assert result.returncode == 69, result.stderr
    assert not probe.ran
    zero = run_shim(["exec", *fallback_args(directory, key, "--fallback-max-age", "0"),
                     "--deadline", "3s", "--", *probe.argv], env=env)
    assert zero.returncode == 69 and not probe.ran


def test_a_denied_read_is_never_served_from_the_cache(fresh_openbao, run_shim, canaries, probe,
                                                      cache):
    server = fresh_openbao()
    directory, key = cache
    env = cached_api_key(server, run_shim, canaries, probe, directory, key)
    # Access revoked on purpose: a token whose policy reads nothing.
    server.ok("PUT", "sys/policies/acl/nothing", {"policy": 'path "other/*" { capabilities = ["read"] }'})
    token = server.ok("POST", "auth/token/create", {"policies": ["nothing"]})["auth"]["client_token"]
    canaries.values.append(token)
    result = run_shim(["exec", *fallback_args(directory, key), "--deadline", "3s",
                       "--", *probe.argv], env={**env, "VAULT_TOKEN": token})
    assert result.returncode == 77, result.stderr
    assert not probe.ran
    assert "stale" not in result.stderr


def test_a_damaged_cache_is_65_and_another_key_s_is_78(fresh_openbao, run_shim, canaries, probe,
                                                       cache, age_identity):
    server = fresh_openbao()
    directory, key = cache
    env = cached_api_key(server, run_shim, canaries, probe, directory, key)
    server.kill()
    path = directory / CACHE
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[-20] ^= 0x01            # inside the encrypted payload: age's MAC refuses it
    path.write_bytes(bytes(flipped))
    result = run_shim(["exec", *fallback_args(directory, key), "--deadline", "3s",
                       "--", *probe.argv], env=env)
    assert result.returncode == 65, result.stderr
    assert "damaged" in result.stderr and not probe.ran
    path.write_bytes(original[:-40])   # truncated
    assert run_shim(["exec", *fallback_args(directory, key), "--deadline", "3s",
                     "--", *probe.argv], env=env).returncode == 65
    path.write_bytes(original)
    _, other = age_identity("other")
    os.chmod(other, 0o600)
    result = run_shim(["exec", *fallback_args(directory, other), "--deadline", "3s",
                       "--", *probe.argv], env=env)
    assert result.returncode == 78, result.stderr
    assert "not encrypted to the identity" in result.stderr and not probe.ran


def test_no_key_file_no_cache(run_shim, tmp_path, probe):
    result = run_shim(["exec", "--fallback-cache", str(tmp_path / "c"), "--", *probe.argv])
    assert result.returncode == 78
    assert "--fallback-key-file" in result.stderr and not probe.ran
    assert not (tmp_path / "c").exists()


def test_a_cache_the_program_s_user_could_read_or_write_is_refused(run_shim, cache, probe,
                                                                   tmp_path):
    directory, key = cache
    nobody = pwd.getpwnam("nobody")
    directory.mkdir(mode=0o700)
    os.chown(directory, 0, nobody.pw_gid)
    os.chmod(directory, 0o770)       # the program's group may write here
    result = run_shim(["exec", "--user", "nobody", *fallback_args(directory, key),
                       "--", *probe.argv])
    assert result.returncode == 78, result.stderr
    assert str(directory) in result.stderr and "uid" in result.stderr and not probe.ran
    os.chmod(directory, 0o700)
    os.chmod(key, 0o644)             # the program could read the key
    result = run_shim(["exec", "--user", "nobody", *fallback_args(directory, key),
                       "--", *probe.argv])
    assert result.returncode == 78 and str(key) in result.stderr and not probe.ran
    os.chmod(key, 0o600)
    assert run_shim(["exec", "--user", "nobody", *fallback_args(directory, key),
                     "--", *probe.argv]).returncode == 0


def test_a_cache_someone_else_could_write_is_not_believed(fresh_openbao, run_shim, canaries,
                                                          probe, cache):
    # Anyone who knows the public key can write a valid age file: only a directory and file
    # shim's user alone may write are trusted.
    server = fresh_openbao()
    directory, key = cache
    env = cached_api_key(server, run_shim, canaries, probe, directory, key)
    server.kill()
    os.chmod(directory / CACHE, 0o666)
    result = run_shim(["exec", *fallback_args(directory, key), "--deadline", "3s",
                       "--", *probe.argv], env=env)
    assert result.returncode == 78 and not probe.ran


@pytest.fixture
def vault_double():
    with VaultDouble() as double:
        yield double


def test_a_sealed_store_is_covered_but_a_leased_secret_never_is(vault_double, run_shim,
                                                                canaries, probe, cache):
    directory, key = cache
    vault_double.add_database_role("app", default_ttl=300, max_ttl=3600)
    vault_double.kv2_put("secret", "app", {"api_key": canaries.new("kv")})
    token = vault_double.create_token(["database/creds/app", "secret/*"], ttl=3600)
    canaries.values.append(token)
    env = {"VAULT_ADDR": vault_double.url, "VAULT_TOKEN": token,
           "API_KEY": "ref+vault://secret/app#/api_key"}
    dynamic = {**env, "DB_PASSWORD": "vault:database/creds/app#password"}
    assert run_shim(["exec", *fallback_args(directory, key), "--", *probe.argv],
                    env=dynamic).returncode == 0
    canaries.values.extend(issued.password for issued in vault_double.issued_credentials("app"))
    canaries.assert_absent((directory / CACHE).read_bytes().decode("latin-1"), where="the cache")
    vault_double.seal()
    probe.output.unlink()
    result = run_shim(["exec", *fallback_args(directory, key), "--deadline", "3s",
                       "--", *probe.argv], env=dynamic)
    assert result.returncode == 69, result.stderr   # the lease was never cached
    assert not probe.ran
    served = run_shim(["exec", *fallback_args(directory, key), "--deadline", "3s",
                       "--", *probe.argv], env=env)
    assert served.returncode == 0, served.stderr
    assert probe.read()["env"]["API_KEY"].startswith("canary-kv-")


def test_a_watch_started_while_the_store_is_sealed_runs_on_the_cache(vault_double, run_shim,
                                                                     start_shim, canaries, probe,
                                                                     cache):
    from tests.conftest import finish_process
    from tests.integration.test_supervise import wait_for

    directory, key = cache
    vault_double.kv2_put("secret", "app", {"api_key": canaries.new("kv")})
    token = vault_double.create_token(["secret/*"], ttl=3600)
    canaries.values.append(token)
    env = {"VAULT_ADDR": vault_double.url, "VAULT_TOKEN": token,
           "API_KEY": "ref+vault://secret/app#/api_key"}
    # The helpers of --watch write the cache as a start does.
    first = start_shim(["exec", "--watch", "1h", *fallback_args(directory, key), "--",
                        *probe.argv], env)
    assert wait_for(lambda: probe.ran and (directory / CACHE).exists(), timeout=20)
    first.terminate()
    finish_process(first, canaries)
    vault_double.seal()
    probe.output.unlink()
    second = start_shim(["exec", "--watch", "1h", "--deadline", "1s", "--log-format", "json",
                         *fallback_args(directory, key), "--", *probe.argv], env)
    assert wait_for(lambda: probe.ran, timeout=40)
    second.terminate()
    returncode, _, stderr = finish_process(second, canaries)
    assert probe.read()["env"]["API_KEY"].startswith("canary-kv-")
    assert [event["variable"] for event in events(stderr, "secret.stale")] == ["API_KEY"]
