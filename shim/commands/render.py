"""`shim render`: an init container or sidecar writes the secrets to files (shim.delivery.render
writes them), once or, with --watch, again whenever they change; --on-change tells the app.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click

from shim.commands.cli import command_options, pipeline_for
from shim.delivery import privileges
from shim.delivery.render import Renderer
from shim.pipeline.environment import without_credentials
from shim.pipeline.run import Pipeline, secret_values
from shim.tools import program_writable
from shim.tools.dumpable import restore_for_exec
from shim.tools.errors import ShimError, UsageError
from shim.tools.safe_read import read_capped


@click.command("render")
@command_options("render")
def render_command(**raw):
    """Init container / sidecar: write secrets to files, optionally keep them current."""
    run = pipeline_for("render", raw)
    options = run.options
    ci_export = options.file_format in ("github-actions", "azure-pipelines")  # shim/delivery/ciexport.py
    if ci_export:
        from shim.delivery import ciexport  # lazy: only with --ci-export
        ciexport.preflight(options.file_format, os.environ, directory=options.directory,
                           env_file=options.out_env_file, watching=options.watch is not None)
    elif not options.directory and not options.out_env_file and not options.templates:
        raise UsageError("render needs --dir DIR, --env-file PATH or --template SRC:DEST",
                         hint="e.g. shim render --dir /run/app-secrets")
    action = options.on_change
    if action and action[0] == "signal" and not options.pid_file:
        raise UsageError("--on-change signal:NAME needs --pid-file", hint="name the file holding the PID")
    uid = gid = identity = None
    if options.owner:
        identity = privileges.resolve_identity(options.owner)
        uid, gid = identity.uid, identity.gid
    run.prepare_fallback(identity)   # the files' owner may neither read nor write the cache
    run.prepare_templates()
    if options.directory:
        _check_directory(options.directory)
    if options.out_env_file:
        parent = os.path.dirname(os.path.abspath(options.out_env_file))
        if not os.path.isdir(parent):
            raise UsageError(f"{parent} is not a directory", hint="create it (a tmpfs/emptyDir volume) first")
    run.open_metrics()      # --metrics: its address is checked and bound before anything runs
    if options.watch is None:
        resolved = run.resolve()
        if resolved.errors:
            run.fail(resolved.errors)
        run.write_templates(resolved.resolution.rendered, identity)
        values, leases, files = secret_values(resolved), [], {}
    else:
        # A sidecar lives as long as the pod: every resolution runs in a helper process, so
        # no store SDK is ever loaded here (shim.pipeline.helper); it renders the templates too.
        snapshot, errors, leases = run.resolve_elsewhere("values")
        if errors:
            run.fail(errors)
        values, files = snapshot.values, snapshot.files
        run.write_templates(files, identity)
    if ci_export:   # preflight refused --watch: values come from run.resolve() above
        ciexport.export(options.file_format, values, os.environ)
        run.log.event("render.exported", "info", f"exported for {options.file_format}",
                      variables=sorted(values))
        return
    renderer = Renderer(directory=options.directory, env_file=options.out_env_file,
                        file_format=options.file_format, mode=options.mode, uid=uid, gid=gid)
    renderer.render(values)
    run.log.event("render.written", "info", "secrets written", variables=sorted(renderer.written),
                  directory=options.directory, env_file=options.out_env_file)
    if options.watch is None:
        return
    sys.exit(_render_watch(run, renderer, leases, identity, files))


def _check_directory(path: str) -> None:
    """--dir must exist: shim does not guess the mode and owner a volume should have."""
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise UsageError(f"--dir {path} is not a directory", hint="point --dir at a directory")
    raise UsageError(f"--dir {path} does not exist",
                     hint=f"create it first, e.g. a tmpfs/emptyDir volume or "
                          f"install -d -m 0700 -o USER {path}")


def _render_watch(run: Pipeline, renderer, leases, owner, files) -> int:
    """Sidecar: re-render on change until SIGTERM/SIGINT (exit 0); SIGHUP re-resolves now.
    With --owner, what that user can change is not read or imported from now on, as for
    exec's program (shim.tools.program_writable). `files`: what --template wrote first."""
    from shim.delivery.watch import Snapshot  # lazy: only with --watch

    options = run.options
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    # With only --template, the values go nowhere but into the templates: a variable no
    # template uses is not a change to act on.
    delivers_values = bool(options.directory or options.out_env_file)

    def values_delivered(values):
        return dict(values) if delivers_values else {}

    def apply(new: Snapshot, changed):
        run.write_templates(new.files, owner)   # only DESTs whose text changed
        renderer.render(new.values)
        run.log.event("render.written", "info", f"rewrote {', '.join(changed)}", variables=changed)
        if options.on_change is not None:
            _notify(run, options.on_change, options.pid_file)

    watcher = run.watcher("values", values_delivered,
                          Snapshot(values_delivered(renderer.written), files), apply, leases)
    if owner is not None:
        program_writable.arm(program_writable.Target.of(owner))
    try:
        while True:
            timeout = max(0.0, watcher.next_tick() - time.monotonic())
            info = signal.sigtimedwait(stop_signals, timeout)
            if info is None:
                watcher.tick()
            elif info.si_signo == signal.SIGHUP:
                watcher.due_now()
                watcher.tick()
            else:
                run.log.event("render.stopped", "info", "stopping on signal", signal=info.si_signo)
                return 0
    finally:
        if options.revoke_on_exit:
            watcher.revoke_all()
        run.close_helpers()


_known_start_times: dict[int, str] = {}


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (after the command name, which may hold spaces and ')')."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return stream.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return None


def _signal_target(pid_file: str) -> tuple[int | None, str]:
    """The PID to signal, or None and why not. The file may sit on a volume the app can
    write: only a PID above 1 (0, -1 and negative numbers reach whole groups or every
    process), and only the process that had that PID when we first read it."""
    try:
        text = read_capped(pid_file, cap=64, what="--pid-file", the_programs_own=True).decode("ascii").strip()
        pid = int(text) if text.isdigit() else -1
    except (ShimError, UnicodeDecodeError):
        return None, "cannot read it"
    if pid <= 1:
        return None, "it does not hold a process id above 1"
    started = _start_time(pid)
    if started is None:
        return None, "no such process"
    if _known_start_times.setdefault(pid, started) != started:
        return None, "that process id now belongs to another process"
    return pid, ""


def _notify(run: Pipeline, action, pid_file) -> None:
    """--on-change for render: signal the process in --pid-file, or run a command."""
    kind, argument = action
    if kind == "signal":
        pid, problem = _signal_target(pid_file)
        if pid is None:
            run.log.event("render.signal_failed", "warning",
                          f"not signalling the process in {pid_file}: {problem}")
            return
        try:
            os.kill(pid, argument)
            run.log.event("render.signalled", "info", pid=pid, signal=argument)
        except OSError as error:
            run.log.event("render.signal_failed", "warning",
                          f"could not signal the process in {pid_file}: {type(error).__name__}")
        return
    # The hook gets the starting environment (references as written, never the values) without
    # what no program shim starts gets: shim's settings and the stores' credentials.
    env = without_credentials(run.environ, run.options.passthrough)
    result = subprocess.run(argument, env=env, stdin=subprocess.DEVNULL, check=False,
                            preexec_fn=restore_for_exec)
    run.log.event("render.hook_ran", "info" if result.returncode == 0 else "warning",
                  command=argument[0], exit_code=result.returncode)
