"""The words `shim check -v` shows in its WATCH column are the ones the docs list: every kind
of shim.pipeline.probes.WATCH_KINDS in docs/long-running.md, and each REST store's page names
the kind its provider offers (tests/integration/test_store_probes.py checks what check -v
shows for them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shim.pipeline.probes import WATCH_KINDS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_long_running_lists_every_watch_kind():
    text = " ".join((DOCS / "long-running.md").read_text().split())
    for words in WATCH_KINDS.values():
        assert f"`{words}`" in text, words


@pytest.mark.parametrize("page, kind", [
    ("doppler.md", "etag"), ("onepassword.md", "item-version"), ("bitwarden.md", "revision"),
    ("infisical.md", "read"),
])
def test_each_store_page_names_its_watch_kind(page, kind):
    text = " ".join((DOCS / page).read_text().split())
    assert f"`{WATCH_KINDS[kind]}`" in text
