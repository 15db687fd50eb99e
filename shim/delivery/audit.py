"""Log lines and audit events: the only place that prints about secrets.

Text format is for people (warnings and errors by default, events with -v);
JSON format is one object per line with an `event` field, for machines.
Callers pass names, references as shown_reference quotes them, versions and times; there is no
parameter through which a value could arrive, and messages are built from
ShimError.line(), which never holds one either.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

from shim.tools.errors import PermissionDenied, ShimError
from shim.providers.base import age_seconds

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

# The run's Log, so an error that escapes a command still reaches --audit-file (report_error).
_active = None


class Log:
    def __init__(self, log_format: str = "text", level: str | None = None,
                 stream=None, audit_file: str | None = None):
        self.format = log_format
        default = "info" if log_format == "json" else "warning"
        self.threshold = LEVELS[level or default]
        self.stream = stream if stream is not None else sys.stderr
        self._audit = _open_audit_file(audit_file) if audit_file else None
        self._dumps = None
        global _active
        _active = self
        if self._audit is not None or log_format == "json":
            # Imported here rather than at module level: a text-format run without an audit
            # file never needs json. Not later either: after the drop to
            # --user the interpreter's own files may no longer be readable.
            from json import dumps  # lazy: json only for JSON logs or an audit file, loaded before the drop
            self._dumps = dumps

    @property
    def keeps_audit(self) -> bool:
        """An --audit-file records every event (one per variable, for machines)."""
        return self._audit is not None

    def shows(self, level: str) -> bool:
        """Would an event of this level be printed (whatever the audit file records)?"""
        return LEVELS[level] >= self.threshold

    def wants(self, level: str) -> bool:
        """Would an event of this level be shown or recorded anywhere?"""
        return self._audit is not None or LEVELS[level] >= self.threshold

    def event(self, event: str, level: str = "info", message: str | None = None, **fields) -> None:
        shown = LEVELS[level] >= self.threshold
        if not shown and self._audit is None:
            return  # the usual text-mode start: nobody reads it, so build nothing
        record = {"time": _now(), "level": level, "event": event}
        if message is not None:
            record["message"] = message
        record.update({k: v for k, v in fields.items() if v is not None})
        if self._audit is not None:
            self._audit.write(self._dumps(record, default=str) + "\n")
            self._audit.flush()
        if not shown:
            return
        if self.format == "json":
            line = self._dumps(record, default=str)
        else:
            line = "shim: " + (f"{level}: " if level in ("warning", "error") else "")
            line += message if message is not None else _describe(event, fields)
        self.stream.write(line + "\n")
        self.stream.flush()

    def error(self, error, event: str = "error") -> None:
        self.event(event, "error", error.line(), variable=error.variable,
                   reference=error.reference, exit_code=error.exit_code, failure=error.kind)

    def warning(self, message: str, event: str = "warning", **fields) -> None:
        self.event(event, "warning", message, **fields)

    def debug(self, message: str, event: str = "debug", **fields) -> None:
        self.event(event, "debug", message, **fields)


def report_error(error, *, log_format: str, audit_file: str | None) -> None:
    """An error that escaped every command (bad --user, bad duration): through the run's Log,
    or one made for it when the error came before the Log, so --audit-file records it too."""
    log = _active
    if log is None:
        try:
            log = Log(log_format, audit_file=audit_file)
        except (OSError, ShimError):  # the audit file itself is what failed
            log = Log(log_format)
    log.error(error, event="secret.failed" if error.variable else "error")


def record_resolution(log: Log, resolution) -> None:
    """One `secret.resolved` event per secret a variable received: where from, which version, how old."""

    if not log.wants("info"):
        return
    for name in sorted(resolution.variables):
        result = resolution.variables[name]
        if result.error is not None:
            continue
        for reference, meta in result.metas:
            age = age_seconds(meta)
            log.event("secret.resolved", "info", variable=name, provider=reference.provider,
                      reference=reference.shown, version=meta.version,
                      created=_iso(meta.created), updated=_iso(meta.updated),
                      age_seconds=int(age) if age is not None else None)


def _iso(moment) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def _describe(event: str, fields) -> str:
    return event + " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _open_audit_file(path: str):
    """Append-only, never through a symlink, never readable or writable by others.

    An existing file we own that others may read or write is made 0600 (it holds which
    secrets were read, when and from where); one owned by someone else is refused (77).
    """

    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise PermissionDenied(f"--audit-file {path}: is a symbolic link",
                                   hint="point it at the file itself") from None
        raise
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise PermissionDenied(f"--audit-file {path}: is not a regular file",
                                   hint="point it at a file")
        if info.st_mode & 0o077:
            if info.st_uid != os.geteuid():
                raise PermissionDenied(
                    f"--audit-file {path}: is open to other users (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}) and owned by uid {info.st_uid}",
                    hint="chmod 600 it, or let shim create it")
            os.fchmod(descriptor, 0o600)
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return open(descriptor, "a", encoding="utf-8")
