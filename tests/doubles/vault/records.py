"""The records the Vault double keeps: tokens, KV secrets and versions, mounts, roles, leases,
wrapped answers, namespaces, and the request log's entries."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from tests.doubles.vault.values import _rfc3339


@dataclass
class Token:
    id: str
    accessor: str
    policies: list[str]          # names; patterns are looked up per request, as Vault does
    namespace: str
    ttl: int                     # creation TTL (0 = never expires)
    max_ttl: int                 # explicit max TTL (0 = none)
    renewable: bool
    issued: float
    expires: float | None
    display_name: str
    path: str
    orphan: bool
    meta: dict[str, str] | None
    preflight: bool = True
    entity_id: str = ""
    revoked: bool = False

    @property
    def is_root(self) -> bool:
        return "root" in self.policies

    def alive(self, now: float) -> bool:
        return not self.revoked and (self.expires is None or now < self.expires)

    def auth_block(self) -> dict:
        return {
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": list(self.policies),
            "token_policies": list(self.policies),
            "metadata": copy.deepcopy(self.meta),
            "lease_duration": self.ttl,
            "renewable": self.renewable,
            "entity_id": self.entity_id,
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": None,
            "num_uses": 0,
        }


@dataclass
class KvVersion:
    data: dict | None
    created_time: str
    deleted_at: float | None = None
    destroyed: bool = False

    @property
    def deletion_time(self) -> str:
        return _rfc3339(self.deleted_at) if self.deleted_at is not None else ""

    def hidden(self, now: float) -> bool:
        """Deleted (deletion time reached) or destroyed: reads give 404."""
        return self.destroyed or (self.deleted_at is not None and self.deleted_at <= now)


@dataclass
class KvSecret:
    created_time: str
    updated_time: str
    versions: dict[int, KvVersion] = field(default_factory=dict)
    current_version: int = 0
    oldest_version: int = 0
    custom_metadata: dict[str, str] | None = None
    max_versions: int = 0
    cas_required: bool = False

    def version_metadata(self, number: int) -> dict:
        version = self.versions[number]
        return {
            "created_time": version.created_time,
            "custom_metadata": copy.deepcopy(self.custom_metadata),
            "deletion_time": version.deletion_time,
            "destroyed": version.destroyed,
            "version": number,
        }


@dataclass
class DatabaseRole:
    name: str
    default_ttl: int
    max_ttl: int


@dataclass
class Mount:
    path: str                    # "secret/" (relative to its namespace)
    type: str                    # "kv", "database" or "transit"
    version: int | None = None   # kv only: 1, 2, or None (a v1 mount created without options)
    accessor: str = ""
    uuid: str = ""
    kv1: dict[str, dict] = field(default_factory=dict)
    kv2: dict[str, KvSecret] = field(default_factory=dict)
    roles: dict[str, DatabaseRole] = field(default_factory=dict)
    transit_keys: dict[str, bytes] = field(default_factory=dict)   # transit only: name -> AES key

    @property
    def is_kv2(self) -> bool:
        return self.type == "kv" and self.version == 2


@dataclass
class LoginRole:
    """An AppRole, Kubernetes or JWT role and the token it hands out."""
    name: str
    policies: list[str]
    ttl: int
    max_ttl: int
    renewable: bool
    preflight: bool
    role_id: str = ""
    secret_ids: set[str] = field(default_factory=set)
    jwt: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class AuthMount:
    path: str                    # "approle/"
    type: str                    # "approle", "kubernetes", "jwt"
    accessor: str
    roles: dict[str, LoginRole] = field(default_factory=dict)


@dataclass
class Lease:
    lease_id: str
    role: str
    username: str
    password: str
    namespace: str
    token_id: str
    issued: float
    ttl: int
    expires: float
    max_expires: float
    revoked: bool = False
    renewals: int = 0

    def alive(self, now: float) -> bool:
        return not self.revoked and now < self.expires


@dataclass(frozen=True)
class IssuedCredential:
    lease_id: str
    role: str
    username: str
    password: str
    namespace: str


@dataclass
class Wrapped:
    token: str
    accessor: str
    ttl: int
    creation_time: str
    creation_path: str
    namespace: str
    expires: float
    body: dict


@dataclass
class Namespace:
    path: str                    # "" for root, "ns1", "ns1/ns2"
    id: str
    mounts: dict[str, Mount] = field(default_factory=dict)
    auth: dict[str, AuthMount] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    policies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def mount_for(self, path: str) -> tuple[Mount | None, str]:
        """Longest mount prefix of path, and the rest of the path after it."""
        best = None
        for mount in self.mounts.values():
            longer = best is None or len(mount.path) > len(best.path)
            if (path + "/").startswith(mount.path) and longer:
                best = mount
        if best is None:
            return None, path
        return best, path[len(best.path):]


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str                    # as sent, e.g. "/v1/secret/data/app"
    query: dict[str, str]
    headers: dict[str, str]      # token-bearing headers redacted
    namespace: str
    status: int
    time: float


@dataclass
class _Failure:
    status: int
    errors: list[str] | None
    path: str | None
    body: bytes | None
    content_type: str
    headers: dict[str, str]
