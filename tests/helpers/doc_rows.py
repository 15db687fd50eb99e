"""The reference-syntax checks every store's unit tests share: the `| `you write` | `canonical
form` |` rows of a store's docs, each of which must parse to its canonical form and round-trip
(the docs are behaviour), and malformed references, refused without quoting them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shim.syntax.refs import parse_reference
from shim.tools.errors import UsageError

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


def assert_malformed_quoting_nothing(text: str, *fragments: str, says: str = "") -> None:
    """`text` is refused as a usage error (exit 64) that says `says` and holds none of
    `fragments` (the parts of the reference a value could hide in)."""
    with pytest.raises(UsageError) as raised:
        parse_reference(text)
    message = str(raised.value)
    assert raised.value.exit_code == 64
    assert says in message
    for fragment in fragments:
        assert fragment not in message
