"""OpenBao's BAO_* names as the Vault provider reads them (shim.providers.vault.settings)."""

from __future__ import annotations

import pytest

from shim.providers.vault.settings import OPENBAO_TWINS, VaultSettings


@pytest.mark.parametrize("suffix", sorted(OPENBAO_TWINS))
def test_a_set_bao_twin_wins_and_is_named(suffix):
    settings = VaultSettings({f"VAULT_{suffix}": "vault", f"BAO_{suffix}": "bao"})
    assert settings[f"VAULT_{suffix}"] == "bao"
    assert settings.name_of(f"VAULT_{suffix}") == f"BAO_{suffix}"


@pytest.mark.parametrize("bao", [None, ""])
def test_an_unset_or_empty_bao_twin_leaves_the_vault_name(bao):
    environ = {"VAULT_TOKEN": "vault"} | ({} if bao is None else {"BAO_TOKEN": bao})
    settings = VaultSettings(environ)
    assert settings.get("VAULT_TOKEN") == "vault"
    assert settings.name_of("VAULT_TOKEN") == "VAULT_TOKEN"


def test_only_the_bao_twin_set():
    settings = VaultSettings({"BAO_ADDR": "http://127.0.0.1:8200"})
    assert settings.get("VAULT_ADDR") == "http://127.0.0.1:8200"
    assert settings.get("VAULT_TOKEN") is None


@pytest.mark.parametrize("name", ["VAULT_TOKEN_FILE", "VAULT_ROLE_ID", "VAULT_AUTH_METHOD",
                                  "VAULT_SECRET_ID", "VAULT_ROLE", "VAULT_PATH", "PATH"])
def test_shims_own_vault_names_have_no_twin(name):
    suffix = name.removeprefix("VAULT_")
    settings = VaultSettings({name: "vault", f"BAO_{suffix}": "bao"})
    assert settings[name] == "vault"
    assert settings.name_of(name) == name


def test_wrapping_twice_reads_the_same_environment():
    environ = {"BAO_TOKEN": "bao", "OTHER": "x"}
    settings = VaultSettings(VaultSettings(environ))
    assert settings["VAULT_TOKEN"] == "bao"
    assert dict(settings) == environ
