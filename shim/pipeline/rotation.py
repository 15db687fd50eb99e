"""Rotation policy: how old may a secret be (--max-age, ?max_age=), and what then.

Ages come from what each store reports (SecretMeta.updated, else created):
Vault KV v2 version times, Secrets Manager LastChangedDate, Key Vault
attributes.updated, a file's mtime. An overdue secret is logged as
`secret.rotation_overdue`; with --enforce-max-age it is refused (78).
"""

from __future__ import annotations

from shim.tools.durations import parse_duration
from shim.tools.errors import ConfigError
from shim.providers.base import age_seconds


def check_rotation(resolution, *, max_age: float | None, enforce: bool, log) -> list[ConfigError]:
    errors = []
    for name in sorted(resolution.variables):
        result = resolution.variables[name]
        if result.error is not None:
            continue
        for reference, meta in result.metas:
            verdict = overdue(reference, meta, max_age, log=log, variable=name)
            if verdict is None:
                continue
            age, limit = verdict
            message = (f"rotation overdue: the secret is {_days(age)} old, "
                       f"more than the allowed {_days(limit)}")
            # Enforced, the refusal is the one line a person reads (the event stays for -v,
            # JSON logs and the audit file); otherwise the warning is all there is.
            log.event("secret.rotation_overdue", "info" if enforce else "warning",
                      f"{name} ({reference.shown}): {message}",
                      variable=name, reference=reference.shown, provider=reference.provider,
                      age_seconds=int(age), max_age_seconds=int(limit), version=meta.version)
            if enforce:
                errors.append(ConfigError(message, variable=name, reference=reference.shown,
                                          hint="rotate the secret, or raise max_age"))
    return errors


def overdue(reference, meta, max_age: float | None, *, log=None, variable=None):
    """(age, limit) in seconds when this secret is older than its limit, else None."""
    limit = _limit(reference, max_age)
    if limit is None:
        return None
    age = age_seconds(meta)
    if age is None:
        if log is not None:
            log.event("secret.age_unknown", "debug", variable=variable, reference=reference.shown)
        return None
    return (age, limit) if age > limit else None


def _limit(reference, default: float | None) -> float | None:
    own = reference.option("max_age")
    return parse_duration(own, option="max_age") if own else default


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{int(seconds)}s"
