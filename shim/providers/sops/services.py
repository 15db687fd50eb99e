"""Which key services a sops file may send the operator's credentials to, and the names it may use.

A master key's address (hc_vault `vault_address`, azure_kv `vault_url`), its transit
`engine_path` and `key_name`, and a KMS ARN's region are metadata: outside the MAC, and
written by whoever wrote the file. They are data, and data never chooses where credentials
go. Only the operator does: `VAULT_ADDR` names the Vault a transit key may use, and
`SHIM_SOPS_KEY_SERVICES` (a comma list of URLs) names any other service a file's keys may
use. An address outside both is refused before a request is made (docs/sops.md).
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import urlsplit

ALLOW_LIST_VARIABLE = "SHIM_SOPS_KEY_SERVICES"
# What the operator's Vault settings name (BAO_ADDR: OpenBao's own spelling of VAULT_ADDR).
VAULT_ADDRESS_VARIABLES = ("VAULT_ADDR", "BAO_ADDR", "VAULT_AGENT_ADDR")
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Vault path segments as transit names them: letters, digits, '_', '-', '.', never '.' or '..'
# alone (a segment that climbs out of the mount), never '/', '?', '#' or '%' (another path).
_SEGMENT = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.\-]{1,128}")
# An AWS region: us-east-1, us-gov-west-1, cn-north-1, eusc-de-east-1 ... a host label, no dots.
_AWS_REGION = re.compile(r"[a-z]{2,8}(-[a-z]+)+-[0-9]{1,2}")


def origin(url: object) -> tuple[str, str, int] | None:
    """(scheme, host, port) a URL reaches, or None if it is not an http(s) URL."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def allow_listed(environ: Mapping[str, str]) -> set[tuple[str, str, int]]:
    listed = (environ.get(ALLOW_LIST_VARIABLE) or "").split(",")
    return {found for found in map(origin, listed) if found is not None}


def vault_allowed(address: str, environ: Mapping[str, str]) -> bool:
    """The file's vault_address is the Vault the operator configured, or one it listed."""
    wanted = origin(address)
    configured = {origin(environ.get(name)) for name in VAULT_ADDRESS_VARIABLES}
    return wanted is not None and (wanted in configured or wanted in allow_listed(environ))


def service_allowed(url: str, environ: Mapping[str, str]) -> bool:
    wanted = origin(url)
    return wanted is not None and wanted in allow_listed(environ)


def transit_path_ok(engine_path: str, key_name: str) -> tuple[bool, str]:
    """(ok, the field that is not) for a transit mount path and key name from a file."""
    segments = engine_path.strip("/").split("/")
    if not engine_path.strip("/") or not all(_SEGMENT.fullmatch(part) for part in segments):
        return False, "engine_path"
    if not _SEGMENT.fullmatch(key_name):
        return False, "key_name"
    return True, ""


def aws_region_ok(region: str) -> bool:
    return _AWS_REGION.fullmatch(region) is not None
