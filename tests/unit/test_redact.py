"""shim/delivery/redact.py in process: every engine finds the same forms; the held tail is a prefix only."""

from __future__ import annotations

import base64
import functools
import os
import secrets

import pytest
from hypothesis import given, settings, strategies as st

from shim.delivery import redactengines
from shim.delivery.redact import MIN_LENGTH, Patterns, Redactor, forms
from shim.delivery.redactor import _OutputReader
from tests.conftest import unavailable


@functools.cache
def patterns_of(engine: str) -> Patterns:
    """The test's VALUES, matched by `engine` (built once: hyperscan compiles in milliseconds)."""
    patterns = Patterns()
    original = redactengines.fastest
    redactengines.fastest = redactengines.ENGINES[engine]
    try:
        patterns.add(VALUES)
    finally:
        redactengines.fastest = original
    return patterns


def installed(engine: str) -> str:
    try:
        redactengines.ENGINES[engine]([b"probe-form"])
    except ImportError:
        unavailable(f"the redaction engine {engine} is not installed (the [redact] extra)")
    return engine


VALUES = {f"V{n}": f"value-{n}-{secrets.token_hex(6)}" for n in range(5)}
# Values that overlap: one is the start of another, one a base64 form's neighbour.
VALUES |= {"LONG": VALUES["V0"] + "-and-more", "NUL": "nul\0byte-\xff-" + secrets.token_hex(4)}
ALL_FORMS = sorted({form for value in VALUES.values() for form in forms(value)})


@pytest.mark.parametrize("engine", ["hyperscan", "ahocorasick-rs"])
@settings(deadline=None)
@given(pieces=st.lists(st.one_of(st.binary(max_size=20), st.sampled_from(ALL_FORMS)),
                       max_size=12))
def test_every_engine_replaces_exactly_what_the_regex_fallback_does(engine, pieces):
    buffer = b"".join(pieces)
    fast = patterns_of(installed(engine)).redact(buffer)
    slow = patterns_of("re").redact(buffer)
    assert fast == slow
    for value in VALUES.values():
        assert value.encode("utf-8", "surrogateescape") not in fast[0]


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


def test_a_tail_held_from_a_reused_read_buffer_survives_the_next_read():
    # The redactor reads into one buffer again and again (shim/delivery/redactor.py): what it
    # holds back must be its own copy, not a view the next read overwrites.
    value = "canary-" + secrets.token_hex(8)
    redactor = Redactor(Patterns())
    redactor.patterns.add({"KEY": value})
    buffer = bytearray(64)
    view = memoryview(buffer)

    def read(data: bytes) -> memoryview:
        buffer[:len(data)] = data
        return view[:len(data)]

    assert bytes(redactor.feed(read(b"now " + value[:5].encode()))) == b"now "
    assert bytes(redactor.feed(read(value[5:].encode() + b" end\n"))) == b"[redacted:KEY] end\n"
    assert bytes(redactor.feed(read(b"clean line\n"))) == b"clean line\n"


@settings(deadline=None)
@given(pieces=st.lists(st.one_of(st.binary(max_size=6),
                                 st.sampled_from(ALL_FORMS).map(lambda form: form[:len(form) // 2]),
                                 st.sampled_from(ALL_FORMS)), min_size=1, max_size=6))
def test_the_held_tail_is_the_longest_that_begins_a_form(pieces):
    patterns = patterns_of("re")
    _, held = patterns.redact(b"".join(pieces))
    rest = b"".join(pieces)[-(patterns.longest - 1):]
    expected = max((size for size in range(1, len(rest) + 1)
                    if any(form.startswith(rest[-size:]) and form != rest[-size:]
                           for form in ALL_FORMS)), default=0)
    assert len(held) <= expected   # never more than a beginning of a form
    if not any(form in b"".join(pieces) for form in ALL_FORMS):
        assert len(held) == expected


def test_the_redactor_reads_after_the_held_tail_whatever_its_length():
    # shim/delivery/redactor.py reads the program's output right after a copy of the held
    # tail; the tail of a long value (a key file's hex form) may be longer than half the buffer.
    reader = _OutputReader()
    read_end, write_end = os.pipe()
    try:
        for held in (b"", b"tail", b"t" * (700 * 1024), b"u" * (3 * 1024 * 1024)):
            os.write(write_end, b"new data")
            assert bytes(reader.read(read_end, after=held)) == held + b"new data"
        os.close(write_end)
        write_end = None
        assert reader.read(read_end, after=b"tail") is None
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)
