"""Entry point of the shim bundle: `python -m shim`, minus what the bootloader added.

PyInstaller freezes this script as /opt/shim/shim. On Linux its one-dir bootloader starts by
re-executing itself (execve, same PID, nothing unpacked) with the environment changed so the
dynamic loader finds the bundled libraries: LD_LIBRARY_PATH=/opt/shim/_internal (the caller's
own value saved in LD_LIBRARY_PATH_ORIG) and a few _PYI_* bookkeeping variables. That changed
block is what the kernel now shows in /proc/self/environ, which is where shim reads "the
environment exactly as it was started". Handed on as it is, it would make the program load
shim's copies of libssl, libz, libffi... instead of its own. So the bootloader's changes are
undone here, before shim reads anything; every command then sees the caller's environment.
Only this process's loader used LD_LIBRARY_PATH, and it read it once at start-up, so removing it
now changes nothing for shim itself. One loss: the bootloader does not save an empty
LD_LIBRARY_PATH, so the program gets none (the same to the dynamic loader).
"""

import os
import sys

_BOOTLOADER_PREFIX = "_PYI_"
# The first argument that selects an internal job instead of the command line (the bundle has
# no separate interpreter to run that module with): shim/delivery/initloop.py. (--watch's helpers are
# forks of the supervisor: shim/pipeline/helper.py.)
_LEAN_LOOP_ARGUMENT = "--shim-internal-initloop"


def as_started(environ: dict) -> dict:
    """The environment as the caller gave it, before the bootloader's re-exec."""
    restored = {name: value for name, value in environ.items()
                if not name.startswith(_BOOTLOADER_PREFIX)}
    original = restored.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        restored.pop("LD_LIBRARY_PATH", None)
    else:
        restored["LD_LIBRARY_PATH"] = original
    return restored


def _restore_os_environ() -> None:
    restored = as_started(dict(os.environ))
    for name in set(os.environ) - set(restored):
        del os.environ[name]
    os.environ.update(restored)


if sys.argv[1:2] == [_LEAN_LOOP_ARGUMENT]:
    # exec --init after the program started: signals and wait, nothing else loaded.
    from shim.delivery.initloop import main as lean_loop
    sys.exit(lean_loop(sys.argv[2:]))

_restore_os_environ()
import shim.pipeline.environment  # noqa: E402 - after the check above: the lean loop needs none of it

# Every reader of the starting environment (shim.pipeline, and the helpers it forks) goes
# through this.
shim.pipeline.environment.restore_as_started = as_started
from shim.entry import main  # noqa: E402

main()
