"""Command line: parse options, run the pipeline, map every failure to its exit code.

Plan -> Resolution -> Environment -> Launch is the same for every command;
each command only chooses the ending (exec, print, write files, run).
"""

from __future__ import annotations

import os
import sys
import click

from shim.errors import ConfigError, PermissionDenied, ShimError, UsageError

EXIT_USAGE = 64
EXIT_INTERNAL = 70   # EX_SOFTWARE: a bug in the shim (reported without details)


class _CommaList(click.ParamType):
    """A repeatable option whose environment variable is comma-separated."""
    name = "list"
    envvar_list_splitter = ","

    def split_envvar_value(self, rv: str):
        return [item.strip() for item in rv.split(",") if item.strip()]


_PATHS = click.Path(dir_okay=True)  # click splits its env var on ':'


def _shared_options(function=None, *, input_env_file_option="--env-file"):
    """The options of exec, check, render and run (each also read from SHIM_*)."""
    if function is None:
        return lambda f: _shared_options(f, input_env_file_option=input_env_file_option)
    options = [
        click.option("--user", envvar="SHIM_USER", metavar="USER[:GROUP]",
                     help="Drop to this user before exec (gosu semantics)."),
        click.option(input_env_file_option, "env_files", multiple=True, type=_PATHS,
                     envvar="SHIM_ENV_FILE", help="Dotenv file to load first (repeatable)."),
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
        click.option("--stop-timeout", envvar="SHIM_STOP_TIMEOUT", default="10s", metavar="DURATION",
                     help="After the stop signal, wait this long before SIGKILL."),
        click.option("--stop-signal", envvar="SHIM_STOP_SIGNAL", default="TERM", metavar="SIGNAL",
                     help="Signal that asks CMD to stop on restart (default TERM)."),
        click.option("--forward-to", envvar="SHIM_FORWARD_TO", default="group",
                     type=click.Choice(["group", "child"]),
                     help="--init: forward signals to CMD's process group (default) or CMD only."),
        click.option("--revoke-on-exit", is_flag=True, envvar="SHIM_REVOKE_ON_EXIT",
                     help="Revoke leases and the store token when CMD (or render --watch) exits."),
        click.option("--deadline", envvar="SHIM_DEADLINE", default="60s", metavar="DURATION",
                     help="Total time for resolution including retries."),
        click.option("--max-age", envvar="SHIM_MAX_AGE", metavar="DURATION",
                     help="Rotation policy: log secrets older than this (secret.rotation_overdue)."),
        click.option("--enforce-max-age", is_flag=True, envvar="SHIM_ENFORCE_MAX_AGE",
                     help="Refuse (78) secrets older than their max age."),
        click.option("--audit-file", envvar="SHIM_AUDIT_FILE", type=click.Path(dir_okay=False),
                     help="Append every audit event as JSON to this file (created 0600)."),
        click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                     envvar="SHIM_LOG_FORMAT", help="stderr log format."),
        click.option("-q", "--quiet", "quiet", count=True, help="Quieter."),
        click.option("-v", "--verbose", "verbose", count=True, help="More verbose."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class Run:
    """Everything a command needs, built once from its options."""

    def __init__(self, options: dict, log, settings, deadline_seconds: float):
        self.options = options
        self.log = log
        self.settings = settings
        self.deadline_seconds = deadline_seconds
        self.environ: dict | None = None


def _prepare(options: dict, *, command: str) -> Run:
    from shim.audit import Log
    from shim.durations import parse_duration
    from shim.plan import Settings
    from shim.refs import parse_reference

    deadline_seconds = parse_duration(options["deadline"], option="--deadline")
    options["max_age_seconds"] = parse_duration(options["max_age"], option="--max-age") \
        if options.get("max_age") else None
    try:
        log = Log(options["log_format"], _log_level(options), audit_file=options.get("audit_file"))
    except OSError as error:
        raise PermissionDenied(f"--audit-file {options['audit_file']}: cannot open it ({error.strerror})",
                               hint="point it at a writable location") from None
    options["watch_seconds"] = parse_duration(options["watch"], option="--watch") \
        if options.get("watch") else None
    options["stop_timeout_seconds"] = parse_duration(options["stop_timeout"], option="--stop-timeout")
    options["stop_signal_number"] = _signal_option(options["stop_signal"], "--stop-signal")
    options["change_action"] = _change_action(options.get("on_change"), command)
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


def _signal_option(text: str, option: str) -> int:
    """SIGHUP, HUP or 1 -> 1; a UsageError for anything else."""
    import signal
    name = text.strip().upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name)).value
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name].value
    except (KeyError, ValueError):
        raise UsageError(f"{option}: {text!r} is not a signal", hint="write e.g. TERM, HUP or 15") from None


def _change_action(text: str | None, command: str) -> tuple[str, object] | None:
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
        return ("signal", _signal_option(argument, "--on-change signal"))
    if kind == "run":
        import shlex
        argv = shlex.split(argument)
        if not argv:
            raise UsageError("--on-change run: needs a command", hint="write run:CMD ARGS")
        return ("run", argv)
    if argument:
        raise UsageError(f"--on-change {kind} takes no argument", hint=f"write {kind}")
    return (kind, None)


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


def _provider_pool(run: Run):
    from shim.environment import starting_environment
    from shim.providers.base import ProviderContext
    from shim.resolve import ProviderPool

    run.environ = starting_environment()
    settings = {"max_age": run.options["max_age_seconds"]}
    return ProviderPool(ProviderContext(run.environ, run.log, settings))


def _resolve(run: Run, pool=None, reuse=None):
    """Plan and Resolution, with every failure collected (sorted by variable)."""
    from shim.deadline import Deadline
    from shim.plan import build_plan
    from shim.resolve import resolve_plan

    from shim.audit import record_resolution

    if pool is None:
        pool = _provider_pool(run)
    plan = build_plan(run.environ, run.settings)
    resolution = resolve_plan(plan, pool, Deadline(run.deadline_seconds), reuse)
    record_resolution(run.log, resolution)
    rotation_errors = []
    if run.options["max_age_seconds"] or any(ref.option("max_age") for ref in plan.references()):
        from shim.rotation import check_rotation
        rotation_errors = check_rotation(resolution, max_age=run.options["max_age_seconds"],
                                         enforce=run.options["enforce_max_age"], log=run.log)
    errors = plan.errors + resolution.errors + rotation_errors
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


class _LazyGroup(click.Group):
    """Commands defined in their own modules, imported only when that command runs.

    `shim exec` at container start must not pay for building the other commands' options
    (about 1 ms each) nor for the scanner's imports.
    """

    lazy = {
        "check": "shim.report:check_command",
        "render": "shim.render:render_command",
        "scan": "shim.scan:scan_command",
        "run": "shim.devenv:run_command",
        "dev-init": "shim.devenv:dev_init_command",
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            import importlib
            module_name, attribute = self.lazy[name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as error:
                if error.name != module_name:
                    raise
                return None
            self.add_command(getattr(module, attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shim", prog_name="shim")
def cli():
    """Put secrets where programs expect them, then run them as the right user."""


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@_shared_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_command(command, **options):
    """Resolve the environment, drop privileges, execve CMD (keeps the PID)."""
    from shim import privileges
    from shim.launch import exec_command as execve, reset_reserved_signals

    run = _prepare(options, command="exec")
    # Before any drop (here or in --init's child): this may import ctypes, and after the
    # drop to --user the interpreter's own files need not be readable.
    reset_reserved_signals()
    if options["no_new_privs"]:
        # set_no_new_privs() runs after the drop to --user, when the interpreter's own files
        # may no longer be readable: load what it imports (lazily, ~1.5 ms) now.
        import ctypes  # noqa: F401
    identity = _target_identity(run)
    pool = _provider_pool(run)
    plan, resolution, errors = _resolve(run, pool)
    if errors:
        sys.exit(_report(run, errors))
    env = _child_env(run, plan, resolution, identity)
    if options["init"] or options["watch_seconds"]:
        sys.exit(_supervise(run, command, env, identity, pool, resolution))
    if identity is not None:
        privileges.drop_privileges(identity)
        _log_dropped(run, identity)
    if options["no_new_privs"]:
        privileges.set_no_new_privs()
    run.log.event("exec", "info", command=command[0], uid=os.getuid(), gid=os.getgid(),
                  variables=sorted(plan.entries))
    execve(command, env)


def _log_dropped(run: Run, identity) -> None:
    run.log.event("privileges.dropped", "info", user=identity.name, uid=identity.uid,
                  gid=identity.gid, groups=list(identity.groups))


def _child_env(run: Run, plan, resolution, identity) -> dict:
    from shim.environment import child_environment

    env = child_environment(plan, resolution, keep_file_vars=run.options["keep_file_vars"],
                            passthrough=run.options["passthrough"])
    if identity is not None:
        env["HOME"] = identity.home
    return env


def _supervise(run: Run, command, env, identity, pool, resolution) -> int:
    """--init (and --watch): stay as PID 1, supervise CMD, restart it on a change."""
    from shim import privileges
    from shim.supervise import Supervisor
    from shim.watch import Watcher

    options = run.options
    watching = options["watch_seconds"] is not None
    if identity is not None and not watching:
        # Nothing to re-read later: the supervisor gives up root as well. Supervisor.install()
        # imports ctypes lazily; after the drop the interpreter's files may be unreadable.
        import ctypes  # noqa: F401
        privileges.drop_privileges(identity)
        _log_dropped(run, identity)

    def prepare_child(child_env):
        if identity is not None and watching:
            privileges.drop_privileges(identity)
        if options["no_new_privs"]:
            privileges.set_no_new_privs()

    supervisor = Supervisor(command, log=run.log, forward_to_group=options["forward_to"] == "group",
                            stop_signal=options["stop_signal_number"],
                            stop_timeout=options["stop_timeout_seconds"], prepare_child=prepare_child)
    supervisor.install()
    supervisor.start(env)
    if not watching:
        supervisor.hand_over()
        return supervisor.run()

    def re_resolve(reuse):
        plan, new_resolution, errors = _resolve(run, pool, reuse)
        if errors:
            return None, errors, []
        return _child_env(run, plan, new_resolution, identity), [], new_resolution.lease_metas()

    action, argument = options["change_action"]

    def apply(new_env, changed):
        if action == "restart":
            supervisor.restart(new_env)
        elif action == "signal":
            supervisor.deliver(argument)
        else:
            supervisor.stop_and_exit()

    watcher = Watcher(resolve=re_resolve, current=env, interval=options["watch_seconds"],
                      apply=apply, log=run.log, pool=pool, deadline_seconds=run.deadline_seconds)
    watcher.track(resolution.lease_metas())
    try:
        return supervisor.run(tick=watcher.tick, next_tick=watcher.next_tick)
    finally:
        if options["revoke_on_exit"]:
            watcher.revoke_all()


def main(argv=None) -> None:
    """Entry point: click's usage errors exit 64, ours their own code, bugs 70."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cli.main(args=args, prog_name="shim", standalone_mode=False)
    except click.exceptions.UsageError as error:
        click.echo(f"shim: error: {error.format_message()}", err=True)
        if error.ctx is not None:
            click.echo(f"shim: try '{error.ctx.command_path} --help'", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.ClickException as error:
        click.echo(f"shim: error: {error.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        sys.exit(130)
    except ShimError as error:
        _print_error(error, args)
        sys.exit(error.exit_code)
    except SystemExit:
        raise
    except Exception as error:  # a bug: say so without a traceback, which may hold a value
        click.echo(f"shim: internal error ({type(error).__name__}); please report it", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)


def _print_error(error: ShimError, args) -> None:
    """An error raised before the log existed (bad option values), in the asked-for format."""
    import json
    if os.environ.get("SHIM_LOG_FORMAT") == "json" or _option_value(args, "--log-format") == "json":
        record = {"level": "error", "event": "error", "message": error.line(),
                  "exit_code": error.exit_code, "failure": error.kind}
        sys.stderr.write(json.dumps(record) + "\n")
    else:
        sys.stderr.write(f"shim: error: {error.line()}\n")


def _option_value(args, name):
    """The value of `name VALUE` or `name=VALUE` before `--` (the command's own arguments)."""
    for index, item in enumerate(args):
        if item == "--":
            return None
        if item.startswith(name + "="):
            return item[len(name) + 1:]
        if item == name and index + 1 < len(args):
            return args[index + 1]
    return None
