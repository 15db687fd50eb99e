"""Tokens and auth methods: the token endpoints (lookup, renew, revoke self), AppRole (role-id,
secret-id, wrapped secret ids), Kubernetes and JWT logins."""

from __future__ import annotations

import copy
import re
import secrets
import uuid

from tests.doubles.vault.records import AuthMount, LoginRole
from tests.doubles.vault.values import PAST_MAX_TTL, _clean_namespace, _rfc3339, multierror
from tests.doubles.vault.wire import (Response, VaultFailure, _Call, _methods, _no_content, _ok,
                                      envelope)


class AuthMixin:
    """Seeding login roles, and answering token and login requests."""

    # -- auth method helpers ----------------------------------------------------------------

    def add_approle(self, role: str, allowed: list[str] = (), policies: list[str] = (), *,
                    token_ttl: int = 3600, token_max_ttl: int = 0, renewable: bool = True,
                    preflight: bool = True, role_id: str | None = None, mount: str = "approle",
                    namespace: str = "") -> str:
        """Define an AppRole; returns its role_id. Mint secret ids with new_secret_id()."""
        with self._lock:
            entry = self._login_role(role, allowed, policies, token_ttl, token_max_ttl, renewable,
                                     preflight, "approle", mount, namespace)
            entry.role_id = role_id or str(uuid.uuid4())
            return entry.role_id

    def new_secret_id(self, role: str, *, mount: str = "approle", namespace: str = "") -> str:
        with self._lock:
            secret_id = str(uuid.uuid4())
            self._auth_mount(mount, namespace).roles[role].secret_ids.add(secret_id)
            return secret_id

    def wrapped_secret_id(self, role: str, ttl: int = 60, *, mount: str = "approle",
                          namespace: str = "") -> str:
        """A response-wrapping token whose unwrap yields a fresh secret_id (the trusted-
        orchestrator hand-off). Returns the wrapping token."""
        with self._lock:
            secret_id = self.new_secret_id(role, mount=mount, namespace=namespace)
            body = envelope(self._secret_id_data(secret_id))
            return self._store_wrapped(body, ttl, f"auth/{mount.strip('/')}/role/{role}/secret-id",
                                       _clean_namespace(namespace))["token"]

    def add_kubernetes_role(self, role: str, jwt: str, allowed: list[str] = (),
                            policies: list[str] = (), *, service_account: str = "default",
                            service_account_namespace: str = "default", token_ttl: int = 3600,
                            token_max_ttl: int = 0, renewable: bool = True, preflight: bool = True,
                            mount: str = "kubernetes", namespace: str = "") -> None:
        with self._lock:
            entry = self._login_role(role, allowed, policies, token_ttl, token_max_ttl, renewable,
                                     preflight, "kubernetes", mount, namespace)
            entry.jwt = jwt
            entry.metadata = {
                "role": role,
                "service_account_name": service_account,
                "service_account_namespace": service_account_namespace,
                "service_account_secret_name": "",
                "service_account_uid": str(uuid.uuid4()),
            }

    def add_jwt_role(self, role: str, jwt: str, allowed: list[str] = (), policies: list[str] = (),
                     *, token_ttl: int = 3600, token_max_ttl: int = 0, renewable: bool = True,
                     preflight: bool = True, mount: str = "jwt", namespace: str = "") -> None:
        with self._lock:
            entry = self._login_role(role, allowed, policies, token_ttl, token_max_ttl, renewable,
                                     preflight, "jwt", mount, namespace)
            entry.jwt = jwt
            entry.metadata = {"role": role}

    def _auth_mount(self, mount: str, namespace: str, type: str | None = None) -> AuthMount:
        table = self._ns(namespace).auth
        key = mount.strip("/") + "/"
        if key not in table:
            if type is None:
                raise KeyError(f"no auth mount {mount!r}")
            accessor = f"auth_{type}_{secrets.token_hex(4)}"
            table[key] = AuthMount(path=key, type=type, accessor=accessor)
        return table[key]

    def _login_role(self, role: str, allowed: list[str], policies: list[str], ttl: int,
                    max_ttl: int, renewable: bool, preflight: bool, type: str, mount: str,
                    namespace: str) -> LoginRole:
        names = self._policy_names(allowed, policies, namespace)
        entry = LoginRole(name=role, policies=names, ttl=ttl, max_ttl=max_ttl,
                          renewable=renewable, preflight=preflight)
        self._auth_mount(mount, namespace, type).roles[role] = entry
        return entry

    # -- tokens -----------------------------------------------------------------------------

    def _token_route(self, call: _Call) -> Response:
        routes = {
            "auth/token/lookup-self": {"GET": lambda: self._lookup_self(call)},
            "auth/token/renew-self": {"POST": lambda: self._renew_self(call)},
            "auth/token/revoke-self": {"POST": lambda: self._revoke_self(call)},
        }
        if call.path not in routes:
            raise VaultFailure(404, ["unsupported path"])
        return _methods(call.request, routes[call.path])

    def _lookup_self(self, call: _Call) -> Response:
        token, now = call.token, self._now()
        assert token is not None
        data = {
            "accessor": token.accessor,
            "creation_time": int(token.issued),
            "creation_ttl": token.ttl,
            "display_name": token.display_name,
            "entity_id": token.entity_id,
            "expire_time": _rfc3339(token.expires) if token.expires else None,
            "explicit_max_ttl": token.max_ttl,
            "id": token.id,
            "issue_time": _rfc3339(token.issued),
            "meta": copy.deepcopy(token.meta),
            "num_uses": 0,
            "orphan": token.orphan,
            "path": token.path,
            "policies": list(token.policies),
            "renewable": token.renewable,
            "ttl": max(0, int(token.expires - now)) if token.expires else 0,
            "type": "service",
        }
        if token.namespace:
            data["namespace_path"] = token.namespace + "/"
        return _ok(envelope(data))

    def _renew_self(self, call: _Call) -> Response:
        token, now = call.token, self._now()
        assert token is not None
        if not token.renewable or token.expires is None:
            raise VaultFailure(400, ["lease is not renewable"])
        asked = self._increment(call.request.json(), token.ttl)
        # OpenBao measures the max TTL from the token's creation_time, a Unix time in whole
        # seconds: once the clock is past it (in the last fraction of a second of the token's
        # real life) renewal is refused with 500, which is no transient error; before that, what
        # is left counts whole seconds of the clock (seen on OpenBao 2.7).
        max_expires = int(token.issued) + token.max_ttl if token.max_ttl else None
        if max_expires is not None and now > max_expires:
            raise VaultFailure(500, [multierror(PAST_MAX_TTL)])
        ttl, warnings = self._capped(asked, max_expires, int(now))
        token.expires = now + ttl
        auth = token.auth_block()
        auth["lease_duration"] = ttl
        return _ok(envelope(auth=auth, warnings=warnings))

    def _revoke_self(self, call: _Call) -> Response:
        assert call.token is not None
        self._revoke_token(call.token)
        return _no_content()

    # -- auth methods -----------------------------------------------------------------------

    def _login_route(self, call: _Call) -> Response | None:
        """auth/<mount>/login for AppRole, Kubernetes and JWT; no token needed."""
        parts = call.path.split("/")
        if len(parts) < 3 or parts[0] != "auth" or parts[-1] != "login":
            return None
        mount = call.namespace.auth.get("/".join(parts[1:-1]) + "/")
        if mount is None:
            return None
        login = {"approle": self._approle_login, "kubernetes": self._kubernetes_login,
                 "jwt": self._jwt_login}[mount.type]
        return _methods(call.request, {"POST": lambda: login(call, mount)})

    def _approle_login(self, call: _Call, mount: AuthMount) -> Response:
        body = call.request.json()
        if not body.get("role_id"):
            raise VaultFailure(400, ["missing role_id"])
        role = next((r for r in mount.roles.values() if r.role_id == body["role_id"]), None)
        if role is None or body.get("secret_id") not in role.secret_ids:
            raise VaultFailure(400, ["invalid role or secret ID"])
        return self._issue_login(call, mount, role, "approle", {"role_name": role.name})

    def _kubernetes_login(self, call: _Call, mount: AuthMount) -> Response:
        body = call.request.json()
        if not body.get("role"):
            raise VaultFailure(400, ["missing role"])
        role = mount.roles.get(body["role"])
        if role is None:
            raise VaultFailure(400, [f'invalid role name "{body["role"]}"'])
        if not body.get("jwt") or body["jwt"] != role.jwt:
            raise VaultFailure(403, ["permission denied"])
        sa = role.metadata
        display = "-".join((mount.path.rstrip("/"), sa["service_account_namespace"],
                            sa["service_account_name"]))
        return self._issue_login(call, mount, role, display, dict(role.metadata))

    def _jwt_login(self, call: _Call, mount: AuthMount) -> Response:
        body = call.request.json()
        if not body.get("role"):
            raise VaultFailure(400, ["missing role"])
        role = mount.roles.get(body["role"])
        if role is None:
            raise VaultFailure(400, [f'role "{body["role"]}" could not be found'])
        if not body.get("jwt") or body["jwt"] != role.jwt:
            raise VaultFailure(400, ["error validating token: error verifying token signature: "
                                     "no known key successfully validated the token signature"])
        return self._issue_login(call, mount, role, mount.path.rstrip("/"), dict(role.metadata))

    def _issue_login(self, call: _Call, mount: AuthMount, role: LoginRole, display: str,
                     metadata: dict[str, str]) -> Response:
        token = self._add_token(
            self._new_token_value(call.namespace.path), policies=list(role.policies),
            namespace=call.namespace.path, ttl=role.ttl, max_ttl=role.max_ttl,
            renewable=role.renewable, display_name=display, path=f"auth/{mount.path}login",
            orphan=True, meta=metadata, preflight=role.preflight, entity_id=str(uuid.uuid4()))
        return _ok(envelope(auth=token.auth_block()))

    def _auth_admin_route(self, call: _Call) -> Response:
        """AppRole role-id and secret-id endpoints (policy-checked like any other path)."""
        match = re.fullmatch(r"auth/(.+)/role/([^/]+)/(role-id|secret-id)", call.path)
        mount = call.namespace.auth.get(match.group(1) + "/") if match else None
        if match is None or mount is None or mount.type != "approle":
            raise self._no_handler(call.path)
        role = mount.roles.get(match.group(2))
        if role is None:
            raise VaultFailure(400, [f'role "{match.group(2)}" does not exist'])
        if match.group(3) == "role-id":
            return _methods(call.request, {
                "GET": lambda: _ok(envelope({"role_id": role.role_id}))})

        def generate() -> Response:
            secret_id = str(uuid.uuid4())
            role.secret_ids.add(secret_id)
            return _ok(envelope(self._secret_id_data(secret_id)))
        return _methods(call.request, {"POST": generate})

    @staticmethod
    def _secret_id_data(secret_id: str) -> dict:
        return {"secret_id": secret_id, "secret_id_accessor": str(uuid.uuid4()),
                "secret_id_num_uses": 0, "secret_id_ttl": 0}
