"""What the program can change: refused as a source of code or data once the program runs.

Under `--watch` shim keeps working after the program started: it re-reads secret files, env
files and credential files, and its helpers import store SDKs. The program is untrusted even
when it shares shim's uid (docs/threat-model.md). Anything it can change is data it chooses:
a secret file it replaces with a symlink to a root-only file, an env file it adds a reference
to, a .py or .pth file in a virtualenv it owns. So once the program runs (`arm()`):

- every file shim reads through shim.tools.safe_read, and
- every module imported in the process (the supervisor, and the helpers it forks)

is refused when the program's user (its uid, its groups, or anyone) can change the file or
any directory on the way to it, every symbolic link followed included. The refusal is one
error (77): a re-read is logged as `watch.failed` and the program keeps its values; shim never
delivers what such a path holds.

"Can change", for the target uid U and its groups G: the entry is owned by U (its owner may
chmod it), or is writable by a group in G or by anyone. A directory that U can write lets U
replace every entry in it, unless it is sticky (/tmp) and neither it nor the entry is U's.
An entry that does not exist in a directory U can write is U's to create. POSIX ACLs and
capabilities are not read (docs/threat-model.md, "Limits").
"""

from __future__ import annotations

import os
import stat
import sys
from importlib.machinery import PathFinder

from shim.tools.errors import PermissionDenied

MAX_LINKS = 40      # as the kernel's own limit on links followed in one lookup


class Target:
    """The program's user: its uid and every group it holds."""

    def __init__(self, uid: int, groups):
        self.uid = uid
        self.groups = frozenset(groups)

    @classmethod
    def of(cls, identity) -> "Target":
        """The Target of a shim.delivery.privileges.Identity (--user, render's --owner)."""
        return cls(identity.uid, (identity.gid, *identity.groups))

    def can_write(self, info: os.stat_result) -> bool:
        return (info.st_uid == self.uid
                or bool(info.st_mode & stat.S_IWGRP and info.st_gid in self.groups)
                or bool(info.st_mode & stat.S_IWOTH))

    def can_replace(self, directory: os.stat_result, entry: os.stat_result | None) -> bool:
        """Whether the target may create, remove or rename `entry` inside `directory`."""
        if not self.can_write(directory):
            return False
        if directory.st_mode & stat.S_ISVTX and directory.st_uid != self.uid:
            return entry is None or entry.st_uid == self.uid
        return True


def changeable_part(path: str, target: Target) -> str | None:
    """The first place on the way to `path` (links followed) that `target` can change, or None.

    Walks the path one component at a time from /, as the kernel resolves it, so that a
    link anywhere on the way is checked where it sits and then followed.
    """
    # Not os.path.abspath: normpath would fold `link/..` away, where the kernel follows the link.
    absolute = path if path.startswith("/") else os.path.join(os.getcwd(), path)
    pending = [part for part in absolute.split("/") if part]
    current, links = "/", 0
    current_info = os.stat("/")
    if target.can_write(current_info):
        return "/"
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            current_info = os.stat(current)
            continue
        candidate = os.path.join(current, name)
        try:
            info = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            # Missing: the open will say so, unless the target could create it first.
            return candidate if target.can_replace(current_info, None) else None
        if target.can_replace(current_info, info):
            return candidate
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_LINKS:
                return candidate
            link = os.readlink(candidate)
            if link.startswith("/"):
                current, current_info = "/", os.stat("/")
            pending[:0] = [part for part in link.split("/") if part]
            continue
        current, current_info = candidate, info
    return current if target.can_write(current_info) else None


_target: Target | None = None


def arm(target: Target | None) -> None:
    """From now on (in this process and the helpers it forks) refuse what `target` can change.
    None: the program runs as root, there is no boundary to keep."""
    global _target
    if target is None or target.uid == 0:
        return
    _target = target
    if not any(isinstance(finder, _ImportGuard) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportGuard())


def check_read(path: str, what: str, *, delivered_as_is: bool = False) -> None:
    """shim.tools.safe_read calls this before opening: refuse a path the program can change.

    A file whose content is delivered as it is (a secret file), read by a shim running as the
    program's own uid, is the exception: such a shim can read nothing the program cannot read
    itself, so what the program put there gives it nothing new (the sidecar case: files a
    `render --watch` of the same uid writes). Env files (their references are resolved with
    shim's credentials) and sops files (decrypted with shim's keys) are never the exception."""
    if _target is None:
        return
    if delivered_as_is and os.geteuid() == _target.uid:
        return
    part = _changeable_or_unknown(path)
    if part is not None:
        raise PermissionDenied(
            f"{what} {path}: not read after the program started, because the program's user "
            f"(uid {_target.uid}) can change {part}",
            hint="keep it, every directory above it and any link to it owned by root and not "
                 "writable by the program (docs/threat-model.md)")


def _changeable_or_unknown(path: str) -> str | None:
    try:
        return changeable_part(path, _target)
    except OSError:
        return path     # cannot tell (a parent not searchable): refuse rather than guess


class _ImportGuard:
    """A meta path finder in front of all others: a module whose file (or cached bytecode) the
    program can change is refused instead of imported."""

    def find_spec(self, name, path=None, target=None):
        spec = PathFinder.find_spec(name, path, target)
        if spec is None or not spec.has_location:
            return None     # built-in, frozen or not found: the other finders decide
        for location in (spec.origin, spec.cached):
            if location and _changeable_or_unknown(location) is not None:
                raise PermissionDenied(
                    f"refused to import {name} from {location}: the program's user "
                    f"(uid {_target.uid}) can change it, and nothing shim runs after the program "
                    f"started loads code the program could have written",
                    hint="install shim and its store SDKs where the program cannot write "
                         "(owned by root, not group- or world-writable)")
        return None         # nothing wrong: let the normal finders import it

    def invalidate_caches(self):
        pass
