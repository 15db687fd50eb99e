"""The cryptography of a Bitwarden Secrets Manager access token, with the `cryptography` package.

A machine account's access token is `0.<client id>.<client secret>:<base64 of 16 bytes>`. Those
16 bytes never leave the machine: they derive the key that opens the login answer's
`encrypted_payload`, which holds the organization's key, which opens every secret's key, value
and note. Bitwarden's scheme (its SDK's bitwarden-crypto crate, and the clients' "shareable
key"):

- shareable key: PRK = HMAC-SHA256(key=b"bitwarden-accesstoken", msg=the 16 bytes), then
  HKDF-Expand(SHA-256, PRK, info=b"sm-access-token", 64 bytes): 32 bytes of AES key, then 32
  bytes of MAC key.
- EncString type 2 (`2.<iv>|<ciphertext>|<mac>`, base64 parts): AES-256-CBC with PKCS#7 padding,
  authenticated by HMAC-SHA256(MAC key, iv + ciphertext), checked before decrypting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class AccessToken(NamedTuple):
    client_id: str
    client_secret: str
    encryption_key: bytes       # the 16 bytes after the colon


class SymmetricKey(NamedTuple):
    enc: bytes
    mac: bytes


def parse_access_token(text: str) -> AccessToken | None:
    """The parts of an access token, or None when it is not one (the caller says so, quoting
    nothing of it)."""
    match = re.fullmatch(r"0\.(" + UUID + r")\.([A-Za-z0-9]{1,128}):([A-Za-z0-9+/=]{20,32})",
                         text.strip())
    if not match:
        return None
    try:
        key = base64.b64decode(match.group(3), validate=True)
    except ValueError:
        return None
    return AccessToken(match.group(1), match.group(2), key) if len(key) == 16 else None


def shareable_key(secret: bytes, name: str = "accesstoken", info: str = "sm-access-token"
                  ) -> SymmetricKey:
    prk = hmac.new(f"bitwarden-{name}".encode(), secret, hashlib.sha256).digest()
    okm = HKDFExpand(hashes.SHA256(), 64, info.encode()).derive(prk)
    return SymmetricKey(okm[:32], okm[32:])


def key_from_bytes(raw: bytes) -> SymmetricKey:
    if len(raw) != 64:
        raise ValueError("a symmetric key is 64 bytes")
    return SymmetricKey(raw[:32], raw[32:])


def decrypt(encstring: str, key: SymmetricKey) -> bytes:
    """The plaintext of an EncString of type 2; ValueError when it is malformed or its MAC
    does not match (wrong key, tampered answer)."""
    if not isinstance(encstring, str) or not encstring.startswith("2."):
        raise ValueError("not an EncString of type 2")
    parts = encstring[2:].split("|")
    if len(parts) != 3:
        raise ValueError("an EncString of type 2 has three parts")
    iv, data, mac = (base64.b64decode(part, validate=True) for part in parts)
    expected = hmac.new(key.mac, iv + data, hashlib.sha256).digest()
    if len(iv) != 16 or not hmac.compare_digest(mac, expected):
        raise ValueError("the EncString's MAC does not match")
    decryptor = Cipher(algorithms.AES(key.enc), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def encrypt(plaintext: bytes, key: SymmetricKey, iv: bytes) -> str:
    """The EncString of type 2 of `plaintext` (the test double writes answers with it)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.enc), modes.CBC(iv)).encryptor()
    data = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(key.mac, iv + data, hashlib.sha256).digest()
    return "2." + "|".join(base64.b64encode(part).decode() for part in (iv, data, mac))
