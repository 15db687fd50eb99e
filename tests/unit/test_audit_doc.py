"""docs/audit.md lists every event shim logs (each `event` name in shim/ is in its table)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def logged_events() -> set[str]:
    events = set()
    for path in (ROOT / "shim").rglob("*.py"):
        text = path.read_text()
        events |= set(re.findall(r'\.event\(\s*"([a-z_]+\.[a-z_.]+|[a-z_]+)"', text))
        events |= set(re.findall(r'event="([a-z_.]+)"', text))
    return events


def documented_events() -> set[str]:
    table = [line for line in (ROOT / "docs/audit.md").read_text().splitlines()
             if line.startswith("| `")]
    return {name for line in table for name in re.findall(r"`([a-z_.]+)`", line.split("|")[1])}


def test_every_logged_event_is_in_the_audit_table():
    events = logged_events()
    assert {"import.applied", "secret.resolved", "vault.read"} <= events   # the scan finds them
    assert sorted(events - documented_events()) == []
