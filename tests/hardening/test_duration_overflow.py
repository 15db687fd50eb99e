"""Issue 22 item 13: a duration too long for the kernel's clocks is a usage error (64), not a
crash (70, OverflowError): every duration option names the longest one shim takes."""

from __future__ import annotations

import pytest

from tests.hardening.conftest import one_line


@pytest.mark.parametrize("args", [
    ["--watch", "999999999d"], ["--watch", "9" * 400 + "d"], ["--deadline", "3651d"],
    ["--max-age", "99999999999h"], ["--stop-timeout", "1000000000000s"], ["--watch", "5000d"],
], ids=["watch-huge", "watch-inf", "deadline-just-over", "max-age-hours", "stop-timeout", "watch-5000d"])
def test_a_duration_past_the_limit_is_64_naming_the_limit(run_shim, probe, args):
    result = run_shim(["exec", *args, "--", *probe.argv], {}, timeout=30)
    one_line(result, 64, args[0], "longer than the longest duration shim takes (3650d)")
    assert not probe.ran


def test_a_max_age_in_a_reference_past_the_limit_is_64(run_shim, probe, tmp_path):
    result = run_shim(["exec", "--", *probe.argv], {"X": f"ref+file://{tmp_path}/x?max_age=4000d"})
    one_line(result, 64, "max_age is not a duration")
    assert not probe.ran


def test_the_longest_duration_is_accepted(run_shim, probe, tmp_path, canaries):
    secret = tmp_path / "secret"
    secret.write_text(canaries.new())
    result = run_shim(["exec", "--deadline", "3650d", "--max-age", "3650d", "--", *probe.argv],
                      {"X": f"file:{secret}"})
    assert result.returncode == 0, result.stderr
    assert probe.ran
