"""Resolution: fetch every reference of a Plan once, then fill in each variable.

References are grouped by provider; each provider reads each distinct
fetch key once. Providers run concurrently when there is more than one
(a local-only run never starts a thread). All or nothing: the caller execs
only when `Resolution.errors` is empty.
"""

from __future__ import annotations

from collections.abc import Mapping

from shim.tools.deadline import Deadline
from shim.tools.errors import ConfigError, NotFound, ShimError, UnusableValue
from shim.syntax.placeholders import key_spellings
from shim.pipeline.plan import Entry, Plan
from shim.providers.registry import load_provider
from shim.providers.base import Fetched, ProviderContext, SecretMeta, nested_too_deeply
from shim.syntax.refs import Reference

TYPE_CHECKING = False   # typing is not imported at start-up (shim.tools.records)
if TYPE_CHECKING:
    from shim.providers.base import Outcome

# Providers that read local files: run in the caller's thread, never on a runner.
LOCAL_PROVIDERS = frozenset({"file"})

# One env string ("NAME=value\0") may be at most MAX_ARG_STRLEN (32 pages).
MAX_ENV_STRING = 131072


class VariableResult:
    def __init__(self, name: str, value: str | None, entry: Entry):
        self.name = name
        self.value = value                  # None: left unset (optional and missing)
        self.data: bytes | None = None      # binary content, only for a variable sent as a file
        self.entry = entry
        self.metas: list[tuple[Reference, SecretMeta]] = []
        self.error: ShimError | None = None


class Resolution:
    def __init__(self):
        self.variables: dict[str, VariableResult] = {}
        self.errors: list[ShimError] = []
        self.fetched: dict[tuple, tuple[str, Fetched]] = {}  # fetch_key -> (provider, Fetched)
        # --fallback-cache: fetch_key -> (age in seconds, the store's error) of what was
        # served from the cache because its store was unavailable
        self.stale: dict[tuple, tuple[float, ShimError]] = {}
        self.outcomes: dict[tuple, Outcome] = {}   # every fetch key's Fetched or ShimError
        self.rendered: dict[str, bytes] = {}         # --template: DEST -> content, not yet written

    def lease_metas(self):
        """(fetch_key, provider, meta, fetched) of every secret that came with a lease."""
        return [(key, provider, fetched.meta, fetched)
                for key, (provider, fetched) in self.fetched.items() if fetched.meta.lease_id]


class ProviderPool:
    """Providers created on first use and kept, so long-running modes reuse auth."""

    def __init__(self, context: ProviderContext):
        self.context = context
        self._providers: dict[str, object] = {}

    def get(self, name: str):
        if name not in self._providers:
            self._providers[name] = load_provider(name, self.context)
        return self._providers[name]

    def loaded(self):
        return dict(self._providers)


def fetch_references(references: list[Reference], pool: ProviderPool,
                     deadline: Deadline, env_file_entries: Mapping,
                     reuse: Mapping[tuple, Fetched] | None = None) -> dict[tuple, Outcome]:
    """One Outcome per fetch key, every provider asked once; `reuse` skips keys already held."""
    by_provider: dict[str, list[Reference]] = {}
    outcomes: dict[tuple, Outcome] = {}
    for reference in references:
        if reuse and reference.fetch_key in reuse:
            outcomes[reference.fetch_key] = reuse[reference.fetch_key]
            continue
        if reference.provider == "envfile":
            outcomes[reference.fetch_key] = Fetched(env_file_entries[reference.locator].value)
            continue
        by_provider.setdefault(reference.provider, []).append(reference)

    def run(name: str, refs: list[Reference]) -> dict[tuple, Outcome]:
        try:
            return pool.get(name).fetch_all(refs, deadline)
        except ShimError as error:
            return {ref.fetch_key: error for ref in refs}

    # Files are read in this thread (a local-only run starts no thread); every store is asked
    # on a daemon thread that is abandoned at the deadline, whatever its server does.
    remote = {}
    for name, refs in by_provider.items():
        if name in LOCAL_PROVIDERS:
            outcomes.update(run(name, refs))
            continue
        # SDKs are imported here, one after the other: importing the same libraries (urllib3,
        # requests) from several threads at once can see a module half-initialized.
        try:
            pool.get(name)
        except ShimError as error:
            outcomes.update({ref.fetch_key: error for ref in refs})
            continue
        remote[name] = refs
    if remote:
        from shim.providers.mechanism import SLACK, run_concurrently  # lazy: threads only for remote references
        names = list(remote)
        # A little more slack than each provider's own runner, so the provider's more
        # precise message wins over this one.
        answers = run_concurrently([lambda n=n: run(n, remote[n]) for n in names], deadline,
                                   title="the secret store", slack=SLACK * 1.5)
        for name, answer in zip(names, answers):
            if isinstance(answer, ShimError):
                answer = {ref.fetch_key: answer for ref in remote[name]}
            outcomes.update(answer)
    return outcomes


def resolve_plan(plan: Plan, pool: ProviderPool, deadline: Deadline,
                 reuse: Mapping[tuple, Fetched] | None = None, binary_ok=None,
                 fallback=None, extra: tuple[Reference, ...] = ()) -> Resolution:
    """`binary_ok(name)`: the variable goes to a file (--as-files), so bytes are fine.
    `fallback`: the --fallback-cache (shim.pipeline.fallback), asked only about unavailable stores.
    `extra`: references no variable holds (--template's), read in the same pass; their
    outcomes are in `Resolution.outcomes`."""
    resolution = Resolution()
    # one read per map, shared
    references = plan.references() + list(plan.imports) + list(extra)
    outcomes = fetch_references(references, pool, deadline, plan.env_file_entries, reuse)
    resolution.outcomes = outcomes
    if fallback is not None:
        try:
            resolution.stale = fallback.cover(references, outcomes)
        except ShimError as error:   # a damaged cache is never half-believed
            resolution.errors.append(error)
    for reference in references:
        outcome = outcomes.get(reference.fetch_key)
        if isinstance(outcome, Fetched):
            resolution.fetched[reference.fetch_key] = (reference.provider, outcome)
    maps = {}
    if plan.imports:   # --import: the maps' keys become entries now that they are known
        from shim.pipeline.imports import adopt, apply_imports  # lazy: only with --import
        imported = apply_imports(plan, outcomes, pool.context.log, plan.skip)
        adopt(plan, imported)
        resolution.errors.extend(imported.errors)
        maps = imported.maps
    for name in sorted(plan.entries):
        entry = plan.entries[name]
        # An imported variable selects its key from the import's map (parsed once).
        sources = {entry.parts[0].reference.fetch_key: maps[name]} if name in maps else outcomes
        result = _resolved_variable(entry, sources, keep_binary=bool(binary_ok and binary_ok(name)))
        resolution.variables[name] = result
        if result.error is not None:
            resolution.errors.append(result.error)
    return resolution


def _resolved_variable(entry: Entry, outcomes: Mapping[tuple, Outcome], keep_binary: bool = False) -> VariableResult:
    result = VariableResult(entry.name, None, entry)
    pieces: list[str] = []
    for part in entry.parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        reference = part.reference
        outcome = outcomes.get(reference.fetch_key)
        if outcome is None:
            outcome = NotFound("nothing was fetched for this reference")
        try:
            if isinstance(outcome, ShimError):
                raise outcome
            text = _select_part(part, outcome, keep_binary=keep_binary and len(entry.parts) == 1)
            if isinstance(text, bytes):  # binary, for a file (--as-files): never in the environment
                result.data, result.value = text, ""
                result.metas.append((reference, outcome.meta))
                return result
        except ShimError as error:
            if reference.optional and isinstance(error, NotFound):
                if entry.whole:
                    return result  # optional and missing: leave the variable unset
                text = ""
            else:
                if part.placeholder and isinstance(error, NotFound):
                    error = ConfigError(f"unresolved placeholder {part.placeholder}: {error.message}",
                                        hint="add the key to the placeholder source")
                result.error = error.with_context(variable=entry.name,
                                                  reference=reference.shown)
                return result
        else:
            result.metas.append((reference, outcome.meta))
        if part.in_userinfo:
            from urllib.parse import quote  # lazy: only for a secret inside a URL's user-info
            text = quote(text, safe="")
        pieces.append(text)
    result.value = "".join(pieces)
    size = len(entry.name.encode()) + 1 + len(result.value.encode()) + 1
    if size > MAX_ENV_STRING and not keep_binary:  # a file (--as-files) has no such limit
        result.error = UnusableValue(
            f"{entry.name}=value with its NUL is {size} bytes, more than one environment string "
            f"may hold (128 KiB = {MAX_ENV_STRING} bytes)",
            variable=entry.name, hint=_AS_A_FILE)
        result.value = None
    return result


def _select_part(part, fetched: Fetched, *, keep_binary: bool) -> str | bytes:
    """select(), and for a placeholder's key in --placeholder-source each spelling a secrets dir
    would try too (shim.syntax.placeholders.key_spellings); a miss names the key as written."""
    reference = part.reference
    if not (part.placeholder and len(reference.selector) == 1):
        return select(reference, fetched, keep_binary=keep_binary)
    _, *others = key_spellings(reference.selector[0])
    try:
        return select(reference, fetched, keep_binary=keep_binary)
    except NotFound as missing:
        for spelling in others:
            try:
                return select(reference.with_selector((spelling,)), fetched,
                              keep_binary=keep_binary)
            except NotFound:
                pass
        raise missing from None


def select(reference: Reference, fetched: Fetched, *, keep_binary: bool = False) -> str | bytes:
    """The text a reference asks for: the whole secret, or one key inside it, then decoded.

    Binary (not UTF-8, or holding a NUL) is refused unless `keep_binary`: then it is
    returned as bytes, for a variable delivered as a file.
    """
    value = fetched.value
    if reference.selector:
        value = _walk(reference, value)
    encoding = reference.option("encoding")
    if isinstance(value, (Mapping, list)):
        if encoding:
            raise UnusableValue(f"?encoding={encoding} needs encoded text, but this is a JSON "
                                "object or list", hint="select the key that holds the encoded text")
        return _json_text(value)
    if encoding:  # ?encoding=: decode after selection (shim/pipeline/decoding.py)
        from shim.pipeline.decoding import decode  # lazy: only with ?encoding=
        value = decode(encoding, value)
    text = _as_text(value, keep_binary)
    if encoding or not isinstance(text, str):
        return text     # decoded bytes are exact: the encoding carried them on purpose
    return _without_trailing_newlines(text)


def _without_trailing_newlines(text: str) -> str:
    """One rule for every source (docs/references.md, "Trailing newlines"): trailing `\n` and
    `\r\n` go, as a secret file's do (docker-library's file_env), so a value stored with a
    newline reaches the program the same through a reference, `render` or a NAME_FILE.
    What ?encoding= decoded is kept exactly: the encoding carried those bytes on purpose."""
    end = len(text)
    while text.endswith("\n", 0, end):
        end -= 2 if text.endswith("\r\n", 0, end) else 1
    return text[:end]


def _walk(reference: Reference, value):
    # Only selectors need the json module: a run of plain files never imports it.
    import json  # lazy: only for #key selectors
    if not isinstance(value, Mapping):
        text = _as_text(value)
        try:
            value = json.loads(text)
        except ValueError:
            raise UnusableValue("the secret is not JSON, but a key was asked",
                                hint="drop the #key selector or store the secret as JSON") from None
        except RecursionError:
            raise nested_too_deeply("the secret") from None
    for depth, key in enumerate(reference.selector):
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, Mapping) and key in value:
            value = value[key]
        else:
            # Not the key itself: a value that only looks like a reference keeps its likeliest
            # secret part after `#` (shim.syntax.refs.shown_reference).
            raise NotFound(f"key {depth + 1} of the #... selector does not exist in the secret",
                           hint="check the key names (case-sensitive) with shim check")
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return _json_text(value)
    return value


def _json_text(value) -> str:
    import json  # lazy: only for #key selectors
    return json.dumps(value, sort_keys=True)


def _as_text(value, keep_binary: bool = False) -> str | bytes:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            if keep_binary:
                return value
            raise UnusableValue("the secret is not valid UTF-8 text",
                                hint=_BINARY_HINT) from None
    if keep_binary and "\0" in value:
        return value.encode()
    return _check_text(value)


# No environment string can hold such a value (render refuses it too): a file can, either one
# `exec --as-files` writes or one the program reads itself.
_AS_A_FILE = ("deliver it with shim exec --as-files DIR, or mount it as a file and give the "
              "program the file's path in a variable shim does not resolve (a NAME_FILE the "
              "program reads, listed in SHIM_SKIP)")


# Binary that is not text: stored base64-encoded it may already be (and ?encoding= decoded it),
# so the way out is a file, not another encoding.
_BINARY_HINT = "binary data cannot be an environment variable: " + _AS_A_FILE


def _check_text(text: str) -> str:
    if "\0" in text:
        raise UnusableValue("the secret contains a NUL byte, which no environment variable can hold",
                            hint="store it base64-encoded, or " + _AS_A_FILE)
    return text
