"""Dynamic secrets' leases: renewal (a renewal capped by max_ttl returns less) and revocation."""

from __future__ import annotations

from typing import Any

from shim.deadline import Deadline
from shim.providers.vault.http import VaultHttp


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
