"""The Doppler provider, end to end: `shim exec` and `shim check` as real processes against the
Doppler double (tests/doubles/doppler.py) over HTTPS on 127.0.0.1.

Every secret is a canary and every token the double issued is checked against shim's output:
`run_shim` fails a test whose output holds a canary, `assert_no_credentials` does the same for tokens.
"""

from __future__ import annotations

import json

import pytest

from tests.doubles.doppler import DopplerDouble
from tests.doubles.https import Reply


@pytest.fixture
def doppler(tmp_path):
    with DopplerDouble(tmp_path) as double:
        yield double


def exec_probe(run_shim, probe, env, *options):
    return run_shim(["exec", "--deadline", "10s", *options, "--", *probe.argv], env)


def test_a_service_token_reads_its_config_once_for_every_name(doppler, canaries, run_shim, probe):
    password, key = canaries.new("pw"), canaries.new("key")
    doppler.add_config("billing", "prd", {"DB_PASSWORD": password, "API_KEY": key})
    token = doppler.service_token("billing", "prd")
    env = {**doppler.env(token),
           "DB_PASSWORD": "ref+doppler:////DB_PASSWORD",
           "API_KEY": "ref+doppler:////#/API_KEY",
           "DATABASE_URL": "postgresql://app:${ref+doppler:////DB_PASSWORD}@db/app"}

    # As a container runs it: the read happens before the drop to --user.
    result = exec_probe(run_shim, probe, env, "--user", "nobody")

    assert result.returncode == 0, result.stderr
    assert probe.read()["uid"] == 65534
    child = probe.read()["env"]
    assert child["DB_PASSWORD"] == password and child["API_KEY"] == key
    assert child["DATABASE_URL"] == f"postgresql://app:{password}@db/app"
    assert "DOPPLER_TOKEN" not in child
    downloads = doppler.downloads(token)
    assert len(downloads) == 1 and doppler.count() == 1
    # A service token names no project or config: Doppler knows its config.
    assert dict(downloads[0].query) == {"format": "json"}
    doppler.assert_no_credentials(result.stdout, result.stderr)


def test_an_account_token_reads_each_named_config_once(doppler, canaries, run_shim, probe):
    prd, stg, other = canaries.new("prd"), canaries.new("stg"), canaries.new("other")
    doppler.add_config("billing", "prd", {"DB_PASSWORD": prd, "OTHER": other})
    doppler.add_config("web", "stg_eu", {"DB_PASSWORD": stg})
    token = doppler.account_token(("billing", "prd"), ("web", "stg_eu"))
    env = {**doppler.env(token),
           "VALS": "ref+doppler://billing/prd/DB_PASSWORD",
           "POINTER": "ref+doppler://billing/prd#/OTHER",
           "PLAIN_KEY": "ref+doppler://billing/prd#DB_PASSWORD",
           "STAGING": "ref+doppler://web/stg_eu#/DB_PASSWORD"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["VALS"] == child["PLAIN_KEY"] == prd
    assert child["POINTER"] == other and child["STAGING"] == stg
    queries = sorted(dict(entry.query)["project"] + "/" + dict(entry.query)["config"]
                     for entry in doppler.downloads(token))
    assert queries == ["billing/prd", "web/stg_eu"]
    doppler.assert_no_credentials(result.stdout, result.stderr)


def test_import_of_a_whole_config_shares_the_explicit_references_read(doppler, canaries,
                                                                     run_shim, probe):
    password, key = canaries.new("pw"), canaries.new("key")
    doppler.add_config("billing", "prd", {"DB_PASSWORD": password, "STRIPE_KEY": key})
    token = doppler.account_token(("billing", "prd"))
    env = {**doppler.env(token), "AGAIN": "ref+doppler://billing/prd#/STRIPE_KEY"}

    result = exec_probe(run_shim, probe, env, "--import", "ref+doppler://billing/prd?prefix=APP_")

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["APP_DB_PASSWORD"] == password and child["APP_STRIPE_KEY"] == key
    assert child["AGAIN"] == key
    # Doppler's own names come along, as `doppler run` sets them.
    assert child["APP_DOPPLER_PROJECT"] == "billing" and child["APP_DOPPLER_CONFIG"] == "prd"
    assert doppler.count() == 1


def test_a_whole_config_without_a_name_is_json_text(doppler, canaries, run_shim, probe):
    value = canaries.new()
    doppler.add_config("billing", "prd", {"ONLY": value})
    env = {**doppler.env(doppler.account_token(("billing", "prd"))),
           "ALL": "ref+doppler://billing/prd"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert json.loads(probe.read()["env"]["ALL"])["ONLY"] == value


def test_check_shows_one_canonical_form(doppler, canaries, run_shim):
    doppler.add_config("billing", "prd", {"DB_PASSWORD": canaries.new()})
    env = {**doppler.env(doppler.account_token(("billing", "prd"))),
           "A": "ref+doppler://billing/prd/DB_PASSWORD", "B": "ref+doppler://billing/prd#DB_PASSWORD",
           "C": "ref+doppler:////DB_PASSWORD"}

    result = run_shim(["check", "--json"], env)

    assert result.returncode in (0, 78), result.stderr   # C needs a service token: 78
    assert result.stdout.count("ref+doppler://billing/prd#/DB_PASSWORD") >= 2
    assert "ref+doppler:////#/DB_PASSWORD" in result.stdout
    assert "billing/prd/DB_PASSWORD" not in result.stdout


def test_missing_project_config_and_name_are_66(doppler, canaries, run_shim, probe):
    doppler.add_config("billing", "prd", {"PRESENT": canaries.new()})
    token = doppler.account_token(("billing", "prd"), ("billing", "dev"), ("nope", "prd"))
    env = {**doppler.env(token),
           "NO_CONFIG": "ref+doppler://billing/dev#/PRESENT",
           "NO_PROJECT": "ref+doppler://nope/prd#/PRESENT",
           "NO_NAME": "ref+doppler://billing/prd#/ABSENT",
           "OPTIONAL": "ref+doppler://billing/prd?optional=true#/ABSENT"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 66, result.stderr
    assert not probe.ran
    assert "NO_CONFIG (" in result.stderr and "NO_PROJECT (" in result.stderr
    assert "NO_NAME (" in result.stderr and "OPTIONAL" not in result.stderr
    assert result.stderr.count("does not exist (HTTP 404)") == 2


def test_optional_missing_name_leaves_the_variable_unset(doppler, canaries, run_shim, probe):
    value = canaries.new()
    doppler.add_config("billing", "prd", {"PRESENT": value})
    env = {**doppler.env(doppler.service_token("billing", "prd")),
           "OPTIONAL": "ref+doppler:////ABSENT?optional=true", "PRESENT": "ref+doppler:////PRESENT"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert "OPTIONAL" not in probe.read()["env"] and probe.read()["env"]["PRESENT"] == value


@pytest.mark.parametrize("case", ["revoked", "other config", "not granted"])
def test_refused_tokens_are_77(doppler, canaries, run_shim, probe, case):
    doppler.add_config("billing", "prd", {"DB": canaries.new()})
    doppler.add_config("billing", "dev", {"DB": canaries.new()})
    if case == "revoked":
        token = doppler.service_token("billing", "prd")
        doppler.revoke(token)
        reference = "ref+doppler:////DB"
    elif case == "other config":
        token = doppler.service_token("billing", "dev")
        reference = "ref+doppler://billing/prd#/DB"
    else:
        token = doppler.account_token(("billing", "dev"))
        reference = "ref+doppler://billing/prd#/DB"
    env = {**doppler.env(token), "DB": reference}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77, result.stderr
    assert not probe.ran
    assert "was refused (HTTP 40" in result.stderr and "DOPPLER_TOKEN" in result.stderr
    assert "Invalid Auth token" not in result.stderr    # Doppler's text is not quoted
    doppler.assert_no_credentials(result.stdout, result.stderr)


def test_no_token_is_78_and_asks_nothing(doppler, canaries, run_shim, probe):
    doppler.add_config("billing", "prd", {"DB": canaries.new()})
    env = {**doppler.env(""), "DB": "ref+doppler://billing/prd#/DB"}
    del env["DOPPLER_TOKEN"]

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78
    assert "DOPPLER_TOKEN is not set" in result.stderr
    assert doppler.count() == 0


def test_an_account_token_without_project_and_config_is_78(doppler, canaries, run_shim, probe):
    doppler.add_config("billing", "prd", {"DB": canaries.new()})
    env = {**doppler.env(doppler.account_token(("billing", "prd"))), "DB": "ref+doppler:////DB"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "needs the project and config" in result.stderr


def test_a_value_that_is_not_text_is_65(doppler, canaries, run_shim, probe):
    doppler.inject_reply(Reply(200, {"DB": {"nested": canaries.new()}}))
    env = {**doppler.env(doppler.service_token("billing", "prd")), "DB": "ref+doppler:////DB"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 65, result.stderr
    assert "not text" in result.stderr


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080", "api.doppler.com", "https://",
                                      "https://user@127.0.0.1"])
def test_the_endpoint_must_be_https(doppler, canaries, run_shim, probe, endpoint):
    env = {**doppler.env(doppler.service_token("billing", "prd")), "DB": "ref+doppler:////DB",
           "SHIM_DOPPLER_ENDPOINT": endpoint}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "SHIM_DOPPLER_ENDPOINT must be an https:// base URL" in result.stderr
    assert doppler.count() == 0


def test_passthrough_keeps_the_token_for_a_program_that_calls_doppler(doppler, canaries,
                                                                      run_shim, probe):
    doppler.add_config("billing", "prd", {"DB": canaries.new()})
    token = doppler.service_token("billing", "prd")
    env = {**doppler.env(token), "DB": "ref+doppler:////DB"}

    result = exec_probe(run_shim, probe, env, "--passthrough", "DOPPLER_TOKEN")

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["DOPPLER_TOKEN"] == token


def test_not_installed_is_78_with_the_extra(doppler, tmp_path, run_shim, probe):
    # An interpreter that cannot import requests: a path entry that shadows it with nothing.
    shadow = tmp_path / "shadow" / "requests"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden', name='requests')\n")
    env = {**doppler.env(doppler.service_token("billing", "prd")), "DB": "ref+doppler:////DB",
           "PYTHONPATH": str(shadow.parent)}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78, result.stderr
    assert "install shim-secrets[doppler]" in result.stderr


def test_distinct_configs_are_read_at_the_same_time(doppler, canaries, run_shim, probe):
    values = {f"C{index}": canaries.new(f"c{index}") for index in range(8)}
    grants = [("billing", name.lower()) for name in values]
    for (project, config), value in zip(grants, values.values()):
        doppler.add_config(project, config, {"DB": value})
    doppler.latency = 1.0
    env = {**doppler.env(doppler.account_token(*grants)),
           **{name: f"ref+doppler://billing/{name.lower()}#/DB" for name in values}}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert {name: probe.read()["env"][name] for name in values} == values
    downloads = doppler.downloads()
    assert len(downloads) == 8
    # All in flight together (the double's own clock): one wave, not eight seconds of them.
    assert max(entry.started for entry in downloads) < min(entry.finished for entry in downloads)
