"""Reading shim's JSON log (`--log-format json`): one object per line, among other lines."""

from __future__ import annotations

import json


def events(stderr: str, name: str) -> list[dict]:
    """The records of the event `name`, in order."""
    found = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            found.append(record)
    return found
