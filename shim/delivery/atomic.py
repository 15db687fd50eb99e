"""Write a file so that a reader sees the old content or the new, never a part of either.

A temporary file in the same directory (a random name, O_EXCL|O_NOFOLLOW, mode 0600), the
content, fsync, the final mode and owner on the descriptor, rename over the destination, fsync
of the directory. Used by render, dev-init, --as-files and --template.

Every step goes through one descriptor of the directory. A caller that opened it before the
program started (`directory_fd`: --template and --as-files under --watch) writes into that
directory whatever the program did to the path since: a directory it swapped in, or a symbolic
link it planted in place of one, receives nothing.
"""

from __future__ import annotations

import errno
import os
import secrets

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomically(path: str, content: bytes, *, mode: int, uid: int | None = None,
                     gid: int | None = None, directory_fd: int | None = None) -> None:
    """Write `path`; with `directory_fd`, `path` is a name inside that directory."""
    if directory_fd is not None:
        _write_in(directory_fd, path, content, mode, uid, gid)
        return
    directory = os.open(os.path.dirname(os.path.abspath(path)), DIRECTORY_FLAGS)
    try:
        _write_in(directory, os.path.basename(path), content, mode, uid, gid)
    finally:
        os.close(directory)


def _write_in(directory: int, name: str, content: bytes, mode: int, uid: int | None,
              gid: int | None) -> None:
    temporary = f".shim-{secrets.token_hex(8)}.tmp"
    descriptor = os.open(temporary, _TEMPORARY_FLAGS, 0o600, dir_fd=directory)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(descriptor, view):]
        os.fsync(descriptor)
        os.fchmod(descriptor, mode)
        if uid is not None or gid is not None:
            os.fchown(descriptor, -1 if uid is None else uid, -1 if gid is None else gid)
        os.close(descriptor)
        descriptor = None
        os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        if descriptor is not None:
            os.close(descriptor)
        try:
            os.unlink(temporary, dir_fd=directory)
        except FileNotFoundError:
            pass
        raise
    os.fsync(directory)


def still_in_place(directory: str, directory_fd: int, *, follow_symlinks: bool) -> None:
    """OSError unless the path `directory` still names the directory of `directory_fd`: the
    program reads its files through the path, so files written into a directory it no longer
    names would never reach it."""
    checked = os.fstat(directory_fd)
    try:
        named = os.stat(directory, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        named = None
    if named is None or (named.st_dev, named.st_ino) != (checked.st_dev, checked.st_ino):
        raise OSError(errno.EXDEV, "the directory is no longer the one checked")
