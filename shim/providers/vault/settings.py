"""Which variable holds each Vault setting: Vault's `VAULT_*` name, or OpenBao's `BAO_*` twin.

The `bao` CLI (OpenBao) reads `BAO_ADDR`, `BAO_TOKEN`, `BAO_NAMESPACE`, ... and falls back to the
`VAULT_*` name when its own is unset; shim reads the same way, so one environment serves both the
CLI and shim. Only the settings OpenBao itself names so have a twin: shim's own additions
(`VAULT_TOKEN_FILE`, `VAULT_ROLE_ID`, `VAULT_AUTH_METHOD`, ...) keep their one name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

# VAULT_<NAME> settings that OpenBao also reads as BAO_<NAME>.
OPENBAO_TWINS = frozenset({"ADDR", "AGENT_ADDR", "TOKEN", "NAMESPACE", "CACERT", "CAPATH",
                           "CLIENT_CERT", "CLIENT_KEY", "SKIP_VERIFY", "CLIENT_TIMEOUT"})


class VaultSettings(Mapping):
    """The environment as the Vault provider reads it: `VAULT_X` answers with `BAO_X` when that
    is set (as the bao CLI does), else with `VAULT_X`; `name_of` tells which one a message
    should name."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ._environ if isinstance(environ, VaultSettings) else environ

    def name_of(self, name: str) -> str:
        """The variable that holds `name`'s setting here: BAO_X when it is set, else `name`."""
        if name.startswith("VAULT_") and name[len("VAULT_"):] in OPENBAO_TWINS:
            twin = "BAO_" + name[len("VAULT_"):]
            if self._environ.get(twin):
                return twin
        return name

    def __getitem__(self, name: str) -> str:
        return self._environ[self.name_of(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)
