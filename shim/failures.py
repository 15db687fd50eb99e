"""Failures as a person reads them: the same failure of several variables said once.

A sops dotenv file that no key here opens fails every variable it holds with one identical
error; a store that is down fails each of its references alike. One line per variable made the
cause scroll away, so the text log names the variables together on one line (JSON logs and the
audit file keep one event per variable, which is what machines count).
"""

from __future__ import annotations


def said_once(errors: list) -> list:
    """`errors` with those alike (same kind, message and hint, each naming a variable) merged
    into one naming every variable, at the place of the first; the order is kept otherwise."""
    groups: dict[tuple, list] = {}
    order: list = []
    for error in errors:
        if not error.variable:
            order.append(error)
            continue
        key = (type(error), error.message, error.hint)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(error)
    return [_merged(groups[item]) if isinstance(item, tuple) else item for item in order]


def _merged(alike: list):
    first = alike[0]
    if len(alike) == 1:
        return first
    names = ", ".join(dict.fromkeys(error.variable for error in alike))
    # The references differ only in their #key when the failure is the whole source's (one
    # sops file, one Vault path): show the source once; otherwise the variables say enough.
    sources = {(error.reference or "").partition("#")[0] for error in alike}
    reference = sources.pop() if len(sources) == 1 else None
    return type(first)(first.message, variable=names, reference=reference or None,
                       hint=first.hint)
