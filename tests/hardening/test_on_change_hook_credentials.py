"""Issue 22 item 14: `render --on-change run:CMD` gets what a program shim starts would get.

The hook used to get shim's whole starting environment minus SHIM_* and VAULT_*: the age key
that opens sops files (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE) went to it. Now the hook's environment
is the starting environment scrubbed by the same definition as the program's
(shim.pipeline.environment.without_credentials), with references as written (never the values).
"""

from __future__ import annotations

import signal

from tests.integration.test_supervise import finish, wait_for


def test_the_on_change_hook_gets_no_store_credential(start_shim, canaries, tmp_path):
    age_key = "AGE-SECRET-KEY-1" + canaries.new("age").split("-")[-1].upper()
    canaries.values.append(age_key)
    vault_token = canaries.new("vault-token")
    secret = tmp_path / "secret"
    secret.write_text(canaries.new("first"))
    seen, out = tmp_path / "hook-env", tmp_path / "out"
    out.mkdir()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(age_key + "\n")
    process = start_shim(
        ["render", "--dir", str(out), "--watch", "200ms", "--on-change",
         f"run:sh -c 'env > {seen}'"],
        {"SOPS_AGE_KEY": age_key, "SOPS_AGE_KEY_FILE": str(key_file), "VAULT_TOKEN": vault_token,
         "VAULT_ADDR": "http://127.0.0.1:9", "SHIM_LOG_LEVEL": "info", "APP_SETTING": "kept",
         "SECRET": f"file:{secret}"})
    try:
        assert wait_for(lambda: (out / "SECRET").exists(), timeout=20)
        secret.write_text(canaries.new("second"))
        assert wait_for(lambda: seen.exists() and seen.read_text().strip(), timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
    returncode, _, _ = finish(process, canaries)
    assert returncode == 0
    hook_env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert hook_env["APP_SETTING"] == "kept"
    assert hook_env["SECRET"] == f"file:{secret}"          # the reference, never the value
    for name in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "VAULT_TOKEN", "VAULT_ADDR", "SHIM_LOG_LEVEL"):
        assert name not in hook_env, name
    canaries.assert_absent(seen.read_text(), where="the hook's environment")
