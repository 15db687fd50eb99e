"""Every relative link in README.md, docs/ and the compose examples' READMEs resolves to a
file or directory inside the repository (a clone has nothing outside it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
               *(ROOT / "compose-examples").glob("README.md"),
               *(ROOT / "compose-examples").glob("*/README.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)   # code blocks hold no links
    return [target for target in LINK.findall(text)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")]


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in relative_links(document.read_text()):
        path = (document.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(root) or not path.exists():
            broken.append(target)
    return broken


@pytest.mark.parametrize("document", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_relative_links_resolve_inside_the_repository(document):
    assert broken_links(document) == []


def test_the_checker_catches_a_link_outside_and_a_missing_file(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "README.md").write_text("x")
    (tmp_path / "outside.md").write_text("x")
    document = repo / "docs" / "a.md"
    document.write_text("[ok](../README.md#top) [out](../../outside.md) [gone](missing.md) "
                        "[web](https://example.org/x.md) [here](#anchor)\n```\n[code](nope.md)\n```\n")
    assert broken_links(document, repo) == ["../../outside.md", "missing.md"]


def test_nothing_cites_documents_outside_the_repository():
    """Code comments and docs point into the repository, never at the team's shared notes."""
    files = [*DOCS, *(ROOT / "shim").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
             *(ROOT / "compose-examples").rglob("*.yaml")]
    needle = "shared/" + "docs"   # split so this file does not cite it either
    assert [str(f.relative_to(ROOT)) for f in files if needle in f.read_text(errors="replace")] == []
