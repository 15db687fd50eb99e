"""Leases and dynamic database credentials: minting creds, renewing and revoking leases, and
the TTL arithmetic (increments, max_ttl caps) token renewal shares."""

from __future__ import annotations

import copy

from tests.doubles.vault.records import DatabaseRole, IssuedCredential, Lease, Mount
from tests.doubles.vault.values import _random, _ttl_capped_warning, parse_duration
from tests.doubles.vault.wire import (Response, VaultFailure, _Call, _methods, _no_content, _ok,
                                      envelope)


class LeasesMixin:
    """Database roles, their leases, and sys/leases."""

    # -- database helpers -------------------------------------------------------------------

    def add_database_role(self, role: str, *, default_ttl: int | None = None,
                          max_ttl: int | None = None, mount: str = "database",
                          namespace: str = "") -> None:
        with self._lock:
            target = self.add_mount(mount, "database", namespace=namespace)
            target.roles[role] = DatabaseRole(
                role, self.default_lease_ttl if default_ttl is None else default_ttl,
                self.max_lease_ttl if max_ttl is None else max_ttl)

    def leases(self, namespace: str | None = None) -> list[Lease]:
        """Every lease issued (copies), optionally of one namespace."""
        with self._lock:
            spaces = (self._namespaces.values() if namespace is None
                      else [self._ns(namespace)])
            return [copy.deepcopy(lease) for ns in spaces for lease in ns.leases.values()]

    def live_leases(self, namespace: str | None = None) -> list[Lease]:
        now = self._now()
        return [lease for lease in self.leases(namespace) if lease.alive(now)]

    def revoked_leases(self, namespace: str | None = None) -> list[Lease]:
        return [lease for lease in self.leases(namespace) if lease.revoked]

    def issued_credentials(self, role: str | None = None) -> list[IssuedCredential]:
        """Every username/password pair handed out, in order, one per creds read."""
        with self._lock:
            return [c for c in self._issued if role is None or c.role == role]

    # -- answering -------------------------------------------------------------------------

    @staticmethod
    def _increment(body: dict, default: int) -> int:
        if body.get("increment") in (None, "", 0, "0"):
            return default
        try:
            return parse_duration(body["increment"])
        except ValueError:
            raise VaultFailure(400, ['error converting input for field "increment"']) from None

    @staticmethod
    def _capped(asked: int, max_expires: float | None, now: float) -> tuple[int, list[str] | None]:
        if max_expires is None:
            return asked, None
        left = max(0, int(max_expires - now))
        if asked <= left:
            return asked, None
        return left, [_ttl_capped_warning(asked, left)]

    # -- leases and database credentials ----------------------------------------------------

    def _lease_route(self, call: _Call) -> Response:
        if call.path == "sys/leases/renew":
            return _methods(call.request, {"PUT": lambda: self._renew_lease(call)})
        if call.path == "sys/leases/revoke":
            return _methods(call.request, {"PUT": lambda: self._revoke_lease(call, None)})
        if call.path.startswith("sys/leases/revoke/"):
            lease_id = call.path[len("sys/leases/revoke/"):]
            return _methods(call.request, {"PUT": lambda: self._revoke_lease(call, lease_id)})
        raise VaultFailure(404, ["unsupported path"])

    def _renew_lease(self, call: _Call) -> Response:
        body, now = call.request.json(), self._now()
        lease = call.namespace.leases.get(body.get("lease_id") or "")
        if lease is None or not lease.alive(now):
            raise VaultFailure(400, ["lease not found"])
        asked = self._increment(body, lease.ttl)
        # As for tokens, OpenBao counts what is left of the max TTL in whole seconds of the
        # clock from the issue second (a lease renewed at once has all of its 2m left, not 1m59s).
        max_expires = int(lease.issued) + round(lease.max_expires - lease.issued)
        ttl, warnings = self._capped(asked, max_expires, int(now))
        lease.ttl, lease.expires = ttl, now + ttl
        lease.renewals += 1
        return _ok(envelope(lease_id=lease.lease_id, renewable=True, lease_duration=ttl,
                            warnings=warnings))

    def _revoke_lease(self, call: _Call, lease_id: str | None) -> Response:
        lease_id = lease_id or call.request.json().get("lease_id") or ""
        if not lease_id:
            raise VaultFailure(400, ["invalid request"])
        lease = call.namespace.leases.get(lease_id)
        if lease is not None:
            lease.revoked = True
        return _no_content()

    def _database_route(self, call: _Call, mount: Mount, rest: str) -> Response:
        if not rest.startswith("creds/"):
            raise VaultFailure(404, ["unsupported path"])
        role_name = rest[len("creds/"):]
        return _methods(call.request, {"GET": lambda: self._database_creds(call, mount, role_name)})

    def _database_creds(self, call: _Call, mount: Mount, role_name: str) -> Response:
        role = mount.roles.get(role_name)
        if role is None:
            raise VaultFailure(400, [f"unknown role: {role_name}"])
        token, now = call.token, self._now()
        assert token is not None
        # Vault's username template: v-<display name>-<role>-<random>-<unix time>
        username = f"v-{token.display_name[:8]}-{role_name[:8]}-{_random(20)}-{int(now)}"
        password = "A1a-" + _random(16)  # pragma: allowlist secret
        lease_id = f"{mount.path}creds/{role_name}/{_random(24)}"
        call.namespace.leases[lease_id] = Lease(
            lease_id=lease_id, role=role_name, username=username, password=password,
            namespace=call.namespace.path, token_id=token.id, issued=now, ttl=role.default_ttl,
            expires=now + role.default_ttl, max_expires=now + role.max_ttl)
        self._issued.append(IssuedCredential(lease_id, role_name, username, password,
                                             call.namespace.path))
        return _ok(envelope({"username": username, "password": password}, lease_id=lease_id,
                            renewable=True, lease_duration=role.default_ttl))
