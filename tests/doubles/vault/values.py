"""Constants and small value helpers of the Vault double: random ids, Go's time and duration
formats, namespace paths and policy patterns."""

from __future__ import annotations

import re
import secrets
import string
import time
from datetime import datetime, timezone
from typing import Any


# The server the double plays, and checks itself against (tests/real/test_vault_conformance.py).
VAULT_VERSION = "2.7.2"
BUILD_DATE = "2026-10-26T20:32:27Z"
KV1_DEFAULT_TTL = 2764800  # 768h, Vault's system default lease TTL
KV2_DEFAULT_MAX_VERSIONS = 10
JSON = "application/json"

# Paths any valid token may use: Vault's built-in "default" policy.
DEFAULT_POLICY_PATHS = frozenset({
    "auth/token/lookup-self",
    "auth/token/renew-self",
    "auth/token/revoke-self",
    "sys/leases/renew",
    "sys/wrapping/unwrap",
})

KV2_WRONG_PATH_WARNING = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API "
    "endpoints to use. If using the OpenBao CLI, use 'bao kv {verb}' for this operation."
)
WRAPPING_TOKEN_INVALID = "wrapping token is not valid or does not exist"
NAMESPACE_NOT_FOUND = "namespace not found"
PAST_MAX_TTL = "past the max TTL, cannot renew"


def multierror(*errors: str) -> str:
    """One error text as go-multierror writes it (OpenBao wraps policy denials and some
    internal errors this way)."""
    count = f"{len(errors)} error occurred" if len(errors) == 1 else f"{len(errors)} errors occurred"
    return count + ":\n" + "".join(f"\t* {error}\n" for error in errors) + "\n"


def preflight_denied(path: str) -> str:
    """OpenBao's answer to a mount lookup the token has no access to (or no mount serves)."""
    return ("preflight capability check returned 403, please ensure client's policies grant "
            f'access to path "{path.strip("/")}/"')

_ALNUM = string.ascii_letters + string.digits


def _random(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _service_token(namespace_id: str = "", style: str = "openbao") -> str:
    """A service token as the server issues it.

    OpenBao: "s." + 24 alphanumerics, with ".<namespace id>" for a token of a child namespace.
    HashiCorp Vault >= 1.10 (style "vault"): "hvs." + a base64url protobuf, about 95 characters.
    """
    if style == "vault":
        return "hvs.CAESI" + _random(86, _ALNUM + "-_")
    return "s." + _random(24) + (f".{namespace_id}" if namespace_id else "")


def _rfc3339(epoch: float | None = None) -> str:
    """Go's RFC3339Nano in UTC: nanoseconds, trailing zeros trimmed, "Z"."""
    nanos = time.time_ns() if epoch is None else int(epoch * 1_000_000_000)
    seconds, fraction = divmod(nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> int:
    """Vault's parseutil.ParseDurationSecond: an int, "3600", "90s", "1h30m", "7d"."""
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {value!r}")
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def go_duration(seconds: int) -> str:
    """A duration as OpenBao's warnings write it: whole seconds, zero units left out
    (3600 -> "1h", 5400 -> "1h30m", 90 -> "1m30s", 0 -> "0s")."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return text or "0s"


def _ttl_capped_warning(asked: int, left: int) -> str:
    return (f'TTL of "{go_duration(asked)}" exceeded the effective max_ttl of '
            f'"{go_duration(left)}"; TTL value is capped accordingly')


def _clean_namespace(value: str) -> str:
    return "/".join(part for part in value.split("/") if part)


def _pattern_allows(pattern: str, path: str) -> bool:
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.endswith("/"):
        return path.startswith(pattern)
    return path == pattern or path.startswith(pattern + "/")


def _pattern_reaches_mount(pattern: str, mount_path: str) -> bool:
    """Whether a policy pattern grants anything inside the mount (Vault's hasMountAccess)."""
    literal = pattern.rstrip("*")
    if literal.startswith(mount_path) or literal + "/" == mount_path:
        return True
    return pattern.endswith("*") and mount_path.startswith(literal)
