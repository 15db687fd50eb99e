"""`--init`: a minimal PID 1 with tini's semantics, plus restarts for --watch.

Read top to bottom, like tini.c:

- The supervisor blocks every asynchronous signal and waits for them with
  sigtimedwait, so no signal is ever lost between checks and no Python
  handler runs at an awkward moment. Synchronous signals (SIGSEGV, SIGBUS,
  SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT) stay unblocked: they are about
  this process's own faults.
- SIGTTIN and SIGTTOU are ignored by the supervisor (as tini does), so a
  supervisor in a background process group is not stopped when it touches
  the terminal; the child gets them back at their default.
- CMD runs in its own process group. Every signal the supervisor receives,
  except SIGCHLD, is forwarded to that group (default, like `tini -g`), or
  to CMD alone with --forward-to child.
- SIGCHLD means "reap": every zombie is collected with waitpid(-1, WNOHANG),
  orphans included (the supervisor is PID 1, or registers as a child
  subreaper when it is not). Nothing here uses subprocess.Popen, whose own
  waitpid would race ours.
- The supervisor exits with CMD's exit status, or 128+signal when CMD was
  killed by a signal (SIGTERM from `docker stop` → 143).
"""

from __future__ import annotations

import os
import signal
import sys
import time

# The signal sets and the reaping are the lean loop's (one definition for both loops).
from shim.delivery.initloop import IGNORED_BY_SUPERVISOR, WAIT_PREFIX, WAITED_SIGNALS, reap
from shim.delivery.launch import execve_program

_PR_SET_CHILD_SUBREAPER = 36


class Supervisor:
    """Starts CMD, forwards signals, reaps zombies, restarts on request."""

    def __init__(self, argv, *, log, forward_to_group=True, stop_signal=signal.SIGTERM,
                 stop_timeout=10.0, prepare_child=None, output=None, on_restart=None):
        self.argv = list(argv)
        self.log = log
        self.forward_to_group = forward_to_group
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.prepare_child = prepare_child     # runs in the child before exec (privilege drop)
        self.output = output                   # --redact: shim.delivery.redactor.RedactedOutput
        self.child_pid: int | None = None
        self._pending_env: dict | None = None  # set while a restart is in progress
        self._kill_at: float | None = None     # when a stopping child gets SIGKILL
        self._exit_after_stop = False
        self.on_restart = on_restart           # --metrics: counts each restart

    # -- set-up -------------------------------------------------------------

    def install(self) -> None:
        """Become a proper init: subreaper when not PID 1, signals blocked and awaited."""
        if os.getpid() != 1:
            import ctypes  # lazy: only for a non-PID-1 --init (subreaper)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        for signum in IGNORED_BY_SUPERVISOR:
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)

    def start(self, env) -> None:
        if self.output is not None and self.output.pid is None:
            self.output.open()   # --redact: the program's stdio and the redactor, once
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_command(env)  # never returns
        # Also from the parent: whichever runs first, the group exists before we signal it.
        # Not for a program on a pseudo-terminal: it makes a session of its own, which a
        # process group leader could not.
        if self.output is None or not self.output.terminal:
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass  # the child already exec'd or exited; it set its own group
        self.child_pid = pid
        self.log.event("child.started", "debug", pid=pid, command=self.argv[0])

    def _become_command(self, env) -> None:
        try:
            if self.output is not None and self.output.terminal:
                self.output.attach()   # its own session, the pseudo-terminal as its terminal
            else:
                os.setpgid(0, 0)
                if self.output is not None:
                    self.output.attach()
            if self.output is None and os.isatty(0):
                # Take the terminal's foreground so CMD can read it (tini does the same);
                # SIGTTOU would stop us for asking from the background.
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                try:
                    os.tcsetpgrp(0, os.getpgrp())
                except OSError:
                    pass
            if self.prepare_child is not None:
                self.prepare_child(env)
            execve_program(self.argv, env)  # resets signals and the mask itself
        except BaseException as error:  # noqa: BLE001 - the child must never return into the supervisor
            code = getattr(error, "exit_code", 1)
            line = error.line() if hasattr(error, "line") else type(error).__name__
            try:
                os.write(2, f"shim: error: {line}\n".encode())
            finally:
                os._exit(code)

    # -- the loop -----------------------------------------------------------

    def run(self, *, tick=None, next_tick=None) -> int:
        """Loop until CMD exits for good; `tick()` is called when `next_tick()` is due."""
        while True:
            timeout = self._timeout(next_tick)
            info = signal.sigtimedwait(WAITED_SIGNALS, timeout) if timeout is not None \
                else signal.sigwaitinfo(WAITED_SIGNALS)
            if info is not None:
                if info.si_signo == signal.SIGCHLD:
                    status = self._reap()
                    if status is not None:
                        if self._pending_env is not None and not self._exit_after_stop:
                            env, self._pending_env = self._pending_env, None
                            self._kill_at = None
                            self.log.event("child.restarted", "info", "restarting the command with the new values",
                                           exited_with=status)
                            self.start(env)
                            if self.on_restart is not None:
                                self.on_restart()
                            continue
                        if self.output is not None:
                            self.output.finish()   # the redactor writes what it still holds
                        return status
                else:
                    self.forward(info.si_signo)
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                self.log.event("child.killed", "warning",
                               f"the command did not stop within {self.stop_timeout:g}s; sending SIGKILL")
                self._signal_child(signal.SIGKILL)
                self._kill_at = None
            if tick is not None and next_tick is not None and time.monotonic() >= next_tick():
                tick()

    def _timeout(self, next_tick) -> float | None:
        moments = []
        if self._kill_at is not None:
            moments.append(self._kill_at)
        if next_tick is not None:
            moments.append(next_tick())
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def _reap(self) -> int | None:
        """Collect every zombie; CMD's exit status when CMD was among them."""
        status_of_child = reap(self.child_pid)
        if status_of_child is not None:
            self.child_pid = None
        return status_of_child

    def forward(self, signum: int) -> None:
        self._signal_child(signum)

    def _signal_child(self, signum: int) -> None:
        if self.child_pid is None:
            return
        try:
            if self.forward_to_group:
                os.killpg(self.child_pid, signum)
            else:
                os.kill(self.child_pid, signum)
        except ProcessLookupError:
            pass

    # -- restarts (for --watch) ---------------------------------------------

    def restart(self, env) -> None:
        """Stop CMD (stop signal, then SIGKILL after stop_timeout) and start it with env."""
        self._pending_env = env
        self._stop()

    def stop_and_exit(self) -> None:
        self._exit_after_stop = True
        self._stop()

    def _stop(self) -> None:
        if self._kill_at is None:
            self._signal_child(self.stop_signal)
            self._kill_at = time.monotonic() + self.stop_timeout

    def deliver(self, signum: int) -> None:
        self._signal_child(signum)

    # -- handing over to the lean loop (--init without --watch) ---------------

    def hand_over(self, remove_on_exit=()) -> None:
        """Replace this process with shim/delivery/initloop.py, which only forwards and reaps.

        Nothing is left to re-read, so the interpreter holding click, the plan, the values and
        any store SDK is not needed any more. execve keeps the PID, the children, the blocked
        mask and any pending SIGCHLD. When the exec cannot happen (no interpreter path, a
        file the dropped user may not read), this returns and the caller runs the loop here.
        `remove_on_exit`: absolute paths the loop removes once the program has exited (files
        shim wrote for it); they travel as the loop's arguments after the mode.
        """
        if self.child_pid is None:
            return
        mode = "group" if self.forward_to_group else "child"
        paths = [os.path.abspath(path) for path in remove_on_exit]
        if self.output is not None and self.output.pid is not None:
            # The lean loop waits for the redactor too, so the last lines reach the log.
            paths.insert(0, f"{WAIT_PREFIX}{self.output.pid}")
        if getattr(sys, "frozen", False):
            # The bundle: its entry script runs the same loop when given this first argument.
            argv = [sys.executable, LEAN_LOOP_ARGUMENT, str(self.child_pid), mode, *paths]
        elif sys.executable:
            argv = [sys.executable, "-I", "-S", _LEAN_LOOP_PATH, str(self.child_pid), mode, *paths]
        else:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(argv[0], argv, {})
        except OSError as error:
            self.log.event("supervisor.lean_unavailable", "debug",
                           "staying in the full process", reason=error.strerror)


# The bundle's entry script (images/shim/entry.py) checks for this first argument.
LEAN_LOOP_ARGUMENT = "--shim-internal-initloop"
_LEAN_LOOP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "initloop.py")
