"""CHANGEME placeholders: finding them, and where their real values may live.

A placeholder is the token CHANGEME or CHANGEME_<KEY> ([A-Za-z0-9_]),
case-sensitive, as a whole value or inside one (a URL, a DSN). Its key is
<KEY>, or the variable's own name for a bare CHANGEME.
"""

from __future__ import annotations

import os
import re

from shim.tools.records import record

PLACEHOLDER = re.compile(r"(?<![A-Za-z0-9_])CHANGEME(?:_([A-Za-z0-9_]+))?(?![A-Za-z0-9_])")


@record
class Placeholder:
    token: str      # the text as written, e.g. CHANGEME_PG_PASSWORD
    key: str        # PG_PASSWORD (or the variable name for a bare CHANGEME)
    start: int
    end: int


def find_placeholders(variable: str, value: str) -> list[Placeholder]:
    return [Placeholder(m.group(0), m.group(1) or variable, m.start(), m.end())
            for m in PLACEHOLDER.finditer(value)]


def has_placeholder(value: str) -> bool:
    return PLACEHOLDER.search(value) is not None


def key_spellings(key: str) -> list[str]:
    """The names a placeholder's key is looked up by, in order, in a secrets dir and in
    --placeholder-source alike: as written, then lowercased (CHANGEME_PG_PASSWORD finds
    pg_password, the name Docker secrets usually have)."""
    return list(dict.fromkeys([key, key.lower()]))


def secrets_dir_candidates(secrets_dirs, variable: str, key: str, whole_value: bool) -> list[str]:
    """Files to try, in order: <dir>/<KEY>, <dir>/<key lowercased>, <dir>/<variable lowercased>.

    The variable-named file only stands in for a whole-value placeholder: for
    one embedded in a URL it would hold the wrong thing (the whole URL).
    """
    names = key_spellings(key)
    if whole_value:
        names.append(variable.lower())
    candidates = []
    for directory in secrets_dirs:
        for name in dict.fromkeys(names):  # keep order, drop repeats
            candidates.append(os.path.join(directory, name))
    return candidates
