"""The ending of `shim exec`: resolve, drop privileges, execve CMD (or supervise it).

Apart from shim.commands.cli so that the fast path (shim.entry) runs it without importing click.
"""

from __future__ import annotations

import os
import sys

from shim.delivery import privileges
from shim.tools import program_writable
from shim.delivery.launch import execve_program, reset_reserved_signals
from shim.pipeline.run import Pipeline, secret_values


def run_exec(run: Pipeline, command) -> None:
    """Resolve the environment, drop privileges, execve CMD (keeps the PID)."""
    options = run.options
    # Before any drop (here or in --init's child): this may import ctypes, and after the
    # drop to --user the interpreter's own files need not be readable.
    reset_reserved_signals()
    if options.no_new_privs:
        # set_no_new_privs() runs after the drop to --user, when the interpreter's own files
        # may no longer be readable: load what it imports now.
        import ctypes  # lazy: for prctl after the drop, loaded before it  # noqa: F401
    identity = privileges.target_identity(options, run.log)
    run.as_files = prepare_as_files(options, identity)
    run.prepare_fallback(identity)
    run.prepare_templates()
    run.open_metrics()      # --metrics: its address is checked and bound before anything runs
    if options.watch is not None and not run.as_files:
        # The supervisor lives as long as the container: every resolution, the first
        # included, runs in a helper process, so no store SDK is ever loaded here.
        snapshot, errors, leases = run.resolve_elsewhere("environment")
        if errors:
            run.fail(errors)
        privileges.warn_if_root(options, run.log, identity)
        # --template: the helper rendered them; written now, as root, owned by the program's user.
        run.write_templates(snapshot.files, identity)
        sys.exit(_supervise(run, command, _with_home(snapshot.values, identity), identity,
                            leases=leases, files=snapshot.files,
                            redacted=_resolved_by_shim(snapshot.values)))
    resolved = run.resolve()
    if resolved.errors:
        run.fail(resolved.errors)
    privileges.warn_if_root(options, run.log, identity)
    env = run.child_environment(resolved, identity)
    # --template: as root, owned by the program's user.
    run.write_templates(resolved.resolution.rendered, identity)
    if run.as_files:  # --as-files: written now, as root, before any drop
        _delivered(run, env)
    if options.init or options.watch or options.redact:   # --redact: output passes through shim
        sys.exit(_supervise(run, command, env, identity, resolved=resolved,
                            redacted=secret_values(resolved)))
    if identity is not None:
        privileges.drop_privileges(identity)
        privileges.log_dropped(run.log, identity)
    if options.no_new_privs:
        privileges.set_no_new_privs()
    run.log.event("exec", "info", command=command[0], uid=os.getuid(), gid=os.getgid(),
                  variables=sorted(resolved.plan.entries))
    execve_program(command, _delivered(run, env))   # --as-files: NAME_FILE (nothing left to write)


def prepare_as_files(options, identity=None):
    """--as-files: the AsFiles delivery, DIR checked before anything is resolved (files owned
    by `identity`); None when not asked for."""
    if not (options.as_files or options.as_files_only):
        return None
    from shim.delivery import asfiles  # lazy: only with --as-files
    as_files = asfiles.from_options(options)
    if identity is not None:
        as_files.uid, as_files.gid = identity.uid, identity.gid
    return as_files


def _delivered(run: Pipeline, env: dict) -> dict:
    """The child's env: with --as-files, files written and NAME_FILE=DIR/NAME given."""
    return run.as_files.materialize(env, run.log) if run.as_files else env


def _with_home(env: dict, identity) -> dict:
    """The child's environment from a helper, with HOME set as Pipeline.child_environment does."""
    if identity is not None:
        env = dict(env, HOME=identity.home)
    return env


def _resolved_by_shim(env: dict) -> dict:
    """The variables of a helper's environment that shim resolved (they differ from ours)."""
    return {name: value for name, value in env.items()
            if name != "HOME" and os.environ.get(name) != value}


def redacted_output(options, values: dict):
    """--redact: the program's output through a redactor holding `values`; else None."""
    if not options.redact:
        return None
    from shim.delivery.redactor import RedactedOutput  # lazy: only with --redact
    return RedactedOutput(dict(values), terminal=os.isatty(1))


def run_redacted(run: Pipeline, command, env: dict, values: dict) -> int:
    """`shim run`: CMD as the caller, its output through the redactor (the default there)."""
    from shim.delivery.redactor import RedactedOutput  # lazy: only when output is redacted
    from shim.delivery.supervise import Supervisor  # lazy: only for a supervised program

    output = RedactedOutput(dict(values), terminal=os.isatty(1))
    supervisor = Supervisor(command, log=run.log, output=output)
    supervisor.install()
    supervisor.start(env)
    supervisor.hand_over()
    return supervisor.run()


def _supervise(run: Pipeline, command, env, identity, *, leases=(), files=None, resolved=None,
               redacted=None) -> int:
    """--init (and --watch): stay as PID 1, supervise CMD, restart it on a change.

    With --watch, `leases` and `files` (what --template rendered) come from the first
    resolution made in a helper; with --watch and --as-files, `resolved` is the first
    resolution made here (re-resolved here too)."""
    from shim.delivery.supervise import Supervisor  # lazy: only for --init/--watch

    options = run.options
    watching = options.watch is not None
    if identity is not None and not watching:
        # Nothing to re-read later: the supervisor gives up root as well. Supervisor.install()
        # imports ctypes lazily; after the drop the interpreter's files may be unreadable.
        import ctypes  # lazy: for prctl after the drop, loaded before it  # noqa: F401
        privileges.drop_privileges(identity)
        privileges.log_dropped(run.log, identity)

    def prepare_child(child_env):
        if identity is not None and watching:
            privileges.drop_privileges(identity)
        if options.no_new_privs:
            privileges.set_no_new_privs()

    output = redacted_output(options, redacted or {})
    supervisor = Supervisor(command, log=run.log, forward_to_group=options.forward_to == "group",
                            stop_signal=options.stop_signal, stop_timeout=options.stop_timeout,
                            prepare_child=prepare_child, output=output,
                            on_restart=run.metrics and (
                                lambda: run.metrics.count("shim_program_restarts_total")))
    supervisor.install()
    as_files = run.as_files
    if not watching:
        supervisor.start(_delivered(run, env))
        # The lean loop removes --as-files files when the program exits, as run() would.
        supervisor.hand_over(remove_on_exit=as_files.paths() if as_files else ())
        try:
            return supervisor.run()
        finally:
            if as_files:  # --as-files: the files go with the program
                as_files.remove_all(run.log)

    from shim.delivery.watch import Snapshot  # lazy: only with --watch

    action, argument = options.on_change

    def apply(new: Snapshot, changed):
        new_env = new.values
        if output is not None:   # new values are redacted from now on, the old ones still
            output.update({name: new_env[name] for name in changed if name in new_env})
        # A file that cannot be written ends shim (as --as-files' does), before the program
        # is signalled or restarted with half of the change.
        run.write_templates(new.files, identity)   # --template: only DESTs whose text changed
        new_env = _delivered(run, new_env)  # --as-files: rewrites the changed files
        if action == "restart":
            supervisor.restart(new_env)
        elif action == "signal":
            supervisor.deliver(argument)
        else:
            supervisor.stop_and_exit()

    # The watcher (and what it imports) is made before the program runs: from then on nothing
    # the program can change is imported or read (shim.tools.program_writable).
    if resolved is not None:
        run.first_resolution_done(resolved)
        current = Snapshot(env, dict(resolved.resolution.rendered))
        watcher = run.watcher_in_process(lambda new: run.child_environment(new, identity),
                                         current, apply, resolved)
    else:
        watcher = run.watcher("environment", lambda new: _with_home(new, identity),
                              Snapshot(env, files or {}), apply, leases)
    program_writable.arm(program_target(identity))
    supervisor.start(_delivered(run, env))
    try:
        return supervisor.run(tick=watcher.tick, next_tick=watcher.next_tick)
    finally:
        if options.revoke_on_exit:
            watcher.revoke_all()
        run.close_helpers()
        if as_files:  # --as-files: the files go with the program
            as_files.remove_all(run.log)


def program_target(identity) -> program_writable.Target | None:
    """Who the program runs as, for shim.tools.program_writable: --user's identity, or shim's own
    uid when shim is not root (the program shares it); None when the program is root."""
    if identity is not None:
        return program_writable.Target.of(identity)
    if os.getuid() != 0:
        return program_writable.Target(os.getuid(), (os.getgid(), *os.getgroups()))
    return None
