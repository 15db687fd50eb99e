"""The process that carries the program's output through shim/delivery/redact.py.

`RedactedOutput.open()` is called by the supervisor before the program starts: it makes the
program's stdout and stderr (pipes, or a pseudo-terminal for stdout when shim's stdout is a
terminal, so `isatty(1)` is true, colours and full-screen programs work) and forks the
redactor, which holds the values' tables and nothing else to do: read, redact, write to
shim's own stdout and stderr. stdout and stderr stay separate streams.

With a pseudo-terminal the program also gets it as stdin and controlling terminal (its own
session), shim's terminal is put in raw mode and its keystrokes are relayed, so Ctrl-C reaches
the program through the terminal as it would without shim; the window size is copied at start
and on every SIGWINCH. The terminal's mode is restored when the output ends.

The redactor ends when the program's output ends (every writer closed it), after flushing
what it held back. With --watch the supervisor sends it new values over a pipe (one JSON
object per line, {NAME: value}); old values stay redacted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import sys
import termios
import time
import tty

from shim.delivery.redact import HOLD_SECONDS, Patterns, Redactor

_POLL_SECONDS = 0.25
# A read within _BULK_BYTES says the program is writing in bulk, in small pieces (a line, a
# prompt, a screen of a full-screen program are less): the redactor then naps _GATHER_SECONDS,
# so that the next read carries many of the program's writes, not one. Measured in
# docs/redact.md: each pass of the loop costs ~20 us of Python, a program writing 8 KiB blocks
# made one pass per block. Larger reads mean a program that fills the pipe faster than the nap
# would let it drain: no nap. The nap adds at most its length to the delay of bulk output.
_BULK_BYTES = (4096, 65536)
_GATHER_SECONDS = 0.0005
_READ_SIZE = 1 << 20   # measured: with 64 KiB pipes and reads the stream took a quarter more CPU


class RedactedOutput:
    """The program's side (fds to dup2) and the redactor's pid and control pipe."""

    def __init__(self, values: dict[str, str], *, terminal: bool):
        self.values = values
        self.terminal = terminal
        self.child_fds: dict[int, int] = {}    # program fd -> our fd to dup2 there
        self.pid: int | None = None
        self.control: int | None = None

    def open(self) -> None:
        sources = {}
        if self.terminal:
            master, slave = os.openpty()
            _copy_window_size(sys.stdout.fileno(), master)
            self.child_fds[0] = self.child_fds[1] = slave
            sources[master] = 1
        else:
            read_out, write_out = _output_pipe()
            self.child_fds[1] = write_out
            sources[read_out] = 1
        read_err, write_err = _output_pipe()
        self.child_fds[2] = write_err
        sources[read_err] = 2
        control_read, self.control = os.pipe()
        for descriptor in set(self.child_fds.values()) | {self.control}:
            os.set_inheritable(descriptor, False)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                for descriptor in set(self.child_fds.values()) | {self.control}:
                    os.close(descriptor)
                code = _relay(sources, control_read, self.values, terminal=self.terminal)
            except BaseException:   # noqa: BLE001 - never return into the supervisor
                code = 70
            os._exit(code)
        os.close(control_read)
        for source in sources:
            os.close(source)
        self.pid = pid
        self.values = {}   # the supervisor keeps no table: the redactor has them

    def attach(self) -> None:
        """In the program's process, before exec: its stdio becomes ours."""
        if self.terminal:
            os.setsid()
            slave = self.child_fds[1]
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for target, descriptor in self.child_fds.items():
            os.dup2(descriptor, target)
        for descriptor in set(self.child_fds.values()):
            if descriptor > 2:
                os.close(descriptor)

    def update(self, values: dict[str, str]) -> None:
        """--watch: new values are redacted from now on (the old ones stay)."""
        if self.control is None:
            return
        line = (json.dumps(values) + "\n").encode()
        try:
            while line:
                line = line[os.write(self.control, line):]
        except OSError:
            pass

    def finish(self, timeout: float = 2.0) -> None:
        """The program is gone for good: close our ends and let the redactor drain and exit."""
        for descriptor in set(self.child_fds.values()) | ({self.control} if self.control else set()):
            try:
                os.close(descriptor)
            except OSError:
                pass
        self.child_fds, self.control = {}, None
        deadline = time.monotonic() + timeout
        while self.pid is not None and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                break
            time.sleep(0.02)
        else:
            if self.pid is not None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pid = None


def _output_pipe() -> tuple[int, int]:
    """A pipe for the program's output, as large as an unprivileged process may make it: the
    program writes on while the redactor scans, and each pass of the redactor's loop (a Python
    round of select, read, match, write) carries up to a megabyte instead of 64 KiB."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _READ_SIZE)
    except OSError:   # above /proc/sys/fs/pipe-max-size, or a kernel without it: the default
        pass
    return read_end, write_end


def _copy_window_size(source: int, target: int) -> None:
    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _relay(sources: dict[int, int], control: int, values: dict[str, str], *, terminal: bool) -> int:
    """The redactor's loop; its exit code."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH, signal.SIGINT, signal.SIGTERM,
                                              signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD})
    patterns = Patterns()
    patterns.add(values)
    values.clear()
    redactors = {source: Redactor(patterns) for source in sources}
    held_since: dict[int, float] = {}
    stdin = None
    saved_mode = None
    if terminal and os.isatty(0):
        stdin = 0
        saved_mode = termios.tcgetattr(0)
        tty.setraw(0)
    master = next(iter(sources)) if terminal else None
    control_lines = b""
    output = _OutputReader()
    try:
        while sources:
            watched = list(sources) + ([control] if control is not None else []) \
                + ([stdin] if stdin is not None else [])
            timeout = HOLD_SECONDS if held_since else (_POLL_SECONDS if terminal else None)
            try:
                ready, _, _ = select.select(watched, [], [], timeout)
            except InterruptedError:
                continue
            if terminal and signal.SIGWINCH in signal.sigpending():
                signal.sigtimedwait({signal.SIGWINCH}, 0)
                _copy_window_size(1, master)
            bulk = False
            for source in ready:
                if source == control:
                    chunk = _read(control)
                    if not chunk:
                        control = None
                        continue
                    control_lines += chunk
                    while b"\n" in control_lines:
                        line, control_lines = control_lines.split(b"\n", 1)
                        patterns.add(json.loads(line))
                    continue
                if source == stdin:
                    chunk = _read(stdin)
                    if not chunk:
                        stdin = None
                    else:
                        _write(master, chunk)
                    continue
                redactor = redactors[source]
                chunk = output.read(source, after=redactor.held)
                if chunk is None:   # every writer closed it: the program's output ended
                    _write(sources[source], redactor.flush())
                    del sources[source]
                    held_since.pop(source, None)
                    continue
                _write(sources[source], redactor.feed_after_held(chunk))
                bulk = bulk or _BULK_BYTES[0] <= len(chunk) < _BULK_BYTES[1]
                if redactor.held:
                    held_since.setdefault(source, time.monotonic())
                else:
                    held_since.pop(source, None)
            if bulk:   # the program writes in bulk: let a few of its writes gather first
                time.sleep(_GATHER_SECONDS)
            now = time.monotonic()
            for source, since in list(held_since.items()):
                if now - since >= HOLD_SECONDS:   # the bound: write what was held as it is
                    _write(sources[source], redactors[source].flush())
                    del held_since[source]
    finally:
        if saved_mode is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved_mode)
    return 0


class _OutputReader:
    """Reads the program's output into one buffer, used again for every read: a new megabyte
    for each read (os.read) costs its page faults, measured at three times the CPU time of
    the reading itself. A read lands right after a copy of the tail the stream's redactor
    holds back, so the two are matched as one text without copying the new data. What a read
    returns is valid until the next one."""

    def __init__(self):
        self.buffer = bytearray(_READ_SIZE)
        self.view = memoryview(self.buffer)

    def read(self, descriptor: int, *, after: bytes = b"") -> memoryview | None:
        """`after` and then what one read brought (up to the buffer's end); None at the end
        of the output."""
        if len(after) > len(self.buffer) // 2:   # the tail of a very long value: more room
            self.buffer = bytearray(2 * len(after))
            self.view = memoryview(self.buffer)
        self.view[:len(after)] = after
        try:
            count = os.readv(descriptor, [self.view[len(after):]])
        except OSError as error:
            if error.errno == errno.EIO:   # a pseudo-terminal whose program side is all closed
                return None
            raise
        return self.view[:len(after) + count] if count else None


def _read(descriptor: int) -> bytes:
    """The control pipe and the keyboard: short reads, kept as bytes."""
    try:
        return os.read(descriptor, 65536)
    except OSError as error:
        if error.errno == errno.EIO:
            return b""
        raise


def _write(descriptor: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(descriptor, data):]
        except InterruptedError:
            continue
        except BrokenPipeError:
            return
