"""`?encoding=base64|base64url|hex`: decode a secret after its key was selected.

Stores hold text; binary secrets (keystores, keys in DER form) are kept there
encoded. Decoding is strict: characters outside the alphabet, a wrong length or
wrong padding are refused (65) rather than silently skipped, and messages say
what is wrong without quoting any of the value. The result is bytes; whether
bytes that are not UTF-8 text are usable is decided by the caller (not in the
environment; fine in a file).
"""

from __future__ import annotations

import base64
import binascii

from shim.tools.errors import UnusableValue

ENCODINGS = ("base64", "base64url", "hex")


def decode(encoding: str, text: str | bytes) -> bytes:
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise _invalid(encoding, "it holds characters outside the alphabet") from None
    # Stores and editors often add a final newline; nothing else is forgiven.
    text = text.strip(b" \t\r\n")
    if encoding == "hex":
        if len(text) % 2 or text.strip(b"0123456789abcdefABCDEF"):
            raise _invalid(encoding, "it is not an even number of hex digits")
        return bytes.fromhex(text.decode("ascii"))
    if encoding == "base64url":
        if b"+" in text or b"/" in text:
            raise _invalid(encoding, "it holds characters outside the alphabet")
        text = text.replace(b"-", b"+").replace(b"_", b"/")
        if b"=" not in text:
            text += b"=" * (-len(text) % 4)  # base64url is often written without padding
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _invalid(encoding, "characters outside the alphabet, or a wrong length or padding") from None


def _invalid(encoding: str, reason: str) -> UnusableValue:
    return UnusableValue(f"the value is not valid {encoding}: {reason}",
                         hint=f"store it {encoding}-encoded, or drop ?encoding={encoding}")
