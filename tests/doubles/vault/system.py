"""The sys/ endpoints: health, seal status, the mount preflight hvac-based clients make, and
response wrapping (wrap, unwrap, X-Vault-Wrap-TTL)."""

from __future__ import annotations

import copy
import json

from tests.doubles.vault.records import Wrapped
from tests.doubles.vault.values import (BUILD_DATE, VAULT_VERSION, WRAPPING_TOKEN_INVALID,
                                        _clean_namespace, _pattern_reaches_mount, _random,
                                        _rfc3339, parse_duration, preflight_denied)
from tests.doubles.vault.wire import (Request, Response, VaultFailure, _Call, _json_response,
                                      _methods, _ok, envelope)


class SystemMixin:
    """sys/health, sys/seal-status, sys/internal/ui/mounts and wrapping."""

    def wrap(self, data: dict, ttl: int = 60, *, namespace: str = "") -> str:
        """Wrap arbitrary data as sys/wrapping/wrap does; returns the wrapping token."""
        with self._lock:
            return self._store_wrapped(envelope(copy.deepcopy(data)), ttl, "sys/wrapping/wrap",
                                       _clean_namespace(namespace))["token"]

    def _health(self, request: Request) -> Response:
        def read() -> Response:
            replication = "unknown" if self._sealed else "disabled"
            body = {
                "initialized": True,
                "sealed": self._sealed,
                "standby": self._sealed,
                "replication_performance_mode": replication,
                "replication_dr_mode": replication,
                "server_time_utc": int(self._now()),
                "version": VAULT_VERSION,
            }
            if not self._sealed:
                body.update(cluster_name="vault-cluster-double", cluster_id=self._cluster_id)
            code_param = "sealedcode" if self._sealed else "activecode"
            status = int(request.query.get(code_param, 503 if self._sealed else 200))
            return _json_response(status, body)
        return _methods(request, {"GET": read, "HEAD": read})

    def _seal_status(self) -> Response:
        body = {
            "type": "shamir", "initialized": True, "sealed": self._sealed, "t": 1, "n": 1,
            "progress": 0, "nonce": "", "recovery_seal": False, "version": VAULT_VERSION,
            "commit_date": BUILD_DATE, "migration": False, "storage_type": "inmem",
        }
        if not self._sealed:
            body.update(cluster_name="vault-cluster-double", cluster_id=self._cluster_id)
        return _ok(body)

    # -- wrapping and the preflight ----------------------------------------------------------

    def _wrap_if_asked(self, call: _Call, response: Response) -> Response:
        wrap_ttl = call.request.headers.get("x-vault-wrap-ttl")
        if not wrap_ttl or response.status != 200 or call.path == "sys/wrapping/unwrap":
            return response
        body = json.loads(response.body)
        if body.get("data") is None and body.get("auth") is None:
            return response
        try:
            ttl = parse_duration(wrap_ttl)
        except ValueError:
            raise VaultFailure(400, ["error parsing X-Vault-Wrap-TTL"]) from None
        wrap_info = self._store_wrapped(body, ttl, call.path, call.namespace.path)
        return _ok(envelope(wrap_info=wrap_info, request_id=""))

    def _store_wrapped(self, body: dict, ttl: int, creation_path: str, namespace: str) -> dict:
        token, now = self._new_token_value(namespace), self._now()
        wrapped = Wrapped(token=token, accessor=_random(24), ttl=ttl, creation_time=_rfc3339(now),
                          creation_path=creation_path, namespace=namespace, expires=now + ttl,
                          body=body)
        self._wrapped[token] = wrapped
        info = {"token": token, "accessor": wrapped.accessor, "ttl": ttl,
                "creation_time": wrapped.creation_time, "creation_path": creation_path}
        if body.get("auth"):
            info["wrapped_accessor"] = body["auth"]["accessor"]
        elif (body.get("data") or {}).get("secret_id_accessor"):
            info["wrapped_accessor"] = body["data"]["secret_id_accessor"]
        return info

    def _unwrap(self, call: _Call) -> Response:
        requested = call.request.json().get("token")
        presented = self._presented_token(call.request)
        if requested is None:
            value = presented  # the wrapping token itself authenticates the unwrap
        else:
            if presented not in self._wrapped and presented != requested:
                self._authenticate(call)  # the caller's own token, under the default policy
            value = requested
        wrapped = self._wrapped.pop(value, None)
        if wrapped is None or wrapped.expires <= self._now():
            raise VaultFailure(400, [WRAPPING_TOKEN_INVALID])
        return _ok(wrapped.body)

    def _preflight(self, call: _Call) -> Response:
        """sys/internal/ui/mounts/PATH as OpenBao answers it.

        Any token that can do anything in the mount gets it (hasMountAccess); no policy can
        deny it otherwise. No access, or no mount, is 403 with the preflight text (the same for
        both, so mounts cannot be enumerated). The path may go on into child namespaces; the
        answer's `path` is then the mount's path from the root namespace ("ns1/ns2/secret/").
        """
        token = self._authenticate(call)
        target = call.path[len("sys/internal/ui/mounts/"):]
        namespace, inner = self._descend(call.namespace, target)
        mount, _ = namespace.mount_for(inner)
        if mount is None:
            raise VaultFailure(403, [preflight_denied(target)])
        if not token.is_root:
            if not token.preflight:
                # Not a policy (OpenBao has none that denies this): a proxy in front of the
                # server, or a server without the endpoint, refusing the lookup.
                raise VaultFailure(403, ["permission denied"])
            mount_relative = self._token_relative(token, namespace, mount.path)
            if not any(_pattern_reaches_mount(p, mount_relative) for p in self._patterns(token)):
                raise VaultFailure(403, [preflight_denied(target)])
        options = None if mount.version is None else {"version": str(mount.version)}
        data = {
            "accessor": mount.accessor,
            "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            "deprecation_status": "supported",
            "description": "",
            "external_entropy_access": False,
            "local": False,
            "options": options,
            "path": mount.path if namespace is call.namespace else f"{namespace.path}/{mount.path}",
            "plugin_version": "",
            "running_plugin_version": f"v{VAULT_VERSION}+builtin.bao",
            "running_sha256": "",
            "seal_wrap": False,
            "type": mount.type,
            "uuid": mount.uuid,
        }
        return _ok(envelope(data))
