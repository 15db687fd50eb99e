"""--import: every key of a map (a Vault KV secret, a JSON object, an SSM path, a dotenv file)
becomes a variable.

The step sits inside the resolution, between the one fetch of every reference and the filling
in of each variable: an import's reference is fetched with the explicit ones (an import and a
variable naming the same secret share one read), and only once its keys are known does it
become Entries of the Plan. Nothing here knows a store: whatever a provider fetched that is a
map (a Mapping, or text or bytes holding a JSON object; for files also dotenv text) can be
imported. docs/import.md has the rules.
"""

from __future__ import annotations

import re
from typing import Mapping

from shim.syntax.controlling_names import controls_programs
from shim.tools.errors import NotFound, ShimError, UnusableValue
from shim.syntax.placeholders import has_placeholder
from shim.pipeline.plan import SHIM_PREFIX, Entry, Plan, SecretPart
from shim.providers.base import Fetched
from shim.syntax.refs import Reference
import io

_OUTSIDE_NAME = r"[^A-Za-z0-9_]"     # compiled by re on first use
_SHOWN_KEY = 64                       # a key is a name, not a value, but may be long


class Imported:
    """The variables the imports give, each with the map its value is selected from."""

    def __init__(self):
        self.entries: dict[str, Entry] = {}
        self.maps: dict[str, Fetched] = {}       # variable -> the import's map, as a Fetched
        self.errors: list[ShimError] = []


def variable_name(key: str, prefix: str = "") -> str:
    """The key upper-cased, anything outside [A-Za-z0-9_] as _, the prefix in front, and a _
    in front of a name that would start with a digit."""
    name = prefix + re.sub(_OUTSIDE_NAME, "_", key.upper())
    return "_" + name if name[:1].isdigit() else name


def apply_imports(plan: Plan, outcomes: Mapping[tuple, object], log,
                  skip: frozenset = frozenset()) -> Imported:
    """The variables every import fills, in order (a later import wins over an earlier one).

    A variable the environment (or an env file) sets to a real value, and one an explicit
    reference, NAME_FILE or inline piece produces, is kept as it is; an unset, empty or
    placeholder variable is filled, and its placeholder's plan error dropped.
    """
    imported = Imported()
    for reference in plan.imports:
        try:
            keys, data = import_map(reference, outcomes.get(reference.fetch_key))
        except ShimError as error:
            if not (reference.optional and isinstance(error, NotFound)):
                imported.errors.append(type(error)(   # the line starts with the import
                    f"--import {reference.shown}: {error.message}", variable=error.variable,
                    reference=reference.shown, hint=error.hint))
            continue
        filled, kept = [], []
        # The map itself, so a dotenv file or JSON text is parsed once, not once per key.
        fetched = Fetched(data, outcomes[reference.fetch_key].meta)
        for name, key in keys.items():
            if name.startswith(SHIM_PREFIX) or name in skip or _set_elsewhere(plan, name):
                kept.append(name)
                continue
            part = SecretPart(reference.with_selector((key,)))
            imported.entries[name] = Entry(name, "import", (part,), origin=reference.canonical,
                                           whole=True)
            imported.maps[name] = fetched
            filled.append(name)
        log.event("import.applied", "info", provider=reference.provider,
                  reference=reference.shown, count=len(filled), names=sorted(filled),
                  kept=sorted(kept))
    return imported


def adopt(plan: Plan, imported: Imported) -> None:
    """The import entries join the Plan, replacing the placeholder variables they fill."""
    plan.entries.update(imported.entries)
    plan.errors[:] = [error for error in plan.errors if error.variable not in imported.entries]


def _set_elsewhere(plan: Plan, name: str) -> bool:
    entry = plan.entries.get(name)
    if entry is not None and entry.source not in ("placeholder", "import"):
        return True    # an explicit reference, NAME_FILE, inline piece or env-file value
    value = plan.environ.get(name)
    return bool(value) and not has_placeholder(value)


def import_map(reference: Reference, outcome) -> tuple[dict[str, str], Mapping]:
    """(variable name -> key, the map) of what this import fetched; a ShimError when it is
    not a map or two keys would name one variable."""
    if outcome is None:
        raise NotFound("nothing was fetched for this import")
    if isinstance(outcome, ShimError):
        raise outcome
    if outcome.meta.lease_id:
        raise UnusableValue(
            "a dynamic secret (it comes with a lease) cannot be imported: every read makes new "
            "credentials, and the set of variables would follow the role's output",
            hint="set one variable per field instead, e.g. DB_USER=vault:<path>#username")
    data = as_map(outcome.value, dotenv=reference.provider == "file")
    prefix = reference.option("prefix") or ""
    names: dict[str, str] = {}
    for key in data:
        name = variable_name(key, prefix)
        if not key or name == prefix:
            raise UnusableValue("the secret has an empty key, which names no variable",
                                hint="rename the key in the store")
        if name in names:
            first, second = sorted((names[name], key))
            raise UnusableValue(f"keys {_shown(first)} and {_shown(second)} both become {name}",
                                variable=name, hint="rename one of the keys in the store, or import them "
                                     "with different ?prefix= from separate secrets")
        names[name] = key
    allowed = set((reference.option("allow_names") or "").split(":"))
    for name in sorted(names):
        if controls_programs(name) and name not in allowed:
            raise UnusableValue(
                f"the secret has a key that would set {name}, which changes how programs run; "
                f"an import never sets it", variable=name,
                hint=f"rename the key in the store, or let this import set it with "
                     f"?allow_names={name} on its ref+ reference (docs/import.md)")
    return names, data


def as_map(value, *, dotenv: bool = False) -> Mapping:
    """The key/value map a fetched value holds: a Mapping as is, a JSON object parsed, and
    (for files) dotenv text parsed. UnusableValue (65) for anything else."""
    if isinstance(value, Mapping):
        return value
    text = value
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnusableValue("the secret is not UTF-8 text, so not a JSON object",
                                hint="store a JSON object of names and values") from None
    import json   # only imports of JSON text need it  # lazy: only for a JSON map
    try:
        parsed = json.loads(text)
    except ValueError:
        if dotenv:   # a file that is not JSON is read as dotenv lines
            return _dotenv_map(text)
        parsed = None
    if not isinstance(parsed, dict):
        raise UnusableValue("the secret is not a JSON object, so it has no keys to import",
                            hint="store a JSON object of names and values (or, for a file, "
                                 "dotenv lines NAME=value)")
    return parsed


def _dotenv_map(text: str) -> dict[str, str]:

    from dotenv.parser import parse_stream  # lazy: only for a dotenv map
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            # Never echo the line: it may hold a secret.
            raise UnusableValue(f"line {binding.original.line} of the dotenv file cannot be parsed",
                                hint="write NAME=value, quoting values with spaces")
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    if not values:
        raise UnusableValue("the file holds neither a JSON object nor a NAME=value line",
                            hint="write a JSON object of names and values, or dotenv lines")
    return values


def _shown(key: str) -> str:
    text = repr(key)
    return text if len(text) <= _SHOWN_KEY else text[:_SHOWN_KEY] + "...'"
