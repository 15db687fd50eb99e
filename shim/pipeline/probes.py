"""--watch: tell whether anything changed without reading the values (cheap change probes).

A tick of --watch used to read every value of every secret. Most ticks change nothing, and a
fleet of replicas pays for each of those reads (stores bill and throttle by read). So a tick
first asks, per secret, the cheapest question that tells whether its value changed:

| reference | probe | requests |
|---|---|---|
| Vault KV v2, latest version | `GET <mount>/metadata/<path>`: `current_version` | 1 |
| Google Secret Manager, `latest` | `GET .../versions/latest` (no payload): its name's number | 1 |
| Secrets Manager, a stage (AWSCURRENT) | `DescribeSecret`: the version id holding it | 1 a secret |
| SSM Parameter Store, a name | `DescribeParameters` (Name filter): `Version` | 1 per 50 names |
| Azure Key Vault | the secret's versions list (properties, no value) | 1 per 25 versions |
| Secrets Manager `version_id`, SSM `name:N` | none needed: that version never changes | 0 |
| Doppler config | the download with `If-None-Match: <its ETag>`: 304, no body, when unchanged | 1 per config |
| 1Password Connect item | the vault's item list (summaries, no fields): the item's `version` | 1 per vault |
| Bitwarden Secrets Manager | the organization's secret list (no values): each `revisionDate` | 1 per run |
| `file:`, NAME_FILE, sops files | the file's content hash (local) | 0 |
| a leased secret kept across ticks | none needed: it is renewed, not read | 0 |
| anything else (KV v1, dynamic secrets, other pinned versions, Infisical, ...) | none: read | - |

The answers are folded into one digest together with the plan's shape (which variables, from
which references). When every secret has a probe and the digest is the one of the last full
resolution, the helper answers "unchanged" and reads nothing; otherwise it resolves as before
(and the supervisor's confirmation, jitter and --on-change follow unchanged). A Vault policy
that denies the metadata path (a separate ACL from the data path), an IAM policy without
secretsmanager:DescribeSecret or ssm:DescribeParameters, a Key Vault identity that may get but
not list: each makes that secret fall back to reading; the supervisor logs it once and stops
asking.

A store offers its probe by methods of its provider: `probe_kind(reference)` (a key of
WATCH_KINDS, or None) and `probe(reference, deadline)` (the answer, DENIED, or None); a
Doppler probe that finds the config changed keeps the download it got, so the read that
follows costs no second request. Stores whose probes batch (AWS, Azure: `BATCHED`) are asked
once for all their references (`probe_all`), so Parameter Store's 50 names share a call as its
reads share GetParameters.

Digests carry hashes of file contents and version numbers or ids, never a value, and stay in
the supervisor's memory (which holds the program's values anyway).
"""

from __future__ import annotations

import hashlib

from shim.tools.errors import ShimError, Unavailable
from shim.tools.safe_read import read_with_stat

DENIED = "denied"        # a probe the store's policy refuses: read instead, and stop asking
FILE_PROBE_CAP = 16 * 1024 * 1024   # a sops file larger than this is read, not hashed
PINNED = "pinned"       # a version that cannot change: no request, and never a reason to read
# Stores that probe all their references at once: provider.probe_kind(reference) says which
# kind each gets, provider.probe_all(references, deadline) -> ({fetch_key: answer}, requests).
BATCHED = ("awssecrets", "awsssm", "azurekeyvault")

# What `check -v` says each kind of reference gets under --watch (docs/long-running.md).
WATCH_KINDS = {
    "metadata": "probe: KV v2 metadata",
    "hash": "probe: content hash",
    "latest": "probe: versions/latest name",
    "etag": "probe: ETag (If-None-Match)",
    "item-version": "probe: item version",
    "revision": "probe: revision dates",
    "stages": "probe: DescribeSecret version stages",
    "parameters": "probe: DescribeParameters version",
    "versions": "probe: Key Vault versions list",
    "pinned": "none needed: pinned version",
    "lease": "lease renewal",
    "read": "read every tick",
}


class ProbeResult:
    def __init__(self):
        self.digest: str | None = None      # None: something has no probe, so read everything
        self.probes: dict[str, int] = {}    # store -> probe requests made
        self.denied: list[str] = []         # references (as shown) whose probe was refused
        self.error: ShimError | None = None # the store is unavailable: the tick fails here
        self._answers: dict[tuple, str] = {}
        self._unanswered: set[tuple] = set()
        self._shape = None

    def kept(self, fetch_keys) -> None:
        """After the read: secrets that came with a lease are kept from now on (the Watcher
        renews them), so they need no probe, and the digest can be complete from this first
        resolution on."""
        for key in set(fetch_keys) & self._unanswered:
            self._answers[key] = "kept"
            self._unanswered.discard(key)
        self._finish()

    def _finish(self) -> None:
        if self._shape is not None and not self._unanswered:
            answers = sorted((repr(key), answer) for key, answer in self._answers.items())
            text = repr((self._shape, answers)).encode("utf-8", "surrogatepass")
            self.digest = hashlib.sha256(text).hexdigest()


def probe_plan(plan, pool, deadline, reuse=None, denied=frozenset(), extra=()) -> ProbeResult:
    """Probe every secret of `plan`, and the `extra` references no variable holds (--template's
    `secret()`); the digest when every one of them has a probe."""
    result = ProbeResult()
    if plan.errors or plan.imports or plan.env_file_entries:
        return result     # env files and --import maps are read with the values: no probe
    references = plan.references() + list(extra)
    try:
        batched = _probe_batched(plan, references, pool, deadline, result, reuse or {}, denied)
    except Unavailable as error:
        result.error = error
        return result
    for reference in references:
        key = reference.fetch_key
        if key in result._answers or key in result._unanswered:
            continue
        if reuse and key in reuse:
            result._answers[key] = "kept"
            continue
        answer = None
        if key in batched:
            answer = batched[key]
        elif reference.shown not in denied:
            try:
                answer = _probe(reference, pool, deadline, result)
            except Unavailable as error:
                # A store that cannot answer its cheapest question will not answer the read
                # either: fail the tick now rather than wait out the deadline a second time.
                result.error = _named(error, plan, reference)
                return result
        if answer == DENIED:
            result.denied.append(reference.shown)
            answer = None
        if answer is None:
            result._unanswered.add(key)    # keep going: every probe is counted, denials noted
        else:
            result._answers[key] = answer
    # What each variable reads (never printed: the digest only changes when the plan does).
    # (The templates' references are fixed for the run's life: loaded once, before the program.)
    result._shape = sorted((name, entry.source, tuple(repr((part.reference.fetch_key,
                                                            part.reference.selector))
                                                      for part in entry.secret_parts))
                           for name, entry in plan.entries.items())
    result._finish()
    return result


def _probe(reference, pool, deadline, result: ProbeResult) -> str | None:
    kind = probe_kind(reference, pool, deadline)
    if kind == "hash":
        result.probes[reference.provider] = result.probes.get(reference.provider, 0) + 1
        return _content_hash(reference.locator)
    if kind != "read":
        result.probes[reference.provider] = result.probes.get(reference.provider, 0) + 1
        try:
            return pool.get(reference.provider).probe(reference, deadline)
        except Unavailable:
            raise       # the caller fails the tick
        except ShimError:
            return None     # anything else: the read will say it, with its own words
    return None


def _probe_batched(plan, references, pool, deadline, result: ProbeResult, reuse,
                   denied) -> dict:
    """{fetch_key: answer} for the references of the BATCHED stores, each store asked once.
    An unavailable store raises Unavailable, naming the first variable it failed."""
    wanted: dict[str, list] = {}
    answers: dict = {}
    for reference in references:
        if (reference.provider not in BATCHED or reference.fetch_key in reuse
                or reference.shown in denied):
            continue
        kind = probe_kind(reference, pool, deadline)
        if kind == PINNED:
            answers[reference.fetch_key] = PINNED
        elif kind != "read":
            wanted.setdefault(reference.provider, []).append(reference)
    for store, group in wanted.items():
        try:
            found, requests = pool.get(store).probe_all(group, deadline)
        except Unavailable as error:
            raise _named(error, plan, group[0]) from None
        except ShimError:
            found, requests = {}, 0     # the read will say what is wrong
        result.probes[store] = result.probes.get(store, 0) + requests
        for reference in group:
            answer = found.get(reference.fetch_key)
            if isinstance(answer, Unavailable):
                raise _named(answer, plan, reference)
            # Anything else that went wrong: the read will say it, with its own words.
            answers[reference.fetch_key] = answer if isinstance(answer, str) else None
    return answers


def _named(error: Unavailable, plan, reference) -> Unavailable:
    """The store's failure, naming the variable and reference it failed."""
    return type(error)(error.message, variable=_user_of(plan, reference.fetch_key),
                       reference=reference.shown, hint=error.hint)


def _user_of(plan, fetch_key) -> str | None:
    """The first variable reading that secret, to name in the failure."""
    for name in sorted(plan.entries):
        if any(part.reference.fetch_key == fetch_key for part in plan.entries[name].secret_parts):
            return name
    return None


def probe_kind(reference, pool, deadline) -> str:
    """A key of WATCH_KINDS ("metadata", "hash", "read", ...): the probe a reference gets
    (leases are the Watcher's); a store offers its own through its provider's `probe_kind`."""
    if reference.provider in ("file", "sops"):
        return "hash"
    if reference.provider == "gcpsecrets" and reference.version is None:
        return "latest"
    if reference.provider in BATCHED:
        try:
            return pool.get(reference.provider).probe_kind(reference)
        except ShimError:
            return "read"
    if reference.provider == "vault":
        try:
            if pool.get("vault").metadata_path(reference, deadline) is not None:
                return "metadata"
        except ShimError:
            pass
        return "read"
    try:
        provider = pool.get(reference.provider)
    except (ShimError, KeyError):
        return "read"       # not a store (an env file), or one the read will say is unusable
    offered = getattr(provider, "probe_kind", None)
    kind = offered(reference) if offered is not None else None
    return kind if kind in WATCH_KINDS and kind not in ("hash", "lease") else "read"


def watch_kind(reference, meta, pool, deadline) -> str:
    """The words `check -v` shows for one reference."""
    if meta is not None and meta.lease_id:
        return WATCH_KINDS["lease"]
    return WATCH_KINDS[probe_kind(reference, pool, deadline)]


def _content_hash(path: str) -> str | None:
    try:
        content, _ = read_with_stat(path, cap=FILE_PROBE_CAP, what="file", size_text="16 MiB")
    except ShimError:
        return None     # the read will say what is wrong
    return hashlib.sha256(content).hexdigest()
