"""`shim exec`'s usual command line, parsed without click, from the option table.

click costs more to import than everything else `shim exec` does at a container's start, and
the usual `exec` line is a handful of options. `parse_exec()` reads that line with a parser
generated from shim.pipeline.options.OPTIONS (flags, kinds, SHIM_* variables, repetition, what `exec`
honours) and returns the same raw values click would give `exec`, which parse_options()
then turns into Options exactly as on click's path.

It returns None -- hand over to click -- for everything else: any other command, --help, -h,
--version, an option it does not know or `exec` refuses, a missing CMD or option value, a
value that click would reject or check against the file system, a value that starts with '-',
anything ambiguous. Every message and exit code then stays click's. tests/unit/test_fastpath.py
proves on generated command lines and SHIM_* environments that the two agree.

This module must not import click (tests/integration/test_imports.py checks it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence

from shim.pipeline.options import Option, options_of, refused_flags, split_names, split_paths

COMMAND = "exec"

# How a flag's SHIM_* variable switches it, as click reads it (case and surrounding blanks do not
# matter). Other words click accepts (t, y, f, n) are left to click.
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_NO_VALUE = ("flag", "count")


class HandOver(Exception):
    """This command line is click's to parse."""


def _spellings(command: str) -> tuple[dict[str, Option], dict[str, Option]]:
    """`--long` and single-letter (`-v` -> "v") flags of the options `command` honours."""
    long_flags: dict[str, Option] = {}
    short_flags: dict[str, Option] = {}
    for option in options_of(command):
        for flag in option.flags_of(command):
            if flag.startswith("--"):
                long_flags[flag] = option
            elif option.kind in _NO_VALUE and len(flag) == 2:
                short_flags[flag[1]] = option
            # a short flag taking a value is not on the fast path: click reads it
    return long_flags, short_flags


_LONG, _SHORT = _spellings(COMMAND)
_FLAGGED = tuple(option for option in options_of(COMMAND) if option.flags)
# SHIM_* variables of options `exec` refuses, when their variable is refused too.
_REFUSED_ENV = tuple(option.env for option in refused_flags(COMMAND).values()
                     if COMMAND in option.env_refused_by and option.env)


def parse_exec(args: Sequence[str], environ: Mapping[str, str]):
    """(raw, command) for `shim ARGS` when ARGS is an `exec` line this parser reads, else None.

    `raw` maps each option `exec` honours on its command line to the value click would pass
    (command line first, then its SHIM_* variable, then click's default); `command` is CMD
    and its arguments.
    """
    try:
        if any(environ.get(name) for name in _REFUSED_ENV):
            raise HandOver
        given, command = _scan(args)
        return {option.name: _value(option, given, environ) for option in _FLAGGED}, command
    except HandOver:
        return None


def _scan(args: Sequence[str]) -> tuple[dict[str, list], tuple[str, ...]]:
    """The options given on the command line (values in order) and CMD."""
    if not args or args[0] != COMMAND:
        raise HandOver
    given: dict[str, list] = {}
    index, count = 1, len(args)
    while index < count:
        arg = args[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break                               # CMD: interspersed options are off for exec
        if arg.startswith("--"):
            flag, equals, value = arg.partition("=")
            option = _LONG.get(flag)
            if option is None:
                raise HandOver                  # --help, unknown, refused, misspelt
            if option.kind in _NO_VALUE:
                if equals:
                    raise HandOver              # click: "does not take a value"
                value = True
            elif not equals:
                index += 1
                if index == count:
                    raise HandOver              # click: "requires an argument"
                value = args[index]
                if value.startswith("-"):
                    raise HandOver              # an option's value or a forgotten one
            given.setdefault(option.name, []).append(value)
        else:
            for letter in arg[1:]:
                option = _SHORT.get(letter)
                if option is None:
                    raise HandOver              # -h, an unknown letter, -v=...
                given.setdefault(option.name, []).append(True)
        index += 1
    command = tuple(args[index:])
    if not command:
        raise HandOver                          # click: "Missing argument 'COMMAND...'"
    return given, command


def _value(option: Option, given: Mapping[str, list], environ: Mapping[str, str]):
    """What click passes for `option`: the command line, else its variable, else its default."""
    values = given.get(option.name)
    kind = option.kind
    if values is not None:
        if kind == "count":
            return len(values)
        if kind == "flag":
            return True
        if option.multiple:
            return tuple(values)
        return _checked(option, values[-1])     # click: the last one wins
    text = environ.get(option.env) if option.env else None
    if not text:                                # click: unset and empty are the same
        return _default(option)
    if kind == "flag":
        word = text.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise HandOver
    if option.multiple:
        items = split_paths(text) if kind == "paths" else split_names(text)
        if not items:
            raise HandOver
        return tuple(items)
    return _checked(option, text)


def _checked(option: Option, text: str) -> str:
    """A single value as click's type would accept it; anything click might refuse is its own."""
    if option.kind == "choice" and text not in option.choices:
        raise HandOver
    if option.kind == "path" and text:
        # click.Path looks at an existing path (a directory, unreadable): let it.
        try:
            found = os.stat(text)
        except OSError:
            return text
        if not stat.S_ISREG(found.st_mode) or not os.access(text, os.R_OK):
            raise HandOver
    return text


def _default(option: Option):
    if option.kind == "count":
        return 0
    if option.kind == "flag":
        return False
    if option.multiple:
        return ()
    if option.kind == "choice":
        return option.default
    return None
