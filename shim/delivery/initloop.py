"""The `--init` supervisor after the program has started: signals and wait, nothing else.

`shim exec --init` (without --watch) needs the whole of shim only until the program is
running: options, the plan, the stores, the privilege drop. From then on its job is tini's:
forward signals, reap zombies, exit with the program's status. Staying in that process would
keep click, the plan, the resolved values and any store SDK in memory for the container's whole
life, so the supervisor replaces itself (execve: same PID, same children, same blocked signal
mask, pending signals kept, subreaper flag kept) with this file, run by the same interpreter as

    python -I -S initloop.py CHILD_PID group|child [wait:PID...] [PATH...]

`-I -S` loads no site-packages and reads no environment variable, and the environment it is
given is empty: the new image holds no secret at all. This file therefore imports nothing but
the interpreter's built-in modules, and no part of shim.

The rules are those of shim/delivery/supervise.py (read that first): every signal it waits for, except
SIGCHLD, goes to the program's process group (or the program alone); SIGCHLD reaps every
zombie; the exit status is the program's, or 128+signal. Each PATH after the mode (absolute,
given by Supervisor.hand_over) is removed once the program has exited: files shim wrote for
the program alone; one already gone is fine. Each `wait:PID` (the --redact redactor) is
waited for after the program, at most two seconds, so the program's last lines are written.
"""

import os
import signal
import sys
import time

_SYNCHRONOUS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                signal.SIGTRAP, signal.SIGSYS, signal.SIGABRT}
IGNORED_BY_SUPERVISOR = {signal.SIGTTIN, signal.SIGTTOU}
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
WAITED_SIGNALS = set(signal.valid_signals()) - _SYNCHRONOUS - IGNORED_BY_SUPERVISOR - _UNCATCHABLE


def exit_status(status: int) -> int:
    """A wait status as a shell would report it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def reap(child_pid: int):
    """Collect every zombie; the program's exit status when it was among them."""
    status_of_child = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid == child_pid:
            status_of_child = exit_status(status)
    return status_of_child


def forward(child_pid: int, to_group: bool, signum: int) -> None:
    try:
        if to_group:
            os.killpg(child_pid, signum)
        else:
            os.kill(child_pid, signum)
    except ProcessLookupError:
        pass


def supervise(child_pid: int, to_group: bool) -> int:
    # The mask and the ignored SIGTTIN/SIGTTOU came through execve; set them again so this
    # loop is right even when started some other way.
    for signum in IGNORED_BY_SUPERVISOR:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)
    # A SIGCHLD that arrived before the execve is still pending; reap once anyway, in case
    # the program ended in the moment between fork and the mask above.
    status = reap(child_pid)
    while status is None:
        info = signal.sigwaitinfo(WAITED_SIGNALS)
        if info.si_signo == signal.SIGCHLD:
            status = reap(child_pid)
        else:
            forward(child_pid, to_group, info.si_signo)
    return status


def wait_for(pids, timeout: float = 2.0) -> None:
    """After the program: let helpers that outlive it (the --redact redactor, which writes the
    program's last lines) finish, at most `timeout` seconds, then kill them."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        if left:   # SIGCHLD is blocked (supervise): wait for the next one, not a fixed nap
            signal.sigtimedwait({signal.SIGCHLD}, max(0.0, deadline - time.monotonic()))
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove(paths) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            sys.stderr.write(f"shim: warning: could not remove {path} ({error.strerror})\n")


def protect() -> None:
    """Non-dumpable again, as every shim process (shim/tools/dumpable.py): execve made this process
    dumpable, and the program it supervises may share its uid. It holds no secret, but a
    process of that uid could otherwise ptrace the container's PID 1."""
    if not __package__:
        # Run as a script under -I -S: the folder above shim/ (this file is shim/delivery/initloop.py).
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        from shim.tools.dumpable import protect as make_non_dumpable  # lazy: after the execve
    except ImportError:
        return   # the package cannot be read after the drop to --user: supervise anyway
    make_non_dumpable()


WAIT_PREFIX = "wait:"


def main(argv) -> int:
    waits = [item[len(WAIT_PREFIX):] for item in argv[2:] if item.startswith(WAIT_PREFIX)]
    paths = [item for item in argv[2:] if not item.startswith(WAIT_PREFIX)]
    if (len(argv) < 2 or not argv[0].isdigit() or argv[1] not in ("group", "child")
            or not all(os.path.isabs(path) for path in paths)
            or not all(pid.isdigit() for pid in waits)):
        sys.stderr.write("shim: error: initloop takes CHILD_PID group|child [wait:PID...] "
                         "[PATH...] (internal use)\n")
        return 70
    protect()
    status = supervise(int(argv[0]), argv[1] == "group")
    wait_for([int(pid) for pid in waits])
    remove(paths)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
