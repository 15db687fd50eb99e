"""docs/long-running.md lists every word `check -v` can show in its WATCH column, and its probe
table names a probe for every store whose provider offers one."""

from __future__ import annotations

import re
from pathlib import Path

from shim.pipeline.probes import BATCHED, WATCH_KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "long-running.md"


def test_every_watch_kind_is_documented():
    text = " ".join(DOC.read_text().split())
    listed = re.search(r"`shim check -v` shows what each reference gets \((.*?)\)\.", text)
    assert listed, "the sentence listing the WATCH words moved"
    assert set(re.findall(r"`([^`]+)`", listed.group(1))) - {"WATCH", '"watch"', "--json"} == \
        set(WATCH_KINDS.values())


def test_the_probe_table_names_each_batched_store():
    section = DOC.read_text().split("### Cheap change detection", 1)[1].split("###", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    titles = {"awssecrets": "AWS Secrets Manager", "awsssm": "SSM Parameter Store",  # pragma: allowlist secret
              "azurekeyvault": "Azure Key Vault"}
    assert set(titles) == set(BATCHED)
    for store in BATCHED:
        assert any(row.startswith(f"| {titles[store]}") for row in rows), store
