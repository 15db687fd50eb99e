"""The transit engine, as far as sops' hc_vault keys use it: encrypt and decrypt with a named
key."""

from __future__ import annotations

import base64
import secrets

from tests.doubles.vault.records import Mount
from tests.doubles.vault.wire import Response, VaultFailure, _Call, _methods, _ok, envelope


_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _go_base64_error(text: str) -> str:
    """Go's base64.CorruptInputError text, as OpenBao returns it: the offset of the first byte
    that cannot be decoded (a character outside the alphabet, or where padding goes wrong)."""
    body = text.rstrip("=")
    offset = next((i for i, char in enumerate(body) if char not in _BASE64_ALPHABET), None)
    if offset is None:
        offset = len(body) if len(text) % 4 or len(body) % 4 == 1 else len(text)
    return f"illegal base64 data at input byte {offset}"


class TransitMixin:
    """Transit keys and the encrypt/decrypt endpoints."""

    # -- transit (encrypt / decrypt with a named key, as sops' hc_vault keys use it) ---------

    def add_transit_key(self, name: str, *, mount: str = "transit", namespace: str = "") -> None:
        target = self.add_mount(mount, "transit", namespace=namespace)
        with self._lock:
            target.transit_keys.setdefault(name, secrets.token_bytes(32))

    def _transit_route(self, call: _Call, mount: Mount, rest: str) -> Response:
        operation, _, name = rest.partition("/")
        if operation not in ("encrypt", "decrypt") or not name:
            raise VaultFailure(404, ["unsupported path"])
        handler = self._transit_encrypt if operation == "encrypt" else self._transit_decrypt
        return _methods(call.request, {"POST": lambda: handler(call, mount, name),
                                       "PUT": lambda: handler(call, mount, name)})

    def _transit_encrypt(self, call: _Call, mount: Mount, name: str) -> Response:
        # Vault's answer: ciphertext "vault:v1:" + base64(nonce + AES-GCM sealed), plaintext base64.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        key = mount.transit_keys.get(name)
        if key is None:
            key = mount.transit_keys.setdefault(name, secrets.token_bytes(32))   # upsert, as Vault does
        # The plaintext is base64 on the wire, decoded once here; sops sends base64(data key).
        text = str(call.request.json().get("plaintext") or "")
        try:
            plaintext = base64.b64decode(text, validate=True)
        except ValueError:
            raise VaultFailure(400, [_go_base64_error(text)]) from None
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key).encrypt(nonce, plaintext, None)
        return _ok(envelope({"ciphertext": "vault:v1:" + base64.b64encode(nonce + sealed).decode(),
                             "key_version": 1}))

    def _transit_decrypt(self, call: _Call, mount: Mount, name: str) -> Response:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        key = mount.transit_keys.get(name)
        if key is None:
            raise VaultFailure(400, ["encryption key not found"])
        ciphertext = str(call.request.json().get("ciphertext") or "")
        if not ciphertext.startswith("vault:v1:"):
            raise VaultFailure(400, ["invalid ciphertext: no prefix"])
        try:
            raw = base64.b64decode(ciphertext[len("vault:v1:"):], validate=True)
            plaintext = AESGCM(key).decrypt(raw[:12], raw[12:], None)
        except (ValueError, InvalidTag):
            raise VaultFailure(400, ["cipher: message authentication failed"]) from None
        return _ok(envelope({"plaintext": base64.b64encode(plaintext).decode()}))
