"""Open and read a file shim was told to read, without letting the file choose what happens.

Every file named by a user or an environment (secret files, --env-file, credential files,
--pid-file, the dev env file) may be a FIFO (open would block forever), a device (/dev/zero
never ends), a directory, a symlink planted by someone else, or huge. So:

- open with O_NONBLOCK (a FIFO or device opens at once) and O_CLOEXEC, and with O_NOFOLLOW
  when the caller says the last component must not be a symlink (Kubernetes secret volumes
  are symlinks into ..data/: callers reading those follow them);
- fstat the open descriptor (not the path, which could be swapped): only a regular file;
- read at most `cap` bytes plus one, so an oversized or growing file is refused, never read
  whole;
- once the program runs under --watch, refuse a path the program can change
  (shim.tools.program_writable);
- map each failure to the caller's error types, given as parameters, with a message that
  names the path and never quotes the content.
"""

from __future__ import annotations

import errno
import os
import stat

from shim.tools import program_writable
from shim.tools.errors import NotFound, PermissionDenied, UnusableValue


def read_capped(path: str, **options) -> bytes:
    """The content of the regular file at path (at most cap bytes), or the caller's error."""
    return read_with_stat(path, **options)[0]


def read_with_stat(path: str, *, cap: int, what: str = "file", follow_symlinks: bool = True,
                   missing=NotFound, unreadable=PermissionDenied, not_regular=NotFound,
                   too_large=UnusableValue, size_text: str | None = None,
                   the_programs_own: bool = False,
                   delivered_as_is: bool = False) -> tuple[bytes, os.stat_result]:
    """read_capped, plus the fstat of the descriptor that was read (for its mtime).
    `the_programs_own`: a file the program is meant to write (render's --pid-file), whose
    content the caller treats as hostile; every other read refuses, once the program runs,
    a path the program can change. `delivered_as_is`: the content becomes a value and nothing
    else (a secret file), so a shim with no more privilege than the program may read it."""
    if not the_programs_own:
        program_writable.check_read(path, what, delivered_as_is=delivered_as_is)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    limit = size_text or f"{cap} bytes"
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise missing(f"{what} {path} does not exist",
                      hint="check the path and that it is mounted") from None
    except NotADirectoryError:
        raise missing(f"{what} {path} does not exist (a parent is not a directory)",
                      hint="check the path") from None
    except PermissionError:
        raise unreadable(f"{what} {path} is not readable by uid {os.getuid()}",
                         hint="check its owner and mode") from None
    except OSError as error:
        if error.errno == errno.ELOOP and not follow_symlinks:
            raise unreadable(f"{what} {path} is a symbolic link, which shim does not follow here",
                             hint="replace the link with the file itself") from None
        raise unreadable(f"{what} {path} cannot be opened ({error.strerror})",
                         hint="point it at a regular file") from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise not_regular(f"{what} {path} is a directory, not a file", hint="point it at a file")
        if not stat.S_ISREG(info.st_mode):
            raise not_regular(f"{what} {path} is not a regular file (a FIFO, socket or device)",
                              hint="point it at a regular file")
        if info.st_size > cap:
            raise too_large(f"{what} {path} is larger than {limit}",
                            hint="a file that large is not a secret or a setting")
        stream = open(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with stream:
        try:
            content = stream.read(cap + 1)
        except OSError as error:
            raise unreadable(f"{what} {path} cannot be read ({error.strerror})",
                             hint="check the file system") from None
    if len(content) > cap:
        raise too_large(f"{what} {path} is larger than {limit}",
                        hint="a file that large is not a secret or a setting")
    return content, info
