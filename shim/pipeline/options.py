"""Every option of the pipeline commands, defined once as plain data, and its parsed form.

`OPTIONS` is the single table: the click options of `exec`, `check`, `render` and `run`
(shim.commands.cli builds them), the refusal of an option a command does not honour, and the tables
in docs/reference.md (tests/unit/test_reference_doc.py compares them) all come from it.
This module must not import click: a parser without click can be generated from the table.

`parse_options()` turns the raw strings into `Options`: durations in seconds, signal numbers,
the --on-change action, the file mode as an int. Nothing downstream sees the raw text.

Longer than our other modules on purpose: the table is one row per option of every command,
and splitting it would put the options of one command in two places.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from shim.tools.durations import parse_duration
from shim.tools.errors import UsageError
from shim.syntax.refs import parse_reference
from shim.syntax.refs import parse_import_reference

PIPELINE_COMMANDS = ("exec", "check", "render", "run")
ALL = frozenset(PIPELINE_COMMANDS)

# Kinds: how a value is written and what it becomes in Options.
#   flag      on/off (env var: 1/true/yes/on)           -> bool
#   count     repeatable, no value (-vv)                 -> int
#   text      a string as written                        -> str | None
#   path      one file path                              -> str | None
#   dir       one directory path                         -> str | None
#   paths     repeatable; env var split on ':' or ','    -> tuple[str, ...]
#   list      names, comma-separated (repeatable)        -> tuple or frozenset of str
#   choice    one of `choices`                           -> str
#   duration  500ms, 30s, 5m, 1h, 90d                    -> float seconds
#   signal    TERM, SIGTERM or 15                        -> int
#   action    --on-change, checked per command           -> (kind, argument) | None
#   mode      octal file mode 0000-0777                  -> int
#   user      USER[:GROUP], name or number               -> str | None
KINDS = ("flag", "count", "text", "path", "dir", "paths", "list", "choice", "duration", "signal",
         "action", "mode", "user")


class Option:
    """One row of the table. A plain class, not a NamedTuple: cheaper to define at start-up."""

    __slots__ = ("name", "flags", "env", "kind", "default", "help", "commands", "metavar",
                 "choices", "multiple", "flags_for", "help_for", "env_refused_by")

    def __init__(self, name: str, flags: tuple[str, ...], env: str | None, kind: str,
                 default: object, help: str, commands: frozenset, *, metavar: str | None = None,
                 choices: tuple[str, ...] = (), multiple: bool = False,
                 flags_for: Mapping[str, tuple[str, ...]] | None = None,
                 help_for: Mapping[str, str] | None = None,
                 env_refused_by: frozenset = frozenset()):
        self.name = name                  # the attribute of Options
        self.flags = flags                # command-line flags; () for an environment-only setting
        self.env = env                    # the SHIM_* variable read when the flag is not given
        self.kind = kind                  # one of KINDS
        self.default = default            # already parsed: seconds, a signal number, a mode
        self.help = help
        self.commands = commands          # the commands that honour it
        self.metavar = metavar
        self.choices = choices
        self.multiple = multiple          # may be given more than once
        self.flags_for = flags_for or {}  # a command that spells it differently
        self.help_for = help_for or {}    # a command whose help differs
        self.env_refused_by = env_refused_by   # commands that refuse its SHIM_* variable too

    def __repr__(self) -> str:
        return f"Option({self.name!r})"

    def flags_of(self, command: str) -> tuple[str, ...]:
        return self.flags_for.get(command, self.flags)

    def help_of(self, command: str) -> str:
        return self.help_for.get(command, self.help)


def _o(name, flags, env, kind, default, help, commands=ALL, **more) -> Option:
    return Option(name, tuple(flags), env, kind, default, help, frozenset(commands), **more)


_RESOLVING = ALL
_RUNS_A_PROGRAM = frozenset({"exec", "run"})
_SUPERVISES = frozenset({"exec"})
_WATCHES = frozenset({"exec", "render"})
# `run` replaces itself with CMD as the caller: SHIM_USER, SHIM_INIT, SHIM_WATCH or
# SHIM_ON_CHANGE in its environment asks for something it would silently not do.
_NEVER_DROPS = frozenset({"run"})

OPTIONS: tuple[Option, ...] = (
    _o("user", ["--user"], "SHIM_USER", "user", None,
       "Drop to this user before exec (gosu semantics).", {"exec", "check"},
       metavar="USER[:GROUP]", env_refused_by=_NEVER_DROPS),
    _o("allow_root", ["--allow-root"], "SHIM_ALLOW_ROOT", "flag", False,
       "Run CMD as root without --user and without the warning.", {"exec"}),
    _o("env_files", ["--env-file"], "SHIM_ENV_FILE", "paths", (),
       "Dotenv file to load first (repeatable; the variable takes a ',' or ':' list).",
       _RESOLVING, multiple=True, flags_for={"render": ("--from-env-file",)}),
    _o("secrets_dirs", ["--secrets-dir"], "SHIM_SECRETS_DIR", "paths", ("/run/secrets",),
       "Trusted directory for NAME_FILE paths and placeholders (default /run/secrets).",
       _RESOLVING, multiple=True),
    _o("file_vars", ["--file-vars"], "SHIM_FILE_VARS", "list", frozenset(),
       "Comma list of NAMEs whose NAME_FILE is always resolved; * for all.", _RESOLVING,
       metavar="NAMES"),
    _o("skip", [], "SHIM_SKIP", "list", frozenset(),
       "Comma list of variables shim leaves exactly as they are.", _RESOLVING),
    _o("sops_key_services", [], "SHIM_SOPS_KEY_SERVICES", "list", (),
       "Comma list of key service URLs a sops file's keys may use besides VAULT_ADDR.",
       _RESOLVING),
    _o("imports", ["--import"], "SHIM_IMPORT", "list", (),
       "Every key of this map becomes a variable (repeatable; the variable takes a ',' list).",
       _RESOLVING, metavar="REF", multiple=True),
    _o("placeholder_source", ["--placeholder-source"], "SHIM_PLACEHOLDER_SOURCE", "text", None,
       "Reference without a key; a placeholder's key is its selector.", _RESOLVING,
       metavar="REF"),
    _o("allow_placeholders", ["--allow-placeholders"], "SHIM_ALLOW_PLACEHOLDERS", "flag", False,
       "Development only: keep unresolved placeholders, with a warning.", _RESOLVING),
    _o("keep_file_vars", ["--keep-file-vars"], "SHIM_KEEP_FILE_VARS", "flag", False,
       "Keep NAME_FILE in the child's environment.", _RUNS_A_PROGRAM),
    _o("passthrough", ["--passthrough"], "SHIM_PASSTHROUGH", "list", (),
       "Keep a provider credential variable that is scrubbed by default.", _RUNS_A_PROGRAM,
       metavar="NAME", multiple=True),
    _o("require_non_root", ["--require-non-root"], "SHIM_REQUIRE_NON_ROOT", "flag", False,
       "Refuse to run CMD as uid 0.", {"exec", "check", "run"}),
    _o("no_new_privs", ["--no-new-privs"], "SHIM_NO_NEW_PRIVS", "flag", False,
       "Set PR_SET_NO_NEW_PRIVS before exec.", _RUNS_A_PROGRAM),
    _o("redact", ["--redact"], "SHIM_REDACT", "flag", False,
       "Pass the program's stdout and stderr through shim, every delivered value replaced by "
       "[redacted:NAME] (implies the --init supervisor).", _SUPERVISES),
    _o("no_redact", ["--no-redact"], "SHIM_NO_REDACT", "flag", False,
       "Let the program's output through as it is (run redacts by default).", {"run"}),
    _o("init", ["--init"], "SHIM_INIT", "flag", False,
       "Stay as a minimal PID 1 supervising CMD.", _SUPERVISES, env_refused_by=_NEVER_DROPS),
    _o("watch", ["--watch"], "SHIM_WATCH", "duration", None,
       "Re-resolve every DURATION and apply --on-change.", _WATCHES, metavar="DURATION",
       env_refused_by=_NEVER_DROPS),
    _o("on_change", ["--on-change"], "SHIM_ON_CHANGE", "action", None,
       "restart (default) | signal:NAME | exit.", _WATCHES, metavar="ACTION",
       help_for={"render": "signal:NAME (with --pid-file) | run:CMD."},
       env_refused_by=_NEVER_DROPS),
    _o("stop_timeout", ["--stop-timeout"], "SHIM_STOP_TIMEOUT", "duration", 10.0,
       "After the stop signal, wait this long before SIGKILL (default 10s).", _SUPERVISES,
       metavar="DURATION"),
    _o("stop_signal", ["--stop-signal"], "SHIM_STOP_SIGNAL", "signal", signal.SIGTERM.value,
       "Signal that asks CMD to stop on restart (default TERM).", _SUPERVISES,
       metavar="SIGNAL"),
    _o("forward_to", ["--forward-to"], "SHIM_FORWARD_TO", "choice", "group",
       "--init: forward signals to CMD's process group (default) or CMD only.", _SUPERVISES,
       choices=("group", "child")),
    _o("metrics", ["--metrics"], "SHIM_METRICS", "text", None,
       "--watch: serve /metrics and /healthz on HOST:PORT (loopback only, unless "
       "--metrics-allow-remote).", _WATCHES, metavar="HOST:PORT", env_refused_by=_NEVER_DROPS),
    _o("metrics_allow_remote", ["--metrics-allow-remote"], "SHIM_METRICS_ALLOW_REMOTE", "flag",
       False, "Let --metrics listen on an address that is not loopback.", _WATCHES),
    _o("revoke_on_exit", ["--revoke-on-exit"], "SHIM_REVOKE_ON_EXIT", "flag", False,
       "Revoke leases and the store token when CMD (or render --watch) exits.", _WATCHES),
    _o("deadline", ["--deadline"], "SHIM_DEADLINE", "duration", 60.0,
       "Total time for resolution including retries (default 60s).", _RESOLVING,
       metavar="DURATION"),
    _o("max_age", ["--max-age"], "SHIM_MAX_AGE", "duration", None,
       "Rotation policy: log secrets older than this (secret.rotation_overdue).", _RESOLVING,
       metavar="DURATION"),
    _o("enforce_max_age", ["--enforce-max-age"], "SHIM_ENFORCE_MAX_AGE", "flag", False,
       "Refuse (78) secrets older than their max age.", _RESOLVING),
    _o("audit_file", ["--audit-file"], "SHIM_AUDIT_FILE", "path", None,
       "Append every audit event as JSON to this file (created 0600).", _RESOLVING),
    _o("log_format", ["--log-format"], "SHIM_LOG_FORMAT", "choice", "text",
       "stderr log format.", _RESOLVING, choices=("text", "json")),
    _o("log_level", [], "SHIM_LOG_LEVEL", "choice", None,
       "Log threshold when neither -v nor -q is given (an unknown word is ignored).",
       _RESOLVING, choices=("debug", "info", "warning", "error")),
    _o("quiet", ["-q", "--quiet"], None, "count", 0, "Quieter.", _RESOLVING),
    _o("verbose", ["-v", "--verbose"], None, "count", 0, "More verbose.", _RESOLVING),
    # --as-files (shim/delivery/asfiles.py): exec, and check shows the delivery
    _o("as_files", ["--as-files"], "SHIM_AS_FILES", "text", None,
       "Deliver secrets as files DIR/NAME (tmpfs); the program gets NAME_FILE.",
       {"exec", "check"}, metavar="DIR"),
    _o("as_files_only", ["--as-files-only"], "SHIM_AS_FILES_ONLY", "list", frozenset(),
       "Only these variables as files (default: every variable shim resolves).",
       {"exec", "check"}, metavar="NAMES"),
    _o("as_files_allow_disk", ["--as-files-allow-disk"], "SHIM_AS_FILES_ALLOW_DISK", "flag", False,
       "Allow an --as-files DIR that is not on tmpfs or ramfs.", {"exec", "check"}),
    # --fallback-cache (shim/pipeline/fallback.py): last-known-good values of remote stores, encrypted
    _o("fallback_cache", ["--fallback-cache"], "SHIM_FALLBACK_CACHE", "text", None,
       "Keep the values read from remote stores, encrypted, in DIR; serve them when a store "
       "is unreachable (69).", _RESOLVING, metavar="DIR"),
    _o("fallback_key_file", ["--fallback-key-file"], "SHIM_FALLBACK_KEY_FILE", "path", None,
       "The age identity (X25519) the fallback cache is encrypted to.", _RESOLVING),
    _o("fallback_max_age", ["--fallback-max-age"], "SHIM_FALLBACK_MAX_AGE", "duration", 86400.0,
       "Serve a cached value only when younger than this (default 24h; 0: never).",
       _RESOLVING, metavar="DURATION"),
    # --template (shim/delivery/templates.py): secrets into config files of the user's own shape
    _o("templates", ["--template"], "SHIM_TEMPLATES", "list", (),
       "Render the Jinja2 template SRC into DEST before the program starts, and again when "
       "--watch sees its text change (repeatable; the variable takes a ',' list).", {"exec", "render", "check"}, metavar="SRC:DEST",
       multiple=True),
    _o("template_mode", ["--template-mode"], "SHIM_TEMPLATE_MODE", "mode", 0o400,
       "Mode of the files --template writes, octal (default 0400).", {"exec", "render", "check"},
       metavar="OCTAL"),
    _o("template_allow_disk", ["--template-allow-disk"], "SHIM_TEMPLATE_ALLOW_DISK", "flag",
       False, "Allow a --template DEST that is not on tmpfs or ramfs.",
       {"exec", "render", "check"}),
    # check
    _o("as_json", ["--json"], None, "flag", False, "Print the plan as JSON.", {"check"}),
    # render
    _o("directory", ["--dir"], "SHIM_RENDER_DIR", "dir", None,
       "Write each secret variable to DIR/<NAME> (DIR must exist).",
       {"render"}),
    _o("out_env_file", ["--env-file"], "SHIM_RENDER_ENV_FILE", "path", None,
       "Write every secret variable into this one env file.", {"render"}),
    _o("file_format", ["--format"], "SHIM_RENDER_FORMAT", "choice", "dotenv",
       "Format of --env-file; github-actions / azure-pipelines export to that CI.", {"render"},
       choices=("dotenv", "shell", "json", "github-actions", "azure-pipelines")),
    _o("mode", ["--mode"], "SHIM_RENDER_MODE", "mode", 0o400,
       "File mode, octal 0000-0777 (default 0400).", {"render"}, metavar="OCTAL"),
    _o("owner", ["--owner"], "SHIM_RENDER_OWNER", "user", None, "Owner of the files.",
       {"render"}, metavar="USER[:GROUP]"),
    _o("pid_file", ["--pid-file"], "SHIM_PID_FILE", "path", None,
       "Process to signal for --on-change signal:NAME.", {"render"}),
)

BY_NAME = {option.name: option for option in OPTIONS}


def options_of(command: str) -> tuple[Option, ...]:
    return tuple(option for option in OPTIONS if command in option.commands)


def refused_flags(command: str) -> dict[str, Option]:
    """Flags other pipeline commands take and this one does not: each is a usage error."""
    own = {flag for option in options_of(command) for flag in option.flags_of(command)}
    refused: dict[str, Option] = {}
    for option in OPTIONS:
        for other in sorted(option.commands - {command}):
            for flag in option.flags_of(other):
                if flag not in own:
                    refused.setdefault(flag, option)
    return refused


# `check` takes every flag of `exec` (people copy the ENTRYPOINT's line into it): those that
# cannot apply to a run that starts nothing are named once on stderr, not refused.
ACCEPTS_FLAGS_OF = {"check": "exec"}


def ignored_flags(command: str) -> dict[str, Option]:
    """Flags `command` accepts and ignores: another command's flags it takes as they are."""
    other = ACCEPTS_FLAGS_OF.get(command)
    return {flag: option for flag, option in refused_flags(command).items()
            if other in option.commands and flag in option.flags_of(other)}


def commands_taking(flag: str) -> tuple[str, ...]:
    """The pipeline commands that accept `flag` (as they spell it)."""
    return tuple(command for command in PIPELINE_COMMANDS
                 if any(command in option.commands and flag in option.flags_of(command)
                        for option in OPTIONS))


def split_paths(text: str) -> list[str]:
    """A path list from an environment variable: ':' or ',' between paths."""
    return [item.strip() for item in text.replace(",", ":").split(":") if item.strip()]


def split_names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class Options:
    """One command's options, parsed: an attribute per row of OPTIONS (its kind says the type),
    plus `command`. Read-only; `replace()` makes a changed copy. An option the command does not
    take keeps the table's default.
    """

    __slots__ = ("command", *BY_NAME)

    def __init__(self, command: str, **values):
        unknown = set(values) - set(BY_NAME)
        if unknown:
            raise TypeError(f"not options: {', '.join(sorted(unknown))}")
        object.__setattr__(self, "command", command)
        for name, option in BY_NAME.items():
            object.__setattr__(self, name, values.get(name, option.default))

    def __setattr__(self, name, value):
        raise AttributeError(f"Options are read-only (tried to set {name})")

    def replace(self, **changes) -> "Options":
        values = {name: getattr(self, name) for name in BY_NAME}
        values.update(changes)
        return Options(self.command, **values)

    def __repr__(self) -> str:
        return f"Options({self.command!r})"   # never the values: a path or REF may be private


def parse_options(command: str, raw: Mapping[str, object],
                  environ: Mapping[str, str] = os.environ) -> Options:
    """Options from the raw values of the command line (or its SHIM_* variables).

    `raw` holds strings as given (None when absent); environment-only settings
    (SHIM_SKIP, SHIM_LOG_LEVEL) are read from `environ` here, once.
    """
    values: dict[str, object] = {}
    for option in options_of(command):
        if option.flags:
            text = raw.get(option.name)
        else:
            text = environ.get(option.env or "", "")
        values[option.name] = _parse(option, text, command)
    if values.get("imports"):
        values["imports"] = parse_imports(values["imports"])
    if values.get("templates"):
        from shim.delivery.templates import parse_specs  # lazy: only with --template
        values["templates"] = parse_specs(values["templates"])
    if "on_change" in values:
        values["on_change"] = parse_change_action(values["on_change"], command)
    values["log_level"] = _log_level(values)
    return Options(command=command, **values)


def _parse(option: Option, text, command: str):
    kind, flag = option.kind, (option.flags_of(command) or (option.env,))[-1]
    if kind in ("flag", "count"):
        return text or option.default
    if kind == "paths":
        return tuple(text or ()) or option.default
    if kind == "list":
        items = [text] if isinstance(text, str) else list(text or ())
        names = [name for item in items for name in split_names(item)]
        return frozenset(names) if isinstance(option.default, frozenset) else tuple(names)
    if kind == "choice":
        if option.flags:
            return text or option.default
        word = (text or "").lower()
        return word if word in option.choices else option.default
    if text == "" and option.name == "user":
        return ""          # --user '': the caller's own uid (docs/privileges.md), not "no --user"
    if text is None or text == "":
        return option.default
    if kind == "duration":
        if option.name == "fallback_max_age" and text.strip() == "0":
            return 0.0     # documented: 0 turns serving from the cache off
        return parse_duration(text, option=flag)
    if kind == "signal":
        return parse_signal(text, flag)
    if kind == "mode":
        return parse_mode(text, flag)
    if kind == "action":
        return text        # checked in parse_change_action, which needs the command
    if kind == "text" and option.name == "placeholder_source":
        return parse_placeholder_source(text)
    return text


def parse_signal(text: str, option: str) -> int:
    """SIGHUP, HUP or 1 -> 1; a UsageError for anything else."""
    name = text.strip().upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name)).value
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name].value
    except (KeyError, ValueError):
        raise UsageError(f"{option}: {text!r} is not a signal", hint="write e.g. TERM, HUP or 15") from None


def parse_mode(text: str, option: str = "--mode") -> int:
    """An octal permission mode 0000-0777: no setuid, setgid or sticky bit, nothing negative."""
    digits = text.strip()
    if not digits or not all(char in "01234567" for char in digits):
        raise UsageError(f"{option} {text!r} is not an octal mode", hint="write e.g. 0400 or 0440")
    mode = int(digits, 8)
    if mode > 0o777:
        raise UsageError(f"{option} {text!r} is outside 0000-0777",
                         hint="setuid, setgid and sticky bits are not allowed on secret files")
    return mode


def parse_placeholder_source(text: str):
    source = parse_reference(text)
    if source.selector:
        raise UsageError("--placeholder-source must not select a key",
                         hint="drop the #key part: the placeholder's key is the selector")
    return source


def parse_imports(texts) -> tuple:
    """--import REF...: each a reference to a whole map (shim/pipeline/imports.py)."""
    imports = []
    for text in texts:
        try:
            imports.append(parse_import_reference(text))
        except UsageError as error:
            raise UsageError(f"--import: {error.message}", hint=error.hint) from None
    return tuple(imports)


def parse_change_action(text: str | None, command: str) -> tuple[str, object] | None:
    """--on-change: ("restart",) ("exit",) ("signal", n) ("run", argv), checked per command."""
    if not text:
        return ("restart", None) if command == "exec" else None
    kind, _, argument = text.partition(":")
    allowed = ("restart", "signal", "exit") if command == "exec" else ("signal", "run")
    if kind not in allowed:
        raise UsageError(f"--on-change: {text!r} is not an action for {command}",
                         hint="use one of: " + ", ".join(
                             a + (":NAME" if a == "signal" else ":CMD" if a == "run" else "")
                             for a in allowed))
    if kind == "signal":
        return ("signal", parse_signal(argument, "--on-change signal"))
    if kind == "run":
        import shlex  # lazy: only for --on-change run:CMD
        argv = shlex.split(argument)
        if not argv:
            raise UsageError("--on-change run: needs a command", hint="write run:CMD ARGS")
        return ("run", argv)
    if argument:
        raise UsageError(f"--on-change {kind} takes no argument", hint=f"write {kind}")
    return (kind, None)


def _log_level(values: Mapping[str, object]) -> str | None:
    if values.get("verbose"):
        return "debug" if values["verbose"] > 1 else "info"
    if values.get("quiet"):
        return "error"
    return values.get("log_level")
