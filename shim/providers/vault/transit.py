"""Transit decryption, for sops files whose data key a Vault transit key encrypted."""

from __future__ import annotations

import base64
import binascii

from shim.deadline import Deadline
from shim.errors import UnusableValue
from shim.providers.vault.http import VaultHttp


def decrypt(http: VaultHttp, engine_path: str, key_name: str, ciphertext: str,
            deadline: Deadline) -> bytes:
    """The plaintext of a `vault:v1:...` ciphertext (Vault answers it in base64)."""
    path = f"{engine_path.strip('/')}/decrypt/{key_name}"
    answer = http.request("POST", path, deadline, "transit decrypt", json={"ciphertext": ciphertext})
    if answer.status != 200:
        raise http.refusal(answer, f"transit decrypt with key {key_name[:60]}")
    plaintext = ((answer.body or {}).get("data") or {}).get("plaintext")
    try:
        return base64.b64decode(plaintext or "", validate=True)
    except (binascii.Error, TypeError):
        raise UnusableValue("Vault's transit answer holds no base64 plaintext") from None
