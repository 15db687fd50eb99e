"""Logging in to the real OpenBao: tokens (variable, file, ~/.vault-token, OpenBao's BAO_TOKEN),
AppRole with plain and response-wrapped secret ids, and JWT with a key pair made here.

Each auth method is enabled at a path of the test's own (VAULT_PATH), on the session server.
"""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.real.conftest import unique_path
from tests.helpers.log_records import events
from tests.real.vault_tier import (
    approle_mount, credential, doc_example, enable_kv, error_line, exec_probe, jwt_mount,
    new_secret_id, put, shim_env, signed_jwt,
)


def readable_secret(openbao, canaries) -> tuple[str, str, str]:
    """A KV v2 secret and a policy that reads it: (reference, value, policy name)."""
    mount = enable_kv(openbao, unique_path("kv2"), 2)
    value = canaries.new("secret")
    put(openbao, mount, "app", {"password": value}, 2)
    policy = unique_path("reader")
    openbao.ok("PUT", f"sys/policies/acl/{policy}",
               {"policy": f'path "{mount}/data/app" {{ capabilities = ["read"] }}'})
    return f"ref+vault://{mount}/app#/password", value, policy


def token_with(openbao, canaries, policy: str) -> str:
    answer = openbao.ok("POST", "auth/token/create", {"policies": [policy], "ttl": "1h"})
    return credential(canaries, answer["auth"]["client_token"])


# --- tokens ------------------------------------------------------------------------------------

def test_openbao_tokens_are_s_dot_tokens_and_work_from_variable_and_file(
        openbao, run_shim, probe, canaries, tmp_path):
    reference, value, policy = readable_secret(openbao, canaries)
    token = token_with(openbao, canaries, policy)
    assert token.startswith("s.") and len(token) == 26     # OpenBao's form, not Vault's hvs.

    result = exec_probe(run_shim, probe, shim_env(openbao, canaries, tmp_path, token, P=reference))
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value

    sink = tmp_path / "token"
    sink.write_text(token + "\n")
    env = shim_env(openbao, canaries, tmp_path, P=reference, VAULT_TOKEN_FILE=str(sink))
    del env["VAULT_TOKEN"]
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value


def test_the_home_token_file_is_named_once_at_the_default_verbosity(
        openbao, run_shim, probe, canaries, tmp_path):
    # A stale ~/.vault-token gives 403s; which token shim used must show without -v.
    reference, value, policy = readable_secret(openbao, canaries)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".vault-token").write_text(token_with(openbao, canaries, policy))
    env = {"VAULT_ADDR": openbao.address, "HOME": str(home), "P": reference}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value
    mentions = [line for line in result.stderr.splitlines() if ".vault-token" in line]
    assert len(mentions) == 1, result.stderr
    example = doc_example("shim: warning: using the Vault token in")  # docs/vault.md, Logging in
    assert mentions[0] == example.replace("/home/me", str(home))

    # A token from VAULT_TOKEN is the usual case: nothing is said about it.
    result = exec_probe(run_shim, probe, shim_env(openbao, canaries, tmp_path, P=reference))
    assert result.returncode == 0 and "token" not in result.stderr.lower(), result.stderr


def test_the_home_token_file_is_named_once_under_watch_too(
        openbao, start_shim, canaries, tmp_path):
    # Each --watch tick resolves in a helper of its own: only the first run names the file.
    from tests.conftest import finish_process

    reference, _value, policy = readable_secret(openbao, canaries)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".vault-token").write_text(token_with(openbao, canaries, policy))
    audit = tmp_path / "audit.jsonl"     # every event, whatever the verbosity: the ticks show
    process = start_shim(["exec", "--watch", "1s", "--audit-file", str(audit), "--allow-root",
                          "--", "sleep", "120"],
                         {"VAULT_ADDR": openbao.address, "HOME": str(home), "P": reference})
    waited_until = time.monotonic() + 60
    while len(events(audit.read_text() if audit.exists() else "", "vault.auth")) < 3:
        assert time.monotonic() < waited_until and process.poll() is None, "no third login"
        time.sleep(0.2)
    process.terminate()
    _code, _stdout, stderr = finish_process(process, canaries, timeout=20)

    canaries.assert_absent(audit.read_text(), where="the audit file")
    levels = [record["level"] for record in events(audit.read_text(), "vault.auth")]
    assert levels.count("warning") == 1, levels     # the first run and at least two ticks
    assert len([line for line in stderr.splitlines() if ".vault-token" in line]) == 1, stderr


def test_an_unknown_token_is_77_and_the_hint_says_it_may_be_invalid(
        openbao, run_shim, probe, canaries, tmp_path):
    # OpenBao answers 403 "permission denied" for a token it does not know, as for a policy.
    reference, _value, _policy = readable_secret(openbao, canaries)
    mount = reference.split("//")[1].split("/")[0]
    bogus = credential(canaries, "s." + canaries.new("tok").rsplit("-", 1)[1] + "abcdefgh")

    result = exec_probe(run_shim, probe, shim_env(openbao, canaries, tmp_path, bogus,
                                                  P=f"vault:{mount}/data/app#password"))

    assert result.returncode == 77, result.stderr
    line = error_line(result)
    example = doc_example("Vault denied reading secret/data/app (HTTP 403: permission denied)")
    assert line.endswith(example.replace("secret/", f"{mount}/")), line    # docs/vault.md, 77
    assert not probe.ran


def test_openbao_variables_are_read_and_win_and_never_reach_the_program(
        openbao, run_shim, probe, canaries, tmp_path):
    reference, value, policy = readable_secret(openbao, canaries)
    good = token_with(openbao, canaries, policy)
    stale = credential(canaries, "s." + canaries.new("stale").rsplit("-", 1)[1] + "abcdefgh")

    # Only OpenBao's names.
    env = {"BAO_ADDR": openbao.address, "BAO_TOKEN": good, "HOME": str(tmp_path), "P": reference}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["P"] == value
    assert not [name for name in child if name.startswith(("BAO_", "VAULT_"))]

    # Both set: BAO_* wins, as with the bao CLI (VAULT_ADDR points nowhere, VAULT_TOKEN is stale).
    env = {"BAO_ADDR": openbao.address, "VAULT_ADDR": "http://127.0.0.1:9",
           "BAO_TOKEN": good, "VAULT_TOKEN": stale, "HOME": str(tmp_path), "P": reference}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["P"] == value
    assert not [name for name in child if name.startswith(("BAO_", "VAULT_"))]

    # ... and --passthrough keeps one, as for VAULT_*.
    result = exec_probe(run_shim, probe, env, "--passthrough", "BAO_ADDR")
    assert result.returncode == 0, result.stderr
    assert [name for name in probe.read()["env"] if name.startswith(("BAO_", "VAULT_"))] == \
        ["BAO_ADDR"]


# --- AppRole -----------------------------------------------------------------------------------

def test_approle_with_a_secret_id_from_a_file(openbao, run_shim, probe, canaries, tmp_path):
    reference, value, policy = readable_secret(openbao, canaries)
    path, role_id = approle_mount(openbao, canaries, policy, token_ttl="10m")
    secret_id = new_secret_id(openbao, canaries, path)
    secret_file = tmp_path / "secret_id"
    secret_file.write_text(secret_id)
    env = {"VAULT_ADDR": openbao.address, "VAULT_ROLE_ID": role_id, "HOME": str(tmp_path),
           "VAULT_SECRET_ID_FILE": str(secret_file), "VAULT_PATH": path, "P": reference}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value

    env["VAULT_ROLE_ID"] = credential(canaries, canaries.new("wrong-role"))
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 77, result.stderr
    assert f"Vault refused the approle login at auth/{path}/login" in result.stderr


def test_a_response_wrapped_secret_id_works_once(openbao, run_shim, probe, canaries, tmp_path):
    reference, value, policy = readable_secret(openbao, canaries)
    path, role_id = approle_mount(openbao, canaries, policy, token_ttl="10m")
    # The trusted orchestrator's hand-off: OpenBao wraps the secret id in an `s.` token.
    wrapped = new_secret_id(openbao, canaries, path, wrap_ttl="60s")
    assert wrapped.startswith("s.")
    env = {"VAULT_ADDR": openbao.address, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": wrapped,
           "VAULT_PATH": path, "HOME": str(tmp_path), "P": reference}

    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value

    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 77, result.stderr
    assert "the response-wrapped VAULT_SECRET_ID could not be unwrapped" in result.stderr


# --- JWT ---------------------------------------------------------------------------------------

def test_jwt_login_with_a_key_pair_made_here(openbao, run_shim, probe, canaries, tmp_path):
    reference, value, policy = readable_secret(openbao, canaries)
    path, key = jwt_mount(openbao, policy, role="ci", audience="shim-tier", token_ttl="10m")
    now = int(time.time())
    claims = {"sub": "pipeline", "aud": "shim-tier", "iat": now, "nbf": now - 5, "exp": now + 600}
    token_file = tmp_path / "id_token"
    token_file.write_text(credential(canaries, signed_jwt(key, claims)))
    env = {"VAULT_ADDR": openbao.address, "VAULT_AUTH_METHOD": "jwt", "VAULT_ROLE": "ci",
           "VAULT_PATH": path, "VAULT_JWT_FILE": str(token_file), "HOME": str(tmp_path),
           "P": reference}

    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value

    # Signed by another key: OpenBao refuses the login, 77.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token_file.write_text(credential(canaries, signed_jwt(other, claims)))
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 77, result.stderr
    assert f"Vault refused the jwt login at auth/{path}/login" in result.stderr
