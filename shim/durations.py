"""Durations as users write them: 500ms, 30s, 5m, 1h, 90d."""

from __future__ import annotations

import re

from shim.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds for a duration string; a bare number is not accepted (units are explicit)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise UsageError(
            f"{option}: {text!r} is not a duration",
            hint="write a number with a unit: 500ms, 30s, 5m, 1h or 90d")
    return float(match.group(1)) * _UNITS[match.group(2)]
