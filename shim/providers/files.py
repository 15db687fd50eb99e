"""Local files: `file:` and `ref+file://` references, NAME_FILE and secrets dirs.

Read as the starting user (root in a container) before privileges drop, so a
0400 root-owned Docker secret still reaches a non-root program. Symlinks are
followed (Kubernetes mounts secrets as links into ..data/). Trailing newlines
are stripped, leading whitespace kept: docker-library's file_env does the
same with $(< file).
"""

from __future__ import annotations

import os
import re
import stat
from datetime import datetime, timezone

from shim.errors import NotFound, PermissionDenied, UnusableValue
from shim.providers.base import Fetched, SecretMeta

# A secret file larger than this is refused before reading it into memory.
MAX_FILE_BYTES = 1024 * 1024
_TRAILING_NEWLINES = re.compile(rb"(?:\r?\n)+\Z")


class FileProvider:
    name = "file"

    def __init__(self, context):
        self.context = context

    def fetch_all(self, references, deadline):
        outcomes = {}
        for reference in references:
            key = reference.fetch_key
            if key not in outcomes:
                try:
                    outcomes[key] = read_secret_file(reference.locator)
                except (NotFound, PermissionDenied, UnusableValue) as error:
                    outcomes[key] = error
        return outcomes


def read_secret_file(path: str) -> Fetched:
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang start-up.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(descriptor, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not _is_regular(info.st_mode):
                raise NotFound(f"{path} is not a regular file", hint="point it at a file")
            if info.st_size > MAX_FILE_BYTES:
                raise UnusableValue(f"{path} is larger than 1 MiB",
                                    hint="a secret that large belongs in a mounted file")
            content = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(f"file {path} does not exist",
                       hint="check the path and that the secret is mounted") from None
    except PermissionError:
        raise PermissionDenied(f"file {path} is not readable by uid {os.getuid()}",
                               hint="check its owner and mode") from None
    except IsADirectoryError:
        raise NotFound(f"{path} is a directory, not a file", hint="point it at a file") from None
    except NotADirectoryError:
        raise NotFound(f"file {path} does not exist (a parent is not a directory)",
                       hint="check the path") from None
    if len(content) > MAX_FILE_BYTES:
        raise UnusableValue(f"{path} is larger than 1 MiB",
                            hint="a secret that large belongs in a mounted file")
    content = _TRAILING_NEWLINES.sub(b"", content)
    updated = datetime.fromtimestamp(info.st_mtime, timezone.utc)
    return Fetched(content, SecretMeta(updated=updated))


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)
