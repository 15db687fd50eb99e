"""The Vault test double as a server of its own: `python3 -m tests.doubles.vault_server`.

For containers (images/vault-double) and compose examples that need a Vault to talk to, where
`vault server -dev` cannot be had. It serves the VaultDouble of tests/doubles/vault/ over plain
HTTP until SIGTERM or SIGINT (then exits 0 at once).

Settings, from the environment (each NAME also as NAME_FILE, read once at start):

    VAULT_DEV_ROOT_TOKEN_ID       the root token, as for `vault server -dev`; when unset one is
                                  generated and printed, as the dev server does
    VAULT_DEV_LISTEN_ADDRESS      host:port to listen on; default 0.0.0.0:8200
    VAULT_DOUBLE_SEED             JSON object of secrets to write at start:
                                  {"secret/app": {"password": "..."}, "kv1/legacy": {...}}
                                  the first path segment is the mount (secret/ is KV v2, kv1/ is
                                  KV v1); "secret/data/app" means the same as "secret/app"

Mounts are the double's defaults: secret/ (KV v2), kv1/ (KV v1), database/. Everything else is
set up through the ordinary Vault HTTP API with the root token. Values are never printed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from tests.doubles.vault import VaultDouble


def setting(name: str, default: str | None = None) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as stream:
            return stream.read().rstrip("\r\n")
    return os.environ.get(name) or default


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


class ServedVault(VaultDouble):
    """A VaultDouble listening on a fixed address instead of 127.0.0.1, port 0."""

    def __init__(self, address: tuple[str, int], **kwargs):
        super().__init__(host=address[0], **kwargs)
        self._port = address[1]


def seed(vault: VaultDouble, secrets: dict) -> int:
    """Write each "mount/path": {data} with the KV version of its mount; returns the count."""
    if not isinstance(secrets, dict):
        raise ValueError("VAULT_DOUBLE_SEED must be a JSON object")
    for where, data in secrets.items():
        mount, _, path = where.strip("/").partition("/")
        if not path or not isinstance(data, dict):
            raise ValueError(f"seed entry {where!r}: want \"mount/path\": {{key: value}}")
        try:
            vault.kv2_put(mount, path.removeprefix("data/"), data)
        except KeyError:
            vault.kv1_put(mount, path, data)   # KeyError again: no such mount
    return len(secrets)


def main() -> int:
    address = parse_address(setting("VAULT_DEV_LISTEN_ADDRESS", "0.0.0.0:8200"))
    token = setting("VAULT_DEV_ROOT_TOKEN_ID")
    vault = ServedVault(address, root_token=token)
    try:
        count = seed(vault, json.loads(setting("VAULT_DOUBLE_SEED", "{}")))
    except (ValueError, KeyError) as error:
        # The message names entries, never values (json errors only give positions).
        print(f"vault-double: bad VAULT_DOUBLE_SEED: {error}", file=sys.stderr)
        return 78
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    vault.start()
    print(f"vault-double: listening on http://{address[0]}:{address[1]}, {count} secret(s) "
          "seeded", flush=True)
    if token is None:
        print(f"vault-double: root token {vault.root_token}", flush=True)
    stop.wait()
    vault.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
