"""--watch: re-resolve on a timer, act only on a confirmed change, keep leases alive.

- Each tick runs the whole pipeline again in a short-lived helper process
  (shim.pipeline.helper), waited for in a background thread, so the supervisor keeps
  forwarding signals and reaping while a slow store answers, and never loads
  a store SDK itself. The Vault login and the mounts detected are handed from
  one helper to the next, so they are not repeated.
- The interval gets ±10% jitter so a fleet started together does not hit
  the store together.
- A change is acted on only when a second resolution, a moment later,
  agrees (debounce): a rotation caught half-way does not restart twice.
- A failed re-resolution changes nothing: the running program keeps its
  values and the next tick tries again. A store blip never kills a healthy
  process.
- What is compared is a Snapshot: the values (the program's environment, or
  render's values) and the text each --template renders, so a template whose
  secret rotated is a change even when no variable is.
- Secrets with a lease (Vault dynamic credentials) are not re-read on every
  tick — each read would mint new credentials. They are renewed at about 2/3
  of their TTL; when renewal is refused or capped by max_ttl, they are read
  again at once, and the new credentials are applied without the debounce
  (they are new by design, and the old ones are about to die).
- A lease dies with the store token that read it. When the token is replaced
  (a new login once the old token reached its max TTL), the leases it read
  are read again with the new one, the same way.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from shim.tools.deadline import Deadline
from shim.tools.errors import ShimError
from shim.tools.records import record
from shim.providers.mechanism import call_within

RENEW_FRACTION = 2 / 3
POLL_SECONDS = 0.2
# A failed read of replacement credentials is tried again this soon (the old ones are dying),
# not after a whole --watch interval.
REPLACEMENT_RETRY_SECONDS = 2.0


@record
class Snapshot:
    """What one resolution gives the program, compared whole from tick to tick."""
    values: dict            # the program's environment, or render's values
    files: dict = {}        # --template: DEST -> the rendered content (never logged)

    def changed_from(self, old: "Snapshot") -> list[str]:
        """The variables, then the templates ("template DEST"), that differ from `old`."""
        files = sorted(f"template {destination}"
                       for destination in set(old.files) | set(self.files)
                       if old.files.get(destination) != self.files.get(destination))
        return _changed(old.values, self.values) + files


@dataclass
class TrackedLease:
    lease_id: str
    provider: str
    fetch_key: tuple
    duration: int
    due: float                 # monotonic time of the next renewal (or re-read)
    expiring: bool = False     # not renewable: re-read at `due` instead of renewing
    generation: object = None  # which login of the provider's token read it (None: no logins)


class Watcher:
    """Owns the timer, the debounce, the lease bookkeeping; calls `apply(snapshot, changed)`
    on a confirmed change."""

    def __init__(self, *, resolve: Callable[[dict], tuple[Snapshot | None, list, list]],
                 current: Snapshot, interval: float,
                 apply: Callable[[Snapshot, list[str]], None], log, pool,
                 deadline_seconds: float, settle: float | None = None, metrics=None):
        self.resolve = resolve            # reuse -> (Snapshot or None, errors, fetched metas)
        self.current = current
        self.interval = interval
        self.apply = apply
        self.log = log
        self.pool = pool
        self.deadline_seconds = deadline_seconds
        self.settle = settle if settle is not None else min(interval / 2, 2.0)
        self.reuse: dict[tuple, object] = {}     # fetch_key -> Fetched kept across ticks (leases)
        self.leases: dict[str, TrackedLease] = {}
        self._pending: dict | None = None
        self._thread: threading.Thread | None = None
        self._result = None
        self._next = time.monotonic() + self._jittered(interval)
        self._token_due: float | None = None
        self._token_provider: str | None = None
        self._replacing = False   # a lease was dropped: its new credentials are being read
        # Leases dropped for good: a resolution started before the drop still hands them back.
        self._dropped: set[str] = set()
        self._resolution_drops = 0    # len(_dropped) when the running resolution started
        self.resolutions = 0
        self.metrics = metrics            # --metrics: shim.delivery.metrics.Metrics, or None

    # The supervisor (or render's loop) asks when to call tick().
    def next_tick(self) -> float:
        due = [self._next]
        due.extend(lease.due for lease in self.leases.values())
        if self._token_due is not None:
            due.append(self._token_due)
        return min(due)

    def due_now(self) -> None:
        """Resolve at the next tick instead of waiting for the timer (render's SIGHUP)."""
        self._next = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        # Leases and the token first: a resolution that hangs on a slow store must not let
        # them expire (each renewal is bounded by --deadline on its own).
        self._keep_leases(now)
        self._keep_token(now)
        self._replace_leases_of_old_tokens(now)
        if self._thread is not None:
            if self._thread.is_alive():
                self._next = now + POLL_SECONDS
                return
            self._thread = None
            self._handle(self._result)
            # The resolution may have logged in again (the old token was about to expire).
            self._replace_leases_of_old_tokens(time.monotonic())
            return
        if now >= self._next:
            self._start_resolution()

    def track(self, metas) -> None:
        """Remember the leases of a resolution (fetch_key, provider, SecretMeta, Fetched)."""
        now = time.monotonic()
        for fetch_key, provider, meta, fetched in metas:
            if not meta.lease_id or meta.lease_id in self.leases or meta.lease_id in self._dropped:
                continue
            self.reuse[fetch_key] = fetched
            duration = int(meta.lease_duration or 0)
            self.leases[meta.lease_id] = TrackedLease(
                meta.lease_id, provider, fetch_key, duration,
                due=now + max(1.0, duration * RENEW_FRACTION), expiring=not meta.renewable,
                generation=self._token_generation(provider))
            if self.metrics is not None:
                self.metrics.lease_expires(fetch_key, now + duration)
        self._schedule_token(now)

    # -- resolution ---------------------------------------------------------

    def _start_resolution(self) -> None:
        reuse = dict(self.reuse)

        def work():
            try:
                self._result = self.resolve(reuse)
            except ShimError as error:
                self._result = (None, [error], [])
            except Exception as error:  # noqa: BLE001 - a bug must not kill the supervisor
                self._result = (None, [ShimError(f"internal error ({type(error).__name__})")], [])

        self._result = None
        self._resolution_drops = len(self._dropped)
        self._thread = threading.Thread(target=work, name="shim-watch", daemon=True)
        self._thread.start()
        self._next = time.monotonic() + POLL_SECONDS

    def _handle(self, result) -> None:
        env, errors, metas = result
        self.resolutions += 1
        now = time.monotonic()
        if self.metrics is not None:
            if errors or env is None:
                self.metrics.resolution_failed()
            else:
                self.metrics.resolution_succeeded()
        if self._resolution_drops != len(self._dropped):
            # Started before a lease was dropped: it still holds the dropped credentials.
            # Keep the leases it minted, and read again at once.
            self.track(metas)
            self._next = now
            return
        if errors or env is None:
            for error in errors:
                self.log.event("watch.failed", "warning",
                               f"re-resolution failed, keeping the running values: {error.line()}",
                               variable=error.variable, reference=error.reference,
                               exit_code=error.exit_code)
            self._pending = None
            self._next = now + self._jittered(self.interval)
            if self._replacing:
                self._next = now + min(self.interval, REPLACEMENT_RETRY_SECONDS)
            return
        self.track(metas)
        replacing, self._replacing = self._replacing, False
        if env == self.current:
            self._pending = None
            self._next = now + self._jittered(self.interval)
            return
        if self._pending != env and not replacing:
            # First sight of a change: confirm it a moment later before acting.
            self._pending = env
            self._next = now + self.settle
            self.log.event("secret.change_seen", "debug", changed=env.changed_from(self.current))
            return
        changed = env.changed_from(self.current)
        self.log.event("secret.changed", "info",
                       f"values changed ({', '.join(changed)}); applying --on-change",
                       variables=changed)
        self._pending = None
        self.current = env
        self._next = now + self._jittered(self.interval)
        self.apply(env, changed)

    # -- leases and tokens --------------------------------------------------

    def _keep_leases(self, now: float) -> None:
        for lease in list(self.leases.values()):
            if now < lease.due:
                continue
            if lease.expiring:
                # Out of renewals: read fresh credentials on this tick.
                self._forget(lease, "lease cannot be renewed; fetching new credentials", now)
                continue
            provider = self.pool.get(lease.provider)
            try:
                granted = self._bounded(
                    lambda deadline: provider.renew_lease(lease.lease_id, lease.duration or None,
                                                          deadline), "lease renewal")
            except ShimError as error:
                self.log.event("lease.renew_failed", "warning",
                               f"lease renewal failed: {error.line()}", lease_id=lease.lease_id)
                self._count("shim_lease_renewals_total", outcome="failure")
                self._forget(lease, "fetching new credentials", now)
                continue
            self.log.event("lease.renewed", "debug", lease_id=lease.lease_id, duration=granted)
            self._count("shim_lease_renewals_total", outcome="success")
            if self.metrics is not None:
                self.metrics.lease_expires(lease.fetch_key, now + granted)
            if granted < lease.duration or granted <= 0:
                # Capped by the lease's max TTL: it dies in `granted` seconds whatever shim
                # does. Replace it now, while the program's credentials still work.
                self._forget(lease, f"lease reaches its max TTL in {granted}s; fetching new "
                                    f"credentials", now)
                continue
            lease.due = now + max(1.0, granted * RENEW_FRACTION)

    def _forget(self, lease: TrackedLease, why: str, now: float) -> None:
        """Drop a lease and read its secret again at once (on this tick)."""
        self.log.event("lease.expiring", "info", why, lease_id=lease.lease_id)
        self.reuse.pop(lease.fetch_key, None)
        del self.leases[lease.lease_id]
        self._dropped.add(lease.lease_id)
        self._replacing = True
        self._next = now

    def _token_generation(self, name: str):
        generation_of = getattr(self.pool.get(name), "token_generation", None)
        return generation_of() if generation_of else None

    def _replace_leases_of_old_tokens(self, now: float) -> None:
        """A lease dies with the token that read it: after a new login, read them again."""
        for lease in list(self.leases.values()):
            if lease.generation != self._token_generation(lease.provider):
                self._forget(lease, "the store token that read this lease was replaced (a new "
                                    "login); fetching new credentials", now)

    def _schedule_token(self, now: float) -> None:
        # Never later than already planned: every resolution calls this, and a token whose
        # TTL shrinks must not see its renewal pushed back again and again.
        planned = self._token_due
        self._token_due = None
        for name, provider in self.pool.loaded().items():
            ttl_of = getattr(provider, "token_ttl", None)
            ttl = ttl_of() if ttl_of else None
            if ttl:
                due = now + max(1.0, ttl * RENEW_FRACTION)
                self._token_due = min(due, planned) if planned is not None else due
                self._token_provider = name

    def _keep_token(self, now: float) -> None:
        if self._token_due is None or now < self._token_due:
            return
        provider = self.pool.get(self._token_provider)
        try:
            ttl = self._bounded(provider.renew_token, "token renewal")
            self.log.event("token.renewed", "debug", provider=self._token_provider, ttl=ttl)
            self._count("shim_token_renewals_total", outcome="success")
        except ShimError as error:
            self.log.event("token.renew_failed", "warning", f"token renewal failed: {error.line()}")
            self._count("shim_token_renewals_total", outcome="failure")
            ttl = None
        self._token_due = now + max(1.0, ttl * RENEW_FRACTION) if ttl else None

    def _count(self, name: str, **labels) -> None:
        if self.metrics is not None:
            self.metrics.count(name, **labels)

    def revoke_all(self) -> None:
        """--revoke-on-exit: leases first, then each provider's token."""
        for lease in list(self.leases.values()):
            try:
                provider = self.pool.get(lease.provider)
                self._bounded(lambda deadline: provider.revoke_lease(lease.lease_id, deadline),
                              "lease revocation")
                self.log.event("lease.revoked", "info", lease_id=lease.lease_id)
            except ShimError as error:
                self.log.event("lease.revoke_failed", "warning", error.line(), lease_id=lease.lease_id)
        for name, provider in self.pool.loaded().items():
            revoke = getattr(provider, "revoke_token", None)
            if revoke is None:
                continue
            try:
                self._bounded(revoke, "token revocation")
                self.log.event("token.revoked", "info", provider=name)
            except ShimError as error:
                self.log.event("token.revoke_failed", "warning", error.line(), provider=name)

    def _bounded(self, call: Callable[[Deadline], object], title: str):
        """call(deadline), given up at the deadline however the store answers (a slow body)."""
        deadline = Deadline(self.deadline_seconds)
        return call_within(lambda: call(deadline), deadline, title=title)

    @staticmethod
    def _jittered(seconds: float) -> float:
        return seconds * random.uniform(0.9, 1.1)  # noqa: S311 - spreading load, not security


def _changed(old: dict, new: dict) -> list[str]:
    names = set(old) | set(new)
    return sorted(name for name in names if old.get(name) != new.get(name))
