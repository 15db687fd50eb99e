"""Durations as users write them: 500ms, 30s, 5m, 1h, 90d."""

from __future__ import annotations

import re

from shim.tools.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
# The longest duration any option takes. Waits are handed to the kernel (sigtimedwait, poll,
# lock timeouts), whose clocks overflow a few centuries out: `--watch 999999999d` used to end
# in OverflowError (70). Ten years is longer than any watch interval, deadline or rotation age
# means, and far inside every limit.
LONGEST_DAYS = 3650
LONGEST_SECONDS = LONGEST_DAYS * 86400.0


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds for a duration string; a bare number is not accepted (units are explicit)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise UsageError(
            f"{option}: {text!r} is not a duration",
            hint="write a number with a unit: 500ms, 30s, 5m, 1h or 90d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= LONGEST_SECONDS:    # `not <=`: an overflowing number is inf
        raise UsageError(
            f"{option}: {text.strip()} is longer than the longest duration shim takes "
            f"({LONGEST_DAYS}d)", hint=f"write at most {LONGEST_DAYS}d")
    return seconds
