"""Doppler's reference syntax: the documented rows, round trips, one read per config, and the
malformed forms (64, quoting nothing)."""

import pytest

from shim.tools.errors import UsageError
from shim.syntax.refs import parse_import_reference, parse_reference
from tests.helpers.doc_rows import (
    assert_malformed_quoting_nothing, assert_rows_round_trip, documented_rows,
)


def test_the_documented_rows_parse_as_documented_and_round_trip():
    rows = documented_rows("ref+doppler://", "docs/references.md", "docs/doppler.md")
    assert len(rows) >= 7
    assert_rows_round_trip(rows)


def test_every_name_in_one_config_shares_one_read():
    keys = {parse_reference(text).fetch_key for text in (
        "ref+doppler://billing/prd/A", "ref+doppler://billing/prd#/B",
        "ref+doppler://billing/prd?optional=true#C", "ref+doppler://billing/prd")}
    assert len(keys) == 1
    assert parse_reference("ref+doppler:////A").fetch_key != keys.pop()


def test_the_name_is_a_selector_and_the_locator_the_config():
    reference = parse_reference("ref+doppler://billing/prd_eu/DB_PASSWORD")
    assert (reference.provider, reference.locator, reference.selector) == \
        ("doppler", "billing/prd_eu", ("DB_PASSWORD",))
    token_scoped = parse_reference("ref+doppler:////DB_PASSWORD")
    assert (token_scoped.locator, token_scoped.selector) == ("", ("DB_PASSWORD",))


def test_an_import_names_a_whole_config():
    assert parse_import_reference("ref+doppler://billing/prd?prefix=APP_").locator == "billing/prd"
    assert parse_import_reference("ref+doppler:////").locator == ""
    with pytest.raises(UsageError):
        parse_import_reference("ref+doppler://billing/prd#/DB")


@pytest.mark.parametrize("text", [
    "ref+doppler://acme9",                         # no config
    "ref+doppler://acme9/prd/ZQXKEY/extra",        # too many parts
    "ref+doppler://acme9//ZQXKEY",                 # config empty, project given
    "ref+doppler:///prd/ZQXKEY",                   # project empty, config given
    "ref+doppler://acme 9/prd/ZQXKEY",             # not a slug
    "ref+doppler://acme9/prd/ZQXKEY#/ZQXOTHER",    # named twice
    "ref+doppler://acme9/prd?version=3#/ZQXKEY",   # Doppler has no versions
])
def test_malformed_references_are_usage_errors_that_quote_nothing(text):
    assert_malformed_quoting_nothing(text, "acme", "ZQX", "extra",
                                     says="malformed ref+doppler reference")
