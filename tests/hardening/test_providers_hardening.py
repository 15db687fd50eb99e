"""Attacks on the provider layer: slow answers, hostile references, credentials in VAULT_ADDR,
redirects that would carry the token elsewhere.

Timing bounds here are upper bounds with slack for interpreter start-up (the deadline is the
behaviour under test), not performance assertions.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BASE_ENV
from tests.doubles.tls import make_test_pki
from tests.doubles.vault import VaultDouble
from tests.helpers.aws_moto import AwsProxy, MotoServer

DEADLINE = 3.0
# Start-up (the SDK imports) plus the documented slack past --deadline (1.5 s).
SLACK = 5.0
# A slow server would hold the old code for minutes: long enough to tell the two apart.
HANGING = 60


def run_timed(run_shim, probe, env, *options):
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", f"{DEADLINE:g}s", "--log-format", "json", *options,
                       "--", *probe.argv], env, timeout=HANGING)
    return result, time.monotonic() - started


@pytest.fixture
def vault(canaries):
    with VaultDouble() as double:
        double.kv2_put("secret", "app", {"password": canaries.new("vault")})
        yield double


def vault_env(vault_url, home, token, **extra):
    return {"VAULT_ADDR": vault_url, "VAULT_TOKEN": token, "HOME": str(home),
            "DB_PASSWORD": "vault:secret/data/app#password", **extra}


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


# --- 1. --deadline holds against a server that trickles its answer --------------------------

def test_vault_answer_trickling_a_byte_a_second_is_69_at_the_deadline(run_shim, probe, vault,
                                                                      home):
    vault.trickle("secret/data/app", 1.0)
    result, elapsed = run_timed(run_shim, probe, vault_env(vault.url, home, vault.root_token))
    assert result.returncode == 69, result.stderr
    assert "within the deadline" in result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    proxy = AwsProxy(server.host, server.port)
    yield server, proxy
    proxy.stop()
    server.stop()


def aws_env(endpoint):
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",  # pragma: allowlist secret
            "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true", "DB_PASSWORD": "ref+awssecrets://app/db"}


def test_aws_answer_trickling_a_byte_a_second_is_69_at_the_deadline(run_shim, probe, moto):
    server, proxy = moto
    server.reset()
    proxy.reset()
    proxy.trickle(None, 1.0)
    try:
        result, elapsed = run_timed(run_shim, probe, aws_env(proxy.url))
    finally:
        proxy.reset()
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


def test_watch_keeps_renewing_the_lease_while_a_re_resolution_hangs(vault, home, canaries,
                                                                   tmp_path):
    vault.add_database_role("app", default_ttl=6, max_ttl=3600)
    # The KV read answers once (the start), then trickles: every re-resolution hangs until
    # its (long) deadline, while the lease (2/3 of 6 s) must be renewed in the meantime.
    vault.trickle("secret/data/app", 1.0, after=1)
    # A re-resolution first asks the KV secret's metadata (shim/pipeline/probes.py): that hangs too.
    vault.trickle("secret/metadata/app", 1.0, after=1)
    env = dict(BASE_ENV)
    env.update(vault_env(vault.url, home, vault.root_token,
                         DB_USER="vault:database/creds/app#username"))
    command = [sys.executable, "-m", "shim", "exec", "--watch", "1s", "--deadline", "40s",
               "--log-format", "json", "--", "sleep", "60"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        renewed = _wait_for(lambda: vault.count("sys/leases/renew") >= 2, timeout=20)
        resolutions = vault.count("secret/data/app") + vault.count("secret/metadata/app")
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    canaries.assert_absent(stdout, stderr, where="shim's output")
    assert resolutions >= 3, stderr     # a re-resolution was under way (and hanging)
    assert renewed, stderr


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# --- 5. malformed references quote nothing from the value ----------------------------------

# {c}: a canary with dashes; {a}: the same made of letters and digits only.
HOSTILE = [
    "vault:secret/data/app#k#{c}",
    "ref+vault://secret/app?version={c}",
    "ref+vault://secret/app?{c}=1",
    "ref+vault://secret/app?{c}=",
    "ref+vault://secret/app?max_age={c}",
    "ref+vault://secret/app?optional={c}",
    "ref+vault://secret/app?optional=true&optional={c}",
    "ref+{a}://x",
    "ref+awsssm://{c}!",
    "ref+awsssm://app:{c}!",
    "ref+awsssm://app?label={c}!",
    "ref+awsssm://app?version={c}",
    "arn:aws:ssm:us-east-1:1:parameter/{c}!",
    "ref+awssecrets://arn:aws:secretsmanager:us-east-1:1:secret:{c}:x",
    "ref+azurekeyvault://v/{c}_x",
    "ref+azurekeyvault://v/n/{c}",
    "@Microsoft.KeyVault(VaultName=v;SecretName={c}_x)",
    "@Microsoft.KeyVault({c})",
    "@Microsoft.KeyVault({c}=x)",
    "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/n/{c})",
    "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/{c}_x)",
    "sm://{c}",
    "sm://p/{c}.x",
    "sm://p/s#{c}.x",
    "gcp:secretmanager:projects/p/secrets/{c}.x",
    "gcp:secretmanager:{c}",
    "ref+gcpsecrets://P{a}/s",
    "ref+gcpsecrets://p/s?version={c}.x",
    "ref+doppler://{c} x/prd/DB",
    "ref+doppler://p/{c}!/DB",
    "ref+doppler://p/c/{a}#/{a}",
    "ref+infisical://{c}",
    "ref+infisical://p/{c}!#/K",
    "op://{c}",
    "op://v/i/{c}?attribute=otp",
    "op://v/{c}\"/f",
    "ref+bws://{c}",
    "ref+bws://project/{c}",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_malformed_reference_messages_quote_nothing_from_the_value(template, run_shim, probe,
                                                                    canaries, tmp_path):
    dashed = canaries.new("ref")
    plain = dashed.replace("-", "")
    canaries.values.append(plain)
    audit = tmp_path / "audit.log"
    result = run_shim(["exec", "--log-format", "json", "-vv", "--audit-file", str(audit), "--",
                       *probe.argv], {"X": template.format(c=dashed, a=plain)})
    assert result.returncode == 64, result.stderr
    assert "X (" in result.stderr or '"variable": "X"' in result.stderr
    canaries.assert_absent(audit.read_text() if audit.exists() else "", where="the audit file")
    assert not probe.ran


def test_every_malformed_reference_message_is_fixed_text():
    """refs._malformed is the only way to report a malformed reference, and only with literals."""
    source = Path(__file__).resolve().parents[2] / "shim" / "syntax" / "refs.py"
    tree = ast.parse(source.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    malformed = [c for c in calls if getattr(c.func, "id", None) == "_malformed"]
    assert len(malformed) > 20
    for call in malformed:
        what, hint = call.args[1], call.args[2]
        assert isinstance(what, ast.Constant), f"line {call.lineno}: the description is not fixed"
        assert _fixed(hint), f"line {call.lineno}: the hint is built from something variable"
    raised = [c for c in calls if getattr(c.func, "id", None) == "UsageError"]
    assert len(raised) == 1, "build malformed-reference errors with _malformed only"


def _fixed(node) -> bool:
    """A literal, or literals joined (the hint may list the table's option names)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.BinOp):
        return _fixed(node.left) and (_fixed(node.right) or _table_listing(node.right))
    return False


def _table_listing(node) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "join"


# --- 8. credentials inside VAULT_ADDR ------------------------------------------------------

def test_credentials_in_vault_addr_never_appear_on_tls_failure(run_shim, probe, canaries,
                                                               tmp_path, home):
    password = canaries.new("addr-password")
    server_pki = make_test_pki(tmp_path / "server")
    with VaultDouble(ssl_context=server_pki.server_context()) as double:
        addr = f"https://user:{password}@127.0.0.1:{double.port}"
        result, _ = run_timed(run_shim, probe, vault_env(addr, home, double.root_token))
    assert result.returncode == 78, result.stderr
    assert "TLS verification of https://<redacted>@127.0.0.1" in result.stderr


def test_credentials_in_vault_addr_never_appear_when_tls_is_unverified(run_shim, probe, canaries,
                                                                       tmp_path, home):
    password = canaries.new("addr-password")
    server_pki = make_test_pki(tmp_path / "server")
    with VaultDouble(ssl_context=server_pki.server_context()) as double:
        double.kv2_put("secret", "app", {"password": canaries.new("value")})
        addr = f"https://user:{password}@127.0.0.1:{double.port}"
        audit = tmp_path / "audit.log"
        result, _ = run_timed(run_shim, probe,
                              vault_env(addr, home, double.root_token, VAULT_SKIP_VERIFY="true"),
                              "--audit-file", str(audit))
    assert result.returncode == 0, result.stderr
    assert '"event": "vault.tls_unverified"' in result.stderr
    canaries.assert_absent(audit.read_text() if audit.exists() else "", where="the audit file")


@pytest.mark.parametrize("addr", ["htps://user:{p}@127.0.0.1:8200", "user:{p}@127.0.0.1:8200",
                                  "https://user:{p}@[bad/x"])
def test_credentials_in_a_bad_vault_addr_never_appear(addr, run_shim, probe, canaries, home):
    password = canaries.new("addr-password")
    result, _ = run_timed(run_shim, probe, vault_env(addr.format(p=password), home, "t"))
    assert result.returncode in (69, 78), result.stderr
    assert not probe.ran


# --- 14. redirects ------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_never_carries_the_token(status, run_shim, probe, vault,
                                                            home):
    with VaultDouble() as elsewhere:
        vault.fail_next(1, status, path="secret/data/app", body=b"",
                        headers={"Location": f"{elsewhere.url}/v1/secret/data/app"})
        result, _ = run_timed(run_shim, probe, vault_env(vault.url, home, vault.root_token))
        reached = [r for r in elsewhere.requests if "x-vault-token" in r.headers]
    assert reached == []
    assert result.returncode == 78, result.stderr
    assert f"with a redirect (HTTP {status}) that shim does not follow" in result.stderr
    assert not probe.ran


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_same_host_redirect_other_than_307_308_is_not_followed(status, run_shim, probe, vault,
                                                                 home):
    vault.fail_next(1, status, path="secret/data/app", body=b"",
                    headers={"Location": f"{vault.url}/v1/secret/data/app"})
    result, _ = run_timed(run_shim, probe, vault_env(vault.url, home, vault.root_token))
    assert result.returncode == 78, result.stderr
    assert vault.count("/v1/secret/data/app") == 1


@pytest.mark.parametrize("status", [307, 308])
def test_a_same_host_307_308_is_followed(status, run_shim, probe, vault, home):
    vault.fail_next(1, status, path="secret/data/app", body=b"",
                    headers={"Location": f"{vault.url}/v1/secret/data/app"})
    result, _ = run_timed(run_shim, probe, vault_env(vault.url, home, vault.root_token))
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["DB_PASSWORD"].startswith("canary-vault-")


def test_an_https_to_http_redirect_is_not_followed(run_shim, probe, canaries, tmp_path, home):
    server_pki = make_test_pki(tmp_path / "server")
    with VaultDouble(ssl_context=server_pki.server_context()) as secure, VaultDouble() as plain:
        secure.kv2_put("secret", "app", {"password": canaries.new("value")})
        secure.fail_next(1, 307, path="secret/data/app", body=b"",
                         headers={"Location": f"{plain.url}/v1/secret/data/app"})
        result, _ = run_timed(run_shim, probe, vault_env(
            secure.url, home, secure.root_token, VAULT_CACERT=str(server_pki.ca_path)))
        reached = plain.requests
    assert reached == []
    assert result.returncode == 78, result.stderr
