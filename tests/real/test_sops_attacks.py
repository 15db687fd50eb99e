"""A sops file is data: attacks on shim with files the real sops wrote and an attacker then edited.

The metadata outside the MAC (a key's vault_address, engine_path, key_name; the encryption rule's
regex) must never choose where the operator's Vault credentials go, which Vault path is called,
or how long shim spends: refused (77, naming the file) before any request, or bounded.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers.capture import CaptureListener
from tests.real.conftest import OpenBao, unique_path

DEADLINE = "5s"


@pytest.fixture
def capture():
    listener = CaptureListener()
    yield listener
    listener.stop()


@pytest.fixture
def transit_file(sops, openbao, canaries, tmp_path):
    """A YAML file real sops encrypted with a transit key on the session's OpenBao."""
    mount = unique_path("transit")
    openbao.ok("POST", f"sys/mounts/{mount}", {"type": "transit"})
    openbao.ok("POST", f"{mount}/keys/sops")
    plain = tmp_path / "app.yaml"
    plain.write_text(f"password: {canaries.new()}\n")
    path = tmp_path / "app.enc.yaml"
    path.write_bytes(sops.run("encrypt", "--hc-vault-transit",
                              f"{openbao.address}/v1/{mount}/keys/sops", str(plain),
                              env={"VAULT_TOKEN": openbao.root_token, "HOME": str(tmp_path)}).stdout)
    return path, mount


def _exec(run_shim, probe, path, env):
    return run_shim(["exec", "--deadline", DEADLINE, "--", *probe.argv],
                    {"PW": f"ref+sops://{path}#/password", **env}, timeout=60)


# --- issue 22, item 1: the file chooses where credentials go -------------------------------------

def test_a_file_naming_another_vault_gets_no_token(transit_file, openbao, capture, run_shim, probe,
                                                   canaries, tmp_path):
    path, _mount = transit_file
    path.write_text(path.read_text().replace(openbao.address, capture.url))
    token = canaries.new("vault-token")
    result = _exec(run_shim, probe, path, {"VAULT_ADDR": openbao.address, "VAULT_TOKEN": token,
                                           "HOME": str(tmp_path)})
    assert result.returncode == 77, result.stderr
    assert str(path) in result.stderr and "SHIM_SOPS_KEY_SERVICES" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert capture.connections == 0 and capture.received == b""
    assert not probe.ran


def test_a_file_naming_a_vault_collects_no_vault_token_file(transit_file, openbao, capture, run_shim,
                                                            probe, canaries, tmp_path):
    """No VAULT_ADDR at all (shim run on a laptop): ~/.vault-token must not follow the file."""
    path, _mount = transit_file
    path.write_text(path.read_text().replace(openbao.address, capture.url))
    home = tmp_path / "home"
    home.mkdir()
    (home / ".vault-token").write_text(canaries.new("vault-token-file"))
    result = _exec(run_shim, probe, path, {"HOME": str(home)})
    assert result.returncode == 77, result.stderr
    assert str(path) in result.stderr
    assert capture.connections == 0
    assert not probe.ran


def test_the_configured_vault_under_another_spelling_is_the_same_vault(transit_file, openbao,
                                                                      run_shim, probe, tmp_path):
    path, _mount = transit_file
    # A trailing slash and an upper-case host name the same server as VAULT_ADDR.
    result = _exec(run_shim, probe, path, {"VAULT_ADDR": openbao.address.replace("http", "HTTP") + "/",
                                           "VAULT_TOKEN": openbao.root_token, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr


def test_an_allow_listed_key_service_is_used_without_vault_addr(transit_file, openbao, run_shim,
                                                                probe, tmp_path):
    path, _mount = transit_file
    result = _exec(run_shim, probe, path, {"SHIM_SOPS_KEY_SERVICES": f"https://elsewhere.invalid,"
                                                                     f"{openbao.address}",
                                           "VAULT_TOKEN": openbao.root_token, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr


def test_another_scheme_for_the_same_host_is_another_service(transit_file, openbao, run_shim, probe,
                                                             tmp_path):
    """VAULT_ADDR=https://host does not allow a file's http://host (a token in clear text)."""
    path, _mount = transit_file
    result = _exec(run_shim, probe, path, {"VAULT_ADDR": openbao.address.replace("http:", "https:"),
                                           "VAULT_TOKEN": openbao.root_token, "HOME": str(tmp_path)})
    assert result.returncode == 77, result.stderr


# --- issue 22, item 3: engine_path / key_name reach any Vault path -----------------------------------

@pytest.fixture(scope="module")
def sealable_openbao(tmp_path_factory):
    """A server of this module's own: the attack seals it if it gets through."""
    server = OpenBao(tmp_path_factory.mktemp("openbao-sealable")).start()
    server.ok("POST", "sys/mounts/transit", {"type": "transit"})
    server.ok("POST", "transit/keys/sops")
    server.ok("POST", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
    yield server
    server.stop()


@pytest.mark.parametrize("field, hostile", [
    ("key_name", "../../sys/seal"),
    ("engine_path", "sys/seal/.."),
    ("engine_path", "transit/../../sys"),
    ("key_name", "sops/../../../sys/seal"),
    ("key_name", "sops?x=1"),
    ("engine_path", ""),
])
def test_transit_names_outside_the_grammar_never_reach_the_server(field, hostile, sops, sealable_openbao,
                                                                  run_shim, probe, canaries, tmp_path):
    server = sealable_openbao
    plain = tmp_path / "app.yaml"
    plain.write_text(f"password: {canaries.new()}\n")
    path = tmp_path / "app.enc.yaml"
    text = sops.run("encrypt", "--hc-vault-transit", f"{server.address}/v1/transit/keys/sops",
                    str(plain), env={"VAULT_TOKEN": server.root_token, "HOME": str(tmp_path)}
                    ).stdout.decode()
    current = {"key_name": "key_name: sops", "engine_path": "engine_path: transit"}[field]
    assert current in text
    path.write_text(text.replace(current, f"{field}: '{hostile}'"))
    result = _exec(run_shim, probe, path, {"VAULT_ADDR": server.address,
                                           "VAULT_TOKEN": server.root_token, "HOME": str(tmp_path)})
    assert result.returncode == 77, result.stderr
    assert str(path) in result.stderr and field in result.stderr
    assert server.ok("GET", "sys/seal-status")["sealed"] is False
    assert not probe.ran


def test_an_engine_path_that_is_not_a_transit_mount_writes_nothing(sops, sealable_openbao, run_shim,
                                                                   probe, canaries, tmp_path):
    """`kv1/app` passes the grammar; POST kv1/app/decrypt/sops would write a KV v1 secret with
    the operator's token. Vault's mount lookup says kv1/ is a KV mount: refused, no request."""
    server = sealable_openbao
    plain = tmp_path / "app.yaml"
    plain.write_text(f"password: {canaries.new()}\n")
    text = sops.run("encrypt", "--hc-vault-transit", f"{server.address}/v1/transit/keys/sops",
                    str(plain), env={"VAULT_TOKEN": server.root_token, "HOME": str(tmp_path)}
                    ).stdout.decode()
    path = tmp_path / "app.enc.yaml"
    path.write_text(text.replace("engine_path: transit", "engine_path: kv1/app"))
    result = _exec(run_shim, probe, path, {"VAULT_ADDR": server.address,
                                           "VAULT_TOKEN": server.root_token, "HOME": str(tmp_path)})
    assert result.returncode == 77, result.stderr
    assert "not a transit engine" in result.stderr and str(path) in result.stderr
    assert server.request("GET", "kv1/app/decrypt/sops")[0] == 404
    assert not probe.ran


# --- issue 22, item 7: a regex from the file ---------------------------------------------------------

CATASTROPHIC = "^(a+)+$"
NEEDLE = "a" * 30 + "!"     # Python's backtracking `re` would take hours on this key


def test_a_catastrophic_encrypted_regex_neither_hangs_exec_nor_scan(sops, age_identity, run_shim,
                                                                    probe, canaries, tmp_path):
    recipient, identity = age_identity()
    value = canaries.new()
    plain = tmp_path / "r.yaml"
    plain.write_text(f"aaaa: {value}\n{NEEDLE}: plain-{NEEDLE}\n")
    path = tmp_path / "r.enc.yaml"
    path.write_bytes(sops.run("encrypt", "--age", recipient, "--encrypted-regex", CATASTROPHIC,
                              str(plain), env={"SOPS_AGE_KEY_FILE": str(identity)}).stdout)
    plain.unlink()
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", DEADLINE, "--", *probe.argv],
                      {"SOPS_AGE_KEY_FILE": str(identity), "PW": f"ref+sops://{path}#/aaaa",
                       "N": f"ref+sops://{path}#/{NEEDLE}"}, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = probe.read()["env"]
    assert (seen["PW"], seen["N"]) == (value, f"plain-{NEEDLE}")
    result = run_shim(["scan", str(tmp_path)], timeout=60)
    assert result.returncode in (0, 1), result.stderr
    assert time.monotonic() - started < 60


# --- issue 22, item 9: shim scan reads the plaintext leaves of a sops file ------------------------------

PEM = "RSA " + "PRIVATE KEY"    # split, so that this file is not itself a finding


def test_scan_reports_a_secret_left_in_clear_by_encrypted_regex(sops, age_identity, run_shim,
                                                                canaries, tmp_path):
    recipient, identity = age_identity()
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"data:\n    token: {canaries.new()}\n"
                     f"config:\n    private_key: |\n        -----BEGIN {PEM}-----\n"
                     "        MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"  # pragma: allowlist secret
                     f"        -----END {PEM}-----\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    path = repo / "app.enc.yaml"
    path.write_bytes(sops.run("encrypt", "--age", recipient, "--encrypted-regex", "^data$",
                              str(plain), env={"SOPS_AGE_KEY_FILE": str(identity)}).stdout)
    plain.unlink()
    assert f"BEGIN {PEM}" in path.read_text()
    result = run_shim(["scan", str(repo)], timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    findings = result.stdout.splitlines()
    # The key left in clear is found; what sops encrypted and its metadata (age stanzas, the
    # MAC) are never findings.
    assert len(findings) == 1 and findings[0].endswith(": plaintext-secret:private-key"), findings
    line = int(findings[0].split(":")[-3])
    # detect-secrets reads YAML and names the line of the block scalar's key.
    assert "private_key:" in path.read_text().splitlines()[line - 1]
