"""Immutable records for the start-up path, written like typing.NamedTuple, without `typing`.

`shim exec` runs at every container start, and importing `typing` costs more than most of
what a files-and-placeholders run does. `@record` builds the same kind of class
(a collections.namedtuple subclass) from a class body of annotated fields, defaults and methods.
"""

from __future__ import annotations

from collections import namedtuple

_NOT_COPIED = ("__dict__", "__weakref__")


def record(cls):
    """A namedtuple class with cls's annotated fields (in order), their defaults and methods."""
    body = cls.__dict__
    fields = tuple(body.get("__annotations__", {}))
    defaults = [body[name] for name in fields if name in body]
    if fields[len(fields) - len(defaults):] != tuple(name for name in fields if name in body):
        raise TypeError(f"{cls.__name__}: fields with defaults must come last")
    base = namedtuple(cls.__name__, fields, defaults=defaults, module=cls.__module__)
    namespace = {key: value for key, value in body.items()
                 if key not in fields and key not in _NOT_COPIED}
    namespace["__slots__"] = ()
    return type(cls.__name__, (base,), namespace)
