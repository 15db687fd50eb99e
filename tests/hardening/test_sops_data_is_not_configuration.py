"""sops files written by an attacker: data may choose values, never where credentials go, how much
memory or CPU shim spends, or what `shim scan` skips.

The attacker edits metadata outside the MAC (an azure_kv vault_url, a KMS key's ARN), writes
a YAML alias bomb or an endless regex, or hides plaintext behind a few lines of fake metadata.
"""

from __future__ import annotations


import pytest

from tests.helpers.capture import CaptureListener
from tests.helpers.sops_files import AgeKey, AzureKey, sops_file

DEADLINE = "5s"
# A token detect-secrets recognizes, made up here (not a credential).
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # pragma: allowlist secret


@pytest.fixture
def age_key():
    return AgeKey()


def _one_line(result, code):
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture
def capture():
    listener = CaptureListener()
    yield listener
    listener.stop()


# --- item 1: azure_kv.vault_url with challenge verification off ------------------------------------

def test_a_file_naming_another_key_vault_gets_no_azure_token(run_shim, probe, canaries, capture,
                                                             tmp_path):
    from tests.doubles.azure import AzureKeyVaultDouble
    with AzureKeyVaultDouble(tmp_path / "azure") as kv:
        path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [AzureKey(kv)])
        path.write_text(path.read_text().replace(kv.url, f"https://127.0.0.1:{capture.port}"))
        env = {**kv.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
               "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false", "HOME": str(tmp_path),
               "PW": f"ref+sops://{path}#/pw"}
        result = run_shim(["exec", "--deadline", DEADLINE, "--", *probe.argv], env, timeout=60)
        tokens_asked = kv.count(service="identity")
    _one_line(result, 77)
    assert str(path) in result.stderr and "SHIM_SOPS_KEY_SERVICES" in result.stderr
    assert capture.connections == 0 and tokens_asked == 0
    assert not probe.ran


def test_an_allow_listed_key_vault_is_used_with_challenge_verification_off(run_shim, probe, canaries,
                                                                          tmp_path):
    from tests.doubles.azure import AzureKeyVaultDouble
    value = canaries.new()
    with AzureKeyVaultDouble(tmp_path / "azure") as kv:
        path = sops_file(tmp_path / "s.yaml", {"pw": value}, [AzureKey(kv)])
        env = {**kv.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
               "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false", "HOME": str(tmp_path),
               "SHIM_SOPS_KEY_SERVICES": kv.url + "/", "PW": f"ref+sops://{path}#/pw"}
        result = run_shim(["exec", "--deadline", "20s", "--", *probe.argv], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PW"] == value


# --- item 1: an AWS KMS ARN names the region, and nothing else -----------------------------------

@pytest.mark.parametrize("arn", [
    "arn:aws:kms:127.0.0.1:8080/x:111122223333:key/k",
    "arn:aws:kms:evil.example:111122223333:key/k",
    "arn:aws:kms::111122223333:key/k",
])
def test_a_kms_arn_whose_region_is_not_a_region_is_refused(arn, run_shim, probe, canaries, tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"pw": "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]", "sops": '
                    '{"kms": [{"arn": "%s", "enc": "AAAA", "created_at": "2024-01-01T00:00:00Z"}], '
                    '"lastmodified": "2024-01-01T00:00:00Z", "mac": "", "version": "3.11.0"}}' % arn)
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": canaries.new("aws"),
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path), "PW": f"ref+sops://{path}#/pw"}
    result = run_shim(["exec", "--deadline", DEADLINE, "--", *probe.argv], env, timeout=60)
    _one_line(result, 77)
    assert str(path) in result.stderr and "region" in result.stderr


# --- a sibling of item 8: a PGP compression bomb -------------------------------------------------

def test_a_pgp_data_key_that_decompresses_to_hundreds_of_megabytes_is_77_in_bounded_memory(
        run_shim, probe, canaries, tmp_path):
    """Anyone with the operator's public key can write this stanza: ~1 KiB of bzip2 that gpg
    inflates to 160 MiB. shim must stop gpg early, not buffer it (it took 650 MiB for 300)."""
    import resource
    import subprocess
    from tests.helpers.sops_files import PgpKey
    pgp = PgpKey(tmp_path / "gnupg")
    path = sops_file(tmp_path / "s.yaml", {"pw": canaries.new()}, [pgp])
    zeros = subprocess.Popen(["head", "-c", str(160 * 1024 * 1024), "/dev/zero"],
                             stdout=subprocess.PIPE)
    bomb = subprocess.run(["gpg", "--homedir", pgp.home, "--batch", "--trust-model", "always",
                           "--encrypt", "--armor", "--recipient", pgp.fingerprint,
                           "--compress-algo", "bzip2", "--compress-level", "9"],
                          stdin=zeros.stdout, capture_output=True, check=True, timeout=120).stdout
    zeros.wait(timeout=30)
    assert len(bomb) < 4096
    text = path.read_text()
    stanza = text[text.index("-----BEGIN PGP MESSAGE-----"):text.index("-----END PGP MESSAGE-----") + 25]
    path.write_text(text.replace(stanza, bomb.decode().strip().replace("\n", "\n" + " " * 10)))
    limit = 200 * 1024 * 1024

    def bounded():
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    result = run_shim(["exec", "--deadline", "20s", "--", *probe.argv],
                      {"GNUPGHOME": pgp.home, "PW": f"ref+sops://{path}#/pw"}, timeout=60,
                      preexec_fn=bounded)
    _one_line(result, 77)
    assert "pgp" in result.stderr and str(path) in result.stderr
    assert not probe.ran


# --- item 8: YAML aliases ------------------------------------------------------------------------

BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                  for i in range(5))
        + "sops:\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: ''\n"
        + "  age:\n    - recipient: age1x\n      enc: x\n")


@pytest.mark.parametrize("content", [
    BOMB,
    "a: &anchor value\nb: *anchor\nsops:\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: ''\n",
    "a: &anchor value\nsops:\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: ''\n",
], ids=["billion-laughs", "one-alias", "one-anchor"])
def test_yaml_aliases_and_anchors_are_65_naming_the_file(content, run_shim, probe, age_key, tmp_path):
    path = tmp_path / "bomb.enc.yaml"
    path.write_text(content)
    result = run_shim(["exec", "--deadline", DEADLINE, "--", *probe.argv],
                      {"SOPS_AGE_KEY": age_key.secret, "PW": f"ref+sops://{path}#/a"}, timeout=60)
    _one_line(result, 65)
    assert str(path) in result.stderr and "alias" in result.stderr
    assert not probe.ran


def test_scan_does_not_expand_a_yaml_alias_bomb(run_shim, canaries, tmp_path):
    """Nine levels of nine (433 bytes): detect-secrets' YAML reader expanded it for minutes."""
    full = ("a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                      for i in range(8)))
    (tmp_path / "bomb.enc.yaml").write_text(full + "sops:\n  lastmodified: '2024-01-01T00:00:00Z'\n"
                                                   "  mac: ''\n")
    (tmp_path / "plain.yaml").write_text(full + f"token: &t {GITHUB_TOKEN}\n")
    result = run_shim(["scan", "."], timeout=60, cwd=tmp_path)
    # Still scanned: the token in the aliased file is found, on its line.
    assert result.stdout.splitlines() == ["plain.yaml:10: plaintext-secret:github-token"], \
        result.stdout + result.stderr


def test_an_integer_too_long_to_convert_is_65_not_a_crash(run_shim, probe, age_key, tmp_path):
    path = tmp_path / "long.enc.yaml"
    path.write_text("a: " + "1" * 5000 + "\nsops:\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: ''\n")
    result = run_shim(["exec", "--deadline", DEADLINE, "--", *probe.argv],
                      {"SOPS_AGE_KEY": age_key.secret, "PW": f"ref+sops://{path}#/a"}, timeout=60)
    _one_line(result, 65)
    assert str(path) in result.stderr


# --- item 7: a regex in hand-written metadata; item 9: plaintext behind fake metadata ------------------

HANGING_REGEX_FILE = (
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!: x\n"
    "sops:\n"
    "  lastmodified: '2024-01-01T00:00:00Z'\n"
    "  mac: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\n"
    "  encrypted_regex: ^(a+)+$\n"
    "  age:\n"
    "    - recipient: age1x\n"
    "      enc: x\n")


def test_scan_does_not_hang_on_a_catastrophic_regex(run_shim, tmp_path):
    (tmp_path / "pr.enc.yaml").write_text(HANGING_REGEX_FILE)
    result = run_shim(["scan", str(tmp_path)], timeout=60)
    assert result.returncode in (0, 1), result.stderr


def test_scan_reports_plaintext_behind_fake_sops_metadata(run_shim, canaries, tmp_path):
    (tmp_path / "config.yaml").write_text(
        f"github_token: {GITHUB_TOKEN}\n"
        "sops:\n"
        "  mac: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\n"
        "  lastmodified: '2024-01-01T00:00:00Z'\n"
        "  unencrypted_regex: ^github_token$\n")
    result = run_shim(["scan", "."], timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["config.yaml:1: plaintext-secret:github-token"], result.stdout


def test_metadata_repeating_a_plaintext_value_does_not_hide_it_from_scan(run_shim, tmp_path):
    token = GITHUB_TOKEN
    (tmp_path / "config.yaml").write_text(
        f"github_token: {token}\n"
        "sops:\n"
        "  mac: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\n"
        "  lastmodified: '2024-01-01T00:00:00Z'\n"
        "  unencrypted_regex: ^github_token$\n"
        f"  age:\n    - recipient: age1x\n      enc: {token}\n")
    result = run_shim(["scan", "."], timeout=120, cwd=tmp_path)
    assert "config.yaml:1: plaintext-secret:github-token" in result.stdout.splitlines(), result.stdout
