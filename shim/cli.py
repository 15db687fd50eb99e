"""Command line: declare the commands, map every failure to its exit code.

The options come from one table (shim.options), the work from shim.pipeline:
Plan -> Resolution -> Environment -> Launch is the same for every command;
each command only chooses the ending (exec, print, write files, run).
"""

from __future__ import annotations

import os
import sys

import click

from shim import privileges
from shim.errors import ShimError
from shim.launch import exec_command as execve, reset_reserved_signals
from shim.options import Option, commands_taking, options_of, parse_options, refused_flags, split_names, split_paths
from shim.pipeline import Pipeline

EXIT_USAGE = 64
EXIT_INTERNAL = 70   # EX_SOFTWARE: a bug in the shim (reported without details)


class _CommaList(click.ParamType):
    """A repeatable option whose environment variable is comma-separated."""
    name = "list"

    def split_envvar_value(self, rv: str):
        return split_names(rv)


class _PathList(click.ParamType):
    """A repeatable path option whose environment variable takes ':' or ',' between paths."""
    name = "path"

    def split_envvar_value(self, rv: str):
        return split_paths(rv)


def _click_option(option: Option, command: str):
    """The click option for one row of the option table, as `command` spells it."""
    flags = option.flags_of(command)
    kwargs = {"envvar": option.env, "help": option.help_of(command)}
    if option.metavar:
        kwargs["metavar"] = option.metavar
    if option.kind == "flag":
        kwargs["is_flag"] = True
    elif option.kind == "count":
        kwargs["count"] = True
    elif option.kind == "choice":
        kwargs.update(type=click.Choice(list(option.choices)), default=option.default)
    elif option.kind == "paths":
        kwargs.update(type=_PathList(), multiple=True)
    elif option.kind == "list" and option.multiple:
        kwargs.update(type=_CommaList(), multiple=True)
    elif option.kind == "path":
        kwargs["type"] = click.Path(dir_okay=option.name == "directory",
                                    file_okay=option.name != "directory")
    return click.option(*flags, option.name, **kwargs)


def _refusal(command: str, flag: str, option: Option):
    """A hidden option that turns `flag` (and, for some, its SHIM_* variable) into a usage
    error naming the command."""
    takers = ", ".join(commands_taking(flag))
    env = option.env if command in option.env_refused_by else None

    def refuse(ctx, param, value):
        if value not in (None, False, "", ()):
            given = flag if ctx.get_parameter_source(param.name).name != "ENVIRONMENT" else env
            raise click.UsageError(f"{command} does not take {given} (only {takers})", ctx=ctx)
        return value

    takes_value = option.kind not in ("flag", "count")
    return click.option(flag, "_refused_" + flag.lstrip("-").replace("-", "_"), hidden=True,
                        is_flag=not takes_value, envvar=env, expose_value=False, callback=refuse)


def command_options(command: str):
    """Decorator: the options `command` honours (from shim.options.OPTIONS), and a usage
    error for each option another pipeline command takes and this one does not."""
    def decorate(function):
        for flag, option in sorted(refused_flags(command).items(), reverse=True):
            function = _refusal(command, flag, option)(function)
        for option in reversed(options_of(command)):
            if option.flags:
                function = _click_option(option, command)(function)
        return function
    return decorate


def pipeline_for(command: str, raw: dict, **replaced) -> Pipeline:
    """The Pipeline of one run of `command` from click's raw values."""
    options = parse_options(command, raw)
    if replaced:
        options = options.replace(**replaced)
    return Pipeline(options)


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
@command_options("exec")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_command(command, **raw):
    """Resolve the environment, drop privileges, execve CMD (keeps the PID)."""
    run = pipeline_for("exec", raw)
    options = run.options
    # Before any drop (here or in --init's child): this may import ctypes, and after the
    # drop to --user the interpreter's own files need not be readable.
    reset_reserved_signals()
    if options.no_new_privs:
        # set_no_new_privs() runs after the drop to --user, when the interpreter's own files
        # may no longer be readable: load what it imports (lazily, ~1.5 ms) now.
        import ctypes  # noqa: F401
    identity = run.target_identity()
    if options.watch is not None:
        # The supervisor lives as long as the container: every resolution, the first
        # included, runs in a helper process, so no store SDK is ever loaded here.
        env, errors, leases = run.resolve_elsewhere("environment")
        if errors:
            run.fail(errors)
        run.warn_if_root(identity)
        sys.exit(_supervise(run, command, _with_home(env, identity), identity, leases))
    resolved = run.resolve()
    if resolved.errors:
        run.fail(resolved.errors)
    run.warn_if_root(identity)
    env = run.child_environment(resolved, identity)
    if options.init:
        sys.exit(_supervise(run, command, env, identity, []))
    if identity is not None:
        privileges.drop_privileges(identity)
        run.log_dropped(identity)
    if options.no_new_privs:
        privileges.set_no_new_privs()
    run.log.event("exec", "info", command=command[0], uid=os.getuid(), gid=os.getgid(),
                  variables=sorted(resolved.plan.entries))
    execve(command, env)


def _with_home(env: dict, identity) -> dict:
    """The child's environment from a helper, with HOME set as Pipeline.child_environment does."""
    if identity is not None:
        env = dict(env, HOME=identity.home)
    return env


def _supervise(run: Pipeline, command, env, identity, leases) -> int:
    """--init (and --watch): stay as PID 1, supervise CMD, restart it on a change."""
    from shim.supervise import Supervisor   # only for --init/--watch

    options = run.options
    watching = options.watch is not None
    if identity is not None and not watching:
        # Nothing to re-read later: the supervisor gives up root as well. Supervisor.install()
        # imports ctypes lazily; after the drop the interpreter's files may be unreadable.
        import ctypes  # noqa: F401
        privileges.drop_privileges(identity)
        run.log_dropped(identity)

    def prepare_child(child_env):
        if identity is not None and watching:
            privileges.drop_privileges(identity)
        if options.no_new_privs:
            privileges.set_no_new_privs()

    supervisor = Supervisor(command, log=run.log, forward_to_group=options.forward_to == "group",
                            stop_signal=options.stop_signal, stop_timeout=options.stop_timeout,
                            prepare_child=prepare_child)
    supervisor.install()
    supervisor.start(env)
    if not watching:
        supervisor.hand_over()
        return supervisor.run()

    action, argument = options.on_change

    def apply(new_env, changed):
        if action == "restart":
            supervisor.restart(new_env)
        elif action == "signal":
            supervisor.deliver(argument)
        else:
            supervisor.stop_and_exit()

    watcher = run.watcher("environment", lambda new: _with_home(new, identity), env, apply, leases)
    try:
        return supervisor.run(tick=watcher.tick, next_tick=watcher.next_tick)
    finally:
        if options.revoke_on_exit:
            watcher.revoke_all()
        run.remote.close()


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
