"""Start the real program: replace the shim with it, as gosu and tini's exec do.

The program keeps the shim's PID (so it is PID 1 in a container and gets
`docker stop`'s SIGTERM directly). Before execve: stdio is flushed, every
signal disposition the interpreter changed (Python ignores SIGPIPE and
SIGXFSZ) is reset to its default and the signal mask is cleared, because
ignored signals and the mask survive execve. Descriptors the shim opened are
close-on-exec (PEP 446), so only inherited ones reach the program.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from shim.tools import dumpable
from shim.tools.errors import CommandNotExecutable, CommandNotFound

_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


def reset_signals() -> None:
    for signum in signal.valid_signals():
        if signum in _UNCATCHABLE:
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    reset_reserved_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


# glibc keeps signals 32 and 33 for itself (thread cancellation, setxid) and refuses to
# change them, so Python cannot either. An ignored disposition inherited from whoever started
# us would still survive execve; the kernel call sets them to default directly.
_RESERVED_SIGNALS = (32, 33)


def _ignored_signals() -> list[int]:
    """Signal numbers this process ignores, from the SigIgn mask in /proc/self/status."""
    try:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith("SigIgn:"):
                    mask = int(line.split()[1], 16)
                    return [bit + 1 for bit in range(64) if mask >> bit & 1]
    except OSError:
        pass
    return list(_RESERVED_SIGNALS)  # cannot tell: reset them to be sure
_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}


_reserved_reset_done = False


def reset_reserved_signals() -> None:
    """Call before dropping privileges too: the import it may need must happen as root."""
    global _reserved_reset_done
    if _reserved_reset_done:
        return  # nothing sets them to ignored again before exec
    _reserved_reset_done = True
    if not any(signum in _RESERVED_SIGNALS for signum in _ignored_signals()):
        return  # the usual case: nothing to undo, and no ctypes import at every start
    import ctypes  # lazy: only when reserved signals need resetting

    number = _RT_SIGACTION.get(os.uname().machine)
    if number is None:
        return

    class KernelSigaction(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                    ("restorer", ctypes.c_void_p), ("mask", ctypes.c_uint64)]

    default = KernelSigaction(None, 0, None, 0)  # SIG_DFL is 0
    libc = ctypes.CDLL(None, use_errno=True)
    for signum in _RESERVED_SIGNALS:
        libc.syscall(ctypes.c_long(number), ctypes.c_long(signum), ctypes.byref(default),
                     None, ctypes.c_long(8))


def candidate_paths(program: str, env: Mapping[str, str]) -> list[str]:
    """Where execvp would look: the program itself if it has a /, else the child's PATH."""
    if "/" in program:
        return [program]
    return [os.path.join(directory or ".", program) for directory in os.get_exec_path(dict(env))]


def execve_program(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """execve argv[0] (PATH searched in the child's env); raises 126/127 errors on failure."""
    program = argv[0]
    sys.stdout.flush()
    sys.stderr.flush()
    denied = None
    for path in candidate_paths(program, env):
        if "/" not in program and not os.path.isfile(path):
            continue
        reset_signals()
        dumpable.restore_for_exec()
        try:
            os.execve(path, list(argv), dict(env))
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            # Like execvp: remember a permission problem, keep searching.
            denied = (path, error)
    if denied is not None:
        path, error = denied
        raise CommandNotExecutable(f"cannot execute {path}: {error.strerror}",
                                   hint="check that it is a program and executable by the target user")
    if "/" in program:
        raise CommandNotFound(f"command {program} not found", hint="check the path")
    raise CommandNotFound(f"command {program!r} not found in PATH",
                          hint="install it in the image or give its absolute path")
