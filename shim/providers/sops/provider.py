"""sops-encrypted files: `ref+sops://PATH[?format=F][#/json/pointer]`.

Each distinct (path, format) is decrypted once, before privileges drop; the
Fetched value is the whole decrypted map (or the binary file's text), and the
resolver selects a key from it as for any other store. The format code lives
in shim.providers.sops.decrypt; this module only adapts it to the provider interface.
"""

from __future__ import annotations

from datetime import datetime

from shim.tools.errors import ConfigError, ShimError
from shim.providers.base import Fetched, SecretMeta
from shim.providers.mechanism import by_fetch_key


class SopsProvider:
    name = "sops"

    def __init__(self, context):
        try:
            import cryptography  # lazy: the sops extra: fail here, cleanly, when it is missing  # noqa: F401 - fail here, cleanly, when shim-secrets[sops] is not installed
            import yaml  # lazy: the sops extra: fail here, cleanly, when it is missing  # noqa: F401
        except ImportError as error:
            raise ConfigError("provider sops is not available: install shim-secrets[sops]",
                              hint=f"{error.name} cannot be imported") from None
        self.context = context

    def fetch_all(self, references, deadline):
        # Local files, decrypted one after another; a key service they name is bounded by the
        # deadline in shim.providers.sops.keys.
        return {key: self.fetch(group[0].locator, group[0].option("format"), deadline)
                for key, group in by_fetch_key(references).items()}

    def fetch(self, path: str, fmt: str | None, deadline):
        """The decrypted file as a Fetched, or the ShimError saying why not."""
        from shim.providers.sops.decrypt import decrypt_file  # lazy: only with a sops file
        try:
            decrypted = decrypt_file(path, self.context.environ, deadline, fmt, self.context.log)
        except ShimError as error:
            return error
        return Fetched(decrypted.value, SecretMeta(updated=_moment(decrypted.lastmodified)))


def _moment(text: str):
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
