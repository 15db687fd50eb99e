r"""What `shim render` writes: secrets as files (one per variable) or as one env file.
(The command itself, its options and its --watch loop, is shim.commands.render.)

Every write is atomic: a temporary file in the same directory, written,
fsync'd, given its mode and owner, then renamed over the old one, and the
directory fsync'd. A reader (the app, or a loop in a test) sees the old
file or the new one, never a partial or empty one.

Env-file formats:
- dotenv: a value in single quotes, read literally by every reader; a value
  holding a single quote or a backslash goes in double quotes, with \\ \" \$
  and \` escaped, so sourcing the file with `set -a; . file` runs nothing.
  What each reader (sh, docker compose, python-dotenv, shim's own --env-file,
  docker run --env-file) gets back is the table in docs/long-running.md.
- shell: `export NAME='value'` for POSIX sh `.`; a ' inside is written '\''.
- json: one object, {"NAME": "value", ...}.
Names that are not [A-Za-z_][A-Za-z0-9_]* are refused for shell and dotenv,
and names that are not plain file names for --dir (65).
"""

from __future__ import annotations

import json
import os
import re

from shim.delivery.atomic import write_atomically
from shim.tools.errors import UnusableValue

FORMATS = ("dotenv", "shell", "json")
# Names that sh and dotenv readers take as a variable name and nothing else.
_SHELL_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def check_names(names, *, directory: str | None, file_format: str | None) -> None:
    """Refuse (65) a name that would not stay a name: a path out of --dir, code when sourced.

    Names come from the environment, and execve (or Kubernetes) allows '/', '..', ';'.
    """
    for name in sorted(names):
        if directory is not None and (name in ("", ".", "..") or "/" in name or "\0" in name):
            raise UnusableValue("is not a plain file name, so render --dir cannot write it",
                                variable=_printable(name),
                                hint="rename the variable (letters, digits and _)")
        if file_format in ("shell", "dotenv") and not re.fullmatch(_SHELL_NAME, name):
            raise UnusableValue(f"is not a valid {file_format} variable name",
                                variable=_printable(name),
                                hint="rename the variable (letters, digits and _, not starting "
                                     "with a digit) or use --format json")


def _printable(name: str) -> str:
    return name.encode("unicode_escape").decode("ascii")


def contained_path(directory: str, name: str) -> str:
    """directory/name, refused unless it is directly inside directory."""
    path = os.path.join(directory, name)
    if os.path.dirname(os.path.normpath(path)) != os.path.normpath(directory):
        raise UnusableValue("would be written outside --dir", variable=_printable(name),
                            hint="rename the variable (letters, digits and _)")
    return path


def format_env_file(values: dict[str, str], file_format: str) -> str:
    names = sorted(values)
    if file_format == "json":
        return json.dumps({name: values[name] for name in names}, indent=2) + "\n"
    if file_format == "shell":
        return "".join(f"export {name}={_shell_quote(values[name])}\n" for name in names)
    return "".join(f"{name}={_dotenv_quote(values[name])}\n" for name in names)


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _dotenv_quote(value: str) -> str:
    r"""Single quotes (literal for every reader) unless the value holds ' or \; then double
    quotes with \ " $ ` escaped, which makes the file safe to source with `set -a; . file`.
    docs/long-running.md has what each reader gets back."""
    if "'" not in value and "\\" not in value:
        return "'" + value + "'"
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("`", "\\`"))
    return '"' + escaped + '"'


class Renderer:
    """Writes what changed since the last render; remembers what it wrote."""

    def __init__(self, *, directory: str | None, env_file: str | None, file_format: str,
                 mode: int, uid: int | None, gid: int | None):
        self.directory = directory
        self.env_file = env_file
        self.file_format = file_format
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.written: dict[str, str] = {}

    def render(self, values: dict[str, str]) -> list[str]:
        """Write the files; the names whose file changed (all of them the first time)."""
        check_names(values, directory=self.directory,
                    file_format=self.file_format if self.env_file is not None else None)
        changed = sorted(name for name in set(values) | set(self.written)
                         if values.get(name) != self.written.get(name))
        if self.directory is not None:
            for name in changed:
                path = contained_path(self.directory, name)
                if name in values:
                    write_atomically(path, values[name].encode(), mode=self.mode,
                                     uid=self.uid, gid=self.gid)
                else:
                    _remove(path)
        if self.env_file is not None and (changed or not self.written):
            content = format_env_file(values, self.file_format).encode()
            write_atomically(self.env_file, content, mode=self.mode, uid=self.uid, gid=self.gid)
        self.written = dict(values)
        return changed


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
