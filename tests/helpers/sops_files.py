"""sops files made at test time: each format, the data key wrapped by each kind of master key.

The format-independent part (data key, values encrypted at their paths, MAC,
metadata) is shim's own writer; this module wraps the data key for the key
kinds the tests use and lays the result out as sops does for each format:
YAML/JSON/binary with a top-level `sops` mapping, dotenv with flat `sops_*`
keys, INI with a `[sops]` section of flat keys (newlines written as \\n).
No file or key here is committed: every test makes its own.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pyrage
import yaml

from shim.providers.sops import keys, stores, tree
from shim.providers.sops.writer import DEFAULT_RULES, new_data_key, seal


class AgeKey:
    def __init__(self):
        self.identity = pyrage.x25519.Identity.generate()
        self.secret = str(self.identity)
        self.recipient = str(self.identity.to_public())

    def entry(self, data_key: bytes) -> tuple[str, dict]:
        encrypted = pyrage.encrypt(data_key, [self.identity.to_public()])
        return "age", {"recipient": self.recipient, "enc": keys.armor_age(encrypted)}


class PgpKey:
    """A key pair in its own GNUPGHOME, made with Debian's gpg."""

    def __init__(self, home: Path):
        import gnupg
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home = str(home)
        self.gpg = gnupg.GPG(gnupghome=self.home)
        subprocess.run(["gpg", "--homedir", self.home, "--batch", "--passphrase", "",
                        "--quick-gen-key", "shim test <shim-test@example.invalid>",
                        "future-default", "default", "never"],
                       check=True, capture_output=True, timeout=60)
        self.fingerprint = self.gpg.list_keys(secret=True)[0]["fingerprint"]

    def entry(self, data_key: bytes) -> tuple[str, dict]:
        result = self.gpg.encrypt(data_key, [self.fingerprint], always_trust=True, armor=True)
        assert result.ok, result.status
        return "pgp", {"created_at": "2025-01-01T00:00:00Z", "enc": str(result), "fp": self.fingerprint}


class KmsKey:
    def __init__(self, client, context: dict | None = None):
        self.client = client
        self.arn = client.create_key()["KeyMetadata"]["Arn"]
        self.context = context or {}

    def entry(self, data_key: bytes) -> tuple[str, dict]:
        blob = self.client.encrypt(KeyId=self.arn, Plaintext=data_key,
                                   EncryptionContext=self.context)["CiphertextBlob"]
        entry = {"arn": self.arn, "aws_profile": "", "created_at": "2025-01-01T00:00:00Z",
                 "enc": base64.b64encode(blob).decode()}
        if self.context:
            entry["context"] = dict(self.context)
        return "kms", entry


class VaultTransitKey:
    """A key in the Vault double's transit engine. sops sends base64(data key) as transit's
    plaintext (which transit takes base64-encoded): Vault holds the data key's own bytes."""

    def __init__(self, vault, name: str = "sops", engine: str = "transit"):
        vault.add_transit_key(name, mount=engine)
        self.vault, self.name, self.engine = vault, name, engine

    def entry(self, data_key: bytes) -> tuple[str, dict]:
        answer = self.vault.client().write(f"{self.engine}/encrypt/{self.name}",
                                           plaintext=base64.b64encode(data_key).decode())
        return "hc_vault", {"vault_address": self.vault.url, "engine_path": self.engine,
                            "key_name": self.name, "created_at": "2025-01-01T00:00:00Z",
                            "enc": answer["data"]["ciphertext"]}


class AzureKey:
    """An RSA key in the Azure double; the data key encrypted with RSA-OAEP-256 to its public half,
    in unpadded base64url, as sops writes it."""

    def __init__(self, kv, name: str = "sops-key"):
        self.kv, self.name = kv, name
        self.version, self._private = kv.add_rsa_key(name)

    def entry(self, data_key: bytes) -> tuple[str, dict]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        sealed = self._private.public_key().encrypt(data_key, padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        return "azure_kv", {"vault_url": self.kv.url, "name": self.name, "version": self.version,
                            "created_at": "2025-01-01T00:00:00Z",
                            "enc": base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()}


def sops_file(path: Path, data: dict | str, master_keys, fmt: str | None = None,
              rules: tree.Rules = DEFAULT_RULES) -> Path:
    """Write `data` (a mapping; the file's text for binary) as sops would, encrypted to `master_keys`."""
    fmt = fmt or stores.format_for_path(str(path))
    data_key = new_data_key()
    wrapped: dict = {}
    for master in master_keys:
        kind, entry = master.entry(data_key)
        wrapped.setdefault(kind, []).append(entry)
    if fmt == "binary":
        data = {"data": data}
    branch = _branch(data)
    encrypted, metadata = seal([branch], data_key, wrapped, rules)
    document = tree.plain(encrypted[0])
    if fmt == "yaml":
        text = yaml.safe_dump({**document, "sops": metadata}, sort_keys=False, width=1 << 16)
    elif fmt in ("json", "binary"):
        text = json.dumps({**document, "sops": metadata}, indent=4)
    elif fmt == "dotenv":
        text = stores.emit_dotenv(encrypted[0], metadata).decode()
    else:
        text = _ini(document, metadata)
    path.write_text(text)
    return path


def _branch(value):
    if isinstance(value, dict):
        return tree.Branch((key, _branch(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_branch(item) for item in value]
    return value


def _ini(document: dict, metadata: dict) -> str:
    lines = []
    for section, items in document.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in items.items())
        lines.append("")
    lines.append("[sops]")
    for key, value in stores.flatten(metadata, ""):
        lines.append(f"{key} = {str(value).replace(chr(10), chr(92) + 'n')}")
    return "\n".join(lines) + "\n"
