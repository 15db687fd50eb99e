"""Where a request goes: its namespace, the token it presents, whether a policy lets it
through, and which handler (of the other mixins) answers it."""

from __future__ import annotations

from tests.doubles.vault.records import Namespace, Token
from tests.doubles.vault.values import (DEFAULT_POLICY_PATHS, NAMESPACE_NOT_FOUND,
                                        _clean_namespace, _pattern_allows, multierror)
from tests.doubles.vault.wire import Request, Response, VaultFailure, _Call, _methods


class RoutingMixin:
    """Namespace resolution, authentication, authorisation and dispatch."""

    # -- namespace and token resolution -----------------------------------------------------

    def _locate(self, request: Request) -> _Call:
        """Split the path into a namespace and the path relative to it."""
        current = _clean_namespace(request.headers.get("x-vault-namespace", ""))
        if current not in self._namespaces:
            raise VaultFailure(404, [NAMESPACE_NOT_FOUND])
        namespace, rest = self._descend(self._namespaces[current], request.path)
        return _Call(request, namespace, rest)

    def _descend(self, namespace: Namespace, path: str) -> tuple[Namespace, str]:
        """A path may continue into child namespaces ("ns2/secret/data/x" from ns1): the
        innermost namespace it names, and the rest of the path."""
        while True:
            head, _, tail = path.partition("/")
            child = f"{namespace.path}/{head}" if namespace.path else head
            if not tail or child not in self._namespaces:
                return namespace, path
            namespace, path = self._namespaces[child], tail

    @staticmethod
    def _no_handler(path: str) -> VaultFailure:
        return VaultFailure(404, [f'no handler for route "{path}". route entry not found.'])

    def _presented_token(self, request: Request) -> str:
        value = request.headers.get("x-vault-token", "")
        if not value:
            scheme, _, rest = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                value = rest.strip()
        return value

    def _forbidden(self, kind: str = "policy") -> VaultFailure:
        """403 in the wording of the server the double plays (forbidden_style).

        openbao (OpenBao 2.x): a missing, unknown, expired or revoked token is a plain
        "permission denied"; a policy denial is go-multierror's "1 error occurred: ...".
        multierror (HashiCorp Vault 1.x): the same, but a bad token adds "invalid token".
        plain: "permission denied" for everything.
        """
        if self.forbidden_style == "plain" or kind == "missing":
            return VaultFailure(403, ["permission denied"])
        if kind == "invalid":
            if self.forbidden_style == "openbao":
                return VaultFailure(403, ["permission denied"])
            return VaultFailure(403, [multierror("permission denied", "invalid token")])
        return VaultFailure(403, [multierror("permission denied")])

    def _authenticate(self, call: _Call) -> Token:
        value = self._presented_token(call.request)
        if not value:
            raise self._forbidden("missing")
        token = self._tokens.get(value)
        usable = (token is not None and token.alive(self._now())
                  and self._token_reaches(token, call.namespace))
        if not usable:
            raise self._forbidden("invalid")
        call.token = token
        return token

    @staticmethod
    def _token_reaches(token: Token, namespace: Namespace) -> bool:
        return (token.namespace == "" or namespace.path == token.namespace
                or namespace.path.startswith(token.namespace + "/"))

    @staticmethod
    def _token_relative(token: Token, namespace: Namespace, path: str) -> str:
        """A path as the token's policies see it (relative to the token's namespace)."""
        full = f"{namespace.path}/{path}" if namespace.path else path
        return full[len(token.namespace) + 1:] if token.namespace else full

    def _authorize(self, call: _Call) -> None:
        token = self._authenticate(call)
        if token.is_root or call.path in DEFAULT_POLICY_PATHS:
            return
        relative = self._token_relative(token, call.namespace, call.path)
        if not any(_pattern_allows(p, relative) for p in self._patterns(token)):
            raise self._forbidden("policy")

    # -- routing ----------------------------------------------------------------------------

    def _route(self, call: _Call) -> Response:
        path = call.path
        if path == "sys/wrapping/unwrap":
            return _methods(call.request, {"POST": lambda: self._unwrap(call)})
        if path.startswith("sys/internal/ui/mounts/"):
            return _methods(call.request, {"GET": lambda: self._preflight(call)})
        login = self._login_route(call)
        if login is not None:
            return login
        self._authorize(call)
        if path.startswith("auth/token/"):
            return self._token_route(call)
        if path.startswith("sys/leases/"):
            return self._lease_route(call)
        if path.startswith("auth/"):
            return self._auth_admin_route(call)
        mount, rest = call.namespace.mount_for(path)
        if mount is None:
            raise self._no_handler(path)
        if mount.type == "database":
            return self._database_route(call, mount, rest)
        if mount.type == "transit":
            return self._transit_route(call, mount, rest)
        if mount.is_kv2:
            return self._kv2_route(call, mount, rest)
        return self._kv1_route(call, mount, rest)
