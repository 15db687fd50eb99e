"""Dynamic secrets' leases: renewal (a renewal capped by max_ttl returns less), revocation,
and which reads would mint one (`shim check` does not make those)."""

from __future__ import annotations

from typing import Any

from shim.tools.deadline import Deadline
from shim.tools.errors import NotRead
from shim.providers.vault.http import VaultHttp

# Engines whose reads return what is stored and mint nothing. Any other engine's read may
# create something with a lease (database/creds, aws/creds, ...).
STORED_ONLY_ENGINES = ("kv", "generic", "cubbyhole")
MINTS = "a read would mint a credential"


def reads_minting_nothing(plans: tuple, mount, path: str) -> tuple:
    """`plans` with every read that could mint a credential replaced by a NotRead (check).
    With the mount unknown (the lookup denied), only the KV v2 guess is safe to read."""
    if mount is not None:
        if mount.kv_version is not None or mount.type in STORED_ONLY_ENGINES:
            return plans
        return (NotRead(f"{path} is in a {mount.type} secrets engine, where a read mints a "
                        f"new credential with a lease", hint="shim exec reads it",
                        effect=MINTS),)
    segment = path.split("/", 1)[0]
    unknown = NotRead(f"Vault did not say which secrets engine {segment}/ is, and a read there "
                      f"could mint a new credential with a lease",
                      hint="allow read on sys/internal/ui/mounts/* for check to read KV v1 "
                           "secrets; shim exec reads it", effect=MINTS)
    return tuple(plan if plan.kv_version == 2 else unknown for plan in plans)


def renew(http: VaultHttp, lease_id: str, increment: int | None, deadline: Deadline) -> int:
    """The new lease_duration in seconds (smaller than asked when max_ttl caps it)."""
    body: dict[str, Any] = {"lease_id": lease_id}
    if increment:
        body["increment"] = int(increment)
    answer = http.request("PUT", "sys/leases/renew", deadline, "lease renewal", json=body)
    if answer.status != 200:
        raise http.refusal(answer, f"renewing lease {lease_id}")
    return int((answer.body or {}).get("lease_duration") or 0)


def revoke(http: VaultHttp, lease_id: str, deadline: Deadline) -> None:
    answer = http.request("PUT", "sys/leases/revoke", deadline, "lease revocation",
                          json={"lease_id": lease_id})
    if answer.status not in (200, 204):
        raise http.refusal(answer, f"revoking lease {lease_id}")
