"""shim.delivery.metrics: the text format as Prometheus's own parser reads it, hostile variable names
included, /healthz's threshold, and the address rules of --metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shim.tools.errors import UsageError
from shim.delivery.metrics import DEFINITIONS, UNHEALTHY_AFTER, Metrics, parse_address

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def parsed(metrics: Metrics) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics.render())
            for sample in family.samples}


@pytest.mark.parametrize("name", ['A"B', "A\\B", "A\nB", "A}B{", "A=\"x\",b=\"y", "\udcff\udcfe",
                                  "É_unicode", "A B # HELP"])
def test_a_hostile_variable_name_stays_one_label_value(name):
    metrics = Metrics()
    metrics.record_stats({"created": {name: 1_000_000_000.0, "PLAIN": 1_000_000_000.0}})
    found = parsed(metrics)
    ages = {labels: value for (metric, labels), value in found.items()
            if metric == "shim_secret_age_seconds"}
    assert len(ages) == 2
    expected = name.encode("utf-8", "backslashreplace").decode("utf-8")
    assert (("variable", expected),) in ages and (("variable", "PLAIN"),) in ages


def test_counters_with_and_without_labels():
    metrics = Metrics()
    metrics.resolution_succeeded()
    metrics.resolution_failed()
    metrics.record_stats({"reads": {"vault": 2, "file": 1}})
    metrics.record_stats({"reads": {"vault": 2}, "probes": {"vault": 5}})
    metrics.count("shim_program_restarts_total")
    found = parsed(metrics)
    # The parser names a counter's sample NAME_total whatever the family is called.
    assert found[("shim_resolutions_total", (("outcome", "success"),))] == 1
    assert found[("shim_resolutions_total", (("outcome", "failure"),))] == 1
    assert found[("shim_store_reads_total", (("store", "vault"),))] == 4
    assert found[("shim_store_reads_total", (("store", "file"),))] == 1
    assert found[("shim_store_probes_total", (("store", "vault"),))] == 5
    assert found[("shim_program_restarts_total", ())] == 1
    assert found[("shim_stale_values_served_total", ())] == 0
    assert found[("shim_consecutive_failures", ())] == 1


def test_lease_ttl_is_the_soonest_lease_of_the_variable():
    import time
    metrics = Metrics()
    metrics.record_stats({"leased": {"DB": [["vault", "database/creds/a"], ["vault", "x"]]}})
    now = time.monotonic()
    metrics.lease_expires(("vault", "database/creds/a"), now + 100)
    metrics.lease_expires(("vault", "x"), now + 20)
    ttl = parsed(metrics)[("shim_lease_ttl_seconds", (("variable", "DB"),))]
    assert 15 < ttl <= 20


def test_healthz_threshold():
    metrics = Metrics()
    assert metrics.health().startswith("starting")
    metrics.resolution_succeeded()
    for _ in range(UNHEALTHY_AFTER - 1):
        metrics.resolution_failed()
    assert metrics.health() is None
    metrics.resolution_failed()
    assert metrics.health().startswith(f"unhealthy: {UNHEALTHY_AFTER} re-resolutions failed")
    metrics.resolution_succeeded()
    assert metrics.health() is None


@pytest.mark.parametrize("text, expected", [
    (":9464", ("127.0.0.1", 9464)),
    ("localhost:1", ("127.0.0.1", 1)),
    ("127.0.0.2:9464", ("127.0.0.2", 9464)),
    ("[::1]:9464", ("::1", 9464)),
])
def test_loopback_addresses(text, expected):
    assert parse_address(text, allow_remote=False) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:9464", "[::]:9464", "192.168.1.1:80", "[::ffff:10.0.0.1]:80"])
def test_other_addresses_need_the_opt_in(text):
    with pytest.raises(UsageError, match="not a loopback address"):
        parse_address(text, allow_remote=False)
    assert parse_address(text, allow_remote=True)[1] > 0


@pytest.mark.parametrize("text", ["", "9464", "host:", "127.0.0.1:0", "127.0.0.1:65536",
                                  "127.0.0.1:+80", "example.com:80", "[::1:80"])
def test_malformed_addresses(text):
    with pytest.raises(UsageError):
        parse_address(text, allow_remote=True)


def test_the_doc_lists_every_metric_and_the_threshold():
    text = DOC.read_text()
    rows = re.findall(r"^\| `(shim_[a-z_]+)` \| (counter|gauge) \|", text, re.M)
    assert dict(rows) == {name: kind for name, (kind, _) in DEFINITIONS.items()}
    assert f"once **{UNHEALTHY_AFTER}** re-resolutions in a row have failed" in text
