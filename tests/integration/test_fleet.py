"""bench/fleet.py's simulation at small N, its counts asserted: with KV v2 probes each replica
reads its value once at the start and once for the change, asks for the metadata once per
resolution, and restarts exactly once; with the metadata path denied it reads every tick."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.doubles.vault import VaultDouble

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def fleet():
    sys.path.insert(0, str(BENCH))
    try:
        import fleet as module
        yield module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def vault():
    with VaultDouble() as double:
        yield double


@pytest.mark.parametrize("jitter", [True, False], ids=["jitter", "no-jitter"])
def test_probes_read_values_only_on_the_change(fleet, vault, tmp_path, jitter):
    """Jitter moves requests in time, never changes how many: the same counts either way."""
    result = fleet.simulate(vault, replicas=3, interval=0.5, ticks=10, jitter=jitter,
                            directory=tmp_path)

    assert result["value_reads"] == [2, 2, 2]          # the start, and the one change
    assert result["value_reads_after_start"] == 3      # N x changes
    assert result["starts"] == [2, 2, 2]               # every replica restarted once
    assert result["new_value_everywhere"]
    for calls, resolutions in zip(result["metadata_calls"], result["resolutions"]):
        # One metadata call per resolution (N x ticks); the last helper may be killed by the
        # SIGTERM before it asks.
        assert resolutions - 1 <= calls <= resolutions
        assert resolutions >= 4
    assert 1 <= result["peak_requests_per_100ms_after_change"] <= result["requests"]


def test_without_the_metadata_permission_every_tick_reads(fleet, vault, tmp_path):
    result = fleet.simulate(vault, replicas=2, interval=0.5, ticks=8, deny_metadata=True,
                            directory=tmp_path)

    assert result["metadata_calls"] == [1, 1]          # refused once, then not asked again
    for reads, resolutions in zip(result["value_reads"], result["resolutions"]):
        assert resolutions - 1 <= reads <= resolutions
    assert result["starts"] == [2, 2]
