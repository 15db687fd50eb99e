"""Transit decryption, for sops files whose data key a Vault transit key encrypted."""

from __future__ import annotations

import base64
import binascii

from shim.tools.deadline import Deadline
from shim.tools.errors import PermissionDenied, UnusableValue
from shim.providers.vault.http import VaultHttp


def decrypt(http: VaultHttp, engine_path: str, key_name: str, ciphertext: str,
            deadline: Deadline, mount=None) -> bytes:
    """The plaintext of a `vault:v1:...` ciphertext (Vault answers it in base64).

    `mount`: what Vault's mount lookup said of engine_path (None: it did not say). A sops file
    names engine_path, so only a transit mount is asked: `kv1/app` would otherwise make the
    operator's token write a secret at kv1/app/decrypt/<key>.
    """
    if mount is not None and mount.type != "transit":
        raise PermissionDenied(f"{engine_path.strip('/')[:60]} is a {mount.type[:20]} mount, "
                               "not a transit engine",
                               hint="a sops file's transit key must name a transit mount")
    path = f"{engine_path.strip('/')}/decrypt/{key_name}"
    answer = http.request("POST", path, deadline, "transit decrypt", json={"ciphertext": ciphertext})
    if answer.status != 200:
        raise http.refusal(answer, f"transit decrypt with key {key_name[:60]}")
    plaintext = ((answer.body or {}).get("data") or {}).get("plaintext")
    try:
        return base64.b64decode(plaintext or "", validate=True)
    except (binascii.Error, TypeError):
        raise UnusableValue("Vault's transit answer holds no base64 plaintext") from None
