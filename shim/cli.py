"""Command line: parse options, run the pipeline, map every failure to its exit code.

Plan -> Resolution -> Environment -> Launch is the same for every command;
each command only chooses the ending (exec, print, write files, run).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import click

from shim.errors import ConfigError, ShimError, UsageError

EXIT_USAGE = 64
EXIT_INTERNAL = 70   # EX_SOFTWARE: a bug in the shim (reported without details)


class _CommaList(click.ParamType):
    """A repeatable option whose environment variable is comma-separated."""
    name = "list"
    envvar_list_splitter = ","

    def split_envvar_value(self, rv: str):
        return [item.strip() for item in rv.split(",") if item.strip()]


_PATHS = click.Path(dir_okay=True)  # click splits its env var on ':'


def _shared_options(function):
    options = [
        click.option("--user", envvar="SHIM_USER", metavar="USER[:GROUP]",
                     help="Drop to this user before exec (gosu semantics)."),
        click.option("--env-file", "env_files", multiple=True, type=_PATHS, envvar="SHIM_ENV_FILE",
                     help="Dotenv file to load first (repeatable)."),
        click.option("--secrets-dir", "secrets_dirs", multiple=True, type=_PATHS,
                     envvar="SHIM_SECRETS_DIR",
                     help="Trusted directory for NAME_FILE paths and placeholders (default /run/secrets)."),
        click.option("--file-vars", envvar="SHIM_FILE_VARS", default="",
                     help="Comma list of NAMEs whose NAME_FILE is always resolved; * for all."),
        click.option("--placeholder-source", envvar="SHIM_PLACEHOLDER_SOURCE", metavar="REF",
                     help="Reference without a key; a placeholder's key is its selector."),
        click.option("--allow-placeholders", is_flag=True, envvar="SHIM_ALLOW_PLACEHOLDERS",
                     help="Development only: keep unresolved placeholders, with a warning."),
        click.option("--keep-file-vars", is_flag=True, envvar="SHIM_KEEP_FILE_VARS",
                     help="Keep NAME_FILE in the child's environment."),
        click.option("--passthrough", multiple=True, type=_CommaList(), envvar="SHIM_PASSTHROUGH",
                     help="Keep a provider credential variable that is scrubbed by default."),
        click.option("--require-non-root", is_flag=True, envvar="SHIM_REQUIRE_NON_ROOT",
                     help="Refuse to run CMD as uid 0."),
        click.option("--no-new-privs", is_flag=True, envvar="SHIM_NO_NEW_PRIVS",
                     help="Set PR_SET_NO_NEW_PRIVS before exec."),
        click.option("--init", "init", is_flag=True, envvar="SHIM_INIT",
                     help="Stay as a minimal PID 1 supervising CMD."),
        click.option("--watch", envvar="SHIM_WATCH", metavar="DURATION",
                     help="Re-resolve every DURATION and apply --on-change."),
        click.option("--on-change", envvar="SHIM_ON_CHANGE", metavar="ACTION",
                     help="restart | signal:NAME | exit (render: signal:NAME | run:CMD)."),
        click.option("--deadline", envvar="SHIM_DEADLINE", default="60s", metavar="DURATION",
                     help="Total time for resolution including retries."),
        click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                     envvar="SHIM_LOG_FORMAT", help="stderr log format."),
        click.option("-q", "--quiet", "quiet", count=True, help="Quieter."),
        click.option("-v", "--verbose", "verbose", count=True, help="More verbose."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@dataclass
class Run:
    """Everything a command needs, built once from its options."""
    options: dict
    log: object
    settings: object
    deadline_seconds: float


def _prepare(options: dict, *, command: str) -> Run:
    from shim.audit import Log
    from shim.durations import parse_duration
    from shim.plan import Settings
    from shim.refs import parse_reference

    log = Log(options["log_format"], _log_level(options))
    deadline_seconds = parse_duration(options["deadline"], option="--deadline")
    for name in ("init", "watch", "on_change"):
        if options.get(name):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is not available yet in this version of shim",
                             hint=f"drop {flag}; see CHANGELOG.md for when it lands")
    source = None
    if options["placeholder_source"]:
        source = parse_reference(options["placeholder_source"])
        if source.selector:
            raise UsageError("--placeholder-source must not select a key",
                             hint="drop the #key part: the placeholder's key is the selector")
    secrets_dirs = tuple(options["secrets_dirs"]) or ("/run/secrets",)
    file_vars = frozenset(n.strip() for n in options["file_vars"].split(",") if n.strip())
    skip = frozenset(n.strip() for n in os.environ.get("SHIM_SKIP", "").split(",") if n.strip())
    settings = Settings(env_files=tuple(options["env_files"]), secrets_dirs=secrets_dirs,
                        file_vars=file_vars, placeholder_source=source,
                        allow_placeholders=options["allow_placeholders"], skip=skip)
    return Run(options, log, settings, deadline_seconds)


def _log_level(options: dict) -> str | None:
    if options.get("verbose"):
        return "debug" if options["verbose"] > 1 else "info"
    if options.get("quiet"):
        return "error"
    level = os.environ.get("SHIM_LOG_LEVEL", "").lower()
    return level if level in ("debug", "info", "warning", "error") else None


def _target_identity(run: Run):
    """The identity CMD will run as, checked before anything is resolved."""
    from shim import privileges

    privileges.check_not_setuid()
    identity = None
    if run.options["user"]:
        identity = privileges.resolve_identity(run.options["user"])
        privileges.ensure_may_switch(identity)
    if run.options["require_non_root"]:
        if identity is not None:
            privileges.refuse_root(identity)
        elif os.getuid() == 0:
            raise ConfigError("--require-non-root: the command would run as root (no --user given)",
                              hint="set --user to a non-root user or uid")
    return identity


def _resolve(run: Run):
    """Plan and Resolution, with every failure collected (sorted by variable)."""
    from shim.deadline import Deadline
    from shim.plan import build_plan
    from shim.providers.base import ProviderContext
    from shim.resolve import ProviderPool, resolve_plan

    from shim.environment import starting_environment

    environ = starting_environment()
    plan = build_plan(environ, run.settings)
    pool = ProviderPool(ProviderContext(environ, run.log))
    resolution = resolve_plan(plan, pool, Deadline(run.deadline_seconds))
    errors = plan.errors + resolution.errors
    errors.sort(key=lambda error: (error.variable or "", error.line()))
    for entry in plan.entries.values():
        for token in entry.kept_placeholders:
            run.log.warning(f"{entry.name}: placeholder {token} left in place (--allow-placeholders)",
                            event="placeholder.kept", variable=entry.name)
    return plan, resolution, errors


def _report(run: Run, errors) -> int:
    for error in errors:
        run.log.error(error, event="secret.failed" if error.variable else "error")
    return errors[0].exit_code


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shim", prog_name="shim")
def cli():
    """Put secrets where programs expect them, then run them as the right user."""


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@_shared_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_command(command, **options):
    """Resolve the environment, drop privileges, execve CMD (keeps the PID)."""
    from shim import privileges
    from shim.environment import child_environment
    from shim.launch import exec_command as execve

    run = _prepare(options, command="exec")
    identity = _target_identity(run)
    plan, resolution, errors = _resolve(run)
    if errors:
        sys.exit(_report(run, errors))
    env = child_environment(plan, resolution, keep_file_vars=options["keep_file_vars"],
                            passthrough=options["passthrough"])
    if identity is not None:
        privileges.drop_privileges(identity)
        env["HOME"] = identity.home
        run.log.event("privileges.dropped", "debug", uid=identity.uid, gid=identity.gid)
    if options["no_new_privs"]:
        privileges.set_no_new_privs()
    run.log.event("exec", "debug", command=command[0])
    execve(command, env)


@cli.command("check")
@_shared_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def check_command(as_json, **options):
    """Resolve exactly as exec would and print the plan; never a value."""
    from shim.report import plan_rows, print_json, print_table

    run = _prepare(options, command="check")
    identity_errors = []
    try:
        _target_identity(run)
    except ShimError as error:
        identity_errors.append(error)
    plan, resolution, errors = _resolve(run)
    errors = identity_errors + errors
    rows = plan_rows(plan, resolution)
    if as_json:
        print_json(rows, errors)
    else:
        print_table(rows)
    if errors:
        sys.exit(_report(run, errors))


def main(argv=None) -> None:
    """Entry point: click's usage errors exit 64, ours their own code, bugs 70."""
    try:
        cli.main(args=argv, prog_name="shim", standalone_mode=False)
    except click.exceptions.UsageError as error:
        click.echo(f"shim: error: {error.format_message()}", err=True)
        if error.ctx is not None:
            click.echo(f"shim: try 'shim {error.ctx.info_name} --help'", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.ClickException as error:
        click.echo(f"shim: error: {error.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        sys.exit(130)
    except ShimError as error:
        _print_error(error)
        sys.exit(error.exit_code)
    except SystemExit:
        raise
    except Exception as error:  # a bug: say so without echoing data that may hold a secret
        click.echo(f"shim: internal error ({type(error).__name__}); please report it", err=True)
        if os.environ.get("SHIM_DEBUG_TRACEBACK") == "1":
            raise
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)


def _print_error(error: ShimError) -> None:
    import json
    if os.environ.get("SHIM_LOG_FORMAT") == "json" or "--log-format=json" in sys.argv or \
            _option_value(sys.argv, "--log-format") == "json":
        record = {"level": "error", "event": "error", "message": error.line(),
                  "exit_code": error.exit_code, "failure": error.kind}
        sys.stderr.write(json.dumps(record) + "\n")
    else:
        sys.stderr.write(f"shim: error: {error.line()}\n")


def _option_value(argv, name):
    for index, item in enumerate(argv[:-1]):
        if item == "--":
            return None
        if item == name:
            return argv[index + 1]
    return None
