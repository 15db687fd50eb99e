"""The 1Password Connect provider, end to end: `shim exec` as a real process against the Connect
double (tests/doubles/onepassword.py) over HTTPS on 127.0.0.1, with `op://` references written
as an env file for `op run` would have them.

Every field value is a canary, and the Connect token is checked against shim's output.
"""

from __future__ import annotations

import json

import pytest

from tests.doubles.onepassword import ConnectDouble


@pytest.fixture
def connect(tmp_path):
    with ConnectDouble(tmp_path) as double:
        yield double


def exec_probe(run_shim, probe, env, *options):
    return run_shim(["exec", "--deadline", "10s", *options, "--", *probe.argv], env)


def test_op_references_read_each_item_once(connect, canaries, run_shim, probe):
    password, user, admin = canaries.new("pw"), canaries.new("user"), canaries.new("admin")
    connect.add_item("prod", "postgres", {"username": user, "password": password},
                     sections={"admin access": {"password": admin}})
    token = connect.token("prod")
    env = {**connect.env(token),
           "DB_PASSWORD": "op://prod/postgres/password",
           "DB_USER": "op://prod/postgres/username",
           "ADMIN": "op://prod/postgres/admin access/password",
           "URL": "postgresql://${op://prod/postgres/username}:${op://prod/postgres/password}@db/app"}

    result = exec_probe(run_shim, probe, env, "--user", "nobody")

    assert result.returncode == 0, result.stderr
    assert probe.read()["uid"] == 65534
    child = probe.read()["env"]
    assert (child["DB_PASSWORD"], child["DB_USER"], child["ADMIN"]) == (password, user, admin)
    assert child["URL"] == f"postgresql://{user}:{password}@db/app"
    assert "OP_CONNECT_TOKEN" not in child
    # One vault lookup, one item lookup, one item read, for four references.
    paths = [entry.path for entry in connect.requests()]
    assert paths.count("/v1/vaults") == 1 and len(paths) == 3
    connect.assert_no_credentials(result.stdout, result.stderr)


def test_ids_skip_the_lookups(connect, canaries, run_shim, probe):
    value = canaries.new()
    item_id = connect.add_item("prod", "api", {"credential": value})
    env = {**connect.env(connect.token("prod")),
           "KEY": f"op://{connect.vault_id('prod')}/{item_id}/credential"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["KEY"] == value
    assert connect.count() == 1


def test_import_of_an_item_and_the_ref_form_with_options(connect, canaries, run_shim, probe):
    password, note = canaries.new("pw"), canaries.new("note")
    connect.add_item("prod", "app", {"password": password, "api-key": note})
    env = {**connect.env(connect.token("prod")),
           "OPTIONAL": "ref+onepassword://prod/app?optional=true#/absent",
           "AGAIN": "op://prod/app/api-key"}

    result = exec_probe(run_shim, probe, env, "--import", "ref+onepassword://prod/app?prefix=APP_")

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["APP_PASSWORD"] == password and child["APP_API_KEY"] == note
    assert child["AGAIN"] == note and "OPTIONAL" not in child
    assert connect.count(path="/v1/vaults") == 1


def test_check_shows_the_op_form(connect, canaries, run_shim):
    connect.add_item("prod", "app", {"password": canaries.new()})
    env = {**connect.env(connect.token("prod")), "A": "op://prod/app/password",
           "B": "ref+onepassword://prod/app#/password"}

    result = run_shim(["check", "--json"], env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("op://prod/app/password") >= 2
    assert "ref+onepassword" not in result.stdout


def test_missing_vault_item_and_field_are_66(connect, canaries, run_shim, probe):
    connect.add_item("prod", "app", {"password": canaries.new()})
    env = {**connect.env(connect.token("prod", "staging")),
           "NO_VAULT": "op://staging/app/password", "NO_ITEM": "op://prod/absent/password",
           "NO_FIELD": "op://prod/app/absent", "NO_SECTION": "op://prod/app/nowhere/password"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 66, result.stderr
    assert not probe.ran
    for name in ("NO_VAULT", "NO_ITEM", "NO_FIELD", "NO_SECTION"):
        assert f"{name} (op://" in result.stderr


def test_two_items_of_one_title_are_78_asking_for_the_id(connect, canaries, run_shim, probe):
    connect.add_item("prod", "twin", {"password": canaries.new()})
    connect.add_item("prod", "twin", {"password": canaries.new()})
    env = {**connect.env(connect.token("prod")), "PW": "op://prod/twin/password"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "2 objects match item twin in vault prod" in result.stderr and "ID" in result.stderr


@pytest.mark.parametrize("case", ["unknown token", "vault not granted"])
def test_refused_tokens_are_77_or_not_found(connect, canaries, run_shim, probe, case):
    item = connect.add_item("prod", "app", {"password": canaries.new()})
    token = connect.token("other") if case == "vault not granted" else "eyJ" + "x" * 40
    env = {**connect.env(token),
           "PW": f"op://{connect.vault_id('prod')}/{item}/password"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77, result.stderr
    assert "was refused (HTTP 40" in result.stderr and "OP_CONNECT_TOKEN" in result.stderr
    assert "Access denied" not in result.stderr and "signature" not in result.stderr


@pytest.mark.parametrize("missing", ["OP_CONNECT_HOST", "OP_CONNECT_TOKEN"])
def test_missing_settings_are_78_and_ask_nothing(connect, run_shim, probe, missing):
    env = {**connect.env(connect.token("prod")), "PW": "op://prod/app/password"}
    del env[missing]

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert f"{missing} is not set" in result.stderr
    assert connect.count() == 0


@pytest.mark.parametrize("host", ["http://connect.example:8080", "connect:8080", "ftp://x"])
def test_the_host_must_be_https_unless_loopback(connect, run_shim, probe, host):
    env = {**connect.env(connect.token("prod")), "PW": "op://prod/app/password",
           "OP_CONNECT_HOST": host}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "OP_CONNECT_HOST must be an https:// base URL" in result.stderr


def test_plain_http_to_a_loopback_sidecar_is_allowed(tmp_path, canaries, run_shim, probe):
    with ConnectDouble(tmp_path, tls=False) as sidecar:
        value = canaries.new()
        sidecar.add_item("prod", "app", {"password": value})
        env = {**sidecar.env(sidecar.token("prod")), "PW": "op://prod/app/password"}
        assert env["OP_CONNECT_HOST"].startswith("http://127.0.0.1:")

        result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PW"] == value


def test_a_whole_item_is_json_with_its_sections(connect, canaries, run_shim, probe):
    user, key = canaries.new("user"), canaries.new("key")
    connect.add_item("prod", "app", {"username": user}, sections={"api": {"key": key}})
    env = {**connect.env(connect.token("prod")), "ALL": "op://prod/app"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    whole = json.loads(probe.read()["env"]["ALL"])
    assert whole["username"] == user and whole["api"]["key"] == key


def test_a_service_account_token_alone_is_78_naming_connect(connect, canaries, run_shim, probe):
    env = {"OP_SERVICE_ACCOUNT_TOKEN": "ops_" + canaries.new("sa"), "PW": "op://prod/app/password"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "OP_CONNECT_HOST is not set" in result.stderr
    assert "OP_SERVICE_ACCOUNT_TOKEN needs 1Password's SDK" in result.stderr
