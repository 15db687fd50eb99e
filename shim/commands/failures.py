"""How a command's failure reaches the operator: one line and the documented exit code.

Shared by both ways into a command (shim.entry's fast path and click's shim.commands.cli), so
a failure reads and exits the same whichever way the command line was read.
"""

from __future__ import annotations

import os
import sys

from shim.delivery.audit import report_error
from shim.pipeline.options import OPTIONS
from shim.tools.errors import ShimError

EXIT_INTERNAL = 70   # EX_SOFTWARE: a bug in the shim (reported without details)
EXIT_INTERRUPTED = 130


class reported_failures:
    """Context manager: a ShimError exits with its code and one line, a bug with 70 and no
    traceback (which may hold a value), Ctrl-C with 130; a normal end exits 0."""

    def __init__(self, args):
        self.args = args

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            sys.exit(0)
        if issubclass(kind, SystemExit):
            return False
        if issubclass(kind, KeyboardInterrupt):
            sys.stderr.write("\n")
            sys.exit(EXIT_INTERRUPTED)
        if issubclass(kind, ShimError):
            print_error(error, self.args)
            sys.exit(error.exit_code)
        if issubclass(kind, Exception):
            sys.stderr.write(f"shim: internal error ({kind.__name__}); please report it\n")
            sys.exit(EXIT_INTERNAL)
        return False


def print_error(error, args) -> None:
    """An error no command reported (bad option values, bad --user), in the asked-for format
    and to --audit-file as well: through the run's Log when there is one."""
    json_asked = (os.environ.get("SHIM_LOG_FORMAT") == "json"
                  or _option_value(args, "--log-format") == "json")
    report_error(error, log_format="json" if json_asked else "text",
                 audit_file=_option_value(args, "--audit-file") or os.environ.get("SHIM_AUDIT_FILE"))


def _option_value(args, name):
    """The value of shim's own option `name VALUE` or `name=VALUE`: read only up to the command
    (`--`, or the first argument that is neither an option nor an option's value). What follows
    is the program's own command line: `exec prog --audit-file /etc/x` must not make shim (as
    root) create /etc/x when it reports an error."""
    takes_value = {flag for option in OPTIONS if option.kind not in ("flag", "count")
                   for flag in (*option.flags, *(f for fs in option.flags_for.values() for f in fs))
                   if flag.startswith("--")}
    found, index = None, 1          # args[0] is shim's command (exec, render, ...)
    while index < len(args):
        item = args[index]
        if item == "--" or not item.startswith("-") or item == "-":
            break                   # the command and its own arguments
        flag, equals, value = item.partition("=")
        if flag == name and equals:
            found = value
        elif flag in takes_value and not equals:
            if item == name and index + 1 < len(args):
                found = args[index + 1]
            index += 1              # skip the option's value
        index += 1
    return found
