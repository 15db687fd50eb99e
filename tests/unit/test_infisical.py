"""Infisical's reference syntax: the documented rows, round trips, one read per folder, and the
malformed forms (64, quoting nothing)."""

import pytest

from shim.tools.errors import UsageError
from shim.providers.infisical import split_locator
from shim.syntax.refs import parse_import_reference, parse_reference
from tests.helpers.doc_rows import (
    assert_malformed_quoting_nothing, assert_rows_round_trip, documented_rows,
)


def test_the_documented_rows_parse_as_documented_and_round_trip():
    rows = documented_rows("ref+infisical://", "docs/references.md", "docs/infisical.md")
    assert len(rows) >= 6
    assert_rows_round_trip(rows)


def test_every_key_of_one_folder_shares_one_read():
    keys = {parse_reference(text).fetch_key for text in (
        "ref+infisical://p1/prod/app#/A", "ref+infisical://p1/prod/app/#B",
        "ref+infisical://p1/prod/app?optional=true#/C", "ref+infisical://p1/prod/app")}
    assert len(keys) == 1
    assert parse_reference("ref+infisical://p1/prod#/A").fetch_key not in keys


def test_the_locator_is_project_environment_and_folder():
    assert split_locator(parse_reference("ref+infisical://p1/prod/app/db#/K").locator) == \
        ("p1", "prod", "/app/db")
    assert split_locator(parse_reference("ref+infisical://p1/prod#/K").locator) == \
        ("p1", "prod", "/")


def test_an_import_names_a_whole_folder():
    assert parse_import_reference("ref+infisical://p1/prod/app?prefix=APP_").locator == "p1/prod/app"
    with pytest.raises(UsageError):
        parse_import_reference("ref+infisical://p1/prod#/K")


@pytest.mark.parametrize("text", [
    "ref+infisical://qz7",                         # no environment
    "ref+infisical://qz7//app#/K",                 # empty environment
    "ref+infisical://qz7/prod//app#/K",            # empty folder
    "ref+infisical://qz7/prod/a b#/K",             # not a folder name
    "ref+infisical://qz7/prod/../etc#/K",          # no climbing
    "ref+infisical://qz7/prod?version=2#/K",       # no versions
])
def test_malformed_references_are_usage_errors_that_quote_nothing(text):
    assert_malformed_quoting_nothing(text, "qz7", "a b", "etc",
                                     says="malformed ref+infisical reference")


def test_a_personal_override_wins_and_a_hidden_value_is_refused():
    from shim.tools.errors import PermissionDenied
    from shim.providers.infisical import folder_map

    answer = {"secrets": [
        {"secretKey": "DB", "secretValue": "personal", "type": "personal"},
        {"secretKey": "DB", "secretValue": "shared", "type": "shared"},
        {"secretKey": "API", "secretValue": "api", "type": "shared"}]}
    assert folder_map(answer, "folder").value == {"DB": "personal", "API": "api"}
    hidden = {"secrets": [{"secretKey": "DB", "secretValue": "<hidden-by-infisical>",
                           "secretValueHidden": True, "type": "shared"}]}
    assert isinstance(folder_map(hidden, "folder"), PermissionDenied)
