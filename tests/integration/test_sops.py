"""sops-encrypted files through `shim exec`: every format, age / PGP / AWS KMS keys.

The files are made at test time by tests/helpers/sops_files.py (shim's writer,
laid out per format as sops lays them out); keys are generated per test:
age with pyrage, PGP with Debian's gpg in a private GNUPGHOME, KMS in moto's
real HTTP server. Every value is a canary; run_shim fails on any leak.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import boto3
import pytest

from tests.helpers.aws_moto import MotoServer
from tests.helpers.sops_files import AgeKey, KmsKey, PgpKey, sops_file

REGION = "us-east-1"
FORMATS = {"yaml": "app.enc.yaml", "json": "app.enc.json", "dotenv": "app.enc.env",
           "ini": "app.enc.ini", "binary": "app.enc.bin"}


def _data(fmt: str, value: str, other: str):
    """A document in `fmt` and the pointer to `value` inside it."""
    if fmt == "dotenv":
        return {"DB_PASSWORD": value, "OTHER": other}, "#/DB_PASSWORD"
    if fmt == "ini":
        return {"database": {"password": value, "other": other}}, "#/database/password"
    if fmt == "binary":
        return value, ""
    return {"database": {"password": value, "port": 5432, "tls": True,
                         "hosts": [other, "b"]}, "note_unencrypted": "plain"}, "#/database/password"


@pytest.fixture
def age_key():
    return AgeKey()


def _exec(run_shim, probe, env, *, extra=()):
    return run_shim(["exec", *extra, "--", *probe.argv], env)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_resolves_with_an_age_key_file(fmt, run_shim, probe, canaries, age_key, tmp_path):
    value, other = canaries.new(fmt), canaries.new("other")
    data, pointer = _data(fmt, value, other)
    path = sops_file(tmp_path / FORMATS[fmt], data, [age_key])
    key_file = tmp_path / "age_key"
    key_file.write_text(f"# created: now\n# public key: {age_key.recipient}\n{age_key.secret}\n")
    result = _exec(run_shim, probe, {"DB_PASSWORD": f"ref+sops://{path}{pointer}",
                                      "SOPS_AGE_KEY_FILE": str(key_file)})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["DB_PASSWORD"] == value
    assert "SOPS_AGE_KEY_FILE" not in env


def test_the_gitops_flow_of_docs_sops_md(run_shim, probe, canaries, age_key, tmp_path):
    """docs/sops.md: the age key as a root-only Docker secret, a committed file, exec --user."""
    value = canaries.new()
    deploy = tmp_path / "app" / "deploy"
    deploy.mkdir(parents=True)
    path = sops_file(deploy / "prod.enc.yaml", {"db": {"password": value}}, [age_key])
    secret = tmp_path / "run-secrets-age_key"
    secret.write_text(age_key.secret + "\n")
    os.chmod(secret, 0o400)
    result = run_shim(["exec", "--user", "nobody", "--", *probe.argv],
                      {"SOPS_AGE_KEY_FILE": str(secret), "DB_PASSWORD": f"ref+sops://{path}#/db/password"})
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert record["uid"] == 65534 and record["env"]["DB_PASSWORD"] == value
    assert "SOPS_AGE_KEY_FILE" not in record["env"]


def test_age_key_in_the_environment_is_used_and_scrubbed(run_shim, probe, canaries, age_key, tmp_path):
    value = canaries.new()
    path = sops_file(tmp_path / "s.yaml", {"token": value}, [age_key])
    result = _exec(run_shim, probe, {"TOKEN": f"ref+sops://{path}#/token",
                                      "SOPS_AGE_KEY": age_key.secret})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["TOKEN"] == value
    assert not [name for name in env if name.startswith("SOPS_AGE")]


def test_age_key_from_the_default_config_path(run_shim, probe, canaries, age_key, tmp_path):
    value = canaries.new()
    path = sops_file(tmp_path / "s.json", {"token": value}, [age_key])
    keys = tmp_path / "home" / ".config" / "sops" / "age" / "keys.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text(age_key.secret + "\n")
    result = _exec(run_shim, probe, {"TOKEN": f"ref+sops://{path}#/token",
                                      "HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["TOKEN"] == value


def test_a_whole_file_without_pointer_is_its_json(run_shim, probe, canaries, age_key, tmp_path):
    value = canaries.new()
    path = sops_file(tmp_path / "s.yaml", {"a": {"b": value}, "n": 3}, [age_key])
    result = _exec(run_shim, probe, {"CONFIG": f"ref+sops://{path}", "SOPS_AGE_KEY": age_key.secret})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["CONFIG"] == '{"a": {"b": "%s"}, "n": 3}' % value


def test_format_option_overrides_the_extension(run_shim, probe, canaries, age_key, tmp_path):
    value = canaries.new()
    path = sops_file(tmp_path / "secrets.txt", {"K": value}, [age_key], fmt="dotenv")
    result = _exec(run_shim, probe, {"K": f"ref+sops://{path}?format=dotenv#/K",
                                      "SOPS_AGE_KEY": age_key.secret})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["K"] == value


def test_pgp_key_from_gnupghome(run_shim, probe, canaries, tmp_path):
    pgp = PgpKey(tmp_path / "gnupg")
    value = canaries.new()
    path = sops_file(tmp_path / "s.yaml", {"db": {"password": value}}, [pgp])
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/db/password", "GNUPGHOME": pgp.home})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PW"] == value


def test_the_first_usable_key_wins(run_shim, probe, canaries, age_key, tmp_path):
    """A file for age and PGP opens on a machine that has only the PGP key."""
    pgp = PgpKey(tmp_path / "gnupg")
    value = canaries.new()
    path = sops_file(tmp_path / "s.env", {"PW": value}, [age_key, pgp])
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/PW", "GNUPGHOME": pgp.home,
                                      "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PW"] == value


# --- AWS KMS in moto -------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server, canaries):
    moto_server.reset()
    env = {"AWS_ENDPOINT_URL": moto_server.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": canaries.new("aws-secret-key"),
           "AWS_CONFIG_FILE": "/nonexistent/aws-config",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
           "AWS_EC2_METADATA_DISABLED": "true"}
    client = boto3.client("kms", region_name=REGION, endpoint_url=moto_server.url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return env, client


@pytest.mark.parametrize("fmt", ["yaml", "dotenv"])
def test_kms_key_with_encryption_context(fmt, run_shim, probe, canaries, aws, tmp_path):
    env, client = aws
    value = canaries.new()
    kms = KmsKey(client, {"app": "shim", "stage": "test"})
    data, pointer = _data(fmt, value, canaries.new("other"))
    path = sops_file(tmp_path / FORMATS[fmt], data, [kms])
    result = _exec(run_shim, probe, {**env, "PW": f"ref+sops://{path}{pointer}"})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PW"] == value


def test_kms_refusal_is_77(run_shim, probe, canaries, aws, tmp_path):
    env, client = aws
    kms = KmsKey(client, {"app": "shim"})
    path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [kms])
    # The context is part of what KMS authenticates: change it and KMS refuses.
    path.write_text(path.read_text().replace("app: shim", "app: other"))
    result = _exec(run_shim, probe, {**env, "PW": f"ref+sops://{path}#/pw"})
    assert result.returncode == 77, result.stderr
    assert "aws kms" in result.stderr and str(path) in result.stderr
    assert not probe.ran


# --- refusals -----------------------------------------------------------------------------

def test_no_key_configured_is_78_naming_file_and_key_kinds(run_shim, probe, canaries, age_key, tmp_path):
    path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [age_key])
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/pw", "HOME": str(tmp_path)})
    assert result.returncode == 78, result.stderr
    assert str(path) in result.stderr and "(age)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not probe.ran


def test_wrong_key_is_77(run_shim, probe, canaries, age_key, tmp_path):
    path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [age_key])
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/pw",
                                      "SOPS_AGE_KEY": AgeKey().secret})
    assert result.returncode == 77, result.stderr
    assert str(path) in result.stderr
    assert not probe.ran


def _tampered(run_shim, probe, age_key, path):
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/PW", "SOPS_AGE_KEY": age_key.secret})
    assert result.returncode == 65, result.stderr
    assert "MAC mismatch" in result.stderr and str(path) in result.stderr
    assert not probe.ran


def test_a_value_edited_by_hand_is_a_mac_mismatch(run_shim, probe, canaries, age_key, tmp_path):
    path = sops_file(tmp_path / "s.env", {"PW": canaries.new(), "NOTE_unencrypted": "x"}, [age_key])
    # An unencrypted value is still covered by the MAC.
    path.write_text(path.read_text().replace("NOTE_unencrypted=x", "NOTE_unencrypted=y"))
    _tampered(run_shim, probe, age_key, path)


def test_values_swapped_between_keys_do_not_authenticate(run_shim, probe, canaries, age_key, tmp_path):
    path = sops_file(tmp_path / "s.env", {"PW": canaries.new(), "OTHER": canaries.new()}, [age_key])
    lines = path.read_text().splitlines()
    first, second = lines[0].split("=", 1), lines[1].split("=", 1)
    lines[0], lines[1] = f"{first[0]}={second[1]}", f"{second[0]}={first[1]}"
    path.write_text("\n".join(lines) + "\n")
    _tampered(run_shim, probe, age_key, path)


def test_a_removed_key_is_a_mac_mismatch(run_shim, probe, canaries, age_key, tmp_path):
    path = sops_file(tmp_path / "s.env", {"PW": canaries.new(), "OTHER": canaries.new()}, [age_key])
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                            if not line.startswith("OTHER=")))
    _tampered(run_shim, probe, age_key, path)


def test_a_changed_lastmodified_is_a_mac_mismatch(run_shim, probe, canaries, age_key, tmp_path):
    path = sops_file(tmp_path / "s.env", {"PW": canaries.new()}, [age_key])
    path.write_text(re.sub(r"sops_lastmodified=\S+", "sops_lastmodified=2001-01-01T00:00:00Z",
                           path.read_text()))
    _tampered(run_shim, probe, age_key, path)


# --- env files and dev-init -----------------------------------------------------------------

def test_a_sops_dotenv_file_works_as_env_file(run_shim, probe, canaries, age_key, tmp_path):
    value, other = canaries.new(), canaries.new()
    path = sops_file(tmp_path / "prod.enc.env", {"DB_PASSWORD": value, "API_KEY": other}, [age_key])
    result = run_shim(["exec", "--env-file", str(path), "--", *probe.argv],
                      {"SOPS_AGE_KEY": age_key.secret})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert (env["DB_PASSWORD"], env["API_KEY"]) == (value, other)
    assert not [name for name in env if name.startswith("sops_")]


def test_dev_init_encrypt_then_run(run_shim, canaries, age_key, tmp_path, probe):
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "compose.yaml").write_text(
        "services:\n  app:\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD:-CHANGEME_DB_PASSWORD}\n")
    other = AgeKey()
    result = run_shim(["dev-init", "--encrypt", f"{age_key.recipient},{other.recipient}"], cwd=project)
    assert result.returncode == 0, result.stderr
    encrypted = (project / ".secrets" / "dev.enc.env").read_text()
    assert re.search(r"^DB_PASSWORD=ENC\[AES256_GCM,data:", encrypted, re.M)
    assert encrypted.count("sops_age__list_") == 4 and "sops_mac=ENC[" in encrypted
    # Each teammate's key opens it; the value is the same for both.
    seen = []
    for key in (age_key, other):
        result = run_shim(["run", "--", *probe.argv], {"SOPS_AGE_KEY": key.secret}, cwd=project)
        assert result.returncode == 0, result.stderr
        seen.append(probe.read()["env"]["DB_PASSWORD"])
    assert seen[0] == seen[1] and len(seen[0]) >= 40
    # A second dev-init keeps the value.
    result = run_shim(["dev-init", "--encrypt", age_key.recipient], {"SOPS_AGE_KEY": age_key.secret},
                      cwd=project)
    assert result.returncode == 0, result.stderr
    result = run_shim(["run", "--", *probe.argv], {"SOPS_AGE_KEY": age_key.secret}, cwd=project)
    assert probe.read()["env"]["DB_PASSWORD"] == seen[0]


def test_dev_init_encrypt_refuses_a_non_age_recipient(run_shim, tmp_path):
    result = run_shim(["dev-init", "--encrypt", "ssh-ed25519 AAAA"], cwd=tmp_path)
    assert result.returncode == 64, result.stderr
    assert not (tmp_path / ".secrets").exists()


# --- shim scan ------------------------------------------------------------------------------

def test_scan_passes_sops_files_and_flags_one_with_plaintext_values(run_shim, canaries, age_key, tmp_path):
    from tests.integration.test_scan import findings, make_repo
    files = tmp_path / "made"
    files.mkdir()
    dev = sops_file(files / "dev.enc.env", {"DB_PASSWORD": canaries.new(), "API_TOKEN": canaries.new()},
                    [age_key])
    config = sops_file(files / "config.enc.yaml", {"db": {"password": canaries.new()}}, [age_key])
    leaked = canaries.new("decrypted")
    broken = config.read_text()
    broken = re.sub(r"password: ENC\[[^\]]+\]", f"password: {leaked}", broken)
    repo = make_repo(tmp_path, {".secrets/dev.enc.env": dev.read_text(),
                                "deploy/config.enc.yaml": config.read_text(),
                                "deploy/broken.enc.yaml": broken},
                     force=(".secrets/dev.enc.env",))
    result = run_shim(["scan"], cwd=repo)
    # The value left in clear is also scanned as any text is (issue 22, item 9).
    assert findings(result) == ["deploy/broken.enc.yaml:0: sops-unencrypted-value",
                                "deploy/broken.enc.yaml:2: plaintext-secret:secret-keyword"], \
        result.stdout + result.stderr
    assert result.returncode == 1


# --- Vault transit (the Vault double) ----------------------------------------------------------

@pytest.fixture
def vault():
    from tests.doubles.vault import VaultDouble
    with VaultDouble() as double:
        yield double


@pytest.mark.parametrize("fmt", ["json", "ini"])
def test_vault_transit_key(fmt, run_shim, probe, canaries, vault, tmp_path):
    from tests.helpers.sops_files import VaultTransitKey
    value = canaries.new()
    data, pointer = _data(fmt, value, canaries.new("other"))
    path = sops_file(tmp_path / FORMATS[fmt], data, [VaultTransitKey(vault)])
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}{pointer}", "VAULT_TOKEN": vault.root_token,
                                      "VAULT_ADDR": vault.url, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["PW"] == value and "VAULT_TOKEN" not in env


def test_vault_transit_without_a_token_is_78_and_a_refusal_77(run_shim, probe, canaries, vault, tmp_path):
    from tests.helpers.sops_files import VaultTransitKey
    path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [VaultTransitKey(vault)])
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/pw", "VAULT_ADDR": vault.url,
                                      "HOME": str(tmp_path)})
    assert result.returncode == 78, result.stderr
    assert "vault transit" in result.stderr
    other = vault.create_token(allowed=["secret/data/app"])
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/pw", "VAULT_TOKEN": other,
                                      "VAULT_ADDR": vault.url, "HOME": str(tmp_path)})
    assert result.returncode == 77, result.stderr
    assert not probe.ran


# --- Azure Key Vault keys (the Azure double) -------------------------------------------------------

@pytest.fixture
def kv(tmp_path):
    from tests.doubles.azure import AzureKeyVaultDouble
    with AzureKeyVaultDouble(tmp_path / "azure") as double:
        yield double


def _azure_env(kv):
    # Challenge verification off (the double is on 127.0.0.1): only a listed vault is used.
    return {**kv.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
            "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false", "SHIM_SOPS_KEY_SERVICES": kv.url}


@pytest.mark.parametrize("fmt", ["yaml", "binary"])
def test_azure_key_vault_key(fmt, run_shim, probe, canaries, kv, tmp_path):
    from tests.helpers.sops_files import AzureKey
    value = canaries.new()
    data, pointer = _data(fmt, value, canaries.new("other"))
    path = sops_file(tmp_path / FORMATS[fmt], data, [AzureKey(kv)])
    result = _exec(run_shim, probe, {**_azure_env(kv), "PW": f"ref+sops://{path}{pointer}",
                                      "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PW"] == value
    assert kv.count(method="POST") >= 1


def test_azure_key_vault_refusal_is_77(run_shim, probe, canaries, kv, tmp_path):
    from tests.helpers.sops_files import AzureKey
    key = AzureKey(kv)
    path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [key])
    kv.forbid(kv.managed_identity_client_id)
    result = _exec(run_shim, probe, {**_azure_env(kv), "PW": f"ref+sops://{path}#/pw",
                                      "HOME": str(tmp_path)})
    assert result.returncode == 77, result.stderr
    assert "azure key vault" in result.stderr and not probe.ran


# --- encryption rules and key locations ----------------------------------------------------------

def test_encrypted_regex_and_mac_only_encrypted_as_sops_applies_them(run_shim, probe, canaries, age_key,
                                                                      tmp_path):
    from shim.providers.sops.tree import Rules
    value = canaries.new()
    rules = Rules(encrypted_regex="^(data|stringData)$", mac_only_encrypted=True)
    path = sops_file(tmp_path / "secret.yaml", {"metadata": {"name": "app"}, "data": {"password": value}},
                     [age_key], rules=rules)
    text = path.read_text()
    assert "name: app" in text and value not in text
    # With mac_only_encrypted, values left in plain text are outside the MAC: renaming is allowed.
    path.write_text(text.replace("name: app", "name: renamed"))
    result = _exec(run_shim, probe, {"PW": f"ref+sops://{path}#/data/password",
                                      "NAME": f"ref+sops://{path}#/metadata/name",
                                      "SOPS_AGE_KEY": age_key.secret})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert (env["PW"], env["NAME"]) == (value, "renamed")


def test_age_key_under_xdg_config_home(run_shim, probe, canaries, age_key, tmp_path):
    value = canaries.new()
    path = sops_file(tmp_path / "s.env", {"K": value}, [age_key])
    keys = tmp_path / "xdg" / "sops" / "age" / "keys.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text(age_key.secret + "\n")
    result = _exec(run_shim, probe, {"K": f"ref+sops://{path}#/K", "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                                      "HOME": str(tmp_path / "nothing-here")})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["K"] == value


def test_a_passphrase_protected_pgp_key_fails_without_waiting_for_a_prompt(run_shim, probe, canaries,
                                                                           tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", canaries.new("passphrase"), "--quick-gen-key",
                    "locked <locked@example.invalid>", "future-default", "default", "never"],
                   check=True, capture_output=True, timeout=60)
    pgp = PgpKey.__new__(PgpKey)
    import gnupg
    pgp.home, pgp.gpg = str(home), gnupg.GPG(gnupghome=str(home))
    pgp.fingerprint = pgp.gpg.list_keys(secret=True)[0]["fingerprint"]
    path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [pgp])
    result = run_shim(["exec", "--", *probe.argv], {"PW": f"ref+sops://{path}#/pw", "GNUPGHOME": str(home)},
                      timeout=60)
    assert result.returncode == 77, result.stderr
    assert "pgp" in result.stderr and not probe.ran
