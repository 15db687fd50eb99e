"""One sops value: `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]`.

AES-256-GCM with a 32-byte random IV; the additional data is the value's
path in the tree, each key followed by ':' (docs/sops.md). The plaintext is
the value's text form; `type` says how to read it back (str, int, float,
bool, bytes, time, comment).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from decimal import Decimal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

IV_BYTES = 32
_ENCRYPTED = re.compile(r"ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]", re.DOTALL)
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class CipherError(Exception):
    """A value that does not decrypt; the message never holds the value."""


def is_encrypted(value) -> bool:
    return isinstance(value, str) and _ENCRYPTED.match(value) is not None


def decrypt(text: str, key: bytes, additional_data: str):
    """The typed plaintext of one encrypted value ("" stays "", as sops writes it)."""
    if text == "":
        return ""
    match = _ENCRYPTED.match(text)
    if match is None:
        raise CipherError("a value is not in sops' ENC[AES256_GCM,...] form")
    try:
        data, iv, tag = (base64.b64decode(part, validate=True) for part in match.groups()[:3])
    except (binascii.Error, ValueError):
        raise CipherError("a value's data, iv or tag is not base64") from None
    kind = match.group(4)
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, additional_data.encode("utf-8"))
    except (InvalidTag, ValueError):
        raise CipherError("a value does not authenticate with the data key at its path") from None
    return typed(plain, kind)


def encrypt(value, key: bytes, additional_data: str, iv: bytes | None = None) -> str:
    """sops' form of `value` (str, bool, int, float, bytes); "" stays ""."""
    if value == "" or value == b"":
        return ""
    kind, plain = _kind_and_bytes(value)
    iv = iv if iv is not None else os.urandom(IV_BYTES)
    sealed = AESGCM(key).encrypt(iv, plain, additional_data.encode("utf-8"))
    data, tag = sealed[:-16], sealed[-16:]
    b64 = base64.b64encode
    return (f"ENC[AES256_GCM,data:{b64(data).decode()},iv:{b64(iv).decode()},"
            f"tag:{b64(tag).decode()},type:{kind}]")


def typed(plain: bytes, kind: str):
    """Read a decrypted plaintext back as the type sops recorded."""
    if kind == "bytes":
        return plain
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        if kind in ("str", "comment"):
            return plain    # the resolver refuses non-UTF-8 text with its own message
        raise CipherError(f"a value of type {kind} is not UTF-8") from None
    if kind in ("str", "time", "comment"):
        # time stays in the RFC 3339 text sops encrypted; it is the same bytes for the MAC.
        return text
    if kind == "int":
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise CipherError("a value of type int is not a whole number")
        return _whole(text)
    if kind == "float":
        # sops types every JSON number float and encrypts Go's shortest form without an
        # exponent ("5432", "12345678901234567000"): a whole number stays whole, as
        # `sops decrypt` prints it. Its MAC bytes are the same text either way.
        if re.fullmatch(r"-?[0-9]+", text):
            return _whole(text)
        try:
            return float(text)
        except ValueError:
            raise CipherError("a value of type float is not a number") from None
    if kind == "bool":
        if text in _GO_TRUE:
            return True
        if text in _GO_FALSE:
            return False
        raise CipherError("a value of type bool is neither true nor false")
    raise CipherError(f"unknown value type {kind[:20]!r}")


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:      # more digits than Python converts (4300): no sops value is that long
        raise CipherError("a number has too many digits") from None


def mac_bytes(value) -> bytes:
    """The bytes sops feeds into the MAC for a value (its text form, Go-formatted)."""
    return _kind_and_bytes(value)[1]


def _kind_and_bytes(value) -> tuple[str, bytes]:
    if isinstance(value, bool):
        return "bool", b"True" if value else b"False"
    if isinstance(value, int):
        return "int", str(value).encode()
    if isinstance(value, float):
        return "float", go_float(value).encode()
    if isinstance(value, bytes):
        return "bytes", value
    if isinstance(value, str):
        return "str", value.encode("utf-8", "surrogateescape")
    raise CipherError(f"cannot encrypt a value of type {type(value).__name__}")


def go_float(number: float) -> str:
    """Go's strconv.FormatFloat(f, 'f', -1, 64): shortest digits, never an exponent."""
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "+Inf" if number > 0 else "-Inf"
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
