"""The environment block the kernel started this process with, read before protect().

/proc/self/environ is the only copy of the starting environment that CPython has not changed
(it may add LC_CTYPE=C.UTF-8 when it coerces the C locale, PEP 538). Once the process is
non-dumpable (shim.tools.dumpable.protect), the kernel gives /proc/self/* to root, so a shim started
as non-root can no longer read its own block and used to fall back to os.environ, handing the
program an LC_CTYPE it was never given. So the entry points read the block first, then protect:
the bytes are in memory either way (the environment holds them), so nothing is exposed longer.
"""

from __future__ import annotations

PROC_PATH = "/proc/self/environ"
_captured: bytes | None = None
_tried = False


def capture(path: str = PROC_PATH) -> None:
    """Keep the starting block; call before protect(). Without /proc, nothing is kept.
    Only the first call reads (a later one, after protect(), might not be allowed to)."""
    global _captured, _tried
    if _tried:
        return
    _tried = True
    try:
        with open(path, "rb") as stream:
            _captured = stream.read()
    except OSError:
        _captured = None


def captured() -> bytes | None:
    return _captured
