"""Failures as a person reads them: the same failure of several variables said once.

A sops dotenv file that no key here opens fails every variable it holds with one identical
error, as a missing Vault path fails each key read from it. One line per variable made the
cause scroll away, so the text log names the variables together on one line (JSON logs and the
audit file keep one event per variable, which is what machines count).
"""

from __future__ import annotations


def said_once(errors: list) -> list:
    """`errors` with those alike (same kind, message, hint and source, each naming a variable)
    merged into one naming every variable, at the place of the first; the order is kept
    otherwise."""
    groups: dict[tuple, list] = {}
    order: list = []
    for error in errors:
        if not error.variable:
            order.append(error)
            continue
        # Alike only from one source (one file, one path: the references differ in their #key
        # at most); the same refusal of two secrets keeps a line each, naming each reference.
        source = (error.reference or "").partition("#")[0]
        key = (type(error), error.message, error.hint, source)
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
    source = (first.reference or "").partition("#")[0]
    return type(first)(first.message, variable=names, reference=source or None, hint=first.hint)
