"""Secret Manager round trips, counted on the double: one `:access` per distinct version, the
`versions/N` get for the create time only when something reads dates, and a pinned version that
`latest` already answered not read again."""

from __future__ import annotations

import pytest

from tests.doubles.gcp import SecretManagerDouble
from tests.integration.test_gcp import credential_env, events


@pytest.fixture
def gcp(tmp_path):
    with SecretManagerDouble(tmp_path) as double:
        yield double


def accesses(gcp) -> int:
    return len([r for r in gcp.requests() if r.path.endswith(":access")])


def gets(gcp) -> int:
    return len([r for r in gcp.requests() if r.method == "GET" and "/versions/" in r.path
                and not r.path.endswith(":access")])


def latest_and_pinned(gcp, tmp_path, run_shim, probe, *options) -> dict:
    """exec with LATEST (sm://P/db) and PINNED (sm://P/db#1); the child's environment."""
    env = {**credential_env(gcp, tmp_path, "metadata"),
           "LATEST": f"sm://{gcp.project}/db", "PINNED": f"sm://{gcp.project}/db#1"}
    result = run_shim(["exec", *options, "--", *probe.argv], env, timeout=60)
    assert result.returncode == 0, result.stderr
    return probe.read()["env"]


def test_latest_and_the_same_pinned_version_cost_one_access_and_no_get(gcp, tmp_path, canaries,
                                                                       run_shim, probe):
    value = canaries.new()
    gcp.add_version("db", value)

    child = latest_and_pinned(gcp, tmp_path, run_shim, probe)

    assert child["LATEST"] == child["PINNED"] == value
    assert accesses(gcp) == 1
    assert gets(gcp) == 0


def test_a_pinned_version_that_is_not_latest_is_read_after_it(gcp, tmp_path, canaries, run_shim,
                                                               probe):
    old, new = canaries.new("old"), canaries.new("new")
    gcp.add_version("db", old)
    gcp.add_version("db", new)

    child = latest_and_pinned(gcp, tmp_path, run_shim, probe)

    assert (child["LATEST"], child["PINNED"]) == (new, old)
    assert accesses(gcp) == 2
    assert gets(gcp) == 0


@pytest.mark.parametrize("options", [["--max-age", "90d"], ["--log-format", "json"], ["-v"]])
def test_the_create_time_is_read_when_something_reads_dates(gcp, tmp_path, canaries, run_shim,
                                                            probe, options):
    gcp.add_version("db", canaries.new())

    latest_and_pinned(gcp, tmp_path, run_shim, probe, *options)

    assert accesses(gcp) == 1
    assert gets(gcp) == 1


def test_check_reports_the_age(gcp, tmp_path, canaries, run_shim):
    gcp.add_version("db", canaries.new())
    env = {**credential_env(gcp, tmp_path, "metadata"), "LATEST": f"sm://{gcp.project}/db"}

    result = run_shim(["check", "--log-format", "json"], env, timeout=60)

    assert result.returncode == 0, result.stderr
    assert gets(gcp) == 1
    assert events(result, "secret.resolved")[0].get("age_seconds") is not None
