"""Bitwarden Secrets Manager's reference syntax and the access-token cryptography."""

import base64
import os

import pytest

from shim.providers import bwscrypto
from shim.syntax.refs import parse_import_reference
from tests.helpers.doc_rows import (
    assert_malformed_quoting_nothing, assert_rows_round_trip, documented_rows,
)


def test_the_documented_rows_parse_as_documented_and_round_trip():
    rows = documented_rows("ref+bws://", "docs/references.md", "docs/bitwarden.md")
    assert len(rows) >= 4
    assert_rows_round_trip(rows)


def test_an_import_names_a_project():
    reference = parse_import_reference(
        "ref+bws://project/3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6?prefix=APP_")
    assert reference.locator == "project/3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6"


@pytest.mark.parametrize("text", [
    "ref+bws://zq-not-a-uuid",
    "ref+bws://project/zq",
    "ref+bws://3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6/zq",
    "ref+bws://3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6?version=zq",
])
def test_malformed_references_are_usage_errors_that_quote_nothing(text):
    assert_malformed_quoting_nothing(text, "zq")


def test_access_tokens_parse_and_malformed_ones_do_not():
    key = base64.b64encode(os.urandom(16)).decode()
    token = bwscrypto.parse_access_token(
        f"0.3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6.abcDEF123:{key}")
    assert token.client_id == "3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6"
    assert token.client_secret == "abcDEF123" and len(token.encryption_key) == 16  # pragma: allowlist secret
    for bad in ("", "1.3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6.abc:" + key,
                "0.not-a-uuid.abc:" + key, "0.3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6.abc:short"):
        assert bwscrypto.parse_access_token(bad) is None


def test_an_encstring_round_trips_and_a_flipped_bit_is_refused():
    key = bwscrypto.key_from_bytes(os.urandom(64))
    plaintext = b"a value longer than one AES block, so the padding survives"
    text = bwscrypto.encrypt(plaintext, key, os.urandom(16))
    assert bwscrypto.decrypt(text, key) == plaintext
    # A flipped IV bit changes only the first block: without the MAC check it would decrypt,
    # padding intact, to a different value.
    iv, data, mac = text[2:].split("|")
    raw = bytearray(base64.b64decode(iv))
    raw[0] ^= 1
    with pytest.raises(ValueError):
        bwscrypto.decrypt(f"2.{base64.b64encode(bytes(raw)).decode()}|{data}|{mac}", key)
    with pytest.raises(ValueError):
        bwscrypto.decrypt(text, bwscrypto.key_from_bytes(os.urandom(64)))
