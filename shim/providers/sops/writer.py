"""Writing sops files: a fresh data key, values encrypted at their paths, the MAC, the metadata.

`seal` does the format-independent part; `encrypt_dotenv` writes the dotenv
file `shim dev-init --encrypt` commits, readable by sops and by shim.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from shim.providers.sops import cipher, keys, stores, tree

# The sops release whose file layout this writes; sops reads it and updates it when it edits.
SOPS_FORMAT_VERSION = "3.9.0"
DEFAULT_RULES = tree.Rules(unencrypted_suffix=tree.DEFAULT_UNENCRYPTED_SUFFIX)


def new_data_key() -> bytes:
    return os.urandom(keys.DATA_KEY_BYTES)


def age_entry(recipient: str, data_key: bytes) -> dict:
    """One `age:` metadata entry: the data key encrypted to `recipient`, armored."""
    import pyrage  # lazy: the sops extra, only for an age key
    try:
        parsed = pyrage.x25519.Recipient.from_str(recipient)
    except Exception:   # pyrage's RecipientError; the text is the caller's to quote
        raise ValueError("not an age recipient (age1...)") from None
    return {"recipient": recipient, "enc": keys.armor_age(pyrage.encrypt(data_key, [parsed]))}


def seal(branches: list[tree.Branch], data_key: bytes, master_keys: dict,
         rules: tree.Rules = DEFAULT_RULES, now: datetime | None = None) -> tuple[list, dict]:
    """The encrypted branches and the metadata mapping sops stores beside them.

    `master_keys` maps a kind (age, pgp, kms, hc_vault, azure_kv) to its list of
    entries, each already holding the data key encrypted (`enc`).
    """
    encrypted, mac = tree.encrypt(branches, data_key, rules)
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    lastmodified = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {kind: entries for kind, entries in master_keys.items() if entries}
    metadata["lastmodified"] = lastmodified
    metadata["mac"] = cipher.encrypt(mac, data_key, lastmodified)
    for name in ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex"):
        if getattr(rules, name):
            metadata[name] = getattr(rules, name)
    if rules.mac_only_encrypted:
        metadata["mac_only_encrypted"] = True
    metadata["version"] = SOPS_FORMAT_VERSION
    return encrypted, metadata


def encrypt_dotenv(pairs: list[tuple[str, str]], age_recipients: list[str]) -> bytes:
    """A sops dotenv file of `pairs`, its data key encrypted to each age recipient."""
    data_key = new_data_key()
    entries = [age_entry(recipient, data_key) for recipient in age_recipients]
    branch = tree.Branch(pairs)
    encrypted, metadata = seal([branch], data_key, {"age": entries})
    return stores.emit_dotenv(encrypted[0], metadata)
