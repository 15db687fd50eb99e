"""Env files (--env-file): python-dotenv parses, this module applies.

Values are taken literally (no ${VAR} interpolation, as docker's --env-file
and compose's env_file do), so `${ref+...}` pieces survive to be resolved.
"""

from __future__ import annotations

import re

from shim.errors import NotFound, PermissionDenied, UsageError
from shim.records import record

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


def _read_one(path: str) -> list[EnvFileEntry]:
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as stream:
            bindings = list(parse_stream(stream))
    except FileNotFoundError:
        raise NotFound(f"env file {path} does not exist",
                       hint="create it or drop the --env-file option") from None
    except PermissionError:
        raise PermissionDenied(f"env file {path} is not readable",
                               hint="check its owner and mode") from None
    except IsADirectoryError:
        raise NotFound(f"env file {path} is a directory", hint="name a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"env file {path} is not UTF-8 text", hint="save it as UTF-8") from None
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
