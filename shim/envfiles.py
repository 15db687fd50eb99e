"""Env files (--env-file): python-dotenv parses, this module applies.

Values are taken literally (no ${VAR} interpolation, as docker's --env-file
and compose's env_file do), so `${ref+...}` pieces survive to be resolved.
"""

from __future__ import annotations

import io
import re

from shim.errors import UsageError
from shim.records import record
from shim.safe_read import read_capped

# A pattern string, compiled (and cached by re) on first use: most runs have no env file.
VALID_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


@record
class EnvFileEntry:
    name: str
    value: str
    path: str
    line: int


def load_env_files(paths) -> dict[str, EnvFileEntry]:
    """Entries of every file; a later file wins over an earlier one."""
    entries: dict[str, EnvFileEntry] = {}
    for path in paths:
        for entry in _read_one(path):
            entries[entry.name] = entry
    return entries


# An env file larger than this is refused before it is read whole (settings, not data).
MAX_ENV_FILE_BYTES = 1024 * 1024


def _read_one(path: str) -> list[EnvFileEntry]:
    from dotenv.parser import parse_stream  # lazy: python-dotenv only with --env-file

    content = read_capped(path, cap=MAX_ENV_FILE_BYTES, what="env file", size_text="1 MiB")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"env file {path} is not UTF-8 text", hint="save it as UTF-8") from None
    bindings = list(parse_stream(io.StringIO(text)))
    entries = []
    for binding in bindings:
        line = binding.original.line
        if binding.error:
            # Never echo the line: it may hold a secret.
            raise UsageError(f"env file {path} line {line}: cannot parse this line",
                             hint="write NAME=value, quoting values with spaces")
        if binding.key is None:
            continue  # blank line or comment
        if not re.fullmatch(VALID_NAME, binding.key):
            raise UsageError(f"env file {path} line {line}: {binding.key!r} is not a valid variable name",
                             hint="names use letters, digits and _ and do not start with a digit")
        if binding.value is None:
            continue  # a bare NAME means "take it from the environment", as docker does
        entries.append(EnvFileEntry(binding.key, binding.value, path, line))
    return entries
