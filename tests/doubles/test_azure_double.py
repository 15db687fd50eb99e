"""The Azure Key Vault double is only worth something if the real SDK accepts every answer.

Every test here drives the real azure-keyvault-secrets SecretClient and real azure-identity
credentials over real sockets (HTTPS with a test CA made at test time) against
tests/doubles/azure.py. Every secret value is a fresh canary from the shared `canaries` fixture.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential, WorkloadIdentityCredential
from azure.keyvault.secrets import SecretClient

from tests.doubles.azure import AzureKeyVaultDouble

# azure-core's default exponential backoff (0.8 s, 1.6 s, ...) would make retry tests slow.
FAST_RETRY = {"retry_backoff_factor": 0.01}


class StaticTokenCredential:
    """A credential that always presents the same token (to test what the vault does with it)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


@pytest.fixture
def kv(tmp_path):
    with AzureKeyVaultDouble(tmp_path) as double:
        yield double


@pytest.fixture
def managed_identity_client(kv, monkeypatch):
    # App Service managed identity is chosen from the environment at credential construction.
    monkeypatch.delenv("IDENTITY_SERVER_THUMBPRINT", raising=False)  # would select Service Fabric
    for name, value in kv.app_service_env().items():
        monkeypatch.setenv(name, value)
    credential = ManagedIdentityCredential()
    with SecretClient(credential=credential, **kv.secret_client_kwargs(), **FAST_RETRY) as client:
        yield client


@pytest.fixture
def service_principal_client(kv):
    credential = ClientSecretCredential(**kv.client_secret_credential_kwargs())
    with SecretClient(credential=credential, **kv.secret_client_kwargs(), **FAST_RETRY) as client:
        yield client


def test_get_latest_with_managed_identity(canaries, kv, managed_identity_client):
    old, new = canaries.new(), canaries.new()
    kv.add_secret("db-password", old)
    version = kv.add_secret("db-password", new, content_type="text/plain", tags={"team": "shim"})

    secret = managed_identity_client.get_secret("db-password")

    assert secret.value == new
    assert secret.name == "db-password"
    assert secret.properties.version == version
    assert secret.id == kv.secret_id("db-password", version)
    assert secret.properties.vault_url == kv.url
    assert secret.properties.content_type == "text/plain"
    assert secret.properties.tags == {"team": "shim"}
    assert secret.properties.enabled is True
    assert secret.properties.recovery_level == "Recoverable+Purgeable"
    assert secret.properties.created_on is not None
    # The SDK asks for the latest version with an empty version segment: a trailing slash.
    assert [(r.path, r.authorized, r.status) for r in kv.requests()] == [
        ("/secrets/db-password/", False, 401),
        ("/secrets/db-password/", True, 200),
    ]
    identity_request = kv.requests("identity")[0]
    assert identity_request.query["api-version"] == "2019-08-01"
    assert identity_request.query["resource"] == "https://vault.azure.net"


def test_get_by_version_with_client_secret_credential(canaries, kv, service_principal_client):
    first_value = canaries.new()
    first = kv.add_secret("api-key", first_value)
    kv.add_secret("api-key", canaries.new())

    secret = service_principal_client.get_secret("api-key", first)

    assert secret.value == first_value
    assert secret.properties.version == first
    assert [(r.method, r.path, r.status) for r in kv.requests("login")] == [
        ("GET", f"/{kv.tenant_id}/v2.0/.well-known/openid-configuration", 200),
        ("POST", f"/{kv.tenant_id}/oauth2/v2.0/token", 200),
    ]
    assert kv.requests(path=f"/secrets/api-key/{first}", authorized=True, status=200)


def test_one_challenge_round_trip_then_authorized_gets(canaries, kv, managed_identity_client):
    value = canaries.new()
    kv.add_secret("token", value)

    for _ in range(3):
        assert managed_identity_client.get_secret("token").value == value

    assert kv.count(authorized=False) == 1
    assert kv.count(authorized=False, status=401) == 1
    assert kv.count(authorized=True, status=200) == 3
    assert kv.count("identity") == 1  # the token is cached by the credential


def test_challenge_cache_is_shared_by_every_client_in_the_process(canaries, kv, managed_identity_client):
    kv.add_secret("shared", canaries.new())
    managed_identity_client.get_secret("shared")
    kv.clear_log()

    credential = ClientSecretCredential(**kv.client_secret_credential_kwargs())
    with SecretClient(credential=credential, **kv.secret_client_kwargs()) as second_client:
        second_client.get_secret("shared")

    # No unauthenticated request: the first client's challenge (cached by host:port) was reused.
    assert [(r.authorized, r.status) for r in kv.requests()] == [(True, 200)]


def test_list_versions_follows_next_link(canaries, kv, service_principal_client):
    versions = {kv.add_secret("rotated", canaries.new()) for _ in range(5)}

    pager = service_principal_client.list_properties_of_secret_versions("rotated", max_page_size=2)
    pages = [list(page) for page in pager.by_page()]
    items = [item for page in pages for item in page]

    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(item.version for item in items) == sorted(versions)
    assert [item.version for item in items] == sorted(versions)  # ascending version id, like the service
    assert all(item.name == "rotated" and item.enabled for item in items)
    listing = kv.requests(path="/secrets/rotated/versions", authorized=True, status=200)
    assert len(listing) == 3
    assert all(request.query["maxresults"] == "2" for request in listing)
    assert "$skiptoken" not in listing[0].query
    assert all("$skiptoken" in request.query for request in listing[1:])


def test_disabled_secret_is_forbidden(canaries, kv, managed_identity_client):
    value = canaries.new()
    kv.add_secret("old-password", value, enabled=False)

    with pytest.raises(HttpResponseError) as caught:
        managed_identity_client.get_secret("old-password")

    assert caught.value.status_code == 403
    assert caught.value.error.code == "Forbidden"  # azure-core parsed the Key Vault error envelope
    body = json.loads(caught.value.response.text())
    assert body["error"]["code"] == "Forbidden"
    assert body["error"]["message"] == "Operation get is not allowed on a disabled secret."
    assert body["error"]["innererror"]["code"] == "SecretDisabled"
    canaries.assert_absent(str(caught.value), where="the error message")


def test_disabled_version_still_listed(canaries, kv, managed_identity_client):
    version = kv.add_secret("mixed", canaries.new())
    kv.set_enabled("mixed", version, False)

    (item,) = managed_identity_client.list_properties_of_secret_versions("mixed")

    assert item.version == version
    assert item.enabled is False


def test_missing_secret_and_version_are_not_found(canaries, kv, managed_identity_client):
    kv.add_secret("present", canaries.new())

    with pytest.raises(ResourceNotFoundError) as missing_name:
        managed_identity_client.get_secret("absent")
    with pytest.raises(ResourceNotFoundError) as missing_version:
        managed_identity_client.get_secret("present", "0" * 32)

    assert missing_name.value.status_code == 404
    assert json.loads(missing_name.value.response.text())["error"]["code"] == "SecretNotFound"
    assert "(name/id) absent was not found" in str(missing_name.value)
    assert f"(name/id) present/{'0' * 32} was not found" in str(missing_version.value)


def test_expired_and_not_yet_valid_secrets_are_still_returned(canaries, kv, managed_identity_client):
    expired_value, future_value = canaries.new(), canaries.new()
    past = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1)
    future = past + timedelta(days=30)
    kv.add_secret("expired", expired_value, expires_on=past)
    kv.add_secret("future", future_value, not_before=future)

    expired = managed_identity_client.get_secret("expired")
    not_yet_valid = managed_identity_client.get_secret("future")

    assert expired.value == expired_value
    assert expired.properties.expires_on == past
    assert not_yet_valid.value == future_value
    assert not_yet_valid.properties.not_before == future


def test_rbac_denial_is_forbidden_by_rbac(canaries, kv, managed_identity_client):
    value = canaries.new()
    kv.add_secret("guarded", value)
    kv.forbid(kv.managed_identity_client_id, "guarded")

    with pytest.raises(HttpResponseError) as caught:
        managed_identity_client.get_secret("guarded")

    assert caught.value.status_code == 403
    error = json.loads(caught.value.response.text())["error"]
    assert error["code"] == "Forbidden"
    assert error["innererror"]["code"] == "ForbiddenByRbac"
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in error["message"]
    canaries.assert_absent(str(caught.value), where="the error message")


def test_rbac_check_precedes_existence(kv, service_principal_client):
    kv.forbid(kv.client_id)

    with pytest.raises(HttpResponseError) as caught:
        service_principal_client.get_secret("does-not-exist")

    assert caught.value.status_code == 403


def test_token_the_double_never_issued_is_rejected(canaries, kv):
    kv.add_secret("locked", canaries.new())
    credential = StaticTokenCredential("not-issued-" + secrets.token_hex(8))

    with SecretClient(credential=credential, **kv.secret_client_kwargs()) as client:
        with pytest.raises(ClientAuthenticationError) as caught:
            client.get_secret("locked")

    assert caught.value.status_code == 401
    # Challenge, then one attempt with the bad token; the policy gives up on a second KV challenge.
    assert [(r.authorized, r.status) for r in kv.requests()] == [(False, 401), (True, 401)]


def test_token_for_another_audience_is_rejected(canaries, kv):
    kv.add_secret("locked", canaries.new())
    credential = StaticTokenCredential(kv.issue_token(audience="https://management.azure.com/"))

    with SecretClient(credential=credential, **kv.secret_client_kwargs()) as client:
        with pytest.raises(ClientAuthenticationError) as caught:
            client.get_secret("locked")

    assert "AKV10022: Invalid audience. Expected https://vault.azure.net" in str(caught.value)


def test_injected_throttling_is_retried_by_azure_core(canaries, kv, managed_identity_client):
    value = canaries.new()
    kv.add_secret("busy", value)
    managed_identity_client.get_secret("busy")  # settle the challenge first
    kv.clear_log()
    kv.inject_failure(429, retry_after=0.05)

    assert managed_identity_client.get_secret("busy").value == value

    assert [r.status for r in kv.requests()] == [429, 200]
    assert kv.count(authorized=True) == 2


def test_injected_server_errors_are_retried(canaries, kv, service_principal_client):
    value = canaries.new()
    kv.add_secret("flaky", value)
    kv.inject_failure(500)
    kv.inject_failure(503, retry_after=0.05)

    assert service_principal_client.get_secret("flaky").value == value

    # The failures hit the unauthenticated challenge request first; the retry redoes the challenge.
    assert [(r.authorized, r.status) for r in kv.requests()] == [
        (False, 500),
        (False, 503),
        (False, 401),
        (True, 200),
    ]


def test_throttling_body_and_retry_after_reach_the_client(canaries, kv, managed_identity_client):
    kv.add_secret("hot", canaries.new())
    managed_identity_client.get_secret("hot")
    kv.inject_failure(429, count=4, retry_after=0.01)  # more than azure-core's 3 status retries

    with pytest.raises(HttpResponseError) as caught:
        managed_identity_client.get_secret("hot")

    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "0.01"
    assert json.loads(caught.value.response.text())["error"]["code"] == "Throttled"


def test_latency_is_measurable(canaries, kv, managed_identity_client):
    kv.add_secret("slow", canaries.new())
    managed_identity_client.get_secret("slow")  # challenge and token out of the way
    kv.set_latency(0.3)

    started = time.monotonic()
    managed_identity_client.get_secret("slow")
    elapsed = time.monotonic() - started

    # A lower bound only: the double sleeps before answering, so this cannot flake.
    assert elapsed >= 0.3


def test_concurrent_gets_each_get_their_own_secret(canaries, kv, managed_identity_client):
    values = {f"parallel-{index}": canaries.new() for index in range(8)}
    for name, value in values.items():
        kv.add_secret(name, value)
    # Settle the challenge first: concurrent first requests would each do their own challenge
    # round trip, and how many do depends on thread timing.
    managed_identity_client.get_secret("parallel-0")
    kv.clear_log()
    kv.set_latency(0.05)

    with ThreadPoolExecutor(max_workers=8) as pool:
        fetched_values = pool.map(lambda name: managed_identity_client.get_secret(name).value, values)
        fetched = dict(zip(values, fetched_values))

    assert fetched == values
    assert [(r.authorized, r.status) for r in kv.requests()] == [(True, 200)] * len(values)


def test_set_secret_round_trip(canaries, kv, service_principal_client):
    value = canaries.new()
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)

    created = service_principal_client.set_secret(
        "from-sdk", value, content_type="password", tags={"owner": "tests"}, expires_on=expires
    )
    fetched = service_principal_client.get_secret("from-sdk")

    assert created.value == value
    assert fetched.value == value
    assert fetched.properties.version == created.properties.version
    assert fetched.properties.content_type == "password"
    assert fetched.properties.tags == {"owner": "tests"}
    assert fetched.properties.expires_on == expires
    (stored,) = kv.versions("from-sdk")
    assert stored.value == value
    # The body-less PUT elicits the challenge; the restored PUT carries the body and the token.
    assert [(r.method, r.authorized, r.status) for r in kv.requests()][:2] == [
        ("PUT", False, 401),
        ("PUT", True, 200),
    ]


def test_managed_identity_token_endpoint_failure_is_retried(canaries, kv, managed_identity_client):
    value = canaries.new()
    kv.add_secret("mi-retry", value)
    kv.inject_failure(503, retry_after=0.05, service="identity")

    assert managed_identity_client.get_secret("mi-retry").value == value
    assert [r.status for r in kv.requests("identity")] == [503, 200]


def test_wrong_identity_header_fails_authentication(canaries, kv, monkeypatch):
    kv.add_secret("mi-only", canaries.new())
    monkeypatch.delenv("IDENTITY_SERVER_THUMBPRINT", raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", kv.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "wrong-" + secrets.token_hex(4))

    with SecretClient(credential=ManagedIdentityCredential(), **kv.secret_client_kwargs()) as client:
        with pytest.raises(ClientAuthenticationError):
            client.get_secret("mi-only")

    assert [r.status for r in kv.requests("identity")] == [401]
    assert kv.count(authorized=True) == 0


def test_wrong_client_secret_fails_authentication(canaries, kv):
    kv.add_secret("sp-only", canaries.new())
    arguments = kv.client_secret_credential_kwargs() | {"client_secret": "wrong-" + secrets.token_hex(4)}

    with SecretClient(credential=ClientSecretCredential(**arguments), **kv.secret_client_kwargs()) as client:
        with pytest.raises(ClientAuthenticationError) as caught:
            client.get_secret("sp-only")

    assert "AADSTS7000215" in str(caught.value)
    assert kv.requests("login", method="POST")[0].status == 401
    assert kv.count(authorized=True) == 0


def workload_identity_credential(kv, tmp_path, client_id: str, assertion: str):
    """azure-identity's AKS credential: the service-account token in a file, the double as Entra ID."""
    token_file = tmp_path / "token"
    token_file.write_text(assertion)
    return WorkloadIdentityCredential(
        tenant_id=kv.tenant_id, client_id=client_id, token_file_path=str(token_file),
        authority=kv.authority, disable_instance_discovery=True, connection_verify=str(kv.ca_path))


def test_workload_identity_federation(canaries, kv, tmp_path):
    value = canaries.new()
    kv.add_secret("aks", value)
    client_id, service_account_token = kv.register_workload_identity()
    credential = workload_identity_credential(kv, tmp_path, client_id, service_account_token)

    with SecretClient(credential=credential, **kv.secret_client_kwargs()) as client:
        assert client.get_secret("aks").value == value
    assert [r.status for r in kv.requests("login", method="POST")] == [200]


def test_workload_identity_with_a_foreign_assertion_fails(canaries, kv, tmp_path):
    kv.add_secret("aks", canaries.new())
    client_id, _ = kv.register_workload_identity()
    _, other_token = kv.register_workload_identity(subject="system:serviceaccount:other:sa")
    credential = workload_identity_credential(kv, tmp_path, client_id, other_token)

    with SecretClient(credential=credential, **kv.secret_client_kwargs()) as client:
        with pytest.raises(ClientAuthenticationError) as caught:
            client.get_secret("aks")

    assert "AADSTS70021" in str(caught.value)
    assert "Assertion Subject: 'system:serviceaccount:other:sa'" in str(caught.value)
    assert kv.count(authorized=True) == 0


def test_raw_challenge_is_exactly_the_service_answer(kv):
    context = ssl.create_default_context(cafile=str(kv.ca_path))
    request = urllib.request.Request(f"{kv.url}/secrets/anything/?api-version=7.5")

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=context)

    assert caught.value.code == 401
    assert caught.value.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.windows.net/{kv.tenant_id}", resource="https://vault.azure.net"'
    )
    assert caught.value.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(caught.value.read()) == {
        "error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
    }


def test_request_log_holds_no_secrets(canaries, kv, managed_identity_client, service_principal_client):
    value = canaries.new()
    kv.add_secret("audited", value)
    managed_identity_client.get_secret("audited")
    service_principal_client.get_secret("audited")

    logged = repr(kv.requests(None))
    canaries.assert_absent(logged, where="the request log")
    for credential_material in (kv.client_secret, kv.identity_header):
        assert credential_material not in logged
    assert "Bearer" not in logged
