"""The Secret Manager double is only worth something if google-auth accepts every answer.

google-auth's own credential classes (service-account key, workload identity federation, the
metadata server) get their tokens from the double over real sockets, and plain `requests` reads
the REST surface, as the provider does. Every secret value is a canary.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.auth import identity_pool
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from shim.providers.gcp import crc32c
from tests.doubles.gcp import SCOPE, SecretManagerDouble


@pytest.fixture
def gcp(tmp_path):
    with SecretManagerDouble(tmp_path) as double:
        yield double


@pytest.fixture
def session(gcp, monkeypatch):
    # Trusted as shim trusts it: requests (and so google-auth) read REQUESTS_CA_BUNDLE per request.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gcp.ca_path))
    with requests.Session() as http:
        yield http


def access(gcp, session, token, name, **kwargs):
    return session.get(f"{gcp.endpoint}/v1/{name}:access",
                       headers={"Authorization": f"Bearer {token}"}, **kwargs)


def service_account_token(gcp, session, tmp_path) -> str:
    info = json.loads(gcp.service_account_key(tmp_path / "key.json").read_text())
    credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    credentials.refresh(Request(session))
    return credentials.token


def test_a_service_account_key_gets_a_token_the_api_accepts(gcp, session, tmp_path, canaries):
    value = canaries.new()
    gcp.add_version("db", value)
    token = service_account_token(gcp, session, tmp_path)

    answer = access(gcp, session, token, f"projects/{gcp.project}/secrets/db/versions/latest")

    assert answer.status_code == 200
    body = answer.json()
    assert body["name"] == f"projects/{gcp.project_number}/secrets/db/versions/1"
    data = base64.b64decode(body["payload"]["data"])
    assert data.decode() == value
    assert body["payload"]["dataCrc32c"] == str(crc32c(data))
    assert [r.service for r in gcp.requests(None)] == ["oauth2", "secretmanager"]


def test_a_key_the_double_no_longer_knows_is_invalid_grant(gcp, session, tmp_path):
    info = json.loads(gcp.service_account_key(tmp_path / "old.json").read_text())
    gcp.service_account_key(tmp_path / "new.json")
    credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(Request(session))


def test_workload_identity_federation_exchanges_the_subject_token(gcp, session, tmp_path, canaries):
    gcp.add_version("db", canaries.new())
    info = json.loads(gcp.workload_identity_config(tmp_path / "wif").read_text())
    credentials = identity_pool.Credentials.from_info(info, scopes=[SCOPE])
    credentials.refresh(Request(session))

    answer = access(gcp, session, credentials.token, f"projects/{gcp.project}/secrets/db/versions/1")

    assert answer.status_code == 200
    assert gcp.requests("sts")[0].status == 200


def test_the_metadata_server_through_google_auth(gcp, tmp_path):
    # google-auth reads GCE_METADATA_HOST when it is imported: a fresh interpreter.
    code = ("from google.auth import compute_engine\n"
            "from google.auth.transport.requests import Request\n"
            "c = compute_engine.Credentials(scopes=['https://www.googleapis.com/auth/cloud-platform'])\n"
            "c.refresh(Request())\n"
            "print(c.token.startswith('ya29.'), c.service_account_email)\n")
    env = {**os.environ, **gcp.base_env()}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", gcp.service_account_email], result.stderr
    assert [r.path for r in gcp.requests("metadata")] == [
        "/computeMetadata/v1/instance/service-accounts/default/",
        "/computeMetadata/v1/instance/service-accounts/default/token"]


def test_the_metadata_server_insists_on_its_header(gcp):
    url = f"http://{gcp.metadata_host}/computeMetadata/v1/project/project-id"
    refused = requests.get(url)
    assert refused.status_code == 403
    answered = requests.get(url, headers={"Metadata-Flavor": "Google"})
    assert answered.status_code == 200 and answered.text == gcp.project
    assert answered.headers["Metadata-Flavor"] == "Google"


def test_errors_are_google_rpc_status_with_their_http_codes(gcp, session, tmp_path, canaries):
    gcp.add_version("db", canaries.new())
    gcp.add_version("db", canaries.new())
    gcp.set_state("db", 1, "DISABLED")
    gcp.add_version("gone", canaries.new())
    gcp.set_state("gone", 1, "DESTROYED")
    gcp.add_version("locked", canaries.new())
    gcp.deny(gcp.service_account_email, "locked")
    token = service_account_token(gcp, session, tmp_path)
    base = f"projects/{gcp.project}/secrets"

    cases = {
        f"{base}/absent/versions/latest": (404, "NOT_FOUND", "not found or has no versions."),
        f"{base}/db/versions/9": (404, "NOT_FOUND", "/versions/9] not found."),
        f"{base}/db/versions/1": (400, "FAILED_PRECONDITION", "is in DISABLED state."),
        f"{base}/gone/versions/1": (400, "FAILED_PRECONDITION", "is in DESTROYED state."),
        f"{base}/locked/versions/latest": (403, "PERMISSION_DENIED", "secretmanager.versions.access"),
    }
    for name, (status, code, words) in cases.items():
        answer = access(gcp, session, token, name)
        error = answer.json()["error"]
        assert (answer.status_code, error["code"], error["status"]) == (status, status, code), name
        assert words in error["message"]
    unauthenticated = access(gcp, session, "ya29.forged", f"{base}/db/versions/latest")
    assert (unauthenticated.status_code, unauthenticated.json()["error"]["status"]) == (401, "UNAUTHENTICATED")
    # latest is the most recently created version, enabled or not.
    assert access(gcp, session, token, f"{base}/db/versions/latest").json()["name"].endswith("/versions/2")


def test_version_metadata_and_the_get_permission(gcp, session, tmp_path, canaries):
    gcp.add_version("db", canaries.new())
    token = service_account_token(gcp, session, tmp_path)
    url = f"{gcp.endpoint}/v1/projects/{gcp.project}/secrets/db/versions/latest"

    body = session.get(url, headers={"Authorization": f"Bearer {token}"}).json()
    assert body["state"] == "ENABLED" and body["name"].endswith("/versions/1")
    assert body["createTime"].endswith("Z") and len(body["createTime"].split(".")[1]) == 10
    assert "payload" not in body
    gcp.allow_get = False
    assert session.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_regional_secrets_live_under_locations(gcp, session, tmp_path, canaries):
    gcp.add_version("eu", canaries.new(), location="europe-west1")
    token = service_account_token(gcp, session, tmp_path)
    regional = access(gcp, session, token, f"projects/{gcp.project}/locations/europe-west1/secrets/eu/versions/1")
    assert regional.json()["name"] == f"projects/{gcp.project_number}/locations/europe-west1/secrets/eu/versions/1"
    assert access(gcp, session, token, f"projects/{gcp.project}/secrets/eu/versions/1").status_code == 404


def test_fault_injection(gcp, session, tmp_path, canaries):
    gcp.add_version("db", canaries.new())
    token = service_account_token(gcp, session, tmp_path)
    name = f"projects/{gcp.project}/secrets/db/versions/latest"

    gcp.inject_failure(429, retry_after=1.5)
    throttled = access(gcp, session, token, name)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1.5"
    assert throttled.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    gcp.inject_failure(503)
    assert access(gcp, session, token, name).json()["error"]["status"] == "UNAVAILABLE"
    gcp.inject_garbage()
    garbage = access(gcp, session, token, name)
    assert garbage.status_code == 200 and garbage.headers["Content-Type"] == "text/html"
    gcp.corrupt_checksums = True
    body = access(gcp, session, token, name).json()
    assert body["payload"]["dataCrc32c"] != str(crc32c(base64.b64decode(body["payload"]["data"])))
    gcp.corrupt_checksums = False

    gcp.set_slow_body(0.01)
    started = time.monotonic()
    assert access(gcp, session, token, name).status_code == 200
    slow = time.monotonic() - started
    gcp.set_slow_body(0.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        gcp.set_latency(2.0)
        access(gcp, session, token, name, timeout=0.3)
    assert slow > 0.5  # about a hundred bytes, 10 ms apart


def test_requests_are_answered_concurrently(gcp, session, tmp_path, canaries):
    for index in range(8):
        gcp.add_version(f"s{index}", canaries.new())
    token = service_account_token(gcp, session, tmp_path)
    gcp.set_latency(0.5)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(
            lambda index: access(gcp, session, token,
                                 f"projects/{gcp.project}/secrets/s{index}/versions/latest").status_code,
            range(8)))
    assert statuses == [200] * 8
    reads = gcp.requests()
    assert max(r.started for r in reads) < min(r.finished for r in reads)
