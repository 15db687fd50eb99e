"""Write a file so that a reader sees the old content or the new, never a part of either.

A temporary file in the same directory (mkstemp: O_EXCL, mode 0600), the content, fsync, the
final mode and owner on the descriptor, rename over the destination, fsync of the directory.
Used by render, dev-init and --template.
"""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str, content: bytes, *, mode: int, uid: int | None = None,
                     gid: int | None = None) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".shim-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(stream.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
