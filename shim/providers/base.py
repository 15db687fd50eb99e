"""The one small interface every secret store implements.

A provider receives every reference that points into its store, reads each
distinct `Reference.fetch_key` once (batched and concurrent where the store
allows), and returns, per fetch key, either the secret or the ShimError that
explains why not. Selecting a key inside the secret is not its job: the
resolver does that the same way for every store. Retries, the deadline and
concurrency are shim/providers/mechanism.py's job, which also shows how to
write a provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from shim.tools.deadline import Deadline
from shim.tools.errors import ShimError, UnusableValue
from shim.tools.records import record
from shim.syntax.refs import Reference

TYPE_CHECKING = False   # typing is not imported at start-up (shim.tools.records)
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Protocol, Union


@record
class SecretMeta:
    """What the store says about a secret (never its value)."""
    version: str | None = None
    created: datetime | None = None      # timezone-aware
    updated: datetime | None = None
    expires: datetime | None = None
    not_before: datetime | None = None
    content_type: str | None = None
    lease_id: str | None = None
    lease_duration: int | None = None
    renewable: bool = False


def age_seconds(meta: SecretMeta, now: datetime | None = None) -> float | None:
    """How long ago the store says the secret last changed (None when it does not say)."""
    moment = meta.updated or meta.created
    if moment is None:
        return None
    from datetime import datetime, timezone  # lazy: only when an age is asked for (~1.5 ms)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (now - moment).total_seconds())


@record
class Fetched:
    """A secret as read: text, bytes, or a key/value map (Vault KV, parsed JSON)."""
    value: Union[str, bytes, Mapping[str, Any]]
    meta: SecretMeta = SecretMeta()


if TYPE_CHECKING:
    Outcome = Union[Fetched, ShimError]


class ProviderContext:
    """What a provider may use: the starting environment and the logger (shim.delivery.audit.Log).

    `read_only` (shim check): change nothing in the store; a reference that cannot be read
    without doing so (a dynamic secret, a single-use credential) is answered with NotRead."""

    def __init__(self, environ: Mapping[str, str], log: Any, read_only: bool = False):
        self.environ = environ
        self.log = log
        self.read_only = read_only
        # Does anything read a secret's dates (check, a rotation policy, an audit or info log
        # of ages)? A store that dates a secret only at the cost of another request (GCP)
        # skips it when not (Pipeline.resolve sets this for each resolution).
        self.wants_dates = True


# The interfaces, for readers and type checkers only: building Protocol classes costs
# start-up time at every container start, and nothing checks them at run time.
if TYPE_CHECKING:
    class Provider(Protocol):
        name: str

        def fetch_all(self, references: Sequence[Reference],
                      deadline: Deadline) -> dict[tuple, Outcome]:
            """One Outcome per distinct fetch_key among `references`."""
            ...


    ProviderFactory = Callable[[ProviderContext], Provider]


    class LeaseKeeper(Protocol):
        """Optional, for stores with leases and tokens (Vault); used by long-running modes.

        A Fetched whose meta has a lease_id is not re-read on every --watch tick
        (a dynamic secret would be new each time); it is renewed at about 2/3 of
        its TTL, and re-read only when renewal is refused or capped.
        """

        def renew_lease(self, lease_id: str, increment: int | None, deadline: Deadline) -> int:
            """Renew; the new lease_duration in seconds (smaller than asked when max_ttl caps it)."""
            ...

        def revoke_lease(self, lease_id: str, deadline: Deadline) -> None: ...

        def token_ttl(self) -> int | None:
            """Seconds left on the token this provider logged in with (None: no expiring token)."""
            ...

        def renew_token(self, deadline: Deadline) -> int | None: ...

        def revoke_token(self, deadline: Deadline) -> None: ...


def nested_too_deeply(what: str) -> UnusableValue:
    """JSON nested deeper than Python's parser recurses: no secret looks like that."""
    return UnusableValue(f"{what} is JSON nested too deeply to read",
                         hint="check what wrote it: a secret's JSON is a few levels deep")
