"""The one state object the Vault double's parts share: lock, clock, namespaces and their
mounts, tokens and policies. The other modules are mixins that work on it."""

from __future__ import annotations

import copy
import secrets
import ssl
import threading
import time
import uuid
from http.server import ThreadingHTTPServer

from tests.doubles.vault.records import (IssuedCredential, LoggedRequest, Mount, Namespace, Token,
                                         Wrapped, _Failure)
from tests.doubles.vault.values import _clean_namespace, _random, _service_token


class VaultState:
    """Everything the double knows; one lock serialises changes to it."""

    def __init__(self, *, kv_mounts: dict[str, int | None] | None = None,
                 root_token: str | None = None, default_lease_ttl: int = 3600,
                 max_lease_ttl: int = 86400, forbidden_style: str = "openbao",
                 token_style: str = "openbao", ssl_context: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1"):
        if forbidden_style not in ("openbao", "multierror", "plain"):
            raise ValueError("forbidden_style must be 'openbao', 'multierror' or 'plain'")
        if token_style not in ("openbao", "vault"):
            raise ValueError("token_style must be 'openbao' or 'vault'")
        self.token_style = token_style
        self.root_token = root_token or _service_token(style=token_style)
        self.default_lease_ttl = default_lease_ttl
        self.max_lease_ttl = max_lease_ttl
        self.forbidden_style = forbidden_style
        self.latency = 0.0
        self.echo_credentials = False
        self._host = host
        self._port = 0                    # 0: any free port (vault_server.py sets a fixed one)
        self._ssl_context = ssl_context
        self._lock = threading.RLock()
        self._sealed = False
        self._timers: list[threading.Timer] = []
        self._failures: list[_Failure] = []
        self._trickles: list[list] = []   # [path prefix, seconds per byte, answers to skip]
        self._log: list[LoggedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._tokens: dict[str, Token] = {}
        self._wrapped: dict[str, Wrapped] = {}
        self._issued: list[IssuedCredential] = []
        self._namespaces: dict[str, Namespace] = {}
        self._server: ThreadingHTTPServer | None = None
        self._cluster_id = str(uuid.uuid4())
        self._clock_offset = 0.0
        self._thread: threading.Thread | None = None
        self.add_namespace("")
        if kv_mounts is None:
            kv_mounts = {"secret": 2, "kv1": 1}
        for name, version in kv_mounts.items():
            self.add_mount(name, "kv", version=version)
        self.add_mount("database", "database")
        self._add_token(self.root_token, policies=["root"], namespace="", ttl=0,
                        max_ttl=0, renewable=False, display_name="root", path="auth/token/root",
                        orphan=True, meta=None, preflight=True)

    # -- clock ------------------------------------------------------------------------------

    def advance_clock(self, seconds: float) -> None:
        """Move the double's clock forward: tokens, leases and wrapping tokens expire sooner.

        Lets a test reach an expiry without sleeping; timestamps in responses move too.
        """
        with self._lock:
            self._clock_offset += seconds

    def _now(self) -> float:
        return time.time() + self._clock_offset

    # -- namespaces and mounts --------------------------------------------------------------

    def add_namespace(self, path: str) -> Namespace:
        """Create a namespace (and its parents) with empty copies of the root's mounts."""
        path = _clean_namespace(path)
        with self._lock:
            if path in self._namespaces:
                return self._namespaces[path]
            if path:
                self.add_namespace(path.rpartition("/")[0])
            namespace = Namespace(path=path, id=_random(6) if path else "root")
            self._namespaces[path] = namespace
            if path:
                for mount in list(self._namespaces[""].mounts.values()):
                    self.add_mount(mount.path, mount.type, version=mount.version, namespace=path)
            return namespace

    def add_mount(self, path: str, type: str = "kv", *, version: int | None = 2,
                  namespace: str = "") -> Mount:
        mount = Mount(path=path.strip("/") + "/", type=type,
                      version=version if type == "kv" else None,
                      accessor=f"{type}_{secrets.token_hex(4)}", uuid=str(uuid.uuid4()))
        with self._lock:
            return self._ns(namespace).mounts.setdefault(mount.path, mount)

    def _ns(self, namespace: str) -> Namespace:
        path = _clean_namespace(namespace)
        return self._namespaces[path] if path in self._namespaces else self.add_namespace(path)

    # -- tokens and policies ----------------------------------------------------------------

    def add_policy(self, name: str, paths: list[str], *, namespace: str = "") -> None:
        with self._lock:
            self._ns(namespace).policies[name] = tuple(p.lstrip("/") for p in paths)

    def create_token(self, allowed: list[str] = (), policies: list[str] = (), *, ttl: int = 3600,
                     max_ttl: int = 0, renewable: bool = True, namespace: str = "",
                     preflight: bool = True, display_name: str = "token",
                     meta: dict[str, str] | None = None) -> str:
        """A token allowed exactly the given path patterns (plus named policies and default)."""
        with self._lock:
            names = self._policy_names(allowed, policies, namespace)
            value = self._new_token_value(namespace)
            self._add_token(value, policies=names, namespace=_clean_namespace(namespace),
                            ttl=ttl, max_ttl=max_ttl,
                            renewable=renewable, display_name=display_name,
                            path="auth/token/create", orphan=False, meta=meta, preflight=preflight)
            return value

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._revoke_token(self._tokens[token])

    def token_info(self, token: str) -> Token:
        with self._lock:
            return copy.deepcopy(self._tokens[token])

    def _policy_names(self, allowed: list[str], policies: list[str], namespace: str) -> list[str]:
        names = ["default", *policies]
        if allowed:
            name = f"test-{secrets.token_hex(3)}"
            self.add_policy(name, list(allowed), namespace=namespace)
            names.append(name)
        return sorted(set(names))

    def _patterns(self, token: Token) -> tuple[str, ...]:
        """The token's path patterns as its policies say now (policy edits apply at once)."""
        table = self._ns(token.namespace).policies
        return tuple(p for name in token.policies for p in table.get(name, ()))

    def _namespace_suffix(self, namespace: str) -> str:
        path = _clean_namespace(namespace)
        return f".{self._ns(path).id}" if path else ""

    def _new_token_value(self, namespace: str) -> str:
        """A token as OpenBao issues it ("s." + 24, ".<namespace id>" in a child namespace), or
        as HashiCorp Vault does with token_style="vault"."""
        if self.token_style == "vault":
            return _service_token(style="vault")
        return _service_token() + self._namespace_suffix(namespace)

    def _add_token(self, value: str, *, policies: list[str], namespace: str, ttl: int,
                   max_ttl: int, renewable: bool, display_name: str, path: str, orphan: bool,
                   meta: dict[str, str] | None, preflight: bool, entity_id: str = "") -> Token:
        # A token made with auth/token/create has no entity (entity_id ""); a login's has one.
        now = self._now()
        token = Token(id=value, accessor=_random(24) + self._namespace_suffix(namespace),
                      policies=policies, namespace=namespace, ttl=ttl, max_ttl=max_ttl,
                      renewable=renewable, issued=now, expires=now + ttl if ttl else None,
                      display_name=display_name, path=path, orphan=orphan, meta=meta,
                      preflight=preflight, entity_id=entity_id)
        self._tokens[value] = token
        return token

    def _revoke_token(self, token: Token) -> None:
        token.revoked = True
        for namespace in self._namespaces.values():
            for lease in namespace.leases.values():
                if lease.token_id == token.id:
                    lease.revoked = True
