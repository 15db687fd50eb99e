"""shim.delivery.repeated_failures.said_once: alike failures of several variables become one line (issue 25)."""

from shim.tools.errors import ConfigError, NotFound
from shim.delivery.repeated_failures import said_once


def test_alike_failures_are_merged_at_the_first_ones_place_naming_each_variable():
    source = "ref+sops:///app/dev.enc.env?format=dotenv"
    errors = [ConfigError("no key opens it", variable=name, reference=f"{source}#/{name}",
                          hint="give a key") for name in ("API", "DB")]
    errors.insert(1, NotFound("gone", variable="B", reference="ref+file:///b"))
    merged = said_once(errors)
    assert [error.line() for error in merged] == [
        f"API, DB ({source}): no key opens it; give a key",
        "B (ref+file:///b): gone",
    ]
    assert isinstance(merged[0], ConfigError) and merged[0].exit_code == 78


def test_the_same_failure_of_two_sources_keeps_a_line_each():
    errors = [NotFound("gone", variable="A", reference="ref+file:///a"),
              NotFound("gone", variable="B", reference="ref+file:///b")]
    assert said_once(errors) == errors


def test_unlike_failures_and_those_without_a_variable_stay_as_they_are():
    errors = [NotFound("gone", variable="A"), NotFound("gone", variable="B", hint="other"),
              ConfigError("bad --user"), ConfigError("bad --user")]
    assert said_once(errors) == errors
