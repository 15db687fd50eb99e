"""Local files: `file:` and `ref+file://` references, NAME_FILE and secrets dirs.

Read as the starting user (root in a container) before privileges drop, so a
0400 root-owned Docker secret still reaches a non-root program. Symlinks are
followed (Kubernetes mounts secrets as links into ..data/). Trailing newlines
are stripped, leading whitespace kept: docker-library's file_env does the
same with $(< file).
"""

from __future__ import annotations

import re

from shim.tools.errors import NotFound, PermissionDenied, UnusableValue
from shim.providers.base import Fetched, SecretMeta
from shim.tools.safe_read import read_with_stat

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
                    outcomes[key] = read_secret_file(
                        reference.locator, getattr(self.context, "wants_dates", True))
                except (NotFound, PermissionDenied, UnusableValue) as error:
                    outcomes[key] = error
        return outcomes


def read_secret_file(path: str, wants_dates: bool = True) -> Fetched:
    """The file's value, and its modification time when something reads dates (check's ages,
    a max age, info-level events): a plain start imports no `datetime` (~1.5 ms)."""
    # Symlinks followed: Kubernetes secret volumes are links into ..data/.
    content, info = read_with_stat(path, cap=MAX_FILE_BYTES, what="file", size_text="1 MiB",
                                   delivered_as_is=True)
    content = _TRAILING_NEWLINES.sub(b"", content)
    if not wants_dates:
        return Fetched(content, SecretMeta())
    from datetime import datetime, timezone  # lazy: only when dates are read
    updated = datetime.fromtimestamp(info.st_mtime, timezone.utc)
    return Fetched(content, SecretMeta(updated=updated))
