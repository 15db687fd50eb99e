"""1Password's secret-reference syntax: the documented rows, round trips, one read per item,
and the malformed forms (64, quoting nothing)."""

import pytest

from shim.tools.errors import UsageError
from shim.providers.onepassword import item_map
from shim.syntax.refs import parse_import_reference, parse_reference
from tests.helpers.doc_rows import (
    assert_malformed_quoting_nothing, assert_rows_round_trip, documented_rows,
)


def test_the_documented_rows_parse_as_documented_and_round_trip():
    rows = (documented_rows("op://", "docs/references.md", "docs/onepassword.md")
            + documented_rows("ref+onepassword://", "docs/references.md", "docs/onepassword.md"))
    assert len(rows) >= 6
    assert_rows_round_trip(rows)


def test_every_field_of_one_item_shares_one_read():
    keys = {parse_reference(text).fetch_key for text in (
        "op://prod/postgres/password", "op://prod/postgres/admin/password",
        "ref+onepassword://prod/postgres?optional=true#/username", "op://prod/postgres")}
    assert len(keys) == 1


def test_an_import_names_a_whole_item():
    assert parse_import_reference("ref+onepassword://prod/app?prefix=APP_").locator == "prod/app"
    assert parse_import_reference("op://prod/app").selector == ()
    with pytest.raises(UsageError):
        parse_import_reference("op://prod/app/password")


def test_an_item_becomes_fields_and_sections_by_label():
    body = {"version": 3, "sections": [{"id": "s1", "label": "admin"}],
            "fields": [{"id": "f2", "label": "password", "value": "in-section", "section": {"id": "s1"}},
                       {"id": "f1", "label": "password", "value": "top"},
                       {"id": "f3", "label": "admin", "value": "a field named like the section"}]}
    fetched = item_map(body, "item")
    assert fetched.value["password"] == "top"  # pragma: allowlist secret
    assert fetched.value["admin"] == "a field named like the section"   # a field is not hidden
    assert "f1" not in fetched.value and "s1" not in fetched.value
    assert fetched.meta.version == "3"


def test_a_field_inside_a_section_is_found_without_it_when_its_name_is_unique():
    body = {"sections": [{"id": "s1", "label": "db"}, {"id": "s2", "label": "cache"}],
            "fields": [{"id": "f1", "label": "host", "value": "db-host", "section": {"id": "s1"}},
                       {"id": "f2", "label": "port", "value": "5432", "section": {"id": "s1"}},
                       {"id": "f3", "label": "port", "value": "6379", "section": {"id": "s2"}}]}
    values = item_map(body, "item").value
    assert values["host"] == "db-host"            # op://V/I/host, as `op read` finds it
    assert "port" not in values                   # in two sections: name the section
    assert values["db"]["port"] == "5432" and values["cache"]["port"] == "6379"


@pytest.mark.parametrize("text", [
    "op://zqv",                                    # no item
    "op://zqv/app/sec/field/extra",                # too deep
    "op://zqv//password",                          # empty item
    "op://zqv/app/password?attribute=otp",         # 1Password's attributes: not supported
    'op://zqv/a"pp/password',                      # a quote would break the lookup filter
    "ref+onepassword://zqv#/password",             # no item
    "ref+onepassword://zqv/app?version=2#/password",
])
def test_malformed_references_are_usage_errors_that_quote_nothing(text):
    assert_malformed_quoting_nothing(text, "zqv", "extra")
