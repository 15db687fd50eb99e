"""The Infisical provider, end to end: `shim exec` as a real process against the Infisical double
(tests/doubles/infisical.py) over HTTPS on 127.0.0.1: universal-auth login and an access token,
one list per folder, the exit-code table and the faults.

Every secret is a canary, and every token and client secret the double knows is checked against
shim's output (`assert_no_credentials`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import BASE_ENV
from tests.doubles.https import Reply
from tests.doubles.infisical import LOGIN, InfisicalDouble
from tests.integration.test_supervise import wait_for


@pytest.fixture
def infisical(tmp_path):
    with InfisicalDouble(tmp_path) as double:
        yield double


def exec_probe(run_shim, probe, env, *options):
    return run_shim(["exec", "--deadline", "10s", *options, "--", *probe.argv], env)


def test_universal_auth_logs_in_once_and_lists_each_folder_once(infisical, canaries, run_shim,
                                                                probe):
    project = infisical.project
    root, db, api = canaries.new("root"), canaries.new("db"), canaries.new("api")
    infisical.add_secret(project, "prod", "/", "ROOT_KEY", root)
    infisical.add_secret(project, "prod", "/app/db", "DB_PASSWORD", db)
    infisical.add_secret(project, "prod", "/app/db", "API_KEY", api)
    client_id, client_secret = infisical.machine_identity((project, "prod"))
    env = {**infisical.env(client_id, client_secret),
           "ROOT": f"ref+infisical://{project}/prod#/ROOT_KEY",
           "DB": f"ref+infisical://{project}/prod/app/db#/DB_PASSWORD",
           "API": f"ref+infisical://{project}/prod/app/db#API_KEY",
           "URL": f"postgresql://app:${{ref+infisical://{project}/prod/app/db#/DB_PASSWORD}}@db/app"}

    result = exec_probe(run_shim, probe, env, "--user", "nobody")

    assert result.returncode == 0, result.stderr
    assert probe.read()["uid"] == 65534
    child = probe.read()["env"]
    assert (child["ROOT"], child["DB"], child["API"]) == (root, db, api)
    assert child["URL"] == f"postgresql://app:{db}@db/app"
    assert not any(name.startswith(("INFISICAL_TOKEN", "INFISICAL_UNIVERSAL_AUTH_"))
                   for name in child)
    assert infisical.count(path=LOGIN) == 1
    folders = sorted(dict(entry.query)["secretPath"] for entry in infisical.lists())
    assert folders == ["/", "/app/db"]
    infisical.assert_no_credentials(result.stdout, result.stderr)


def test_an_access_token_is_used_as_it_is(infisical, canaries, run_shim, probe):
    project, value = infisical.project, canaries.new()
    infisical.add_secret(project, "dev", "/", "KEY", value)
    client_id, _ = infisical.machine_identity((project, "dev"))
    token = infisical.access_token(client_id)
    env = {**infisical.env(token=token), "KEY": f"ref+infisical://{project}/dev#/KEY"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["KEY"] == value
    assert infisical.count(path=LOGIN) == 0 and len(infisical.lists(token)) == 1


def test_the_self_hosted_url_of_the_cli_is_honoured(infisical, canaries, run_shim, probe):
    project, value = infisical.project, canaries.new()
    infisical.add_secret(project, "dev", "/", "KEY", value)
    client_id, client_secret = infisical.machine_identity((project, "dev"))
    env = {**infisical.env(client_id, client_secret), "KEY": f"ref+infisical://{project}/dev#/KEY",
           "INFISICAL_API_URL": f"{infisical.endpoint}/api"}
    del env["SHIM_INFISICAL_ENDPOINT"]

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["KEY"] == value


def test_import_of_a_folder(infisical, canaries, run_shim, probe):
    project = infisical.project
    one, two = canaries.new("one"), canaries.new("two")
    infisical.add_secret(project, "prod", "/app", "ONE", one)
    infisical.add_secret(project, "prod", "/app", "TWO", two)
    client_id, client_secret = infisical.machine_identity((project, "prod"))
    env = {**infisical.env(client_id, client_secret),
           "AGAIN": f"ref+infisical://{project}/prod/app#/TWO"}

    result = exec_probe(run_shim, probe, env, "--import",
                        f"ref+infisical://{project}/prod/app?prefix=APP_")

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["APP_ONE"], child["APP_TWO"], child["AGAIN"]) == (one, two, two)
    assert len(infisical.lists()) == 1


def test_a_whole_folder_without_a_key_is_json_text(infisical, canaries, run_shim, probe):
    project, value = infisical.project, canaries.new()
    infisical.add_secret(project, "prod", "/", "ONLY", value)
    client_id, client_secret = infisical.machine_identity((project, "prod"))
    env = {**infisical.env(client_id, client_secret), "ALL": f"ref+infisical://{project}/prod"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert json.loads(probe.read()["env"]["ALL"]) == {"ONLY": value}


def test_missing_project_environment_folder_and_key_are_66(infisical, canaries, run_shim, probe):
    project = infisical.project
    infisical.add_secret(project, "prod", "/app", "PRESENT", canaries.new())
    infisical.add_secret(project, "dev", "/", "ELSEWHERE", canaries.new())
    client_id, client_secret = infisical.machine_identity(
        (project, "prod"), (project, "staging"), ("nope", "prod"))
    env = {**infisical.env(client_id, client_secret),
           "NO_PROJECT": "ref+infisical://nope/prod#/PRESENT",
           "NO_ENV": f"ref+infisical://{project}/staging#/PRESENT",
           "NO_FOLDER": f"ref+infisical://{project}/prod/absent#/PRESENT",
           "NO_KEY": f"ref+infisical://{project}/prod/app#/ABSENT",
           "OPTIONAL": f"ref+infisical://{project}/prod/app?optional=true#/ABSENT"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 66, result.stderr
    assert not probe.ran
    for name in ("NO_PROJECT", "NO_ENV", "NO_FOLDER", "NO_KEY"):
        assert f"{name} (" in result.stderr
    assert "OPTIONAL" not in result.stderr
    assert result.stderr.count("does not exist (HTTP 404)") == 3


@pytest.mark.parametrize("case", ["wrong secret", "revoked identity", "not in the environment",
                                  "values hidden"])
def test_refused_credentials_are_77(infisical, canaries, run_shim, probe, case):
    project = infisical.project
    infisical.add_secret(project, "prod", "/", "KEY", canaries.new())
    infisical.add_secret(project, "dev", "/", "KEY", canaries.new())
    client_id, client_secret = infisical.machine_identity(
        (project, "dev") if case == "not in the environment" else (project, "prod"),
        reader=case != "values hidden")
    if case == "wrong secret":
        client_secret = client_secret[::-1]
    elif case == "revoked identity":
        infisical.revoke(client_id)
    env = {**infisical.env(client_id, client_secret), "KEY": f"ref+infisical://{project}/prod#/KEY"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77, result.stderr
    assert not probe.ran
    expected = {"wrong secret": "login was refused (HTTP 401)",  # pragma: allowlist secret
                "revoked identity": "login was refused (HTTP 401)",
                "not in the environment": "was refused (HTTP 403)",
                "values hidden": "not read their values"}[case]
    assert expected in result.stderr
    assert "Invalid credentials" not in result.stderr   # Infisical's text is not quoted
    infisical.assert_no_credentials(result.stdout, result.stderr)


@pytest.mark.parametrize("given", [{}, {"INFISICAL_UNIVERSAL_AUTH_CLIENT_ID": "abc"}])
def test_missing_credentials_are_78_and_ask_nothing(infisical, run_shim, probe, given):
    env = {**infisical.env(), **given, "KEY": f"ref+infisical://{infisical.project}/prod#/KEY"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert ("no Infisical credentials" in result.stderr if not given
            else "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET is not set" in result.stderr)
    assert infisical.count() == 0


def test_an_answer_past_the_cap_is_65(infisical, canaries, run_shim, probe):
    project = infisical.project
    client_id, client_secret = infisical.machine_identity((project, "prod"))
    huge = [{"secretKey": "K", "secretValue": "x" * (5 * 1024 * 1024), "type": "shared"}]
    env = {**infisical.env(token=infisical.access_token(client_id)),
           "KEY": f"ref+infisical://{project}/prod#/K"}
    infisical.inject_reply(Reply(200, {"secrets": huge}))

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 65, result.stderr
    assert "more than 4 MiB" in result.stderr


@pytest.mark.parametrize("variable", ["SHIM_INFISICAL_ENDPOINT", "INFISICAL_API_URL"])
def test_the_endpoint_must_be_https(infisical, run_shim, probe, variable):
    client_id, client_secret = infisical.machine_identity((infisical.project, "prod"))
    env = {**infisical.env(client_id, client_secret),
           "KEY": f"ref+infisical://{infisical.project}/prod#/KEY",
           variable: "http://127.0.0.1:8080/api"}
    env.pop("SHIM_INFISICAL_ENDPOINT") if variable != "SHIM_INFISICAL_ENDPOINT" else None

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert f"{variable} must be an https:// base URL" in result.stderr
    assert infisical.count() == 0


def test_watch_picks_up_a_change_with_one_login(infisical, canaries, shared_dir):
    project, first, second = infisical.project, canaries.new("v1"), canaries.new("v2")
    infisical.add_secret(project, "prod", "/", "ROTATING", first)
    client_id, client_secret = infisical.machine_identity((project, "prod"))
    starts = shared_dir / "starts"
    env = {**BASE_ENV, **infisical.env(client_id, client_secret),
           "SECRET": f"ref+infisical://{project}/prod#/ROTATING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "shim", "exec", "--watch", "300ms", "--",
         "sh", "-c", f'echo "$SECRET" >> {starts}; exec sleep 60'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: starts.exists() and starts.read_text().split() == [first])
        infisical.add_secret(project, "prod", "/", "ROTATING", second)
        assert wait_for(lambda: starts.read_text().split() == [first, second])
        assert len(infisical.lists()) >= 2
        assert infisical.count(path=LOGIN) == 1   # the token is handed from tick to tick
    finally:
        os.kill(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    canaries.assert_absent(stdout, stderr, where="shim's output")
    infisical.assert_no_credentials(stdout, stderr)
    assert "Traceback" not in stderr
