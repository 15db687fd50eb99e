"""The real sops binary writes the files, shim reads them: every format, age, PGP, Vault transit.

sops 3.11 encrypts YAML, JSON, dotenv, INI and binary files here with keys made at test time
(age-keygen, gpg in a temporary GNUPGHOME, a transit key on the real OpenBao); shim reads each
one whole, through a `#/pointer` and with `--import`. Files shim writes (`dev-init --encrypt`)
are read back by `sops decrypt`, and sops and shim agree on every tampered file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.real.conftest import unique_path

# Each format: the plaintext sops encrypts, the pointer to the password, and the whole file as
# shim delivers it (JSON text, sorted keys; dotenv and INI values are strings in sops too).
FORMATS = {
    "yaml": ("app.yaml", "db:\n    password: {v}\n    port: 5432\n", "#/db/password",
             lambda v: {"db": {"password": v, "port": 5432}}),
    "json": ("app.json", '{{"db": {{"password": "{v}", "port": 5432}}}}\n', "#/db/password",
             lambda v: {"db": {"password": v, "port": 5432}}),
    "dotenv": ("app.env", "DB_PASSWORD={v}\nPORT=5432\n", "#/DB_PASSWORD",
               lambda v: {"DB_PASSWORD": v, "PORT": "5432"}),
    "ini": ("app.ini", "[db]\npassword = {v}\nport = 5432\n", "#/db/password",
            lambda v: {"db": {"password": v, "port": "5432"}}),
    "binary": ("app.bin", "{v}\n", "", None),
}


def _encrypted(sops, tmp_path: Path, fmt: str, value: str, key_args, env) -> Path:
    name, template, _pointer, _whole = FORMATS[fmt]
    plain = tmp_path / name
    plain.write_text(template.format(v=value))
    encrypted = sops.run("encrypt", *key_args, str(plain), env=env).stdout
    assert value.encode() not in encrypted
    target = tmp_path / name.replace(".", ".enc.")
    target.write_bytes(encrypted)
    plain.unlink()
    return target


def _reads_every_way(run_shim, probe, fmt, path, value, env):
    """Whole file, pointer and --import in one run; no key or token reaches the program."""
    _name, _template, pointer, whole = FORMATS[fmt]
    variables = {"WHOLE": f"ref+sops://{path}"}
    extra = []
    if pointer:
        variables["PW"] = f"ref+sops://{path}{pointer}"
        extra = ["--import", f"ref+sops://{path}?prefix=IMP_"]
    result = run_shim(["exec", "--deadline", "20s", *extra, "--", *probe.argv],
                      {**env, **variables}, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = probe.read()["env"]
    if whole is None:           # binary: the original file's text, less its trailing newline
        assert seen["WHOLE"] == value      # (one rule for every source: docs/references.md)
    else:
        assert json.loads(seen["WHOLE"]) == whole(value)
        assert seen["PW"] == value
        imported = {name[len("IMP_"):]: text for name, text in seen.items()
                    if name.startswith("IMP_")}
        expected = {re.sub(r"[^A-Za-z0-9_]", "_", key.upper()):
                    item if isinstance(item, str) else json.dumps(item, sort_keys=True)
                    for key, item in whole(value).items()}
        assert imported == expected
    for name in ("SOPS_AGE_KEY_FILE", "VAULT_TOKEN"):
        assert name not in seen, name
    return seen


# --- age ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_age_files_sops_writes_read_whole_by_pointer_and_by_import(fmt, sops, age_identity, run_shim,
                                                                   probe, canaries, tmp_path):
    recipient, identity = age_identity()
    env = {"SOPS_AGE_KEY_FILE": str(identity)}
    value = canaries.new(fmt)
    path = _encrypted(sops, tmp_path, fmt, value, ["--age", recipient], env)
    _reads_every_way(run_shim, probe, fmt, path, value, {**env, "HOME": str(tmp_path)})


def test_json_integers_stay_integers_as_sops_decrypt_prints_them(sops, age_identity, run_shim, probe,
                                                                 canaries, tmp_path):
    recipient, identity = age_identity()
    env = {"SOPS_AGE_KEY_FILE": str(identity)}
    plain = tmp_path / "n.json"
    plain.write_text(json.dumps({"port": 5432, "big": 12345678901234567890, "ratio": 1.5,
                                 "one": 1.0, "token": canaries.new()}))
    path = tmp_path / "n.enc.json"
    path.write_bytes(sops.run("encrypt", "--age", recipient, str(plain), env=env).stdout)
    printed = json.loads(sops.run("decrypt", str(path), env=env).stdout)
    result = run_shim(["exec", "--", *probe.argv],
                      {**env, **{name.upper(): f"ref+sops://{path}#/{name}"
                                 for name in ("port", "big", "ratio", "one")}})
    assert result.returncode == 0, result.stderr
    seen = probe.read()["env"]
    # `sops decrypt` prints 5432, 12345678901234567000, 1.5 and 1: so does shim.
    assert seen["PORT"] == "5432" and seen["BIG"] == "12345678901234567000"
    assert seen["RATIO"] == "1.5" and seen["ONE"] == "1"
    assert {name: json.loads(seen[name.upper()]) for name in ("port", "big", "ratio", "one")} == \
        {name: printed[name] for name in ("port", "big", "ratio", "one")}


def test_multi_document_yaml_reads_the_first_document_as_sops_extract_does(sops, age_identity, run_shim,
                                                                           probe, canaries, tmp_path):
    recipient, identity = age_identity()
    env = {"SOPS_AGE_KEY_FILE": str(identity)}
    first, second = canaries.new("first"), canaries.new("second")
    plain = tmp_path / "multi.yaml"
    plain.write_text(f"password: {first}\nport: 5432\n---\npassword: {second}\nonly_second: x\n")
    path = tmp_path / "multi.enc.yaml"
    path.write_bytes(sops.run("encrypt", "--age", recipient, str(plain), env=env).stdout)
    assert sops.run("decrypt", "--extract", '["password"]', str(path), env=env).stdout.decode() == first
    result = run_shim(["exec", "--import", f"ref+sops://{path}?prefix=IMP_", "--", *probe.argv],
                      {**env, "PW": f"ref+sops://{path}#/password", "WHOLE": f"ref+sops://{path}"})
    assert result.returncode == 0, result.stderr
    seen = probe.read()["env"]
    assert seen["PW"] == first
    assert json.loads(seen["WHOLE"]) == {"password": first, "port": 5432}
    assert (seen["IMP_PASSWORD"], seen["IMP_PORT"]) == (first, "5432")
    assert "IMP_ONLY_SECOND" not in seen
    # A key only the second document has is not found, as sops --extract does not find it.
    assert sops.run("decrypt", "--extract", '["only_second"]', str(path), env=env,
                    check=False).returncode != 0
    result = run_shim(["exec", "--", *probe.argv], {**env, "X": f"ref+sops://{path}#/only_second"})
    assert result.returncode == 66, result.stderr
    # The MAC covers every document: the second one changed is refused by both.
    text = path.read_text()
    cut = text.index("\n---\n")
    tampered = text[:cut] + text[cut:].replace("only_second: ENC[", "only_second: ENC[", 1)
    tampered = re.sub(r"(?m)^(only_second: ENC\[AES256_GCM,data:)(.)", lambda m: m.group(1) +
                      ("B" if m.group(2) != "B" else "C"), tampered)
    path.write_text(tampered)
    assert sops.run("decrypt", str(path), env=env, check=False).returncode != 0
    result = run_shim(["exec", "--", *probe.argv], {**env, "PW": f"ref+sops://{path}#/password"})
    assert result.returncode == 65, result.stderr


# --- PGP ---------------------------------------------------------------------------------

@pytest.fixture
def gnupg_home(tmp_path_factory):
    """A key pair without passphrase in its own short GNUPGHOME (the agent's socket path is short)."""
    home = Path(subprocess.run(["mktemp", "-d", "/tmp/gpgXXXXXX"], capture_output=True, text=True,
                               check=True).stdout.strip())
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                    "shim real tier <shim-real@example.invalid>", "default", "default", "never"],
                   env=env, check=True, capture_output=True, timeout=60)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env,
                             check=True, capture_output=True, text=True, timeout=30).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    yield str(home), fingerprint
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30)
    subprocess.run(["rm", "-rf", str(home)], check=False)


@pytest.mark.parametrize("fmt", ["yaml", "json", "dotenv", "ini", "binary"])
def test_pgp_files_sops_writes(fmt, sops, gnupg_home, run_shim, probe, canaries, tmp_path):
    home, fingerprint = gnupg_home
    env = {"GNUPGHOME": home}
    value = canaries.new(fmt)
    path = _encrypted(sops, tmp_path, fmt, value, ["--pgp", fingerprint], env)
    _reads_every_way(run_shim, probe, fmt, path, value, {**env, "HOME": str(tmp_path)})


# --- Vault transit on the real OpenBao -------------------------------------------------------

@pytest.fixture
def transit(openbao):
    """A transit key on the session's OpenBao: (the sops flag's URI, shim's environment)."""
    mount = unique_path("transit")
    openbao.ok("POST", f"sys/mounts/{mount}", {"type": "transit"})
    openbao.ok("POST", f"{mount}/keys/sops")
    return f"{openbao.address}/v1/{mount}/keys/sops", openbao.vault_env()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_transit_files_sops_writes(fmt, sops, transit, run_shim, probe, canaries, tmp_path):
    uri, vault_env = transit
    value = canaries.new(fmt)
    path = _encrypted(sops, tmp_path, fmt, value, ["--hc-vault-transit", uri],
                      {"VAULT_TOKEN": vault_env["VAULT_TOKEN"], "HOME": str(tmp_path)})
    _reads_every_way(run_shim, probe, fmt, path, value, {**vault_env, "HOME": str(tmp_path)})


def test_a_transit_token_the_policy_refuses_is_77(sops, transit, openbao, run_shim, probe, canaries,
                                                  tmp_path):
    uri, vault_env = transit
    path = _encrypted(sops, tmp_path, "yaml", canaries.new(), ["--hc-vault-transit", uri],
                      {"VAULT_TOKEN": vault_env["VAULT_TOKEN"], "HOME": str(tmp_path)})
    token = openbao.ok("POST", "auth/token/create", {"policies": ["default"], "ttl": "5m"})
    result = run_shim(["exec", "--", *probe.argv],
                      {"VAULT_ADDR": openbao.address, "VAULT_TOKEN": token["auth"]["client_token"],
                       "HOME": str(tmp_path), "PW": f"ref+sops://{path}#/db/password"})
    assert result.returncode == 77, result.stderr
    assert str(path) in result.stderr and "vault transit" in result.stderr
    assert not probe.ran


# --- what shim writes, sops reads ------------------------------------------------------------

def test_dev_init_encrypt_is_read_by_sops_decrypt(sops, age_identity, run_shim, tmp_path):
    recipient, identity = age_identity()
    other, other_identity = age_identity("teammate")
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)
    (project / "compose.yaml").write_text(
        "services:\n  app:\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD:-CHANGEME_DB_PASSWORD}\n"
        "      API_KEY: CHANGEME_API_KEY\n")
    result = run_shim(["dev-init", "--encrypt", f"{recipient},{other}"], cwd=project)
    assert result.returncode == 0, result.stderr
    path = project / ".secrets" / "dev.enc.env"
    for identity_file in (identity, other_identity):
        printed = sops.run("decrypt", str(path), env={"SOPS_AGE_KEY_FILE": str(identity_file)}).stdout
        pairs = dict(line.split("=", 1) for line in printed.decode().splitlines())
        assert sorted(pairs) == ["API_KEY", "DB_PASSWORD"]
        assert all(len(value) >= 40 for value in pairs.values())
    # The dev env files it makes stay out of git (docs/sops.md).
    ignored = subprocess.run(["git", "check-ignore", "-q", ".secrets/dev.env"], cwd=project, timeout=30)
    assert ignored.returncode == 0


# --- tampering: sops and shim both refuse ------------------------------------------------------

def _tamper_value(text: str) -> str:
    return text.replace("note_unencrypted: plain", "note_unencrypted: changed")


def _tamper_mac(text: str) -> str:
    return re.sub(r"mac: ENC\[AES256_GCM,data:(.)", lambda m: "mac: ENC[AES256_GCM,data:" +
                  ("A" if m.group(1) != "A" else "B"), text)


def _swap_values(text: str) -> str:
    first = re.search(r"password: (ENC\[[^\]]+\])", text).group(1)
    second = re.search(r"user: (ENC\[[^\]]+\])", text).group(1)
    return text.replace(first, "@@").replace(second, first).replace("@@", second)


TAMPERING = {"value_changed": _tamper_value, "mac_changed": _tamper_mac,
             "values_swapped": _swap_values}


@pytest.mark.parametrize("how", sorted(TAMPERING) + ["data_key_of_another_file"])
def test_sops_and_shim_both_refuse_a_tampered_file(how, sops, age_identity, run_shim, probe, canaries,
                                                   tmp_path):
    recipient, identity = age_identity()
    env = {"SOPS_AGE_KEY_FILE": str(identity)}
    plain = tmp_path / "t.yaml"

    def encrypt(name):
        plain.write_text(f"password: {canaries.new()}\nuser: {canaries.new()}\n"
                         "note_unencrypted: plain\n")
        target = tmp_path / name
        target.write_bytes(sops.run("encrypt", "--age", recipient, str(plain), env=env).stdout)
        return target

    path = encrypt("t.enc.yaml")
    if how == "data_key_of_another_file":
        # The age stanza of another file encrypted to the same recipient: a different data key.
        other = encrypt("other.enc.yaml").read_text()
        armor = re.compile(r"-----BEGIN AGE ENCRYPTED FILE-----.*?-----END AGE ENCRYPTED FILE-----",
                           re.DOTALL)
        path.write_text(armor.sub(lambda _m: armor.search(other).group(0), path.read_text()))
    else:
        path.write_text(TAMPERING[how](path.read_text()))
    assert sops.run("decrypt", str(path), env=env, check=False).returncode != 0
    result = run_shim(["exec", "--", *probe.argv], {**env, "PW": f"ref+sops://{path}#/password"})
    assert result.returncode == 65, result.stderr
    assert str(path) in result.stderr and "MAC mismatch" in result.stderr
    assert not probe.ran


def test_what_the_mac_does_not_cover_passes_sops_and_shim_alike(sops, age_identity, run_shim, probe,
                                                              canaries, tmp_path):
    """docs/sops.md: the MAC covers values, not the names of values left unencrypted."""
    recipient, identity = age_identity()
    env = {"SOPS_AGE_KEY_FILE": str(identity)}
    plain = tmp_path / "t.yaml"
    plain.write_text(f"password: {canaries.new()}\nnote_unencrypted: plain\n")
    path = tmp_path / "t.enc.yaml"
    path.write_bytes(sops.run("encrypt", "--age", recipient, str(plain), env=env).stdout)
    path.write_text(path.read_text().replace("note_unencrypted:", "other_unencrypted:"))
    assert b"other_unencrypted: plain" in sops.run("decrypt", str(path), env=env).stdout
    result = run_shim(["exec", "--", *probe.argv], {**env, "N": f"ref+sops://{path}#/other_unencrypted"})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["N"] == "plain"
    # Empty and null values add nothing to the hash: a key holding one passes both too.
    path.write_text(path.read_text().replace("password:", 'added: ""\nnothing: null\npassword:', 1))
    assert sops.run("decrypt", str(path), env=env, check=False).returncode == 0
    result = run_shim(["exec", "--", *probe.argv], {**env, "N": f"ref+sops://{path}#/added"})
    assert result.returncode == 0, result.stderr
    # An encrypted value's key is its additional data: renaming it is refused by both.
    path.write_text(path.read_text().replace("password:", "passwd:"))
    assert sops.run("decrypt", str(path), env=env, check=False).returncode != 0
    result = run_shim(["exec", "--", *probe.argv], {**env, "N": f"ref+sops://{path}#/passwd"})
    assert result.returncode == 65, result.stderr


# --- comment-based rules ------------------------------------------------------------------------

def test_a_comment_based_rule_is_78_as_unsupported_configuration(sops, age_identity, run_shim, probe,
                                                                 canaries, tmp_path):
    recipient, identity = age_identity()
    env = {"SOPS_AGE_KEY_FILE": str(identity)}
    (tmp_path / ".sops.yaml").write_text(
        f"creation_rules:\n  - age: {recipient}\n    encrypted_comment_regex: 'sops:enc'\n")
    plain = tmp_path / "c.yaml"
    plain.write_text(f"# sops:enc\npassword: {canaries.new()}\nother: x\n")
    path = tmp_path / "c.enc.yaml"
    path.write_bytes(sops.run("encrypt", str(plain), env=env, cwd=tmp_path).stdout)
    assert "encrypted_comment_regex" in path.read_text()
    result = run_shim(["exec", "--", *probe.argv], {**env, "PW": f"ref+sops://{path}#/password"})
    assert result.returncode == 78, result.stderr
    assert str(path) in result.stderr and "comment" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not probe.ran


# --- the suite's own writer (tests/helpers/sops_files.py) agrees with sops --------------------------

@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_files_the_test_helper_writes_are_read_by_sops_decrypt(fmt, sops, canaries, tmp_path):
    """The integration tests' files come from shim's writer; sops must read them the same."""
    from tests.helpers.sops_files import AgeKey, sops_file
    key = AgeKey()
    identity = tmp_path / "age_key"
    identity.write_text(key.secret + "\n")
    value = canaries.new(fmt)
    name, _template, _pointer, whole = FORMATS[fmt]
    data = value if whole is None else whole(value)
    if fmt == "ini":    # INI has no numbers: sops reads every value as text
        data = {"db": {"password": value, "port": "5432"}}
    path = sops_file(tmp_path / name.replace(".", ".enc."), data, [key])
    printed = sops.run("decrypt", str(path), env={"SOPS_AGE_KEY_FILE": str(identity)}).stdout.decode()
    if fmt == "binary":
        assert printed == value
    elif fmt == "json":
        assert json.loads(printed) == data
    elif fmt == "yaml":
        import yaml
        assert yaml.safe_load(printed) == data
    elif fmt == "dotenv":
        assert dict(line.split("=", 1) for line in printed.splitlines()) == data
    else:
        import configparser
        parser = configparser.ConfigParser()
        parser.read_string(printed)
        assert {section: dict(parser[section]) for section in parser.sections()} == data


def test_transit_files_the_test_helper_writes_are_read_by_sops_decrypt(sops, canaries, tmp_path):
    """The helper's transit stanza (on the Vault double) is what sops itself would write."""
    from tests.doubles.vault import VaultDouble
    from tests.helpers.sops_files import VaultTransitKey, sops_file
    value = canaries.new()
    with VaultDouble() as vault:
        path = sops_file(tmp_path / "t.enc.yaml", {"pw": value}, [VaultTransitKey(vault)])
        printed = sops.run("decrypt", "--extract", '["pw"]', str(path),
                           env={"VAULT_TOKEN": vault.root_token, "HOME": str(tmp_path)}).stdout
    assert printed.decode() == value
