"""YAML as sops reads it: every document a branch, plain scalars typed as YAML 1.2 does.

PyYAML resolves scalars by YAML 1.1 (yes/no are booleans, 010 is octal),
sops by YAML 1.2's core schema; the difference would change the MAC of
values left unencrypted, so scalars are resolved here from the composed
nodes. Comments are not read: sops encrypts them but leaves them out of the MAC.
"""

from __future__ import annotations

import re

import yaml

from shim.providers.sops.tree import Branch, FormatError

_NULL = re.compile(r"~|null|Null|NULL|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT = re.compile(r"[-+]?[0-9]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_OCT = re.compile(r"0o[0-7]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")
_MAX_DEPTH = 64


class _NoAliasLoader(yaml.SafeLoader):
    """Refuses the first anchor or alias it meets. sops never writes them, and an alias is
    how a few hundred bytes expand into gigabytes (a "billion laughs" file): refused before
    anything is built, so memory and time stay bounded by the file's size."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise FormatError("it uses a YAML anchor or alias (&name, *name), which sops never "
                              "writes")
        return super().compose_node(parent, index)


def load_yaml(text: str) -> list[Branch]:
    try:
        documents = list(yaml.compose_all(text, Loader=_NoAliasLoader))
    except yaml.YAMLError:
        raise FormatError("it is not valid YAML") from None
    branches = []
    for document in documents:
        if document is None:
            continue
        value = _convert(document, 0)
        if value is None:
            continue
        if not isinstance(value, Branch):
            raise FormatError("a YAML document is not a mapping")
        branches.append(value)
    return branches


def _convert(node, depth):
    if depth > _MAX_DEPTH:
        raise FormatError("it nests deeper than 64 levels")
    if isinstance(node, yaml.MappingNode):
        branch = Branch()
        seen = set()
        for key_node, value_node in node.value:
            key = _convert(key_node, depth + 1)
            if isinstance(key, str) and key in seen:
                raise FormatError("a YAML mapping has a key twice")
            seen.add(key if isinstance(key, str) else id(key_node))
            branch.append((key, _convert(value_node, depth + 1)))
        return branch
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, depth + 1) for item in node.value]
    return _scalar(node)


def _scalar(node):
    text = node.value
    if node.style is not None:
        return text     # quoted or block scalars are strings
    if _NULL.fullmatch(text):
        return None
    if _TRUE.fullmatch(text):
        return True
    if _FALSE.fullmatch(text):
        return False
    try:
        if _INT.fullmatch(text):
            return int(text)
        if _HEX.fullmatch(text):
            return int(text[2:], 16)
        if _OCT.fullmatch(text):
            return int(text[2:], 8)
    except ValueError:      # more digits than Python converts (4300): no sops value is that long
        raise FormatError("it holds a number too long to read") from None
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text
