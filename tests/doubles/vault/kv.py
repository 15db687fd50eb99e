"""The KV secrets engines, version 1 and 2: seeding and reading helpers for tests, and the
endpoints (data, metadata, delete, undelete, destroy, list)."""

from __future__ import annotations

import contextlib
import copy
from typing import Callable

from tests.doubles.vault.records import KvSecret, KvVersion, Mount
from tests.doubles.vault.values import (KV1_DEFAULT_TTL, KV2_DEFAULT_MAX_VERSIONS,
                                        KV2_WRONG_PATH_WARNING, _rfc3339, parse_duration)
from tests.doubles.vault.wire import (Response, VaultFailure, _Call, _json_response, _methods,
                                      _no_content, _ok, envelope)


class KvMixin:
    """KV v1 and v2 mounts."""

    def _kv_mount(self, mount: str, namespace: str, version: int) -> Mount:
        found = self._ns(namespace).mounts.get(mount.strip("/") + "/")
        if found is None or found.type != "kv" or (found.version == 2) != (version == 2):
            raise KeyError(f"no KV v{version} mount {mount!r} in namespace {namespace!r}")
        return found

    # -- KV helpers -------------------------------------------------------------------------

    def kv1_put(self, mount: str, path: str, data: dict, *, namespace: str = "") -> None:
        with self._lock:
            self._kv_mount(mount, namespace, 1).kv1[path.strip("/")] = copy.deepcopy(data)

    def kv1_read(self, mount: str, path: str, *, namespace: str = "") -> dict | None:
        with self._lock:
            return copy.deepcopy(self._kv_mount(mount, namespace, 1).kv1.get(path.strip("/")))

    def kv2_put(self, mount: str, path: str, data: dict, custom_metadata: dict | None = None, *,
                namespace: str = "") -> int:
        """Write a new version; returns its number."""
        with self._lock:
            target = self._kv_mount(mount, namespace, 2)
            secret = self._kv2_write(target, path.strip("/"), data, cas=None)
            if custom_metadata is not None:
                secret.custom_metadata = dict(custom_metadata)
            return secret.current_version

    def kv2_read(self, mount: str, path: str, version: int | None = None, *,
                 namespace: str = "") -> dict | None:
        """The stored data of a version (None when deleted, destroyed or absent)."""
        with self._lock:
            secret = self._kv_mount(mount, namespace, 2).kv2.get(path.strip("/"))
            if secret is None:
                return None
            stored = secret.versions.get(version or secret.current_version)
            if stored is None or stored.hidden(self._now()):
                return None
            return copy.deepcopy(stored.data)

    def kv2_delete(self, mount: str, path: str, versions: list[int] | None = None, *,
                   namespace: str = "") -> None:
        """Soft delete (default: the latest version): deletion_time set, data kept."""
        with self._lock:
            secret = self._kv_mount(mount, namespace, 2).kv2[path.strip("/")]
            self._kv2_soft_delete(secret, versions or [secret.current_version])

    def kv2_undelete(self, mount: str, path: str, versions: list[int], *,
                     namespace: str = "") -> None:
        with self._lock:
            self._kv2_undelete(self._kv_mount(mount, namespace, 2).kv2[path.strip("/")], versions)

    def kv2_destroy(self, mount: str, path: str, versions: list[int], *,
                    namespace: str = "") -> None:
        with self._lock:
            self._kv2_destroy(self._kv_mount(mount, namespace, 2).kv2[path.strip("/")], versions)

    # -- KV version 1 -----------------------------------------------------------------------

    def _kv1_route(self, call: _Call, mount: Mount, key: str) -> Response:
        def read() -> Response:
            data = mount.kv1.get(key)
            if data is None:
                raise VaultFailure(404, [])
            ttl = KV1_DEFAULT_TTL
            if "ttl" in data:
                with contextlib.suppress(ValueError):
                    ttl = parse_duration(data["ttl"])
            return _ok(envelope(copy.deepcopy(data), lease_duration=ttl))

        def write() -> Response:
            mount.kv1[key] = call.request.json()
            return _no_content()

        def delete() -> Response:
            mount.kv1.pop(key, None)
            return _no_content()

        return _methods(call.request, {"GET": read, "POST": write, "DELETE": delete,
                                       "LIST": lambda: self._list_keys(mount.kv1, key)})

    @staticmethod
    def _list_keys(store: dict, prefix: str) -> Response:
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        keys = sorted({name[len(base):].split("/")[0] + ("/" if "/" in name[len(base):] else "")
                       for name in store if name.startswith(base)})
        if not keys:
            raise VaultFailure(404, [])
        return _ok(envelope({"keys": keys}))

    # -- KV version 2 -----------------------------------------------------------------------

    def _kv2_route(self, call: _Call, mount: Mount, rest: str) -> Response:
        section, _, key = rest.partition("/")
        handlers = {
            "data": self._kv2_data,
            "metadata": self._kv2_metadata,
            "delete": self._kv2_delete_endpoint,
            "undelete": self._kv2_undelete_endpoint,
            "destroy": self._kv2_destroy_endpoint,
        }
        if section not in handlers or (not key and section != "metadata"):
            verb = "get" if call.request.method in ("GET", "LIST") else "put"
            body = envelope(warnings=[KV2_WRONG_PATH_WARNING.format(verb=verb)])
            raise VaultFailure(404, response=_json_response(404, body))
        return handlers[section](call, mount, key)

    def _kv2_data(self, call: _Call, mount: Mount, key: str) -> Response:
        def read() -> Response:
            return self._kv2_read_response(mount, key, call.request.query.get("version", "0"))

        def write() -> Response:
            body = call.request.json()
            if not isinstance(body.get("data"), dict):
                raise VaultFailure(400, ["no data provided"])
            cas = (body.get("options") or {}).get("cas")
            secret = self._kv2_write(mount, key, body["data"], cas=cas)
            return _ok(envelope(secret.version_metadata(secret.current_version)))

        def delete_latest() -> Response:
            secret = mount.kv2.get(key)
            if secret is not None:
                self._kv2_soft_delete(secret, [secret.current_version])
            return _no_content()

        return _methods(call.request, {"GET": read, "POST": write, "DELETE": delete_latest})

    def _kv2_read_response(self, mount: Mount, key: str, version_text: str) -> Response:
        try:
            number = int(version_text or 0)
        except ValueError:
            raise VaultFailure(400, ['error converting input for field "version"']) from None
        secret = mount.kv2.get(key)
        if secret is None:
            raise VaultFailure(404, [])
        number = number or secret.current_version
        version = secret.versions.get(number)
        if version is None:
            raise VaultFailure(404, [])
        metadata = secret.version_metadata(number)
        if version.hidden(self._now()):
            body = envelope({"data": None, "metadata": metadata})
            raise VaultFailure(404, response=_json_response(404, body))
        return _ok(envelope({"data": copy.deepcopy(version.data), "metadata": metadata}))

    def _kv2_write(self, mount: Mount, key: str, data: dict, cas: int | None) -> KvSecret:
        now = _rfc3339(self._now())
        secret = mount.kv2.get(key)
        current = secret.current_version if secret else 0
        # Vault requires cas when the key (or mount) says so; cas=0 means "only if absent".
        if cas is None and secret is not None and secret.cas_required:
            raise VaultFailure(400, ["check-and-set parameter required for this call"])
        if cas is not None and int(cas) != current:
            raise VaultFailure(400, ["check-and-set parameter did not match the current version"])
        if secret is None:
            secret = mount.kv2[key] = KvSecret(created_time=now, updated_time=now)
        secret.current_version += 1
        secret.versions[secret.current_version] = KvVersion(copy.deepcopy(data), created_time=now)
        secret.updated_time = now
        self._kv2_trim(secret)
        return secret

    @staticmethod
    def _kv2_trim(secret: KvSecret) -> None:
        """Drop versions beyond max_versions; oldest_version stays 0 until something is dropped."""
        keep = secret.max_versions or KV2_DEFAULT_MAX_VERSIONS
        dropped = sorted(secret.versions)[:-keep]
        for number in dropped:
            del secret.versions[number]
        if dropped:
            secret.oldest_version = min(secret.versions)

    def _kv2_soft_delete(self, secret: KvSecret, versions: list[int]) -> None:
        now = self._now()
        for number in versions:
            version = secret.versions.get(int(number))
            if version is not None and version.deleted_at is None and not version.destroyed:
                version.deleted_at = now

    @staticmethod
    def _kv2_undelete(secret: KvSecret, versions: list[int]) -> None:
        for number in versions:
            version = secret.versions.get(int(number))
            if version is not None and not version.destroyed:
                version.deleted_at = None

    @staticmethod
    def _kv2_destroy(secret: KvSecret, versions: list[int]) -> None:
        for number in versions:
            version = secret.versions.get(int(number))
            if version is not None:
                version.destroyed = True
                version.data = None

    def _kv2_versions_endpoint(self, call: _Call, mount: Mount, key: str,
                               apply: Callable[[KvSecret, list[int]], None]) -> Response:
        def run() -> Response:
            versions = call.request.json().get("versions")
            if not versions:
                raise VaultFailure(400, ["no version number provided"])
            secret = mount.kv2.get(key)
            if secret is not None:
                apply(secret, [int(v) for v in versions])
            return _no_content()
        return _methods(call.request, {"POST": run})

    def _kv2_delete_endpoint(self, call: _Call, mount: Mount, key: str) -> Response:
        return self._kv2_versions_endpoint(call, mount, key, self._kv2_soft_delete)

    def _kv2_undelete_endpoint(self, call: _Call, mount: Mount, key: str) -> Response:
        return self._kv2_versions_endpoint(call, mount, key, self._kv2_undelete)

    def _kv2_destroy_endpoint(self, call: _Call, mount: Mount, key: str) -> Response:
        return self._kv2_versions_endpoint(call, mount, key, self._kv2_destroy)

    def _kv2_metadata(self, call: _Call, mount: Mount, key: str) -> Response:
        def read() -> Response:
            secret = mount.kv2.get(key)
            if secret is None:
                raise VaultFailure(404, [])
            versions = {str(n): {"created_time": v.created_time, "deletion_time": v.deletion_time,
                                 "destroyed": v.destroyed}
                        for n, v in sorted(secret.versions.items())}
            data = {
                "cas_required": secret.cas_required,
                "created_time": secret.created_time,
                "current_metadata_version": 0,
                "current_version": secret.current_version,
                "custom_metadata": copy.deepcopy(secret.custom_metadata),
                "delete_version_after": "0s",
                "max_versions": secret.max_versions,
                "metadata_cas_required": False,
                "oldest_version": secret.oldest_version,
                "updated_time": secret.updated_time,
                "versions": versions,
            }
            return _ok(envelope(data))

        def update() -> Response:
            body = call.request.json()
            secret = mount.kv2.get(key)
            if secret is None:
                now = _rfc3339(self._now())
                secret = mount.kv2[key] = KvSecret(created_time=now, updated_time=now)
            if "custom_metadata" in body:
                secret.custom_metadata = body["custom_metadata"]
            if "max_versions" in body:
                secret.max_versions = int(body["max_versions"])
            if "cas_required" in body:
                secret.cas_required = bool(body["cas_required"])
            return _no_content()

        def delete_all() -> Response:
            mount.kv2.pop(key, None)
            return _no_content()

        return _methods(call.request, {"GET": read, "POST": update, "DELETE": delete_all,
                                       "LIST": lambda: self._list_keys(mount.kv2, key)})
