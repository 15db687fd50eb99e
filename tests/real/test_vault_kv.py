"""KV v1 and v2 on the real OpenBao: custom and nested mounts, versions, deleted and destroyed
versions, --import of a secret's map, policies that deny, and the answer-size cap.

Each test makes mounts of its own (unique names) on the session server.
"""

from __future__ import annotations

import json

from tests.helpers.log_records import events
from tests.real.conftest import unique_path
from tests.real.vault_tier import (
    doc_example, enable_kv, error_line, exec_probe, policy_token, put, shim_env,
)


def test_kv2_and_kv1_on_custom_and_nested_mounts_in_both_syntaxes(
        openbao, run_shim, probe, canaries, tmp_path):
    team = unique_path("team")
    kv2 = enable_kv(openbao, f"{team}/apps/kv2", 2)
    kv1 = enable_kv(openbao, f"{team}/apps/kv1", 1)
    values = {name: canaries.new(name) for name in ("v2a", "v2b", "v1a", "v1b")}
    put(openbao, kv2, "app", {"a": values["v2a"], "b": values["v2b"]}, 2)
    put(openbao, kv1, "app", {"a": values["v1a"], "b": values["v1b"]}, 1)

    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path,
        V2A=f"ref+vault://{kv2}/app#/a", V2B=f"vault:{kv2}/data/app#b",
        V1A=f"ref+vault://{kv1}/app#/a", V1B=f"vault:{kv1}/app#b",
        WHOLE=f"ref+vault://{kv2}/app"))

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert {name.lower(): child[name] for name in ("V2A", "V2B", "V1A", "V1B")} == values
    assert json.loads(child["WHOLE"]) == {"a": values["v2a"], "b": values["v2b"]}
    assert not [name for name in child if name.startswith(("VAULT_", "BAO_"))]


def test_pinned_versions_in_both_syntaxes(openbao, run_shim, probe, canaries, tmp_path):
    mount = enable_kv(openbao, unique_path("kv2"), 2)
    first, second, third = (canaries.new(f"v{n}") for n in (1, 2, 3))
    for value in (first, second, third):
        put(openbao, mount, "app", {"password": value}, 2)

    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path,
        ONE=f"ref+vault://{mount}/app?version=1#/password",
        TWO=f"vault:{mount}/data/app#password#2", LATEST=f"ref+vault://{mount}/app#/password"))

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["ONE"], child["TWO"], child["LATEST"]) == (first, second, third)


def test_deleted_destroyed_and_missing_versions_are_66(openbao, run_shim, probe, canaries,
                                                       tmp_path):
    mount = enable_kv(openbao, unique_path("kv2"), 2)
    for n in (1, 2, 3):
        put(openbao, mount, "app", {"password": canaries.new(f"v{n}")}, 2)
    openbao.ok("POST", f"{mount}/delete/app", {"versions": [2]})
    openbao.ok("POST", f"{mount}/destroy/app", {"versions": [1]})
    cases = {
        f"ref+vault://{mount}/app?version=2#/password": "version 2 was deleted",
        f"vault:{mount}/data/app#password#1": "version 1 was destroyed",
        f"ref+vault://{mount}/app?version=9#/password": "does not exist",
        f"ref+vault://{mount}/nothing-here#/password": "does not exist",
    }
    for reference, said in cases.items():
        result = exec_probe(run_shim, probe, shim_env(openbao, canaries, tmp_path, P=reference))
        assert result.returncode == 66, (reference, result.stderr)
        assert said in error_line(result), result.stderr
        assert not probe.ran

    # The current version deleted: the latest read is 66 too, and names the deletion.
    openbao.ok("DELETE", f"{mount}/data/app")
    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, P=f"ref+vault://{mount}/app#/password"))
    assert result.returncode == 66, result.stderr
    assert "version 3 was deleted" in error_line(result)


def test_a_version_on_a_kv1_secret_is_66(openbao, run_shim, probe, canaries, tmp_path):
    mount = enable_kv(openbao, unique_path("kv1"), 1)
    put(openbao, mount, "app", {"password": canaries.new()}, 1)
    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, P=f"ref+vault://{mount}/app?version=2#/password"))
    assert result.returncode == 66, result.stderr
    assert f"{mount}/ is not a KV v2 mount" in error_line(result)


def test_import_of_kv2_and_kv1_maps(openbao, run_shim, probe, canaries, tmp_path):
    kv2 = enable_kv(openbao, unique_path("kv2"), 2)
    kv1 = enable_kv(openbao, unique_path("kv1"), 1)
    db, api, old = canaries.new("db"), canaries.new("api"), canaries.new("old")
    put(openbao, kv2, "app", {"db-password": old}, 2)
    put(openbao, kv2, "app", {"db-password": db, "api.key": api}, 2)
    legacy = canaries.new("legacy")
    put(openbao, kv1, "app", {"legacy": legacy}, 1)

    result = exec_probe(run_shim, probe, shim_env(openbao, canaries, tmp_path),
                        "--import", f"ref+vault://{kv2}/app?prefix=APP_",
                        "--import", f"vault:{kv1}/app",
                        "--import", f"ref+vault://{kv2}/app?version=1&prefix=OLD_")

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["APP_DB_PASSWORD"], child["APP_API_KEY"], child["LEGACY"]) == (db, api, legacy)
    assert child["OLD_DB_PASSWORD"] == old


def test_a_policy_that_denies_the_read_is_77(openbao, run_shim, probe, canaries, tmp_path):
    mount = enable_kv(openbao, unique_path("kv2"), 2)
    put(openbao, mount, "app", {"password": canaries.new()}, 2)
    put(openbao, mount, "other", {"password": canaries.new()}, 2)
    token = policy_token(openbao, canaries,
                         f'path "{mount}/data/other" {{ capabilities = ["read"] }}')

    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, token, P=f"ref+vault://{mount}/app#/password"))

    assert result.returncode == 77, result.stderr
    assert f"Vault denied reading {mount}/data/app (HTTP 403: " in error_line(result)
    assert not probe.ran


def test_a_denied_mount_lookup_leaves_other_mounts_under_the_same_segment_alone(
        openbao, run_shim, probe, canaries, tmp_path):
    # The token may read the kv2 mount and nothing in kv1, so OpenBao refuses the mount lookup
    # under kv1 (403) and answers it under kv2: a read in kv2 must still be planned as KV v2.
    team = unique_path("team")
    kv1 = enable_kv(openbao, f"{team}/apps/kv1", 1)
    kv2 = enable_kv(openbao, f"{team}/apps/kv2", 2)
    put(openbao, kv1, "app", {"password": canaries.new("kv1")}, 1)
    value = canaries.new("kv2")
    put(openbao, kv2, "app", {"password": value}, 2)
    token = policy_token(openbao, canaries, f'path "{kv2}/data/*" {{ capabilities = ["read"] }}')

    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, token,
        A_DENIED=f"ref+vault://{kv1}/app#/password", B_ALLOWED=f"ref+vault://{kv2}/app#/password"))

    # Every variable that fails has its own error line: only the one in kv1 fails.
    assert result.returncode == 77, result.stderr
    assert error_line(result).startswith(f"shim: error: A_DENIED (ref+vault://{kv1}/app#...)")


def test_the_mount_lookup_follows_the_mount_not_a_policy_on_the_lookup_path(
        openbao, run_shim, probe, canaries, tmp_path):
    # docs/vault.md, "Who may look a mount up": OpenBao does not check sys/internal/ui/mounts/*
    # against policies; it answers the lookup when the token may touch something in the mount.
    kv1 = enable_kv(openbao, unique_path("kv1"), 1)
    value = canaries.new()
    put(openbao, kv1, "app", {"password": value}, 1)
    reads_it = policy_token(openbao, canaries, f"""
        path "{kv1}/app" {{ capabilities = ["read"] }}
        path "sys/internal/ui/mounts/*" {{ capabilities = ["deny"] }}""")
    lookup_only = policy_token(openbao, canaries,
                               'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }')
    env = shim_env(openbao, canaries, tmp_path, reads_it, P=f"ref+vault://{kv1}/app#/password")

    # `deny` on the lookup path: the lookup is still answered, so KV v1 is read at once.
    result = exec_probe(run_shim, probe, env, "--log-format", "json", "-vv")
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value
    assert [read["path"] for read in events(result.stderr, "vault.read")] == [f"{kv1}/app"]
    assert not events(result.stderr, "vault.mount_unknown")

    # `read` on the lookup path and nothing in the mount: the lookup is refused all the same.
    result = exec_probe(run_shim, probe, {**env, "VAULT_TOKEN": lookup_only},
                        "--log-format", "json")
    assert result.returncode == 77, result.stderr
    assert events(result.stderr, "vault.mount_unknown")


def test_both_fallback_reads_denied_names_the_path_as_written(
        openbao, run_shim, probe, canaries, tmp_path):
    mount = enable_kv(openbao, unique_path("kv1"), 1)
    put(openbao, mount, "app", {"password": canaries.new()}, 1)
    token = policy_token(openbao, canaries, 'path "nothing/*" { capabilities = ["read"] }')

    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, token, P=f"ref+vault://{mount}/app#/password"))

    assert result.returncode == 77, result.stderr
    line = error_line(result)
    assert f"Vault denied reading {mount}/app " in line, line
    assert f"{mount}/data/app" not in line.split(";")[0], line


def test_an_answer_over_the_cap_is_65_and_says_what_the_cap_is(
        openbao, run_shim, probe, canaries, tmp_path):
    # OpenBao stores a 5 MiB value without complaint: the refusal is shim's cap, and says so.
    mount = enable_kv(openbao, unique_path("kv2"), 2)
    part = canaries.new("big")
    put(openbao, mount, "big", {"blob": part * (5 * 1024 * 1024 // len(part) + 1)}, 2)

    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, P=f"ref+vault://{mount}/big#/blob"))

    assert result.returncode == 65, result.stderr
    line = error_line(result)
    assert "any secret" not in line, line
    example = doc_example("Vault at https://vault:8200 answered")     # docs/vault.md, exit 65
    assert example.replace("https://vault:8200", openbao.address) in line, line
    assert not probe.ran
