"""--watch reads values only when a cheap probe says they changed: Vault KV v2 metadata
(`current_version`), file content hashes; a policy that denies the metadata path falls back to
reading, logged once; `check -v` says which kind of watch each reference gets."""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import finish_process
from tests.doubles.vault import VaultDouble
from tests.integration.test_supervise import wait_for


@pytest.fixture
def vault():
    with VaultDouble() as double:
        yield double


def watch_kv2(start_shim, vault, canaries, tmp_path, policies):
    """exec --watch on secret/data/app (two canary versions: the first written now); returns
    the process, both values and the file the program writes its value into at each start."""
    first, second = canaries.new("v1"), canaries.new("v2")
    vault.kv2_put("secret", "app", {"password": first})
    token = vault.create_token(policies, ttl=3600)
    canaries.values.append(token)
    seen = tmp_path / "seen"
    process = watch(start_shim, {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
                                 "HOME": str(tmp_path),
                                 "APP_PASSWORD": "vault:secret/data/app#password"}, seen)
    return process, first, second, seen


def rotate(vault, seen, value) -> None:
    """A new KV v2 version; returns once the program has been restarted with it."""
    vault.kv2_put("secret", "app", {"password": value})
    assert wait_for(lambda: value in (seen.read_text() if seen.exists() else ""), timeout=30)


def requests_grow(vault, path: str, by: int) -> bool:
    """Wait until the double has seen `by` more GETs of `path` than now (ticks going by)."""
    target = vault.count(path, "GET") + by
    return wait_for(lambda: vault.count(path, "GET") >= target, timeout=30)


def stop(process, canaries) -> str:
    """SIGTERM, as docker stop; the supervisor exits 143; its stderr."""
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish_process(process, canaries)
    assert returncode == 143
    return stderr


def watch(start_shim, env, seen, *extra):
    return start_shim(["exec", "--watch", "200ms", "--log-format", "json", *extra, "--",
                       "sh", "-c", f'echo "$APP_PASSWORD" >> {seen}; exec sleep 60'], env)


def watch_one_change(start_shim, canaries, tmp_path, env, every_tick, put) -> str:
    """`put(value)` stores APP_PASSWORD's secret; exec --watch with `env` on a first canary:
    5 ticks of `every_tick()` (a request count that grows each tick), then a second canary
    put, the program restarted with it, 3 more ticks; SIGTERM. The supervisor's stderr."""
    first, second = canaries.new("v1"), canaries.new("v2")
    put(first)
    seen = tmp_path / "seen"
    process = watch(start_shim, env, seen)
    assert wait_for(lambda: every_tick() >= 5, timeout=30)
    put(second)
    assert wait_for(lambda: second in (seen.read_text() if seen.exists() else ""), timeout=30)
    target = every_tick() + 3
    assert wait_for(lambda: every_tick() >= target, timeout=30)
    stderr = stop(process, canaries)
    assert seen.read_text().split() == [first, second]
    return stderr


def events(stderr: str, name: str) -> list[dict]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == name]


@pytest.mark.parametrize("policies, every_tick, once, denied", [
    # The metadata is asked for on every tick; the value is read at the start and for the change
    # (whose confirmation came from the probe).
    (["secret/*"], "secret/metadata/app", "secret/data/app", []),
    # No secret/metadata/* in the policy: refused once, logged once, then not asked again;
    # each tick reads the value instead.
    (["secret/data/app"], "secret/data/app", "secret/metadata/app",
     ["vault:secret/data/app#..."]),
], ids=["probe", "metadata-denied"])
def test_kv2_values_are_read_only_when_current_version_changes(start_shim, vault, canaries,
                                                                tmp_path, policies, every_tick,
                                                                once, denied):
    process, first, second, seen = watch_kv2(start_shim, vault, canaries, tmp_path, policies)
    assert requests_grow(vault, every_tick, 5)
    assert vault.count(once, "GET") == 1
    rotate(vault, seen, second)
    assert requests_grow(vault, every_tick, 3)
    assert vault.count(once, "GET") == (2 if once == "secret/data/app" else 1)
    stderr = stop(process, canaries)
    assert seen.read_text().split() == [first, second]
    assert [event["reference"] for event in events(stderr, "watch.probe_denied")] == denied


def test_a_file_is_re_read_only_when_its_content_changes(start_shim, canaries, tmp_path):
    """The probe hashes the file; the value is read (and the program restarted) on a change,
    and an unchanged file leaves the resolution out (shim_store_reads_total stays at 1)."""
    from tests.integration.test_metrics import free_port, scrape

    secret = tmp_path / "password"
    first, second = canaries.new("v1"), canaries.new("v2")
    secret.write_text(first)
    seen = tmp_path / "seen"
    port = free_port()
    process = watch(start_shim, {"APP_PASSWORD_FILE": str(secret)}, seen,
                    "--secrets-dir", str(tmp_path), "--metrics", f"127.0.0.1:{port}")
    probes = ("shim_store_probes_total", (("store", "file"),))
    reads = ("shim_store_reads_total", (("store", "file"),))
    assert wait_for(lambda: scrape(port).get(probes, 0) >= 5, timeout=30)
    assert scrape(port)[reads] == 1
    secret.write_text(second)
    assert wait_for(lambda: second in (seen.read_text() if seen.exists() else ""), timeout=30)
    assert scrape(port)[reads] == 2
    stop(process, canaries)


def test_check_v_says_which_watch_each_reference_gets(run_shim, vault, canaries, tmp_path):
    vault.kv2_put("secret", "app", {"password": canaries.new()})
    vault.add_database_role("app", default_ttl=60, max_ttl=600)
    token = vault.create_token(["secret/*", "database/creds/app"], ttl=3600)
    canaries.values.append(token)
    secret = tmp_path / "token"
    secret.write_text(canaries.new())
    env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token, "HOME": str(tmp_path),
           "KV2": "vault:secret/data/app#password",
           "PINNED": "ref+vault://secret/app?version=1#/password",
           "DB": "vault:database/creds/app#password",
           "TOKEN_FILE": str(secret)}

    result = run_shim(["check", "-v", "--json", "--secrets-dir", str(tmp_path)], env, timeout=60)
    canaries.values.extend(issued.password for issued in vault.issued_credentials("app"))

    assert result.returncode == 0, result.stderr
    rows = {row["variable"]: row for row in json.loads(result.stdout)["variables"]}
    assert rows["KV2"]["watch"] == ["probe: KV v2 metadata"]
    assert rows["PINNED"]["watch"] == ["read every tick"]
    assert rows["DB"]["watch"] == ["lease renewal"]
    assert rows["TOKEN"]["watch"] == ["probe: content hash"]
    table = run_shim(["check", "-v", "--secrets-dir", str(tmp_path)], env, timeout=60)
    header = table.stdout.splitlines()[0].split()
    assert header[-1] == "WATCH"


@pytest.mark.parametrize("body", [
    '{"data": {"current_version": "1"}}',          # a string, not a number
    '{"data": {"current_version": true}}',
    '{"data": []}',
    '[1, 2]',
    'not json at all',
])
def test_a_metadata_answer_shim_cannot_read_falls_back_to_reading(start_shim, vault, canaries,
                                                                   tmp_path, body):
    """A proxy or a lying server answering the metadata path: no probe answer, so the value
    is read, and a change is still seen."""
    vault.fail_next(1000, status=200, body=body, path="secret/metadata/app")
    process, first, second, seen = watch_kv2(start_shim, vault, canaries, tmp_path, ["secret/*"])
    assert requests_grow(vault, "secret/data/app", 3)
    rotate(vault, seen, second)
    stop(process, canaries)
    assert seen.read_text().split()[:2] == [first, second]


@pytest.mark.parametrize("allow_get", [True, False], ids=["probe", "get-denied"])
def test_gcp_latest_is_probed_by_its_version_name(start_shim, canaries, tmp_path, allow_get):
    """A get of versions/latest (no payload) says which version is latest; `:access` only on a
    change. Without secretmanager.versions.get (the accessor role) every tick accesses."""
    from tests.doubles.gcp import SecretManagerDouble
    from tests.integration.test_gcp import credential_env

    first, second = canaries.new("v1"), canaries.new("v2")
    with SecretManagerDouble(tmp_path / "gcp") as gcp:
        gcp.allow_get = allow_get
        gcp.add_version("db", first)
        seen = tmp_path / "seen"
        env = {**credential_env(gcp, tmp_path, "metadata"),
               "APP_PASSWORD": f"sm://{gcp.project}/db"}
        process = watch(start_shim, env, seen)

        def count(suffix: str) -> int:
            return len([r for r in gcp.requests() if r.path.endswith(suffix)])

        # Each tick asks one question: the probe, or (refused once, then not asked) the access.
        every_tick, once = ("/versions/latest", ":access") if allow_get else (":access",
                                                                             "/versions/latest")
        assert wait_for(lambda: count(every_tick) >= 5, timeout=30)
        assert count(once) == 1
        gcp.add_version("db", second)
        assert wait_for(lambda: second in (seen.read_text() if seen.exists() else ""),
                        timeout=30)
        stderr = stop(process, canaries)
    if allow_get:
        assert count(":access") == 2
        assert not events(stderr, "watch.probe_denied")
    else:
        assert len(events(stderr, "watch.probe_denied")) == 1
