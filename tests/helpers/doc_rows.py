"""The `| `you write` | `canonical form` |` rows of a store's docs, for the tests that check each
row parses to its canonical form and round-trips (the docs are behaviour)."""

from __future__ import annotations

import re
from pathlib import Path

from shim.syntax.refs import parse_reference

ROOT = Path(__file__).resolve().parents[2]


def documented_rows(prefix: str, *docs: str) -> list[tuple[str, str]]:
    """(written, canonical) of every two-column table row whose first cell starts with `prefix`."""
    pattern = r"\| `(" + re.escape(prefix) + r"[^`]*)` \| `([^`]*)` \|"
    rows = []
    for doc in docs:
        for line in (ROOT / doc).read_text().splitlines():
            match = re.fullmatch(pattern, line)
            if match:
                rows.append(match.groups())
    return rows


def assert_rows_round_trip(rows: list[tuple[str, str]]) -> None:
    for text, canonical in rows:
        reference = parse_reference(text)
        assert reference.canonical == canonical, text
        again = parse_reference(canonical)
        assert again.canonical == canonical and again.fetch_key == reference.fetch_key, canonical
