"""What every provider shares: retries within --deadline, a runner that returns at the
deadline, and one read per distinct fetch key.

The provider contract, whole (a new store needs this module's three functions, nothing else):

    # shim/providers/example.py
    from shim.tools.errors import NotFound
    from shim.providers.base import Fetched
    from shim.providers.mechanism import Transient, by_fetch_key, retry, run_concurrently

    class ExampleProvider:
        name = "example"                          # its key in shim/providers/registry.py

        def __init__(self, context):              # ProviderContext: .environ, .log
            self.context = context

        def fetch_all(self, references, deadline):
            groups = by_fetch_key(references)     # fetch_key -> the references sharing one read
            def read(key):
                def attempt():                    # one call; raise Transient(reason) for what
                    ...                           # another attempt may fix (5xx, throttling)
                    return Fetched(text)          # or raise NotFound / PermissionDenied / ...
                return retry(attempt, deadline, self.context.log, provider=self.name,
                             title="Example", operation="read", hint="check the network")
            jobs = [lambda key=key: read(key) for key in groups]
            return dict(zip(groups, run_concurrently(jobs, deadline, title="Example")))

Then one line in shim/providers/registry.py's REGISTRY (module, class, pip extra) and one
`register(ProviderSyntax(...), Spelling(...)...)` call at the end of shim/syntax/refs.py: its ref+
scheme, options, parser and canonical render, plus any other spelling (a prefix such as `sm://`).
The syntax lives in refs.py, not in the provider's module, because references are parsed before
any provider is imported (a run that needs no store imports no SDK).

run_concurrently: a job that raises a ShimError gives that error as its outcome; a job still
running at the deadline gives Unavailable; any other exception is a bug and is raised again in
the caller's thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Sequence

from shim.tools.deadline import Deadline
from shim.tools.errors import ShimError, Unavailable
from shim.providers.waiting import WaitingNotice

# One backoff policy for every store: full-jitter exponential, sleeping a random time up to
# BACKOFF_FIRST * 2^n seconds, at most BACKOFF_MAX (so a store that recovers is noticed soon).
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 3.0
# No attempt is started with less time than this left; the last sleep stops short of it.
LAST_ATTEMPT = 0.25
# How long past --deadline a job gets to report its own failure before it is abandoned. A read
# that has sent its headers can trickle its body a byte at a time: client libraries time out
# per socket read, never per request, so only abandoning the thread bounds it.
SLACK = 1.0
MAX_WORKERS = 16


class Transient(Exception):
    """A failure another attempt may fix; `reason` is safe to show (a status, a code)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after   # the store's own Retry-After, in seconds, if it sent one


def retry(attempt: Callable[[], Any], deadline: Deadline, log, *, provider: str, title: str,
          operation: str, hint: str, transient: Callable[[BaseException], str | None] | None = None,
          **fields) -> Any:
    """`attempt()`'s result, retried on transient failures until the deadline.

    `transient(error)` gives the reason for an exception worth retrying (None: raise it at once);
    without it only Transient is retried, waiting at least its `retry_after` when it has one.
    Each retry logs one `provider.retry` event (provider, operation, attempt, reason, wait, plus
    `fields`, e.g. reference) and, at the default text verbosity, updates the waiting notice
    (shim.providers.waiting); giving up raises the one Unavailable shape:
    "<title>: <reason> on every attempt (<n>, <seconds>s) within the deadline".
    """
    import tenacity  # lazy: a remote provider's extra, never a local run's

    def reason_of(error: BaseException) -> str | None:
        if isinstance(error, Transient):
            return error.reason
        return transient(error) if transient is not None else None

    if deadline.expired():
        raise Unavailable(f"{title}: no time left within the deadline for {operation}",
                          hint="allow more time with --deadline")
    backoff = tenacity.wait_random_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX)

    def wait(state) -> float:
        # A store's Retry-After is a floor, not a promise: still never sleep into the last
        # LAST_ATTEMPT seconds, they are for one more attempt.
        error = state.outcome.exception()
        asked = (error.retry_after or 0.0) if isinstance(error, Transient) else 0.0
        return min(max(backoff(state), asked), max(0.0, deadline.remaining() - LAST_ATTEMPT))

    notice = WaitingNotice(log, title=title, operation=operation, deadline=deadline)
    started = time.monotonic()

    def before_sleep(state) -> None:
        reason = reason_of(state.outcome.exception())
        notice.failed(reason, state.attempt_number)
        log.event("provider.retry", "info",
                  f"{title}: {operation} failed ({reason}); retrying in {state.upcoming_sleep:.2f}s",
                  provider=provider, operation=operation, attempt=state.attempt_number,
                  reason=reason, wait=round(state.upcoming_sleep, 3), **fields)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda error: reason_of(error) is not None),
        wait=wait, stop=lambda state: deadline.remaining() < LAST_ATTEMPT,
        before_sleep=before_sleep, reraise=False)
    try:
        return retrying(attempt)
    except tenacity.RetryError as failure:
        last = failure.last_attempt
        spent = time.monotonic() - started
        raise Unavailable(
            f"{title}: {reason_of(last.exception())} on every attempt ({last.attempt_number}, "
            f"{spent:.1f}s) within the deadline", hint=hint) from None
    finally:
        notice.done()


def run_concurrently(jobs: Sequence[Callable[[], Any]], deadline: Deadline, *, title: str,
                     workers: int = MAX_WORKERS, slack: float = SLACK) -> list:
    """Each job's result (or the ShimError it raised), at most `slack` seconds past the deadline.

    Daemon threads rather than a ThreadPoolExecutor: an executor's workers are joined at
    interpreter exit, so one request stuck past --deadline would keep a failing shim alive.
    A job still running when the time is up gives Unavailable and is abandoned.
    """
    results: list = [None] * len(jobs)
    done = [False] * len(jobs)
    pending = iter(range(len(jobs)))
    state = threading.Condition()
    unfinished = [len(jobs)]

    def work() -> None:
        while True:
            with state:
                index = next(pending, None)
            if index is None:
                return
            try:
                outcome = jobs[index]()
            except BaseException as error:  # ShimError: the outcome; anything else: a bug
                outcome = error
            with state:
                results[index], done[index] = outcome, True
                unfinished[0] -= 1
                state.notify_all()

    for _ in range(min(workers, len(jobs))):
        threading.Thread(target=work, name="shim-provider", daemon=True).start()
    with state:
        state.wait_for(lambda: unfinished[0] == 0, timeout=deadline.remaining() + slack)
        finished = [results[i] if done[i] else _late(title) for i in range(len(jobs))]
    for outcome in finished:
        if isinstance(outcome, BaseException) and not isinstance(outcome, ShimError):
            raise outcome
    return finished


def call_within(job: Callable[[], Any], deadline: Deadline, *, title: str) -> Any:
    """One call bounded by the deadline (e.g. a lease renewal): its result, or raise its error."""
    outcome = run_concurrently([job], deadline, title=title)[0]
    if isinstance(outcome, ShimError):
        raise outcome
    return outcome


def by_fetch_key(references: Iterable) -> dict[tuple, list]:
    """fetch_key -> the references that share it (one read serves them all), in first-seen order."""
    groups: dict[tuple, list] = {}
    for reference in references:
        groups.setdefault(reference.fetch_key, []).append(reference)
    return groups


def _late(title: str) -> Unavailable:
    return Unavailable(f"{title}: no answer within the deadline",
                       hint="check the network path to the store, or allow more time with "
                            "--deadline")

