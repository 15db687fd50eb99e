"""A newcomer's first hour (issue 25) against the real tools: a sealed OpenBao, a value stored
with a trailing newline, `--watch -v` logging its token source, a sops file no key opens."""

from __future__ import annotations

import json
import re
import signal
import time

from tests.real.conftest import unique_path


def test_a_sealed_store_is_shown_while_shim_waits(fresh_openbao, run_shim, canaries, probe,
                                                  tmp_path):
    bao = fresh_openbao()
    path = unique_path("sealed")
    bao.put_kv2(path, {"key": canaries.new("sealed")})
    bao.cli("operator", "seal")
    result = run_shim(["exec", "--deadline", "8s", "--", *probe.argv],
                      {**bao.vault_env(), "HOME": str(tmp_path),
                       "API_KEY": f"vault:secret/data/{path}#key"}, timeout=30)
    assert result.returncode == 69, result.stderr
    waiting = [line for line in result.stderr.splitlines() if "waiting for Vault" in line]
    assert waiting and "sealed" in waiting[0], result.stderr
    assert re.search(r"sealed on every attempt \(\d+, \d+\.\d+s\)", result.stderr)


def test_a_trailing_newline_stored_in_vault_arrives_the_same_by_every_path(openbao, run_shim,
                                                                           canaries, probe,
                                                                           tmp_path):
    value = canaries.new("newline")
    path = unique_path("newline")
    openbao.put_kv2(path, {"password": value + "\n"})
    reference = f"vault:secret/data/{path}#password"
    env = {**openbao.vault_env(), "HOME": str(tmp_path)}
    # 1. a reference into the environment
    direct = run_shim(["exec", "--", *probe.argv], {**env, "PASSWORD": reference})
    assert direct.returncode == 0, direct.stderr
    assert probe.read()["env"]["PASSWORD"] == value
    # 2. shim render, into a file and into an env file
    out = tmp_path / "out"
    out.mkdir()
    rendered = run_shim(["render", "--dir", str(out)], {**env, "PASSWORD": reference})
    assert rendered.returncode == 0, rendered.stderr
    assert (out / "PASSWORD").read_text() == value
    dotenv = tmp_path / "app.env"
    as_env = run_shim(["render", "--env-file", str(dotenv), "--format", "json"],
                      {**env, "PASSWORD": reference})
    assert as_env.returncode == 0, as_env.stderr
    assert json.loads(dotenv.read_text()) == {"PASSWORD": value}
    # 3. the rendered file read back through NAME_FILE
    through_file = run_shim(["exec", "--secrets-dir", str(out), "--", *probe.argv],
                            {"PASSWORD_FILE": str(out / "PASSWORD")})
    assert through_file.returncode == 0, through_file.stderr
    assert probe.read()["env"]["PASSWORD"] == value


def test_watch_v_names_the_token_source_once_per_run(openbao, start_shim, canaries, tmp_path):
    path = unique_path("watched")
    openbao.put_kv2(path, {"key": canaries.new("watched")})
    process = start_shim(["exec", "--watch", "300ms", "-v", "--allow-root", "--", "sleep", "60"],
                         {**openbao.vault_env(), "HOME": str(tmp_path),
                          # A pinned version is read at every tick (no change probe for it):
                          # several resolutions, each in a helper.
                          "API_KEY": f"ref+vault://secret/{path}?version=1#/key"})
    time.sleep(4)      # the first resolution and several ticks, each in a helper
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    process.shim_output = ("", stderr)
    canaries.assert_absent(stderr, where="shim's output")
    assert stderr.count("secret.resolved variable=API_KEY") >= 3, stderr   # several ticks
    assert stderr.count("Vault token from VAULT_TOKEN") == 1, stderr


def test_a_sops_env_file_no_key_opens_is_one_line_naming_every_key(sops, age_identity, run_shim,
                                                                   canaries, probe, tmp_path):
    recipient, _ = age_identity()
    plain = tmp_path / "dev.env"
    plain.write_text(f"DB_PASSWORD={canaries.new('db')}\nAPI_KEY={canaries.new('api')}\n"
                     f"JWT_SECRET={canaries.new('jwt')}\n")
    encrypted = tmp_path / "dev.enc.env"
    encrypted.write_bytes(sops.run("encrypt", "--age", recipient, "--input-type", "dotenv",
                                   "--output-type", "dotenv", str(plain)).stdout)
    plain.unlink()
    result = run_shim(["exec", "--env-file", str(encrypted), "--", *probe.argv],
                      {"HOME": str(tmp_path)})
    assert result.returncode == 78, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("shim: error")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("shim: error: API_KEY, DB_PASSWORD, JWT_SECRET ("), errors[0]
    assert not probe.ran
