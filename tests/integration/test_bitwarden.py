"""The Bitwarden Secrets Manager provider, end to end: `shim exec` as a real process against the
double (tests/doubles/bitwarden.py) over HTTPS on 127.0.0.1: one login, one GET per secret,
values opened with the organization key, a project imported with one listing and one batch read.

Every value is a canary; the access token, its client secret and key, and the bearer tokens the
double issued are checked against shim's output.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.doubles.bitwarden import BitwardenDouble


@pytest.fixture
def bws(tmp_path):
    with BitwardenDouble(tmp_path) as double:
        yield double


def exec_probe(run_shim, probe, env, *options):
    return run_shim(["exec", "--deadline", "10s", *options, "--", *probe.argv], env)


def test_secrets_by_id_with_one_login(bws, canaries, run_shim, probe):
    project = str(uuid.uuid4())
    password, config = canaries.new("pw"), canaries.new("cfg")
    first = bws.add_secret("DB_PASSWORD", password, project=project)
    second = bws.add_secret("APP_CONFIG", json.dumps({"db": {"password": config}}), project=project)
    env = {**bws.env(bws.access_token(project)),
           "DB_PASSWORD": f"ref+bws://{first.upper()}",
           "NESTED": f"ref+bws://{second}#/db/password",
           "URL": f"postgresql://app:${{ref+bws://{first}}}@db/app"}

    result = exec_probe(run_shim, probe, env, "--user", "nobody")

    assert result.returncode == 0, result.stderr
    assert probe.read()["uid"] == 65534
    child = probe.read()["env"]
    assert child["DB_PASSWORD"] == password and child["NESTED"] == config
    assert child["URL"] == f"postgresql://app:{password}@db/app"
    assert "BWS_ACCESS_TOKEN" not in child
    assert bws.count(path="/identity/connect/token") == 1
    assert bws.count(path=f"/api/secrets/{first}") == 1 and bws.count() == 3
    bws.assert_no_credentials(result.stdout, result.stderr)


def test_import_of_a_project(bws, canaries, run_shim, probe):
    project = str(uuid.uuid4())
    one, two = canaries.new("one"), canaries.new("two")
    bws.add_secret("ONE", one, project=project)
    bws.add_secret("api-key", two, project=project)
    env = bws.env(bws.access_token(project))

    result = exec_probe(run_shim, probe, env, "--import", f"ref+bws://project/{project}?prefix=APP_")

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["APP_ONE"] == one and child["APP_API_KEY"] == two
    assert bws.count(path="/api/secrets/get-by-ids") == 1


def test_missing_or_unreadable_secret_is_66(bws, canaries, run_shim, probe):
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    hidden = bws.add_secret("OTHER", canaries.new(), project=theirs)
    env = {**bws.env(bws.access_token(mine)), "ABSENT": f"ref+bws://{uuid.uuid4()}",
           "HIDDEN": f"ref+bws://{hidden}", "OPTIONAL": f"ref+bws://{uuid.uuid4()}?optional=true"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 66, result.stderr
    assert "ABSENT (" in result.stderr and "HIDDEN (" in result.stderr
    assert "OPTIONAL" not in result.stderr
    assert not probe.ran


def test_a_revoked_token_is_77(bws, canaries, run_shim, probe):
    project = str(uuid.uuid4())
    secret = bws.add_secret("K", canaries.new(), project=project)
    token = bws.access_token(project)
    bws.revoke(token)
    env = {**bws.env(token), "K": f"ref+bws://{secret}"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77, result.stderr
    assert "login was refused (HTTP 400)" in result.stderr
    bws.assert_no_credentials(result.stdout, result.stderr)


def test_a_token_whose_key_is_wrong_is_77(bws, canaries, run_shim, probe):
    project = str(uuid.uuid4())
    secret = bws.add_secret("K", canaries.new(), project=project)
    token = bws.access_token(project)
    wrong = token.rsplit(":", 1)[0] + ":" + "A" * 22 + "=="
    env = {**bws.env(wrong), "K": f"ref+bws://{secret}"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77, result.stderr
    assert "does not open with the access token's key" in result.stderr


@pytest.mark.parametrize("token", ["", "not-a-token", "0.abc.def:xyz"])
def test_a_missing_or_malformed_token_is_78_and_asks_nothing(bws, run_shim, probe, token):
    env = {**bws.env(token), "K": f"ref+bws://{uuid.uuid4()}"}
    if not token:
        del env["BWS_ACCESS_TOKEN"]

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "BWS_ACCESS_TOKEN is not" in result.stderr
    assert bws.count() == 0


def test_a_tampered_value_is_65(bws, canaries, run_shim, probe):
    project = str(uuid.uuid4())
    secret = bws.add_secret("K", canaries.new(), project=project)
    env = {**bws.env(bws.access_token(project)), "K": f"ref+bws://{secret}"}
    bws.tamper_values = True

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 65, result.stderr
    assert "does not open with the organization's key" in result.stderr
    assert not probe.ran


def test_the_server_url_must_be_https(bws, run_shim, probe):
    env = {**bws.env(bws.access_token(str(uuid.uuid4()))), "K": f"ref+bws://{uuid.uuid4()}",
           "BWS_SERVER_URL": "http://vault.example"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "BWS_SERVER_URL must be an https:// base URL" in result.stderr
