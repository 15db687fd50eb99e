"""Command line: declare the commands, map every failure to its exit code.

The options come from one table (shim.pipeline.options), the work from shim.pipeline:
Plan -> Resolution -> Environment -> Launch is the same for every command;
each command only chooses the ending (exec, print, write files, run).
"""

from __future__ import annotations

import importlib
import sys

import click

from shim.tools import environ_block
from shim.tools.dumpable import protect
from shim.commands.execute import run_exec
from shim.commands.failures import EXIT_INTERRUPTED, reported_failures
from shim.pipeline.options import Option, commands_taking, ignored_flags, options_of, parse_options, refused_flags, split_names, split_paths
from shim.pipeline.run import Pipeline

EXIT_USAGE = 64


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


IGNORED_KEY = "shim.ignored_flags"


def _ignored(flag: str, option: Option):
    """A hidden option that accepts `flag` and records it (in given order) as ignored."""
    def record(ctx, param, value):
        if value not in (None, False, "", ()) and \
                ctx.get_parameter_source(param.name).name != "ENVIRONMENT":
            ctx.meta.setdefault(IGNORED_KEY, []).append(flag)
        return value

    takes_value = option.kind not in ("flag", "count")
    return click.option(flag, "_ignored_" + flag.lstrip("-").replace("-", "_"), hidden=True,
                        is_flag=not takes_value, expose_value=False, callback=record)


def ignored_given() -> list[str]:
    """The ignored flags the current command line gave (shim.pipeline.options.ignored_flags)."""
    return sorted(click.get_current_context().meta.get(IGNORED_KEY, []))


def command_options(command: str):
    """Decorator: the options `command` honours (from shim.pipeline.options.OPTIONS), and a usage
    error for each option another pipeline command takes and this one does not (unless this
    command accepts and ignores it: shim.pipeline.options.ignored_flags)."""
    def decorate(function):
        ignored = ignored_flags(command)
        for flag, option in sorted(refused_flags(command).items(), reverse=True):
            if flag in ignored:
                function = _ignored(flag, option)(function)
            else:
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
    nor for the scanner's imports (docs/performance.md has the figures).
    """

    lazy = {
        "check": "shim.commands.check:check_command",
        "render": "shim.commands.render:render_command",
        "scan": "shim.commands.scan:scan_command",
        "run": "shim.commands.devenv:run_command",
        "dev-init": "shim.commands.devenv:dev_init_command",
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
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
@click.version_option(package_name="shim-secrets", prog_name="shim")
def cli():
    """Put secrets where programs expect them, then run them as the right user."""


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@command_options("exec")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_command(command, **raw):
    """Resolve the environment, drop privileges, execve CMD (keeps the PID)."""
    run_exec(pipeline_for("exec", raw), command)


def main(argv=None) -> None:
    """click's side of the console script (shim.entry): its usage errors exit 64, ours their
    own code, bugs 70."""
    args = sys.argv[1:] if argv is None else list(argv)
    environ_block.capture()  # before protect() (a no-op when shim.entry did it already)
    protect()  # first (again, when shim.entry came this way: it is cheap once loaded)
    if not args:
        # `shim` alone is someone asking what it does: the help, as `shim --help` prints it,
        # exit 0 (docker's and git's habit), not a usage error.
        with cli.make_context("shim", [], resilient_parsing=True) as ctx:
            click.echo(cli.get_help(ctx))
        sys.exit(0)
    with reported_failures(args):
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
            sys.exit(EXIT_INTERRUPTED)
