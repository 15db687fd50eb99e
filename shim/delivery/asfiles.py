"""`--as-files DIR`: deliver secrets as files, the child gets NAME_FILE=DIR/NAME instead of NAME.

Environment variables show up in /proc, crash reports and `docker inspect`; a
file in a tmpfs readable only by the program does not. Each delivered variable
is written to DIR/NAME (mode 0400, owned by the --user target) before the
privilege drop: a temporary file created next to it with O_EXCL|O_NOFOLLOW,
written, fsync'd, then renamed over NAME, all relative to the descriptor of DIR that
was checked (opened once, with O_NOFOLLOW), so a symlink planted in DIR is replaced, never
followed. Before each write the path DIR must still name that directory: one swapped in since
(the tmpfs unmounted, a directory on disk or someone else's in its place) is refused, and
nothing is ever written through the path itself.

DIR must be a real directory on tmpfs or ramfs: the filesystem type comes from
/proc/self/mountinfo, matched by the directory's device number (no statfs
through ctypes needed). `--as-files-allow-disk` lifts that for a test bench.

Values flow through the watcher as stand-ins: `stage()` replaces each delivered
value by a keyed digest of its bytes, so the watcher sees a rotation without the
environment ever holding binary data; `materialize()` writes what changed and
gives the child NAME_FILE. Binary values (not UTF-8, or with a NUL byte) are
allowed here only: `delivers()` tells resolution which variables may be bytes.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import re

from shim.delivery.atomic import still_in_place, write_atomically
from shim.tools.errors import ConfigError, PermissionDenied, UnusableValue

FILESYSTEMS = ("tmpfs", "ramfs")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"  # compiled by re on first use
_STAGED = "shim-as-file:"


def from_options(options) -> "AsFiles | None":
    """The AsFiles of these options (DIR checked), or None when --as-files is not given."""
    directory = options.as_files
    only = options.as_files_only
    if not directory:
        if only:
            raise ConfigError("--as-files-only needs --as-files DIR", hint="name the directory")
        return None
    as_files = AsFiles(directory, frozenset(only) if only else None)
    as_files.directory_fd = open_checked_directory(directory,
                                                   allow_disk=options.as_files_allow_disk)
    return as_files


def open_checked_directory(directory: str, *, allow_disk: bool) -> int:
    """A descriptor of DIR, once DIR is known to be a real directory on tmpfs or ramfs.

    The check and every write use this one descriptor (closed at execve): checking the path
    and opening it again later would let a directory swapped in between receive the files."""
    try:
        descriptor = os.open(directory, _DIRECTORY_FLAGS)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ConfigError(f"--as-files {directory} is not a directory (a symlink is refused)",
                              hint="give the real directory, a tmpfs mount") from None
        raise ConfigError(f"--as-files {directory}: {error.strerror}",
                          hint="create it (a tmpfs mount, /dev/shm/...) first") from None
    if allow_disk:
        return descriptor
    fstype = filesystem_type(os.fstat(descriptor).st_dev)
    if fstype not in FILESYSTEMS:
        os.close(descriptor)
        raise ConfigError(f"--as-files {directory} is on {fstype or 'an unknown filesystem'}, "
                          "not tmpfs or ramfs: secrets would reach the disk",
                          hint="use /dev/shm or a tmpfs mount, or --as-files-allow-disk")
    return descriptor


def filesystem_type(device: int) -> str | None:
    """The fstype of the mount whose device is `device`, from /proc/self/mountinfo."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    found = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                fields = line.split()
                if len(fields) > 7 and fields[2] == wanted and "-" in fields[6:]:
                    found = fields[fields.index("-", 6) + 1]  # the last mount on top wins
    except OSError:
        return None
    return found


class AsFiles:
    def __init__(self, directory: str, only: frozenset | None):
        self.directory = os.path.abspath(directory)
        self.only = only
        self._key = os.urandom(32)
        self._staged: dict[str, bytes] = {}     # stand-in -> content
        self._written: dict[str, str] = {}      # name -> stand-in of the content on disk
        self.uid = self.gid = None
        self.directory_fd: int | None = None    # DIR as checked (open_checked_directory)

    def delivers(self, name: str) -> bool:
        return self.only is None or name in self.only

    def paths(self) -> list[str]:
        """The files written so far (for the lean --init loop to remove at the end)."""
        return [self.path(name) for name in self._written]

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def names(self, resolution) -> list[str]:
        """The variables that go to files (resolved, not left unset), each name checked."""
        names = []
        for name, result in sorted(resolution.variables.items()):
            if result.value is None or not self.delivers(name):
                continue
            if not re.fullmatch(_FILE_NAME, name):
                references = " ".join(p.reference.shown for p in result.entry.secret_parts)
                raise UnusableValue("the name cannot be a file name for --as-files",
                                    variable=name, reference=references or None, hint="rename it, or leave it out with --as-files-only")
            names.append(name)
        return names

    def stage(self, resolution, env: dict) -> dict:
        """The env with each delivered value replaced by a stand-in the watcher can compare."""
        env = dict(env)
        # Keep only what is on disk; a pending change is staged again when it is confirmed.
        written = set(self._written.values())
        self._staged = {v: c for v, c in self._staged.items() if v in written}
        for name in self.names(resolution):
            result = resolution.variables[name]
            content = result.data if result.data is not None else result.value.encode()
            stand_in = _STAGED + hmac.new(self._key, content, hashlib.sha256).hexdigest()
            self._staged[stand_in] = content
            env[name] = stand_in
        return env

    def materialize(self, env: dict, log) -> dict:
        """Write the files that changed; the child's env with NAME_FILE instead of NAME."""
        child = dict(env)
        changed = []
        for name, value in sorted(env.items()):
            if value not in self._staged:
                continue
            if self._written.get(name) != value:
                try:
                    self._write(name, self._staged[value])
                except OSError as error:
                    raise PermissionDenied(f"--as-files: cannot write {self.path(name)} ({error.strerror})",
                                           variable=name, hint="check the directory's owner, "
                                           "mode and free space") from None
                self._written[name] = value
                changed.append(name)
            del child[name]
            child[f"{name}_FILE"] = self.path(name)
        for name in [n for n in self._written if n not in env]:
            self._remove(name, log)
        if changed:
            log.event("files.written", "info", f"wrote {', '.join(changed)} to {self.directory}",
                      variables=changed, paths=[self.path(n) for n in changed])
        return child

    def remove_all(self, log) -> None:
        """At the program's end (supervised modes): the files go with it."""
        for name in list(self._written):
            self._remove(name, log)

    def _remove(self, name: str, log) -> None:
        try:
            os.unlink(name, dir_fd=self.directory_fd)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.event("files.remove_failed", "warning",
                      f"could not remove {self.path(name)} ({error.strerror})", path=self.path(name))
            return
        self._written.pop(name, None)
        log.event("files.removed", "info", path=self.path(name), variable=name)

    def _write(self, name: str, content: bytes) -> None:
        # The directory was opened with O_NOFOLLOW: the path must name it without a link.
        still_in_place(self.directory, self.directory_fd, follow_symlinks=False)
        write_atomically(name, content, mode=0o400, uid=self.uid, gid=self.gid,
                         directory_fd=self.directory_fd)
