"""Where a Vault reference is read: mount detection, KV v1/v2 read plans, parsing answers.

The mount under a path comes from `GET sys/internal/ui/mounts/<path>` (what the Vault CLI does),
cached by the mount path it returns; one lookup per first path segment runs at a time. When a
policy denies that lookup, the reference's spelling decides (docs/vault.md has the rules).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from shim.tools.deadline import Deadline
from shim.tools.errors import NotFound, ShimError, Unavailable
from shim.providers.base import Fetched, SecretMeta


class MountFinder:
    """Mounts found so far (kept across --watch resolutions), looked up through `http`."""

    def __init__(self, http, log):
        self.http = http
        self.log = log
        self._mounts: dict[str, Mount] = {}
        # Directories whose mount Vault would not tell. Every secret in one directory lives in
        # the same mount, but a sibling directory may be another mount (team/apps/kv1 and
        # team/apps/kv2): a refusal is remembered for its directory only.
        self._unknown_directories: set[str] = set()
        self._mount_lock = threading.Lock()
        self._segment_locks: dict[str, threading.Lock] = {}

    def mount_for(self, path: str, deadline: Deadline, run: "Run") -> "Mount | None":
        segment = path.split("/", 1)[0]
        directory = path.rpartition("/")[0]
        with self._mount_lock:
            lock = self._segment_locks.setdefault(segment, threading.Lock())
        with lock:
            cached = self._cached_mount(path)
            if cached is not None or directory in self._unknown_directories:
                return cached
            if segment in run.mount_failures:
                # Vault was unreachable for this mount's first lookup: do not wait again.
                raise run.mount_failures[segment]
            try:
                answer = self.http.request("GET", f"sys/internal/ui/mounts/{path}", deadline,
                                       "the mount lookup")
            except Unavailable as error:
                run.mount_failures[segment] = error
                raise
            if answer.status == 200:
                mount = Mount.from_preflight((answer.body or {}).get("data") or {})
                if mount is not None and not (path + "/").startswith(mount.path):
                    mount = mount.relative_to(self.http.connection.namespace)
                if mount is not None and (path + "/").startswith(mount.path):
                    with self._mount_lock:
                        self._mounts[mount.path] = mount
                    self.log.event("vault.mount", "debug", mount=mount.path, type=mount.type,
                                   kv_version=mount.kv_version)
                    return mount
            self._unknown_directories.add(directory)
            self.log.event("vault.mount_unknown", "info",
                           f"Vault did not tell the mount under {directory or path}/ "
                           f"({self.http.status_text(answer)}); using the reference's spelling",
                           segment=segment, status=answer.status)
            return None

    def export(self) -> list:
        """The mounts detected so far, for the next --watch helper (shim.pipeline.helper)."""
        return [[m.path, m.type, m.kv_version] for m in list(self._mounts.values())]

    def resume(self, mounts) -> None:
        for path, kind, kv_version in mounts:
            self._mounts[path] = Mount(path, kind, kv_version)

    def _cached_mount(self, path: str) -> "Mount | None":
        with self._mount_lock:
            matches = [m for m in self._mounts.values() if (path + "/").startswith(m.path)]
        return max(matches, key=lambda m: len(m.path)) if matches else None

def plans_for(reference, mount: "Mount | None") -> tuple:
    """The reads that may answer a reference, in order (more than one only in fallback)."""
    path, version = reference.locator, reference.version
    if reference.syntax == "bank-vaults":
        return (_bank_vaults_plan(path, version, mount),)
    if mount is not None:
        return (_vals_plan(path, version, mount),)
    return tuple(_vals_fallback_plans(path, version))


class DeletedVersion(NotFound):
    """A KV v2 version that exists but was deleted or destroyed: no fallback read helps."""


class Run:
    """One fetch_all: each (API path, version) is read once, whichever references ask for it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[threading.Event, list]] = {}
        self.mount_failures: dict[str, ShimError] = {}

    def once(self, key: tuple, read):
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if owner:
                entry = self._entries[key] = (threading.Event(), [])
        event, box = entry
        if owner:
            try:
                box.append(read())
            finally:
                event.set()
        else:
            event.wait()
        if not box:
            raise Unavailable("the shared Vault read failed", hint="see the other errors")
        return box[0]


@dataclass(frozen=True)
class Mount:
    path: str                   # "secret/", relative to the namespace
    type: str                   # "kv", "database", ...
    kv_version: int | None      # 1 or 2 for a KV mount, None for any other engine

    @classmethod
    def from_preflight(cls, data: Mapping) -> "Mount | None":
        path = data.get("path")
        if not isinstance(path, str) or not path:
            return None
        kind = str(data.get("type") or "")
        version = None
        if kind in ("kv", "generic"):
            options = data.get("options") or {}
            version = 2 if str(options.get("version") or "1") == "2" else 1
        return cls(path if path.endswith("/") else path + "/", kind, version)

    def relative_to(self, namespace: str | None) -> "Mount":
        """This mount with its path relative to the namespace the request named.

        For a mount in a child namespace Vault and OpenBao answer the lookup with the mount's
        path from the root namespace (`parent/child/secret/` when the request named
        `parent`); reads under `parent` are written `child/secret/...`.
        """
        prefix = (namespace or "").strip("/") + "/"
        if prefix != "/" and self.path.startswith(prefix):
            return Mount(self.path[len(prefix):], self.type, self.kv_version)
        return self

@dataclass(frozen=True)
class ReadPlan:
    api_path: str
    kv_version: int | None      # 2: data.data + metadata; 1: data; None: a logical read
    version: str | None = None
    hint: str | None = None     # what to suggest when this read fails


def _bank_vaults_plan(path: str, version: str | None, mount: Mount | None) -> ReadPlan:
    """vault:<api-path>: the path is read as written."""
    if mount is not None:
        rest = path[len(mount.path):]
        if mount.kv_version == 2:
            if rest.startswith("data/"):
                return ReadPlan(path, 2, version)
            hint = (f"{mount.path} is a KV v2 mount: the vault: syntax takes the API path, "
                    f"e.g. vault:{mount.path}data/{rest}#key")
            _no_version(path, version, hint)
            return ReadPlan(path, None, None, hint)
        _no_version(path, version, f"{mount.path} is not a KV v2 mount")
        return ReadPlan(path, mount.kv_version, None)
    _first, _, rest = path.partition("/")
    if rest.startswith("data/") or "/data/" in rest:
        return ReadPlan(path, 2, version)
    _no_version(path, version, "without data/ in the path shim reads it as KV v1 or a "
                               "dynamic secret, which have no versions")
    return ReadPlan(path, None, None)


def _vals_plan(path: str, version: str | None, mount: Mount) -> ReadPlan:
    """ref+vault://<logical-path> with the mount known."""
    rest = path[len(mount.path):] if (path + "/") != mount.path else ""
    if mount.kv_version == 2:
        if not rest:
            raise NotFound(f"{path} names the KV v2 mount itself, not a secret in it",
                           hint=f"write ref+vault://{mount.path}<name>")
        return ReadPlan(f"{mount.path}data/{rest}", 2, version)
    _no_version(path, version, f"{mount.path} is not a KV v2 mount")
    return ReadPlan(path, mount.kv_version, None)


def _vals_fallback_plans(path: str, version: str | None) -> list[ReadPlan]:
    """The mount is unknown: KV v2 at the first segment first, then the path itself."""
    first, _, rest = path.partition("/")
    plans = []
    if rest:
        plans.append(ReadPlan(f"{first}/data/{rest}", 2, version))
    if version is None:
        plans.append(ReadPlan(path, 1 if rest else None, None))
    elif not plans:
        _no_version(path, version, "versions exist in KV v2 only")
    return plans


def _no_version(path: str, version: str | None, why: str) -> None:
    if version:
        raise NotFound(f"version {version} of {path} cannot exist: {why}",
                       hint="drop the version, or point at a KV v2 secret")


def fetched_from(plan: ReadPlan, body: dict) -> Fetched:
    data = body.get("data")
    if plan.kv_version == 2:
        secret, metadata = data.get("data"), data.get("metadata") or {}
        if not isinstance(secret, Mapping):
            raise ValueError("no data.data in a KV v2 answer")
        created = _timestamp(metadata.get("created_time"))
        version = metadata.get("version")
        return Fetched(secret, SecretMeta(version=str(version) if version is not None else None,
                                          created=created, updated=created))
    if not isinstance(data, Mapping):
        raise ValueError("no data in the answer")
    lease_id = body.get("lease_id") or None
    if lease_id is None:
        return Fetched(data, SecretMeta())
    return Fetched(data, SecretMeta(lease_id=lease_id,
                                    lease_duration=int(body.get("lease_duration") or 0),
                                    renewable=bool(body.get("renewable"))))


def deleted_version(body: dict | None) -> str | None:
    """'version 2 was deleted' / '... destroyed' from a KV v2 404 that carries metadata."""
    metadata = ((body or {}).get("data") or {}).get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    version = metadata.get("version")
    if metadata.get("destroyed"):
        return f"version {version} was destroyed"
    if metadata.get("deletion_time"):
        return f"version {version} was deleted"
    return None


def _timestamp(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    # Go writes nanoseconds; Python keeps microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def combine(outcomes: list) -> ShimError:
    """The error to report after the fallback reads: any 404 wins over 403."""
    for outcome in outcomes:
        if isinstance(outcome, NotFound):
            return outcome
    return outcomes[0]
