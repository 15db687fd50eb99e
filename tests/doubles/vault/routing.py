"""Where a request goes: its namespace, the token it presents, whether a policy lets it
through, and which handler (of the other mixins) answers it."""

from __future__ import annotations

from tests.doubles.vault.records import Namespace, Token
from tests.doubles.vault.values import DEFAULT_POLICY_PATHS, _clean_namespace, _pattern_allows
from tests.doubles.vault.wire import Request, Response, VaultFailure, _Call, _methods


class RoutingMixin:
    """Namespace resolution, authentication, authorisation and dispatch."""

    # -- namespace and token resolution -----------------------------------------------------

    def _locate(self, request: Request) -> _Call:
        """Split the path into a namespace and the path relative to it."""
        current = _clean_namespace(request.headers.get("x-vault-namespace", ""))
        if current not in self._namespaces:
            raise self._no_handler(request.path)
        rest = request.path
        while True:  # the path may continue into a child namespace: "ns2/secret/data/x"
            head, _, tail = rest.partition("/")
            child = f"{current}/{head}" if current else head
            if not tail or child not in self._namespaces:
                break
            current, rest = child, tail
        return _Call(request, self._namespaces[current], rest)

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
        if self.forbidden_style == "plain" or kind == "missing":
            return VaultFailure(403, ["permission denied"])
        if kind == "invalid":
            return VaultFailure(
                403, ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"])
        return VaultFailure(403, ["1 error occurred:\n\t* permission denied\n\n"])

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
