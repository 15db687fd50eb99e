"""shim/tools/compose.py: the two readers agree on where a service's variables are, and differ only
where its docstring says they must (values as YAML reads them, anchors and merges)."""

from __future__ import annotations

import textwrap

import pytest

from shim.tools.compose import COMPOSE_FILE, COMPOSE_LIKE_FILE, environment_entries, text_lines

pytest.importorskip("yaml")

COMPOSE = textwrap.dedent("""\
    x-common: &common
      SHARED_TOKEN: "from-the-anchor"
    services:
      api:
        image: my-api
        command: [serve, --token, CHANGEME]
        environment:
          <<: *common
          DB_USER: app
          DB_HOST: 'db.internal'   # a comment
      worker:
        environment:
          - QUEUE_NAME=jobs
          - UNSET_HERE
""")


def test_both_readers_find_the_same_service_variables_at_the_same_lines():
    named_text_lines = {(entry.line, entry.name) for entry in text_lines(COMPOSE)
                        if entry.name is not None}
    yaml_entries = {(entry.line, entry.name) for entry in environment_entries(COMPOSE)}
    # A bare `- UNSET_HERE` sets nothing, for either reader.
    assert named_text_lines == {(9, "DB_USER"), (10, "DB_HOST"), (13, "QUEUE_NAME")}
    # YAML also follows the merge into the x- block, where the text reader sees no block.
    assert yaml_entries == named_text_lines | {(2, "SHARED_TOKEN")}


def test_yaml_reads_values_the_text_reader_leaves_as_written():
    values = {entry.name: entry.value for entry in environment_entries(COMPOSE)}
    assert values == {"SHARED_TOKEN": "from-the-anchor", "DB_USER": "app",
                      "DB_HOST": "db.internal", "QUEUE_NAME": "jobs"}
    line = next(entry for entry in text_lines(COMPOSE) if entry.name == "DB_HOST")
    assert line.value == "      DB_HOST: 'db.internal'   # a comment"


def test_the_text_reader_keeps_every_other_line_without_a_name():
    lines = {entry.line: entry for entry in text_lines(COMPOSE)}
    assert lines[6].name is None and "CHANGEME" in lines[6].value
    assert list(environment_entries("services: [unclosed\n")) == []


@pytest.mark.parametrize("name, dev_init, scan", [
    ("compose.yaml", True, True), ("docker-compose.override.yml", True, True),
    ("compose-dev.yml", False, True), ("compose.json", False, False),
])
def test_which_files_each_reads(name, dev_init, scan):
    assert (bool(COMPOSE_FILE.fullmatch(name)), bool(COMPOSE_LIKE_FILE.fullmatch(name))) == (dev_init, scan)
