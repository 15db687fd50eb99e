"""Env files (--env-file): python-dotenv parses, this module applies.

Values are taken literally (no ${VAR} interpolation, as docker's --env-file
and compose's env_file do), so `${ref+...}` pieces survive to be resolved.
"""

from __future__ import annotations

import io
import re

from shim.tools.errors import UsageError
from shim.tools.records import record
from shim.tools.safe_read import read_capped
from shim.syntax.refs import escape_body
import os

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
    if _is_sops_dotenv(bindings):
        return _sops_entries(path, bindings)
    entries = []
    for binding in bindings:
        line = binding.original.line
        if binding.error:
            # Never echo the line: it may hold a secret.
            raise UsageError(f"env file {path} line {line}: cannot parse this line",
                             hint="write NAME=value, quoting values with spaces")
        if binding.key is None:
            continue  # blank line or comment
        _check_name(path, line, binding.key)
        if binding.value is None:
            continue  # a bare NAME means "take it from the environment", as docker does
        entries.append(EnvFileEntry(binding.key, binding.value, path, line))
    return entries


def _check_name(path: str, line: int, key: str) -> None:
    if not re.fullmatch(VALID_NAME, key):
        raise UsageError(f"env file {path} line {line}: {key!r} is not a valid variable name",
                         hint="names use letters, digits and _ and do not start with a digit")


def _is_sops_dotenv(bindings) -> bool:
    return any(binding.key == "sops_mac" for binding in bindings) and any(
        binding.key == "sops_lastmodified" for binding in bindings)


def _sops_entries(path: str, bindings) -> list[EnvFileEntry]:
    """A sops-encrypted dotenv file: each key becomes a ref+sops reference into it.

    The file is decrypted (and its MAC checked) once, by the sops provider, when
    the references resolve; its metadata keys (sops_*) are not variables.
    """
    location = "ref+sops://" + escape_body(os.path.abspath(path)) + "?format=dotenv#/"
    entries = []
    for binding in bindings:
        if binding.key is None or binding.key.startswith("sops_"):
            continue
        _check_name(path, binding.original.line, binding.key)
        pointer = binding.key.replace("~", "~0").replace("/", "~1")
        entries.append(EnvFileEntry(binding.key, location + pointer, path, binding.original.line))
    return entries
