"""The Azure Key Vault provider, end to end: `shim exec` as a real process against the HTTPS double.

The double (tests/doubles/azure.py) runs in the pytest process; shim finds it the way a container
finds Azure: IDENTITY_ENDPOINT/IDENTITY_HEADER (App Service managed identity) or AZURE_* variables
(a service principal). Every secret is a canary; `run_shim` fails a test whose shim output holds
one, and `assert_no_credentials` does the same for the identity header, client secret and every
token the double issued.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.doubles.azure import AzureKeyVaultDouble


@pytest.fixture
def kv(tmp_path):
    with AzureKeyVaultDouble(tmp_path) as double:
        yield double


def host(kv) -> str:
    return kv.url[len("https://"):]


def managed_identity_env(kv, **variables) -> dict:
    """What an App Service container sees, plus the two options a 127.0.0.1 vault needs."""
    return {
        **kv.app_service_env(),
        "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
        "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
        **variables,
    }


def assert_no_credentials(kv, result, *extra: str) -> None:
    output = result.stdout + result.stderr
    for material in (kv.client_secret, kv.identity_header, *kv.issued_tokens(), *extra):
        assert material not in output, "credential material leaked into shim's output"


def events(result, name: str) -> list[dict]:
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == name]


def exec_probe(run_shim, probe, env, *options):
    return run_shim(["exec", *options, "--", *probe.argv], env)


def test_app_service_and_vals_forms_resolve_with_a_managed_identity(kv, canaries, run_shim, probe):
    password, api_key, token = canaries.new("db"), canaries.new("api"), canaries.new("token")
    kv.add_secret("db-password", password)
    kv.add_secret("api-key", api_key)
    kv.add_secret("token", token)
    env = managed_identity_env(
        kv,
        # App Service settings, moved unchanged (the portal copies identifiers with a trailing slash).
        DB_PASSWORD=f"@Microsoft.KeyVault(SecretUri={kv.url}/secrets/db-password/)",
        API_KEY=f"@Microsoft.KeyVault(VaultName={host(kv)};SecretName=api-key)",
        TOKEN=f"ref+azurekeyvault://{host(kv)}/token",
        # The same secret spelled twice more (names ignore case) and inside a URL.
        DB_PASSWORD_COPY=f"ref+azurekeyvault://{host(kv)}/DB-PASSWORD",
        DATABASE_URL=f"postgresql://app:${{ref+azurekeyvault://{host(kv)}/db-password}}@db/app",
    )

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["DB_PASSWORD"] == child["DB_PASSWORD_COPY"] == password
    assert child["API_KEY"] == api_key
    assert child["TOKEN"] == token
    assert child["DATABASE_URL"] == f"postgresql://app:{password}@db/app"
    assert not [name for name in child if name.startswith("SHIM_")]
    # One authorized GET per distinct secret, one challenge, one token request.
    assert sorted(r.path for r in kv.requests(authorized=True)) == [
        "/secrets/api-key/", "/secrets/db-password/", "/secrets/token/"]
    assert kv.count(authorized=False) == 1
    assert kv.count("identity") == 1
    assert kv.count("login") == 0
    assert_no_credentials(kv, result)


def test_pinned_versions_in_every_form(kv, canaries, run_shim, probe):
    old_value, new_value = canaries.new("old"), canaries.new("new")
    old = kv.add_secret("rotated", old_value)
    kv.add_secret("rotated", new_value)
    env = managed_identity_env(
        kv,
        BY_URI=f"@Microsoft.KeyVault(SecretUri={kv.url}/secrets/rotated/{old})",
        BY_NAME=f"@Microsoft.KeyVault(VaultName={host(kv)};SecretName=rotated;SecretVersion={old})",
        BY_VALS=f"ref+azurekeyvault://{host(kv)}/rotated/{old}",
        LATEST=f"ref+azurekeyvault://{host(kv)}/rotated",
    )

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["BY_URI"] == child["BY_NAME"] == child["BY_VALS"] == old_value
    assert child["LATEST"] == new_value
    assert sorted(r.path for r in kv.requests(authorized=True)) == sorted(
        [f"/secrets/rotated/{old}", "/secrets/rotated/"])


def test_json_selector_on_an_application_json_secret(kv, canaries, run_shim, probe):
    password = canaries.new("json")
    document = json.dumps({"db": {"password": password, "port": 5432}}, indent=2)
    kv.add_secret("app-config", document, content_type="application/json")
    env = managed_identity_env(
        kv,
        DB_PASSWORD=f"ref+azurekeyvault://{host(kv)}/app-config#/db/password",
        DB_PORT=f"ref+azurekeyvault://{host(kv)}/app-config#/db/port",
        WHOLE=f"@Microsoft.KeyVault(VaultName={host(kv)};SecretName=app-config)",
    )

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["DB_PASSWORD"] == password
    assert child["DB_PORT"] == "5432"
    assert child["WHOLE"] == document  # the whole secret exactly as stored
    assert kv.count(authorized=True) == 1


def test_disabled_secret_is_refused_with_77(kv, canaries, run_shim, probe):
    kv.add_secret("retired", canaries.new("disabled"), enabled=False)
    env = managed_identity_env(kv, OLD_PASSWORD=f"ref+azurekeyvault://{host(kv)}/retired")

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77
    assert not probe.ran
    assert f"OLD_PASSWORD (ref+azurekeyvault://{host(kv)}/retired)" in result.stderr
    assert "is disabled" in result.stderr
    assert_no_credentials(kv, result)


def test_expired_and_not_yet_valid_secrets_are_refused_with_77(kv, canaries, run_shim, probe):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    kv.add_secret("expired", canaries.new("expired"), expires_on=now - timedelta(days=1))
    kv.add_secret("future", canaries.new("future"), not_before=now + timedelta(days=1))
    env = managed_identity_env(
        kv,
        EXPIRED=f"@Microsoft.KeyVault(VaultName={host(kv)};SecretName=expired)",
        FUTURE=f"ref+azurekeyvault://{host(kv)}/future",
    )

    result = exec_probe(run_shim, probe, env, "--log-format", "json")

    assert result.returncode == 77
    assert not probe.ran
    refused = {event["reference"]: event for event in events(result, "secret.expired")}
    assert set(refused) == {f"ref+azurekeyvault://{host(kv)}/expired",
                            f"ref+azurekeyvault://{host(kv)}/future"}
    assert refused[f"ref+azurekeyvault://{host(kv)}/expired"]["expires"] == \
        (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert refused[f"ref+azurekeyvault://{host(kv)}/future"]["not_before"] == \
        (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(event["level"] == "warning" and event["allowed"] is False for event in refused.values())
    failed = {event["variable"]: event for event in events(result, "secret.failed")}
    assert set(failed) == {"EXPIRED", "FUTURE"}
    assert all(event["exit_code"] == 77 for event in failed.values())


def test_allow_expired_uses_them_with_a_warning(kv, canaries, run_shim, probe):
    now = datetime.now(timezone.utc)
    expired_value, future_value = canaries.new("expired"), canaries.new("future")
    kv.add_secret("expired", expired_value, expires_on=now - timedelta(days=1))
    kv.add_secret("future", future_value, not_before=now + timedelta(days=1))
    env = managed_identity_env(
        kv,
        EXPIRED=f"ref+azurekeyvault://{host(kv)}/expired?allow_expired=true",
        FUTURE=f"ref+azurekeyvault://{host(kv)}/future?allow_expired=true",
    )

    result = exec_probe(run_shim, probe, env, "--log-format", "json")

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["EXPIRED"], child["FUTURE"]) == (expired_value, future_value)
    warnings = events(result, "secret.expired")
    assert len(warnings) == 2 and all(event["allowed"] is True for event in warnings)


def test_allow_expired_must_be_said_by_every_reference_to_the_secret(kv, canaries, run_shim, probe):
    """One reference allowing an expired secret does not make it usable for another that does not."""
    kv.add_secret("expired", canaries.new("expired"),
                  expires_on=datetime.now(timezone.utc) - timedelta(days=1))
    env = managed_identity_env(
        kv,
        LENIENT=f"ref+azurekeyvault://{host(kv)}/expired?allow_expired=true",
        STRICT=f"ref+azurekeyvault://{host(kv)}/expired",
    )
    result = exec_probe(run_shim, probe, env, "--log-format", "json")
    assert result.returncode == 77, result.stderr
    assert not probe.ran
    assert [event["allowed"] for event in events(result, "secret.expired")] == [False]


@pytest.mark.parametrize("mistake", ["identity-header", "other-tenant", "service-principal"])
def test_wrong_credentials_are_refused_with_77(kv, canaries, run_shim, probe, mistake):
    kv.add_secret("guarded", canaries.new("guarded"))
    wrong = "wrong-" + secrets.token_hex(8)
    reference = f"@Microsoft.KeyVault(SecretUri={kv.url}/secrets/guarded)"
    if mistake == "identity-header":
        env = managed_identity_env(kv, IDENTITY_HEADER=wrong, GUARDED=reference)
    elif mistake == "other-tenant":  # a valid token, but from a directory the vault does not trust
        kv.managed_identity_tenant_id = str(uuid.uuid4())
        env = managed_identity_env(kv, GUARDED=reference)
    else:
        env = {"AZURE_TENANT_ID": kv.tenant_id, "AZURE_CLIENT_ID": kv.client_id,
               "AZURE_CLIENT_SECRET": wrong, "AZURE_AUTHORITY_HOST": kv.authority,
               "SHIM_AZURE_DISABLE_INSTANCE_DISCOVERY": "true",
               "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
               "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false", "GUARDED": reference}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77, result.stderr
    assert not probe.ran
    assert f"GUARDED (ref+azurekeyvault://{host(kv)}/guarded)" in result.stderr
    assert kv.count(status=200) == 0
    expected = {"identity-header": "could not get a token", "other-tenant": "AKV10032",
                "service-principal": "AADSTS7000215"}[mistake]
    assert expected in result.stderr
    assert_no_credentials(kv, result, wrong)


def test_missing_secret_and_version_are_66(kv, canaries, run_shim, probe):
    kv.add_secret("present", canaries.new("present"))
    env = managed_identity_env(
        kv,
        MISSING=f"ref+azurekeyvault://{host(kv)}/absent",
        NO_SUCH_VERSION=f"@Microsoft.KeyVault(VaultName={host(kv)};SecretName=present;"
                        f"SecretVersion={'0' * 32})",
    )

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 66
    assert not probe.ran
    assert "MISSING (" in result.stderr and "NO_SUCH_VERSION (" in result.stderr
    assert result.stderr.count("does not exist") == 2


def test_optional_missing_secret_leaves_the_variable_unset(kv, canaries, run_shim, probe):
    value = canaries.new("present")
    kv.add_secret("present", value)
    env = managed_identity_env(
        kv,
        OPTIONAL=f"ref+azurekeyvault://{host(kv)}/absent?optional=true",
        PRESENT=f"ref+azurekeyvault://{host(kv)}/present",
    )

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert "OPTIONAL" not in child
    assert child["PRESENT"] == value


def test_throttling_and_server_errors_are_retried(kv, canaries, run_shim, probe):
    value = canaries.new("busy")
    kv.add_secret("busy", value)
    kv.inject_failure(429, retry_after=0.1)
    kv.inject_failure(503, retry_after=0.1)
    env = managed_identity_env(kv, BUSY=f"ref+azurekeyvault://{host(kv)}/busy")

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["BUSY"] == value
    assert [r.status for r in kv.requests()] == [429, 503, 401, 200]


def test_throttling_beyond_the_retries_is_69(kv, canaries, run_shim, probe):
    kv.add_secret("hot", canaries.new("hot"))
    kv.inject_failure(429, count=20, retry_after=0.05)
    env = managed_identity_env(kv, HOT=f"ref+azurekeyvault://{host(kv)}/hot")

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 69
    assert not probe.ran
    assert "answered 429 (Throttled)" in result.stderr
    assert kv.count() == 4  # azure-core: the first attempt and 3 status retries


def test_unreachable_vault_is_69_within_the_deadline(kv, run_shim, probe):
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    env = managed_identity_env(
        kv,
        FIRST=f"ref+azurekeyvault://127.0.0.1:{closed_port}/first",
        SECOND=f"@Microsoft.KeyVault(SecretUri=https://127.0.0.1:{closed_port}/secrets/second)",
    )

    started = time.monotonic()
    result = exec_probe(run_shim, probe, env, "--deadline", "2s")
    elapsed = time.monotonic() - started

    assert result.returncode == 69
    assert not probe.ran
    assert "FIRST (" in result.stderr and "SECOND (" in result.stderr
    assert f"Key Vault 127.0.0.1:{closed_port}" in result.stderr
    assert elapsed < 2 + 4  # an upper bound only: retries stop at the deadline
    assert kv.count("identity") == 0  # no challenge, so no token was ever asked for


def test_secrets_are_fetched_concurrently_with_one_token(kv, canaries, run_shim, probe):
    count, latency = 8, 0.4
    values = {f"SECRET_{index}": canaries.new(f"parallel{index}") for index in range(count)}
    for index, value in enumerate(values.values()):
        kv.add_secret(f"parallel-{index}", value)
    kv.set_latency(latency)
    env = managed_identity_env(kv, **{
        name: f"ref+azurekeyvault://{host(kv)}/parallel-{index}" for index, name in enumerate(values)})

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert {name: child[name] for name in values} == values
    reads = kv.requests(authorized=True, status=200)
    assert len(reads) == count  # one GET per distinct secret
    assert kv.count(authorized=False) == 1  # one challenge round trip for the vault
    assert kv.count("identity") == 1  # one token request for the run
    # Every read was in flight at the same moment (measured by the double, not by a clock race).
    assert max(r.started for r in reads) < min(r.finished for r in reads)
    vault_requests = kv.requests()
    span = max(r.finished for r in vault_requests) - min(r.started for r in vault_requests)
    assert span < count * latency / 2  # challenge + one round of reads, not count x latency


def test_service_principal_from_the_environment(kv, canaries, run_shim, probe):
    first, second = canaries.new("sp1"), canaries.new("sp2")
    kv.add_secret("first", first)
    kv.add_secret("second", second)
    env = {
        "AZURE_TENANT_ID": kv.tenant_id,
        "AZURE_CLIENT_ID": kv.client_id,
        "AZURE_CLIENT_SECRET": kv.client_secret,
        "AZURE_AUTHORITY_HOST": kv.authority,
        "SHIM_AZURE_DISABLE_INSTANCE_DISCOVERY": "true",
        "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
        "REQUESTS_CA_BUNDLE": str(kv.ca_path),  # the SDK honours it for the vault and the login
        "FIRST": f"@Microsoft.KeyVault(SecretUri={kv.url}/secrets/first/)",
        "SECOND": f"ref+azurekeyvault://{host(kv)}/second",
    }

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["FIRST"], child["SECOND"]) == (first, second)
    assert [(r.method, r.path) for r in kv.requests("login")] == [
        ("GET", f"/{kv.tenant_id}/v2.0/.well-known/openid-configuration"),
        ("POST", f"/{kv.tenant_id}/oauth2/v2.0/token"),
    ]
    assert kv.count("identity") == 0
    assert kv.count(authorized=True) == 2
    assert_no_credentials(kv, result)


def test_aks_workload_identity(kv, canaries, run_shim, probe, tmp_path):
    value = canaries.new("aks")
    kv.add_secret("db-password", value)
    client_id, service_account_token = kv.register_workload_identity()
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(service_account_token)
    # What the AKS workload identity webhook injects into the pod, plus the test-only options.
    env = {
        "AZURE_CLIENT_ID": client_id,
        "AZURE_TENANT_ID": kv.tenant_id,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": kv.authority,
        "SHIM_AZURE_DISABLE_INSTANCE_DISCOVERY": "true",
        "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
        "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
        "DB_PASSWORD": f"@Microsoft.KeyVault(SecretUri={kv.url}/secrets/db-password/)",
    }

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["DB_PASSWORD"] == value
    # The token file is a path the program may read itself: left alone, not resolved.
    assert child["AZURE_FEDERATED_TOKEN_FILE"] == str(token_file)
    assert kv.requests("login", method="POST", status=200)
    assert kv.count("identity") == 0
    assert_no_credentials(kv, result, service_account_token)


def test_user_assigned_managed_identity_from_azure_client_id(kv, canaries, run_shim, probe):
    value = canaries.new("uami")
    kv.add_secret("db-password", value)
    env = managed_identity_env(kv, AZURE_CLIENT_ID=kv.managed_identity_client_id,
                               DB_PASSWORD=f"ref+azurekeyvault://{host(kv)}/db-password")

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["DB_PASSWORD"] == value
    (token_request,) = kv.requests("identity")
    assert token_request.query["client_id"] == kv.managed_identity_client_id


def test_challenge_resource_is_verified_unless_turned_off(kv, canaries, run_shim, probe):
    kv.add_secret("db", canaries.new("db"))
    env = managed_identity_env(kv, DB=f"ref+azurekeyvault://{host(kv)}/db")
    del env["SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE"]

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78
    assert "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE=false" in result.stderr
    assert kv.count("identity") == 0  # 127.0.0.1 is not under vault.azure.net: no token sent


def test_untrusted_certificate_is_78_with_a_hint(kv, canaries, run_shim, probe):
    kv.add_secret("db", canaries.new("db"))
    env = managed_identity_env(kv, DB=f"ref+azurekeyvault://{host(kv)}/db")
    del env["SHIM_AZURE_CA_BUNDLE"]

    result = exec_probe(run_shim, probe, env, "--deadline", "2s")

    assert result.returncode == 78  # configuration (the CA), as for Vault: retrying cannot fix it
    assert "not trusted" in result.stderr and "SHIM_AZURE_CA_BUNDLE" in result.stderr
    assert kv.count() == 0  # the handshake failed: no request reached the vault


@pytest.mark.parametrize("variable, value", [
    ("SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE", "maybe"),
    ("SHIM_AZURE_CA_BUNDLE", "/nonexistent/ca.pem"),
])
def test_bad_option_values_are_78(kv, run_shim, probe, variable, value):
    env = managed_identity_env(kv, DB=f"ref+azurekeyvault://{host(kv)}/db", **{variable: value})

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78
    assert variable in result.stderr
    assert kv.count(None) == 0
