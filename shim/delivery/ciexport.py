"""`shim render --format github-actions|azure-pipelines`: hand secrets to later CI steps.

Both formats carry the value into the CI system's own secret handling, so they
only run inside that CI system; anywhere else they refuse (78), because what
they print or write is the value itself.

- github-actions: each variable is appended to the file named by $GITHUB_ENV
  as `NAME<<DELIMITER`, the value's lines, `DELIMITER`, with a random
  delimiter that is not a line of the value (the runner ends the value at the
  first line equal to it). Before that, `::add-mask::LINE` is printed for each
  non-empty line of the value, so the runner hides it in every later log line.
  Mask data is escaped as the runner unescapes it (% CR LF).
- azure-pipelines: `##vso[task.setvariable variable=NAME;issecret=true]VALUE`
  on stdout, with the agent's escaping: % first (as %AZP25), then ; CR LF ].
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
from typing import Mapping

from shim.tools.errors import ConfigError, UnusableValue, UsageError

GITHUB = "github-actions"
AZURE = "azure-pipelines"
FORMATS = (GITHUB, AZURE)

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"  # compiled by re on first use
_AZURE_ESCAPES = ((";", "%3B"), ("\r", "%0D"), ("\n", "%0A"), ("]", "%5D"))


def preflight(file_format: str, environ: Mapping[str, str], *, directory, env_file,
              watching: bool) -> None:
    """Refuse before anything is resolved: wrong options (64) or not inside that CI (78)."""
    if directory or env_file:
        raise UsageError(f"--format {file_format} writes to the CI system, not to --dir/--env-file",
                         hint="drop --dir and --env-file, or use another --format")
    if watching:
        raise UsageError(f"--format {file_format} runs once; --watch does not apply",
                         hint="drop --watch")
    if file_format == GITHUB:
        if environ.get("GITHUB_ACTIONS") != "true" or not environ.get("GITHUB_ENV"):
            raise ConfigError("--format github-actions only runs in a GitHub Actions job "
                              "(GITHUB_ACTIONS=true and GITHUB_ENV set): it prints the masked values",
                              hint="use --format dotenv/shell/json outside GitHub Actions")
    elif environ.get("TF_BUILD", "").lower() != "true":
        raise ConfigError("--format azure-pipelines only runs in an Azure Pipelines job "
                          "(TF_BUILD=True): it prints the values for the agent",
                          hint="use --format dotenv/shell/json outside Azure Pipelines")


def export(file_format: str, values: Mapping[str, str], environ: Mapping[str, str],
           stdout=None) -> None:
    """Check every name, then write everything (nothing is written when a name is refused)."""
    stdout = stdout or sys.stdout
    for name in sorted(values):
        if not re.fullmatch(_IDENTIFIER, name):
            raise UnusableValue("the name is not a valid identifier for a CI variable",
                                variable=name, hint="rename it to letters, digits and _")
    if file_format == GITHUB:
        _export_github(values, environ["GITHUB_ENV"], stdout)
    else:
        stdout.write("".join(azure_command(name, values[name]) for name in sorted(values)))
        stdout.flush()


def _export_github(values: Mapping[str, str], env_path: str, stdout) -> None:
    masks = []
    entries = []
    for name in sorted(values):
        masks.extend(github_masks(values[name]))
        entries.append(github_env_entry(name, values[name]))
    descriptor = _open_for_append(env_path)
    try:
        # Masks first: the runner must know the value before any later step can print it.
        stdout.write("".join(masks))
        stdout.flush()
        view = memoryview("".join(entries).encode())
        while view:
            view = view[os.write(descriptor, view):]
    finally:
        os.close(descriptor)


def github_masks(value: str) -> list[str]:
    """One `::add-mask::` command per non-empty line (the runner masks log lines one by one)."""
    commands = []
    for line in value.split("\n"):
        line = line.rstrip("\r")
        if line:
            escaped = line.replace("%", "%25").replace("\r", "%0D")
            commands.append(f"::add-mask::{escaped}\n")
    return commands


def github_env_entry(name: str, value: str) -> str:
    delimiter = new_delimiter(value)
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def new_delimiter(value: str) -> str:
    """A random delimiter that occurs nowhere in the value (so also not as a line of it)."""
    while True:
        delimiter = f"SHIM_EOF_{secrets.token_hex(16)}"
        if delimiter not in value:
            return delimiter


def azure_command(name: str, value: str) -> str:
    return f"##vso[task.setvariable variable={name};issecret=true]{azure_escape(value)}\n"


def azure_escape(value: str) -> str:
    value = value.replace("%", "%AZP25")
    for token, replacement in _AZURE_ESCAPES:
        value = value.replace(token, replacement)
    return value


def _open_for_append(path: str) -> int:
    """The runner's file, for O_APPEND writes; a symlink or non-regular file is refused.

    O_NONBLOCK: opening a FIFO for writing would otherwise wait for a reader forever; it does
    nothing to a regular file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
                             | os.O_NONBLOCK)
    except OSError as error:
        raise ConfigError(f"GITHUB_ENV {path}: cannot open it for appending ({error.strerror})",
                          hint="run shim as a step of the job that owns GITHUB_ENV") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ConfigError(f"GITHUB_ENV {path} is not a regular file",
                          hint="run shim as a step of the job that owns GITHUB_ENV")
    return descriptor
