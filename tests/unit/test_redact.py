"""shim/delivery/redact.py in process: both matchers find the same forms; the held tail is a prefix only."""

from __future__ import annotations

import base64
import secrets

from hypothesis import given, strategies as st

from shim.delivery import redact
from shim.delivery.redact import MIN_LENGTH, Patterns, Redactor, forms


def patterns_with(values, matcher_of):
    patterns = Patterns()
    original = redact._matcher
    redact._matcher = matcher_of
    try:
        patterns.add(values)
    finally:
        redact._matcher = original
    return patterns


def regex_matcher(ordered):
    import re
    regex = re.compile(redact._trie_pattern(ordered))
    return lambda buffer: [match.span() for match in regex.finditer(buffer)]


VALUES = {f"V{n}": f"value-{n}-{secrets.token_hex(6)}" for n in range(5)}


@given(st.lists(st.one_of(st.binary(max_size=20),
                          st.sampled_from(sorted({form for value in VALUES.values()
                                                  for form in forms(value)}))), max_size=12))
def test_the_regex_fallback_and_aho_corasick_agree(pieces):
    buffer = b"".join(pieces)
    fast = patterns_with(VALUES, redact._matcher).redact(buffer)
    slow = patterns_with(VALUES, regex_matcher).redact(buffer)
    assert fast == slow
    for value in VALUES.values():
        assert value.encode() not in fast[0]


def test_a_value_is_found_in_base64_at_every_alignment():
    value = "canary-" + secrets.token_hex(8)
    patterns = Patterns()
    patterns.add({"KEY": value})
    for prefix in (b"", b"a", b"ab"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            out, held = patterns.redact(b"> " + encode(prefix + value.encode() + b"!?") + b"\n")
            assert b"[redacted:KEY]" in out and held == b""


def test_only_a_possible_beginning_of_a_value_is_held_back():
    value = "canary-" + secrets.token_hex(8)
    redactor = Redactor(Patterns())
    redactor.patterns.add({"KEY": value})
    assert redactor.feed(b"line one\n") == b"line one\n"
    assert redactor.feed(b"now " + value[:5].encode()) == b"now "
    assert redactor.held == value[:5].encode()
    assert redactor.feed(value[5:].encode() + b"\n") == b"[redacted:KEY]\n"


def test_short_values_are_named_not_redacted():
    patterns = Patterns()
    patterns.add({"PORT": "8080", "KEY": "x" * MIN_LENGTH})
    assert patterns.too_short == ["PORT"]
    assert patterns.redact(b"8080 " + b"x" * MIN_LENGTH)[0] == b"8080 [redacted:KEY]"
