"""A response-wrapped AppRole secret_id: the secret_id shim unwraps is a credential too, and
is redacted from a Vault error text that quotes the login request back (found by make
mutate-subprocess: only the wrapping token was redacted by any test)."""

from __future__ import annotations

from tests.integration.test_vault import credential, exec_probe, home, vault  # noqa: F401 - fixtures


def test_an_unwrapped_secret_id_quoted_back_by_vault_is_redacted(vault, run_shim, probe,  # noqa: F811
                                                                 canaries, home):  # noqa: F811
    vault.add_approle("app", ["secret/data/app"])
    issued = set(vault._auth_mount("approle", "").roles["app"].secret_ids)
    wrapping_token = credential(canaries, vault.wrapped_secret_id("app"))
    [unwrapped] = set(vault._auth_mount("approle", "").roles["app"].secret_ids) - issued
    credential(canaries, unwrapped)
    vault.echo_credentials = True
    env = {"VAULT_ADDR": vault.url, "HOME": str(home),
           "VAULT_ROLE_ID": credential(canaries, canaries.new("unknown-role")),
           "VAULT_SECRET_ID": wrapping_token, "PASSWORD": "vault:secret/data/app#password"}
    login = exec_probe(run_shim, probe, env)        # run_shim: no canary in the output
    assert login.returncode == 77, login.stderr
    assert "request was:" in login.stderr and "<redacted>" in login.stderr  # the echo happened
    assert not probe.ran
