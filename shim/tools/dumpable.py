"""Keep the secrets shim holds out of reach of processes running as the same user.

A process that shares shim's uid (the program under `--init`/`--watch` when shim was
started as non-root, or anything else in the container) could otherwise read shim's
environment and memory through /proc, or make it dump core with a signal. shim makes
itself non-dumpable (PR_SET_DUMPABLE 0: /proc/PID/environ, mem and maps become root's,
ptrace is refused, no core is written) and sets its own soft RLIMIT_CORE to 0, first
thing at start-up. execve gives the program its normal dumpability back; the core limit
the caller set is restored just before execve, so the program gets it unchanged.

prctl is called through _ctypes, the C half of ctypes: the whole ctypes package would
cost every start noticeably more, and this needs one function.
"""

from __future__ import annotations

import _ctypes
import resource

_PR_SET_DUMPABLE = 4
_caller_core_limit: tuple[int, int] | None = None
_prctl = None


def _load_prctl():
    class ULong(_ctypes._SimpleCData):
        _type_ = "L"

    class Int(_ctypes._SimpleCData):
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL
        _restype_ = Int

    class Libc:
        _handle = _ctypes.dlopen(None)

    function = Function(("prctl", Libc))
    return lambda option, argument: function(Int(option), ULong(argument), ULong(0),
                                             ULong(0), ULong(0))


def protect() -> None:
    """Non-dumpable, no core. Call again after a uid change: setuid resets dumpability."""
    global _caller_core_limit, _prctl
    if _prctl is None:
        _prctl = _load_prctl()
    _prctl(_PR_SET_DUMPABLE, 0)
    if _caller_core_limit is None:
        _caller_core_limit = resource.getrlimit(resource.RLIMIT_CORE)
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, _caller_core_limit[1]))
        except (OSError, ValueError):
            pass  # lowering the soft limit is always allowed; be safe on odd kernels


def reassert() -> None:
    """After a uid change, which resets dumpability: loads nothing (the drop is over)."""
    if _prctl is not None:
        _prctl(_PR_SET_DUMPABLE, 0)


def restore_for_exec() -> None:
    """Just before execve: the program gets the core limit shim was started with."""
    if _caller_core_limit is not None:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, _caller_core_limit)
        except (OSError, ValueError):
            pass  # a limit we could not restore is lower, never higher: safe
