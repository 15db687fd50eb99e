"""docs/threat-model.md names, for every trust boundary, the tests that attack it: each name
must be a test that exists, or the map points at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _named_tests():
    """(file, test or None) for every `tests/...py::test` and `::test` the page names; a `::test`
    alone belongs to the file named last before it in the same row."""
    for line in (ROOT / "docs" / "threat-model.md").read_text().splitlines():
        last = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?[^`]*`", line):
            path, test = match.groups()
            if path:
                last = path
            if path or test:
                yield (path or last), test


def test_every_test_the_threat_model_names_exists():
    named = list(_named_tests())
    assert len(named) >= 30, named
    for path, test in named:
        assert path is not None, f"::{test} follows no file"
        source = (ROOT / path).read_text()
        if test is not None:
            assert re.search(rf"^def {test}\(", source, re.M), f"{path}::{test} does not exist"
