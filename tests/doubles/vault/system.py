"""The sys/ endpoints: health, seal status, the mount preflight hvac-based clients make, and
response wrapping (wrap, unwrap, X-Vault-Wrap-TTL)."""

from __future__ import annotations

import copy
import json

from tests.doubles.vault.records import Wrapped
from tests.doubles.vault.values import (BUILD_DATE, VAULT_VERSION, WRAPPING_TOKEN_INVALID,
                                        _clean_namespace, _pattern_reaches_mount, _random,
                                        _rfc3339, _service_token, parse_duration)
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
            body = {
                "initialized": True,
                "sealed": self._sealed,
                "standby": self._sealed,
                "performance_standby": False,
                "replication_performance_mode": "disabled",
                "replication_dr_mode": "disabled",
                "server_time_utc": int(self._now()),
                "version": VAULT_VERSION,
                "enterprise": False,
                "echo_duration_ms": 0,
                "clock_skew_ms": 0,
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
            "progress": 0, "nonce": "", "version": VAULT_VERSION, "build_date": BUILD_DATE,
            "migration": False, "recovery_seal": False, "storage_type": "inmem",
            "removed_from_cluster": False,
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
        return _ok(envelope(wrap_info=wrap_info))

    def _store_wrapped(self, body: dict, ttl: int, creation_path: str, namespace: str) -> dict:
        token, now = _service_token(), self._now()
        wrapped = Wrapped(token=token, accessor=_random(24), ttl=ttl, creation_time=_rfc3339(now),
                          creation_path=creation_path, namespace=namespace, expires=now + ttl,
                          body=body)
        self._wrapped[token] = wrapped
        info = {"token": token, "accessor": wrapped.accessor, "ttl": ttl,
                "creation_time": wrapped.creation_time, "creation_path": creation_path}
        if body.get("auth"):
            info["wrapped_accessor"] = body["auth"]["accessor"]
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
        token = self._authenticate(call)
        target = call.path[len("sys/internal/ui/mounts/"):]
        mount, _ = call.namespace.mount_for(target)
        if mount is None:
            raise self._forbidden("policy")  # hides which mounts exist
        if not token.is_root:
            mount_relative = self._token_relative(token, call.namespace, mount.path)
            if not token.preflight or not any(_pattern_reaches_mount(p, mount_relative)
                                              for p in self._patterns(token)):
                raise self._forbidden("policy")
        options = None if mount.version is None else {"version": str(mount.version)}
        data = {
            "accessor": mount.accessor,
            "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            "description": "",
            "external_entropy_access": False,
            "local": False,
            "options": options,
            "path": mount.path,
            "plugin_version": "",
            "running_plugin_version": (
                "v0.19.0+builtin" if mount.type == "kv" else f"v{VAULT_VERSION}+builtin.vault"),
            "running_sha256": "",
            "seal_wrap": False,
            "type": mount.type,
            "uuid": mount.uuid,
        }
        return _ok(envelope(data, mount_type="system"))
