"""What a person at a terminal sees while shim retries a store: that it waits, on what, and until
when (issue 25: a wrong VAULT_ADDR or a sealed store used to give a minute of silence).

At the default text verbosity the `provider.retry` events are below the threshold, so retry()
reports through a WaitingNotice instead: nothing during the first GRACE seconds (a store that
answers the second time is not worth a line), then one line naming the store, the operation,
the last reason (a status or a code, never a value) and the time left before --deadline.
On a terminal the line is rewritten in place (at most every TERMINAL_EVERY seconds) and erased
when the last wait ends; elsewhere (a container's log) a plain line at most every LOG_EVERY
seconds. With -v the retry events themselves are shown, with -q or JSON logs nothing is added.
"""

from __future__ import annotations

import threading
import time

GRACE = 2.0
TERMINAL_EVERY = 1.0
LOG_EVERY = 10.0

# One notice for the whole process: concurrent reads share one line and one throttle.
_lock = threading.Lock()
_state = {"waiting": 0, "shown_at": None, "on_line": False}


def notice_wanted(log) -> bool:
    """Text logs at the default level: the retries are not shown, so the notice is."""
    shows = getattr(log, "shows", None)     # the run's shim.delivery.audit.Log
    return (getattr(log, "format", None) == "text" and shows is not None
            and not shows("info") and shows("warning"))


class WaitingNotice:
    """One retry loop's share of the notice: `failed()` after each failed attempt, `done()` at
    the end, whatever the outcome."""

    def __init__(self, log, *, title: str, operation: str, deadline):
        self.stream = log.stream if notice_wanted(log) else None
        self.title, self.operation, self.deadline = title, operation, deadline
        self.started = time.monotonic()
        self.terminal = _is_terminal(self.stream)
        if self.stream is not None:
            with _lock:
                _state["waiting"] += 1

    def failed(self, reason: str | None, attempt: int) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.started < GRACE:
            return
        every = TERMINAL_EVERY if self.terminal else LOG_EVERY
        with _lock:
            shown = _state["shown_at"]
            if shown is not None and now - shown < every:
                return
            _state["shown_at"] = now
            line = (f"shim: waiting for {self.title} ({self.operation}): {reason}; "
                    f"attempt {attempt}, retrying for {self.deadline.remaining():.0f}s more "
                    f"(--deadline)")
            if self.terminal:
                self.stream.write("\r\x1b[K" + line)
                _state["on_line"] = True
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def done(self) -> None:
        if self.stream is None:
            return
        with _lock:
            _state["waiting"] -= 1
            if _state["waiting"] == 0:
                if _state["on_line"]:
                    self.stream.write("\r\x1b[K")   # the final result or error says the rest
                    self.stream.flush()
                _state.update(shown_at=None, on_line=False)


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
