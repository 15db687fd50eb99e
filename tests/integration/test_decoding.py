"""`?encoding=base64|base64url|hex`: decoded after the key is selected, from files and from Vault."""

from __future__ import annotations

import base64
import json

import pytest

from tests.integration.test_asfiles import tmpfs  # noqa: F401 (fixture)
from tests.integration.test_aws import aws, exec_env, moto_server, proxy  # noqa: F401 (fixtures)
from tests.integration.test_vault import exec_probe, home, token_env, vault  # noqa: F401 (fixtures)

ENCODE = {
    "base64": lambda data: base64.b64encode(data).decode(),
    "base64url": lambda data: base64.urlsafe_b64encode(data).decode().rstrip("="),
    "hex": lambda data: data.hex(),
}


def canary_bytes(canaries, label):
    # ?>~ turn into + / in base64 and - _ in base64url: both alphabets are exercised.
    return (canaries.new(label) + " ?>~\n").encode()


@pytest.mark.parametrize("encoding", sorted(ENCODE))
def test_file_whole_and_selected_key(run_shim, probe, canaries, tmp_path, encoding):
    whole, inner = canary_bytes(canaries, "whole"), canary_bytes(canaries, "inner")
    (tmp_path / "whole").write_text(ENCODE[encoding](whole) + "\n")
    (tmp_path / "doc.json").write_text(json.dumps({"a": {"b": ENCODE[encoding](inner)}}))
    env = {"WHOLE": f"ref+file://{tmp_path}/whole?encoding={encoding}",
           "INNER": f"ref+file://{tmp_path}/doc.json?encoding={encoding}#/a/b",
           "RAW": f"ref+file://{tmp_path}/doc.json#/a/b"}
    result = run_shim(["exec", "--", *probe.argv], env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["WHOLE"] == whole.decode()
    assert child["INNER"] == inner.decode()
    assert child["RAW"] == ENCODE[encoding](inner)


def test_check_shows_the_encoding_in_the_canonical_reference(run_shim, canaries, tmp_path):
    (tmp_path / "x").write_text(ENCODE["hex"](canary_bytes(canaries, "check")))
    result = run_shim(["check", "--json"], {"X": f"ref+file://{tmp_path}/x?encoding=hex"})
    assert result.returncode == 0, result.stderr
    assert f"ref+file://{tmp_path}/x?encoding=hex" in result.stdout


def test_vault_kv2_key_decoded_one_read_shared_with_the_raw_key(vault, run_shim, probe, canaries, home):
    keystore = b"\x00\x01binary\xff" + canaries.new("keystore").encode()
    text = canary_bytes(canaries, "text")
    vault.kv2_put("secret", "app", {"text": ENCODE["base64"](text), "keystore": ENCODE["base64"](keystore)})
    env = token_env(vault, canaries, home, DECODED="ref+vault://secret/app?encoding=base64#/text",
                    ENCODED="ref+vault://secret/app#/text")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["DECODED"] == text.decode()
    assert child["ENCODED"] == ENCODE["base64"](text)
    assert vault.count("secret/data/app", "GET") == 1

    # Decoded bytes that are no text cannot go into the environment.
    probe.output.unlink()
    env = token_env(vault, canaries, home, KEYSTORE="ref+vault://secret/app?encoding=base64#/keystore")
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 65, result.stderr
    assert "KEYSTORE (ref+vault://secret/app?...#...)" in result.stderr   # quoted up to its path
    assert not probe.ran


def test_aws_secret_decoded(run_shim, probe, canaries, aws):  # noqa: F811
    text = canary_bytes(canaries, "aws")
    aws.secret("app/cert", json.dumps({"pem": ENCODE["hex"](text)}))
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"CERT": "ref+awssecrets://app/cert?encoding=hex#/pem"}))
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["CERT"] == text.decode()


def test_azure_binary_certificate_decoded_into_a_file(run_shim, probe, canaries, tmpfs, tmp_path):  # noqa: F811
    from tests.integration.test_azure import host, managed_identity_env
    from tests.doubles.azure import AzureKeyVaultDouble

    pfx = b"\x30\x82\x00\xff" + canaries.new("pfx").encode() + b"\x00"
    text = canary_bytes(canaries, "azure")
    with AzureKeyVaultDouble(tmp_path) as kv:
        kv.add_secret("tls-pfx", ENCODE["base64"](pfx), content_type="application/x-pkcs12")
        kv.add_secret("note", ENCODE["base64url"](text))
        env = managed_identity_env(kv, PFX=f"ref+azurekeyvault://{host(kv)}/tls-pfx?encoding=base64",
                                   NOTE=f"ref+azurekeyvault://{host(kv)}/note?encoding=base64url")
        refused = run_shim(["exec", "--", *probe.argv], env)
        assert refused.returncode == 65 and "PFX (ref+azurekeyvault://" in refused.stderr
        assert "not valid UTF-8" in refused.stderr and not probe.ran
        result = run_shim(["exec", "--as-files", str(tmpfs), "--as-files-only", "PFX", "--", *probe.argv], env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["PFX_FILE"] == f"{tmpfs}/PFX" and "PFX" not in child
    assert (tmpfs / "PFX").read_bytes() == pfx
    assert child["NOTE"] == text.decode()
