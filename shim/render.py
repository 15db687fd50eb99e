r"""`shim render`: secrets as files (one per variable) or as one env file.

Every write is atomic: a temporary file in the same directory, written,
fsync'd, given its mode and owner, then renamed over the old one, and the
directory fsync'd. A reader (the app, or a loop in a test) sees the old
file or the new one, never a partial or empty one.

Env-file formats, each read back exactly by its reader:
- dotenv: for docker compose's `env_file`: a value in single quotes, read
  literally (no escapes, no ${...}); a value holding a single quote, a
  backslash or a newline goes in double quotes instead, with \\ \" \n \r
  and $ escaped. python-dotenv (shim's own --env-file) reads it back the
  same, except that it keeps the backslash of \$ inside double quotes.
- shell: `export NAME='value'` for POSIX sh `.`; a ' inside is written '\''.
- json: one object, {"NAME": "value", ...}.
"""

from __future__ import annotations

import json
import os
import tempfile

FORMATS = ("dotenv", "shell", "json")


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
    if not any(char in value for char in "'\\\n\r"):
        return "'" + value + "'"
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("$", "\\$"))
    return '"' + escaped + '"'


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
        changed = sorted(name for name in set(values) | set(self.written)
                         if values.get(name) != self.written.get(name))
        if self.directory is not None:
            for name in changed:
                path = os.path.join(self.directory, name)
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
