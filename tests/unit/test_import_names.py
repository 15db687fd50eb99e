"""--import: how keys become names (docs/import.md, "Names") and how an import REF parses."""

from __future__ import annotations

import pytest

from shim.tools.errors import UsageError
from shim.pipeline.imports import as_map, variable_name
from shim.syntax.refs import parse_import_reference, parse_reference


@pytest.mark.parametrize("key, prefix, name", [
    ("db-password", "", "DB_PASSWORD"),       # the examples of docs/import.md, "Names"
    ("db/password", "", "DB_PASSWORD"),
    ("api.key", "", "API_KEY"),
    ("db-password", "APP_", "APP_DB_PASSWORD"),
    ("2fa", "", "_2FA"),
    ("2fa", "APP_", "APP_2FA"),
    ("ünïcode key", "", "_N_CODE_KEY"),
    ("already_OK_9", "", "ALREADY_OK_9"),
])
def test_variable_names(key, prefix, name):
    assert variable_name(key, prefix) == name


def test_documented_examples_are_the_tested_ones():
    from pathlib import Path
    text = Path(__file__).resolve().parents[2].joinpath("docs/import.md").read_text()
    for example in ("`db-password` → `DB-PASSWORD`", "`api.key` → `API_KEY`", "`2fa` → `_2FA`",
                    "`APP_DB_PASSWORD`", "`APP_2FA`", "`db/password` of an SSM\n   path → `DB_PASSWORD`"):
        assert example in text


@pytest.mark.parametrize("text, canonical", [
    ("vault:secret/data/app", "vault:secret/data/app"),
    ("vault:kv/app/", "vault:kv/app"),
    ("ref+vault://secret/app?prefix=APP_", "ref+vault://secret/app?prefix=APP_"),
    ("ref+vault://secret/app?version=2", "ref+vault://secret/app?version=2"),
    ("ref+awsssm:///app/prod/", "ref+awsssm://app/prod/"),
    ("arn:aws:secretsmanager:us-east-1:1:secret:db", "ref+awssecrets://arn:aws:secretsmanager:us-east-1:1:secret:db"),
    ("ref+file:///run/secrets/app.env", "ref+file:///run/secrets/app.env"),
])
def test_import_references_and_their_canonical_form(text, canonical):
    reference = parse_import_reference(text)
    assert reference.canonical == canonical and reference.selector == ()
    assert parse_import_reference(reference.canonical).fetch_key == reference.fetch_key


def test_prefix_is_not_part_of_the_read_and_not_a_variable_option():
    imported = parse_import_reference("ref+vault://secret/app?prefix=A_")
    explicit = parse_reference("ref+vault://secret/app#/x")
    assert imported.fetch_key == explicit.fetch_key
    with pytest.raises(UsageError, match="unknown option name"):
        parse_reference("ref+vault://secret/app?prefix=A_#/x")


@pytest.mark.parametrize("text, what", [
    ("vault:secret/data/app#password", "not one key"),
    ("ref+file:///x#/k", "not one key"),
    ("ref+vault://secret/app?prefix=1A", "the prefix"),
    ("ref+vault://secret/app?prefix=A-B", "the prefix"),
    ("ref+awsssm:///app/prod/?label=x", "no version or label"),
    ("vault:", "path is empty"),
    ("plain", "not a reference"),
])
def test_bad_import_references(text, what):
    with pytest.raises(UsageError, match=what):
        parse_import_reference(text)


def test_maps():
    assert as_map({"a": 1}) == {"a": 1}
    assert as_map(b'{"a": "b"}') == {"a": "b"}
    assert as_map(b"A=1\nexport B='x y'\n", dotenv=True) == {"A": "1", "B": "x y"}
