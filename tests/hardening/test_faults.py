"""Faults, across every store: down, sealed, slow, 429 storms, 5xx, TLS mismatch, DNS failure.

Each scenario asserts the exact exit code, that nothing was executed, that the
deadline held (an upper bound with slack for interpreter start-up and the one
request in flight — not a performance assertion), and, through `run_shim`,
that no canary appeared in shim's output.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.doubles.azure import AzureKeyVaultDouble
from tests.doubles.gcp import SecretManagerDouble
from tests.doubles.tls import make_test_pki
from tests.doubles.vault import VaultDouble
from tests.helpers.aws_moto import AwsProxy, MotoServer

DEADLINE = 3.0
SLACK = 6.0  # start-up (imports of the SDKs) plus at most one request already in flight


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_timed(run_shim, probe, env, deadline=DEADLINE):
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", f"{deadline:g}s", "--", *probe.argv], env)
    return result, time.monotonic() - started


# --- Vault ------------------------------------------------------------------

@pytest.fixture
def vault(canaries):
    with VaultDouble() as double:
        double.kv2_put("secret", "app", {"password": canaries.new("vault")})
        yield double


def vault_env(vault, tmp_path, **extra):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token, "HOME": str(home),
            "DB_PASSWORD": "vault:secret/data/app#password", **extra}


def test_vault_down(run_shim, probe, tmp_path):
    env = {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}", "VAULT_TOKEN": "t",
           "HOME": str(tmp_path), "DB_PASSWORD": "vault:secret/data/app#password"}
    result, elapsed = run_timed(run_shim, probe, env)
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


def test_vault_sealed_throughout(run_shim, probe, tmp_path, vault):
    vault.seal()
    result, elapsed = run_timed(run_shim, probe, vault_env(vault, tmp_path))
    assert result.returncode == 69
    assert "sealed" in result.stderr.lower()
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


def test_vault_slower_than_the_deadline(run_shim, probe, tmp_path, vault):
    vault.latency = 20.0
    result, elapsed = run_timed(run_shim, probe, vault_env(vault, tmp_path))
    vault.latency = 0.0
    assert result.returncode == 69
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_vault_storm_outlasting_the_deadline(run_shim, probe, tmp_path, vault, status):
    vault.fail_next(10000, status=status)
    result, elapsed = run_timed(run_shim, probe, vault_env(vault, tmp_path))
    assert result.returncode == 69
    assert str(status) in result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


@pytest.mark.parametrize("status", [429, 500, 503])
def test_vault_short_storm_is_survived(run_shim, probe, tmp_path, vault, status):
    vault.fail_next(3, status=status)
    result, _ = run_timed(run_shim, probe, vault_env(vault, tmp_path), deadline=20)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["DB_PASSWORD"].startswith("canary-vault-")


def test_vault_tls_certificate_not_trusted(run_shim, probe, tmp_path, canaries):
    server_pki = make_test_pki(tmp_path / "server")
    other_pki = make_test_pki(tmp_path / "other")
    with VaultDouble(ssl_context=server_pki.server_context()) as double:
        double.kv2_put("secret", "app", {"password": canaries.new("tls")})
        env = vault_env(double, tmp_path, VAULT_CACERT=str(other_pki.ca_path))
        result, elapsed = run_timed(run_shim, probe, env)
        assert result.returncode == 78
        assert "TLS" in result.stderr
        trusted = run_shim(["exec", "--", *probe.argv],
                           vault_env(double, tmp_path, VAULT_CACERT=str(server_pki.ca_path)))
        assert trusted.returncode == 0, trusted.stderr  # the control: the right CA works
    assert elapsed < DEADLINE + SLACK


def test_vault_dns_failure(run_shim, probe, tmp_path):
    env = {"VAULT_ADDR": "http://shim-no-such-host.invalid:8200", "VAULT_TOKEN": "t",
           "HOME": str(tmp_path), "DB_PASSWORD": "vault:secret/data/app#password"}
    result, elapsed = run_timed(run_shim, probe, env)
    assert result.returncode == 69
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


# --- AWS --------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    proxy = AwsProxy(server.host, server.port)
    yield server, proxy
    proxy.stop()
    server.stop()


def aws_env(endpoint, **extra):
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",  # pragma: allowlist secret
            "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true", "DB_PASSWORD": "ref+awssecrets://app/db", **extra}


def test_aws_down(run_shim, probe):
    result, elapsed = run_timed(run_shim, probe, aws_env(f"http://127.0.0.1:{closed_port()}"))
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


def test_aws_dns_failure(run_shim, probe):
    result, elapsed = run_timed(run_shim, probe, aws_env("http://shim-no-such-host.invalid:4566"))
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK


@pytest.mark.parametrize("error_type,status", [("ThrottlingException", 400),
                                               ("InternalFailure", 500),
                                               ("ServiceUnavailable", 503)])
def test_aws_storm_outlasting_the_deadline(run_shim, probe, moto, error_type, status):
    server, proxy = moto
    server.reset()
    proxy.reset()
    proxy.inject(error_type, status=status)  # every request, until reset
    result, elapsed = run_timed(run_shim, probe, aws_env(proxy.url))
    proxy.reset()
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


# --- Azure ------------------------------------------------------------------

@pytest.fixture
def key_vault(tmp_path, canaries):
    with AzureKeyVaultDouble(tmp_path / "kv") as double:
        double.add_secret("db", canaries.new("azure"))
        yield double


def azure_env(double, **extra):
    host = double.url.removeprefix("https://")
    return {**double.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(double.ca_path),
            "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
            "DB_PASSWORD": f"ref+azurekeyvault://{host}/db", **extra}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_azure_storm_outlasting_the_deadline(run_shim, probe, key_vault, status):
    key_vault.inject_failure(status, count=10000)
    result, elapsed = run_timed(run_shim, probe, azure_env(key_vault))
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


def test_azure_down(run_shim, probe, key_vault):
    env = azure_env(key_vault, DB_PASSWORD=f"ref+azurekeyvault://127.0.0.1:{closed_port()}/db")
    result, elapsed = run_timed(run_shim, probe, env)
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK


def test_azure_dns_failure(run_shim, probe, key_vault):
    env = azure_env(key_vault, DB_PASSWORD="ref+azurekeyvault://shim-no-such-host.invalid/db")
    result, elapsed = run_timed(run_shim, probe, env)
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK


# --- Google Cloud Secret Manager --------------------------------------------

@pytest.fixture
def secret_manager(tmp_path, canaries):
    with SecretManagerDouble(tmp_path / "gcp") as double:
        double.add_version("db", canaries.new("gcp"))
        yield double


def gcp_env(double, tmp_path, **extra):
    return {**double.base_env(), "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud"),
            "DB_PASSWORD": f"sm://{double.project}/db", **extra}


@pytest.mark.parametrize("status", [429, 500, 503, 504])
def test_gcp_storm_outlasting_the_deadline(run_shim, probe, tmp_path, secret_manager, status):
    secret_manager.inject_failure(status, count=10000)
    result, elapsed = run_timed(run_shim, probe, gcp_env(secret_manager, tmp_path))
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


@pytest.mark.parametrize("fault", ["latency", "slow body", "garbage", "huge answers", "token endpoint storm"])
def test_gcp_slow_or_lying_until_the_deadline(run_shim, probe, tmp_path, secret_manager, fault):
    if fault == "latency":
        secret_manager.set_latency(DEADLINE + 5)
    elif fault == "slow body":
        secret_manager.set_slow_body(0.2)
    elif fault == "garbage":
        secret_manager.inject_garbage(10000)
    elif fault == "huge answers":
        secret_manager.inject_garbage(10000, size=8 << 20)
    else:
        secret_manager.inject_failure(503, count=10000, service="metadata")
    result, elapsed = run_timed(run_shim, probe, gcp_env(secret_manager, tmp_path))
    assert result.returncode == 69, result.stderr
    # One line, none of google-auth's retry warnings (past 2 s shim may say it is waiting).
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith("shim: waiting for ")]
    assert len(lines) == 1, result.stderr
    assert elapsed < DEADLINE + SLACK
    assert not probe.ran


def test_gcp_down(run_shim, probe, tmp_path, secret_manager):
    env = gcp_env(secret_manager, tmp_path, SHIM_GCP_ENDPOINT=f"https://127.0.0.1:{closed_port()}")
    result, elapsed = run_timed(run_shim, probe, env)
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK


def test_gcp_dns_failure(run_shim, probe, tmp_path, secret_manager):
    env = gcp_env(secret_manager, tmp_path, SHIM_GCP_ENDPOINT="https://shim-no-such-host.invalid")
    result, elapsed = run_timed(run_shim, probe, env)
    assert result.returncode == 69, result.stderr
    assert elapsed < DEADLINE + SLACK


# --- many stores at once: one missing means nothing runs ----------------------

def test_one_of_many_missing_across_stores_runs_nothing(run_shim, probe, tmp_path, vault, key_vault,
                                                        moto, canaries):
    server, proxy = moto
    server.reset()
    proxy.reset()
    import boto3
    boto3.client("secretsmanager", endpoint_url=server.url, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing"
                 ).create_secret(Name="app/db", SecretString=canaries.new("aws"))
    good_file = tmp_path / "good"
    good_file.write_text(canaries.new("file"))
    env = {**vault_env(vault, tmp_path), **aws_env(proxy.url), **azure_env(key_vault)}
    env.update({"V": "vault:secret/data/app#password", "A": "ref+awssecrets://app/db",
                "Z": env["DB_PASSWORD"], "F": f"file:{good_file}"})
    del env["DB_PASSWORD"]
    everything = run_shim(["exec", "--", *probe.argv], env)
    assert everything.returncode == 0, everything.stderr  # the control: all four stores answer
    received = probe.read()["env"]
    assert all(received[name].startswith("canary-") for name in "VAZF")
    probe.output.unlink()
    env["MISSING"] = "vault:secret/data/nope#password"
    result = run_shim(["exec", "--", *probe.argv], env)
    assert result.returncode == 66
    assert "MISSING" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not probe.ran
