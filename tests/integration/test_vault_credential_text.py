"""A Vault credential file that is not UTF-8 text (VAULT_TOKEN_FILE pointing at a binary file) is
refused as a configuration error, 78, naming the file (found by make mutate-subprocess: removing
the refusal turned it into an internal error and no test saw it)."""

from __future__ import annotations

from tests.integration.test_vault import exec_probe, home, vault  # noqa: F401 - fixtures


def test_a_token_file_that_is_not_utf8_is_78(vault, run_shim, probe, home, tmp_path):  # noqa: F811
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfe\x00binary")
    env = {"VAULT_ADDR": vault.url, "HOME": str(home), "VAULT_TOKEN_FILE": str(token_file),
           "PASSWORD": "vault:secret/data/app#password"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 78, result.stderr
    assert f"{token_file} (" in result.stderr and "is not UTF-8 text" in result.stderr
    assert not probe.ran
