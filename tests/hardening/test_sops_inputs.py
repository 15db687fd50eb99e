"""sops files and age keys as hostile input: one line, the documented code, no hang, no value.

Files are FIFOs, devices, huge, not UTF-8, not the format, nested without end,
or sops-looking with a broken envelope; the age key file may be any of those
too. And a leak sweep over log formats and verbosity for each sops outcome.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest

from tests.helpers.sops_files import AgeKey, sops_file


@pytest.fixture
def age_key():
    return AgeKey()


def _run(run_shim, env, reference):
    return run_shim(["exec", "--", "true"], {"SECRET": reference, **env}, timeout=30)


def _one_line(result, code):
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_fifo_at_the_path_does_not_hang(run_shim, age_key, tmp_path):
    fifo = tmp_path / "s.yaml"
    os.mkfifo(fifo)
    result = _run(run_shim, {"SOPS_AGE_KEY": age_key.secret}, f"ref+sops://{fifo}#/a")
    _one_line(result, 66)


def test_a_device_at_the_path_is_refused(run_shim, age_key):
    result = _run(run_shim, {"SOPS_AGE_KEY": age_key.secret}, "ref+sops:///dev/zero#/a")
    _one_line(result, 66)


def test_a_huge_file_is_refused_before_reading(run_shim, age_key, tmp_path):
    path = tmp_path / "s.json"
    with open(path, "wb") as stream:
        stream.truncate(64 * 1024 * 1024)
    result = _run(run_shim, {"SOPS_AGE_KEY": age_key.secret}, f"ref+sops://{path}#/a")
    _one_line(result, 65)


def test_a_missing_file_is_66(run_shim, age_key, tmp_path):
    result = _run(run_shim, {"SOPS_AGE_KEY": age_key.secret}, f"ref+sops://{tmp_path}/absent.yaml#/a")
    _one_line(result, 66)


@pytest.mark.parametrize("name, content", [
    ("s.yaml", b"\xff\xfe not utf-8"),
    ("s.yaml", b"a: [unclosed\n"),
    ("s.yaml", b"- a list\n- at the top\n"),
    ("s.yaml", b"a: 1\n"),                                   # no sops metadata
    ("s.yaml", b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n"),  # nested without end
    ("s.json", b"[1, 2]"),
    ("s.json", b'{"a": "x", "sops": "not a mapping"}'),
    ("s.json", b'{"a": "x", "sops": {"lastmodified": "yesterday", "mac": ""}}'),
    ("s.env", b"no equals sign here\n"),
    ("s.ini", b"[s]\nk = v\n"),
    ("s.ini", b'[sops]\nmac = """never closed\n'),
    ("s.env", b"sops_age__list_x__map_enc=1\nsops_lastmodified=2024-01-01T00:00:00Z\n"),
])
def test_malformed_files_are_65(run_shim, age_key, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    result = _run(run_shim, {"SOPS_AGE_KEY": age_key.secret}, f"ref+sops://{path}#/a")
    _one_line(result, 65)
    assert str(path) in result.stderr


def test_a_value_that_is_not_sops_form_is_a_mac_mismatch(run_shim, canaries, age_key, tmp_path):
    value = canaries.new()
    path = sops_file(tmp_path / "s.env", {"A": canaries.new()}, [age_key])
    path.write_text(path.read_text().replace(path.read_text().split("\n")[0], f"A={value}"))
    result = _run(run_shim, {"SOPS_AGE_KEY": age_key.secret}, f"ref+sops://{path}#/A")
    _one_line(result, 65)
    assert "MAC mismatch" in result.stderr


def test_shamir_key_groups_are_78_saying_so(run_shim, age_key, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"a": "", "sops": {
        "lastmodified": "2024-01-01T00:00:00Z", "mac": "", "shamir_threshold": 2,
        "key_groups": [{"age": [{"recipient": age_key.recipient, "enc": "x"}]},
                       {"age": [{"recipient": age_key.recipient, "enc": "y"}]}]}}))
    result = _run(run_shim, {"SOPS_AGE_KEY": age_key.secret}, f"ref+sops://{path}#/a")
    _one_line(result, 78)
    assert "Shamir" in result.stderr


def test_unknown_format_option_is_64(run_shim, tmp_path):
    result = _run(run_shim, {}, f"ref+sops://{tmp_path}/s?format=toml#/a")
    _one_line(result, 64)


@pytest.mark.parametrize("kind", ["fifo", "device", "huge", "directory", "garbage"])
def test_a_hostile_age_key_file_is_78_without_quoting_it(run_shim, canaries, age_key, tmp_path, kind):
    path = sops_file(tmp_path / "s.yaml", {"a": canaries.new()}, [age_key])
    key_file = tmp_path / "age_key"
    if kind == "fifo":
        os.mkfifo(key_file)
    elif kind == "device":
        key_file = "/dev/zero"
    elif kind == "huge":
        with open(key_file, "wb") as stream:
            stream.truncate(16 * 1024 * 1024)
    elif kind == "directory":
        key_file.mkdir()
    else:
        key_file.write_text("AGE-SECRET-KEY-1" + canaries.new("not-a-key").upper() + "\n")
    result = _run(run_shim, {"SOPS_AGE_KEY_FILE": str(key_file), "HOME": str(tmp_path)},
                  f"ref+sops://{path}#/a")
    assert result.returncode in (65, 78), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


OUTCOMES = {"ok": 0, "tampered": 65, "wrong_key": 77, "no_key": 78}


def _outcome_env(outcome, path, age_key):
    if outcome == "tampered":
        path.write_text(path.read_text().replace("NOTE_unencrypted=x", "NOTE_unencrypted=y"))
    if outcome == "no_key":
        return {}
    return {"SOPS_AGE_KEY": (AgeKey() if outcome == "wrong_key" else age_key).secret}


SWEEP = list(itertools.product(OUTCOMES, ["text", "json"], [[], ["-vv"], ["-q"]]))


@pytest.mark.parametrize("outcome, log_format, verbosity", SWEEP,
                         ids=[f"{o}-{f}-{len(v)}" for o, f, v in SWEEP])
def test_no_canary_in_any_output(run_shim, canaries, age_key, tmp_path, outcome, log_format, verbosity):
    path = sops_file(tmp_path / "s.env", {"A": canaries.new(), "NOTE_unencrypted": "x"}, [age_key])
    env = {"SECRET": f"ref+sops://{path}#/A", "HOME": str(tmp_path),
           **_outcome_env(outcome, path, age_key)}
    audit = tmp_path / "audit.log"
    result = run_shim(["exec", "--log-format", log_format, "--audit-file", str(audit), *verbosity,
                       "--", "true"], env)
    assert result.returncode == OUTCOMES[outcome], result.stderr
    canaries.assert_absent(audit.read_text() if audit.exists() else "", where="the audit file")
    # The age key itself is a secret too.
    assert age_key.secret not in result.stdout + result.stderr


# --- a key service that trickles its answer: --deadline holds (69), never a hang ------------------
#
# A client library's timeout is per socket read: an answer sent a byte at a time never trips it.
# Only the providers' runner (mechanism.call_within) ends such a call at the deadline.

DEADLINE = 3.0
HANGING = 60    # far past the deadline: the old code would still be reading here


def _timed(run_shim, env, reference):
    import time
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", f"{DEADLINE:g}s", "--", "true"],
                      {"SECRET": reference, **env}, timeout=HANGING)
    return result, time.monotonic() - started


def test_a_kms_answer_trickling_is_69_at_the_deadline(run_shim, canaries, tmp_path):
    import boto3

    from tests.helpers.aws_moto import AwsProxy, MotoServer
    from tests.helpers.sops_files import KmsKey
    server = MotoServer()
    proxy = AwsProxy(server.host, server.port)
    try:
        client = boto3.client("kms", region_name="us-east-1", endpoint_url=server.url,
                              aws_access_key_id="testing", aws_secret_access_key="testing")  # pragma: allowlist secret
        path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [KmsKey(client)])
        proxy.trickle("Decrypt", 1.0)
        env = {"AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": canaries.new("aws-secret-key"),
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
               "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)}
        result, elapsed = _timed(run_shim, env, f"ref+sops://{path}#/pw")
    finally:
        proxy.stop()
        server.stop()
    _one_line(result, 69)
    # Named by the key service: the sops reader's own bound, not only the resolver's outer one.
    assert "AWS KMS" in result.stderr and "deadline" in result.stderr
    assert proxy.count("Decrypt") >= 1
    assert elapsed < HANGING / 2


def test_a_vault_transit_answer_trickling_is_69_at_the_deadline(run_shim, canaries, tmp_path):
    from tests.doubles.vault import VaultDouble
    from tests.helpers.sops_files import VaultTransitKey
    with VaultDouble() as vault:
        path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [VaultTransitKey(vault)])
        vault.trickle("transit/decrypt", 1.0)
        result, elapsed = _timed(run_shim, {"VAULT_TOKEN": vault.root_token, "VAULT_ADDR": vault.url,
                                            "HOME": str(tmp_path)}, f"ref+sops://{path}#/pw")
    _one_line(result, 69)
    # Named by the key service: the sops reader's own bound, not only the resolver's outer one.
    assert "Vault transit" in result.stderr and "deadline" in result.stderr
    assert elapsed < HANGING / 2
