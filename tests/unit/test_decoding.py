"""shim/pipeline/decoding.py: strict decoding, and the ?encoding= rows of docs/references.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shim.pipeline.decoding import decode
from shim.tools.errors import UnusableValue
from shim.syntax.refs import parse_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "references.md"


@pytest.mark.parametrize("encoding,text,expected", [
    ("base64", "QUJD", b"ABC"),
    ("base64", "QUJD\n", b"ABC"),
    ("base64", "//79", b"\xff\xfe\xfd"),
    ("base64url", "__79", b"\xff\xfe\xfd"),
    ("base64url", "QUI", b"AB"),
    ("base64url", "QUI=", b"AB"),
    ("hex", "00ff41", b"\x00\xffA"),
    ("hex", "00FF41", b"\x00\xffA"),
    ("hex", "", b""),
])
def test_valid(encoding, text, expected):
    assert decode(encoding, text) == expected


@pytest.mark.parametrize("encoding,text", [
    ("base64", "QUJ"), ("base64", "QU JD"), ("base64", "QUJD*"), ("base64", "__79"),
    ("base64url", "//79"), ("hex", "0"), ("hex", "0g"), ("hex", "00 ff"), ("base64", "QUJDé"),
])
def test_invalid_is_65_and_quotes_nothing(encoding, text):
    with pytest.raises(UnusableValue) as caught:
        decode(encoding, text)
    assert f"not valid {encoding}" in caught.value.line()
    assert text.strip() not in caught.value.line()


def test_the_documented_rows_parse_to_their_canonical_forms():
    rows = re.findall(r"^\| `([^`]*encoding=[^`]*)` \| (?:`([^`]*)`|same) \|$", DOC.read_text(), re.M)
    assert len(rows) >= 3
    for written, canonical in rows:
        assert parse_reference(written).canonical == (canonical or written)


@given(st.binary(max_size=200), st.sampled_from(["base64", "base64url", "hex"]), st.booleans())
def test_every_encoded_value_decodes_back(data, encoding, newline):
    import base64
    text = {"base64": base64.b64encode(data).decode(),
            "base64url": base64.urlsafe_b64encode(data).decode().rstrip("="),
            "hex": data.hex()}[encoding]
    assert decode(encoding, text + ("\n" if newline else "")) == data


@given(st.text(max_size=60), st.sampled_from(["base64", "base64url", "hex"]))
def test_any_text_decodes_or_is_refused_with_65(text, encoding):
    try:
        decode(encoding, text)
    except UnusableValue as error:
        assert error.exit_code == 65


ALPHABET = "it holds characters outside the alphabet"
HEX = "it is not an even number of hex digits"
BASE64 = "characters outside the alphabet, or a wrong length or padding"


@pytest.mark.parametrize("encoding,text,reason", [
    ("base64", "QUJDé", ALPHABET), ("hex", "00é", ALPHABET), ("base64url", "QUI+", ALPHABET),
    ("base64url", "QU+I", ALPHABET), ("base64url", "QU/I", ALPHABET),
    ("hex", "0", HEX), ("hex", "0g", HEX), ("hex", "ABXX", HEX), ("hex", "XX", HEX),
    ("base64", "QUJ", BASE64), ("base64url", "QUI==", BASE64), ("base64url", "QQ=", BASE64),
    # Only space, tab, CR and LF around the value are forgiven, not every kind of whitespace.
    ("base64", "\x0bQUJD", BASE64), ("base64", "QUJD\x0c", BASE64), ("hex", "\x0b00", HEX),
])
def test_each_refusal_says_exactly_what_is_wrong(encoding, text, reason):
    with pytest.raises(UnusableValue) as caught:
        decode(encoding, text)
    assert caught.value.exit_code == 65
    assert caught.value.message == f"the value is not valid {encoding}: {reason}"
    assert caught.value.hint == f"store it {encoding}-encoded, or drop ?encoding={encoding}"


def test_space_tab_cr_and_lf_around_the_value_are_forgiven():
    assert decode("base64", " \t\r\nQUJD\r\n\t ") == b"ABC"
    assert decode("hex", b" 41\n") == b"A"
