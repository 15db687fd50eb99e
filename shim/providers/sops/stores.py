"""sops' file formats: each reads to (data branches, metadata) and dotenv writes back.

- yaml, json: the metadata is the top-level `sops` mapping (yaml: of the first document).
- dotenv: `KEY=value` lines; metadata is every `sops_*` key, flattened (`__map_`, `__list_`).
- ini: sections of `key = value`; metadata is the `[sops]` section, flattened the same way.
- binary: a JSON file whose `data` key holds the whole original file.
The format comes from the file name as sops chooses it, unless given.
"""

from __future__ import annotations

import json
import re

from shim.providers.sops.tree import Branch, FormatError

METADATA_KEY = "sops"
FLAT_PREFIX = "sops_"
_MAP, _LIST = "__map_", "__list_"


def format_for_path(path: str) -> str:
    if path.endswith((".yaml", ".yml")):
        return "yaml"
    if path.endswith(".json"):
        return "json"
    if path.endswith(".env"):
        return "dotenv"
    if path.endswith(".ini"):
        return "ini"
    return "binary"


def load(content: bytes, fmt: str) -> tuple[list[Branch], dict]:
    """The data branches and the metadata mapping (plain dicts and lists)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("it is not UTF-8 text") from None
    if fmt == "dotenv":
        branches = [_dotenv_branch(text)]
        return _take_flat_metadata(branches, escaped_newlines=False)
    if fmt == "ini":
        branches = [_ini_branch(text)]
        return _take_section_metadata(branches)
    if fmt == "yaml":
        from shim.providers.sops.yamlstore import load_yaml  # lazy: only for a YAML sops file
        branches = load_yaml(text)
    else:  # json and binary share the JSON envelope
        branches = [_json_branch(text)]
    return _take_nested_metadata(branches)


# --- metadata placement ------------------------------------------------------

def _take_nested_metadata(branches):
    metadata = None
    for index, branch in enumerate(branches):
        kept = Branch()
        for key, value in branch:
            if key == METADATA_KEY:
                if index == 0:
                    if metadata is not None:
                        raise FormatError("it has two sops metadata entries")
                    if not isinstance(value, Branch):
                        raise FormatError("its sops metadata entry is not a mapping")
                    metadata = value.as_dict()
            else:
                kept.append((key, value))
        branches[index] = kept
    if metadata is None:
        raise FormatError("it has no sops metadata (not encrypted with sops?)")
    return branches, metadata


def _take_flat_metadata(branches, *, escaped_newlines):
    flat, kept = Branch(), Branch()
    for key, value in branches[0]:
        if isinstance(key, str) and key.startswith(FLAT_PREFIX):
            flat.append((key[len(FLAT_PREFIX):], value))
        else:
            kept.append((key, value))
    if not flat:
        raise FormatError("it has no sops_ metadata keys (not encrypted with sops?)")
    branches[0] = kept
    return branches, unflatten(flat, escaped_newlines)


def _take_section_metadata(branches):
    section = None
    kept = Branch()
    for key, value in branches[0]:
        if key == METADATA_KEY:
            section = value
        else:
            kept.append((key, value))
    if section is None:
        raise FormatError("it has no [sops] section (not encrypted with sops?)")
    branches[0] = kept
    return branches, unflatten(section, True)


def unflatten(flat: Branch, escaped_newlines: bool) -> dict:
    """`pgp__list_0__map_fp = X` back to {"pgp": [{"fp": X}]}."""
    root: dict = {}
    for key, value in flat:
        if escaped_newlines and isinstance(value, str):
            value = value.replace("\\n", "\n")
        node = root
        tokens = _tokens(key)
        for token, following in zip(tokens, tokens[1:] + [None]):
            if following is None:
                if token in node:
                    raise FormatError("its sops metadata has a key twice")
                node[token] = value
            else:
                child = node.setdefault(token, {})
                if not isinstance(child, dict):
                    raise FormatError("its sops metadata mixes a value and a mapping")
                node = child
    return _lists(root)


def _tokens(key: str) -> list:
    parts = re.split(f"({_MAP}|{_LIST})", key)
    tokens: list = [parts[0]]
    for separator, part in zip(parts[1::2], parts[2::2]):
        if separator == _LIST:
            if not part.isdigit():
                raise FormatError("its sops metadata has a bad list index")
            tokens.append(int(part))
        else:
            tokens.append(part)
    return tokens


def _lists(node):
    """Mappings keyed 0..n-1 by ints become lists, as sops rebuilds them."""
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(key, int) for key in node):
        if sorted(node) != list(range(len(node))):
            raise FormatError("its sops metadata has an incomplete list")
        return [_lists(node[index]) for index in range(len(node))]
    if any(isinstance(key, int) for key in node):
        raise FormatError("its sops metadata mixes a list and a mapping")
    return {key: _lists(value) for key, value in node.items()}


def flatten(metadata: dict, prefix: str) -> list[tuple[str, object]]:
    """The inverse of unflatten, keys in the order sops writes them (sorted at each level)."""
    items: list[tuple[str, object]] = []

    def descend(value, key):
        if isinstance(value, dict):
            for name in sorted(value):
                descend(value[name], key + _MAP + name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                descend(item, key + _LIST + str(index))
        else:
            items.append((key, value))

    for name in sorted(metadata):
        descend(metadata[name], prefix + name)
    return items


# --- dotenv ------------------------------------------------------------------

def _dotenv_branch(text: str) -> Branch:
    branch = Branch()
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise FormatError("a line is not KEY=value")
        branch.append((key, value.replace("\\n", "\n")))
    return branch


def emit_dotenv(branch: Branch, metadata: dict) -> bytes:
    lines = []
    for key, value in list(branch) + flatten(metadata, FLAT_PREFIX):
        if isinstance(value, bool):
            value = "true" if value else "false"
        lines.append(f"{key}={str(value).replace(chr(10), chr(92) + 'n')}\n")
    return "".join(lines).encode("utf-8")


# --- json and binary -----------------------------------------------------------

def _json_branch(text: str) -> Branch:
    try:
        value = json.loads(text, object_pairs_hook=Branch, parse_int=_json_int)
    except ValueError:
        raise FormatError("it is not valid JSON") from None
    if not isinstance(value, Branch):
        raise FormatError("its top level is not a JSON object")
    return value


def _json_int(text: str):
    # Integers beyond int64 are read as floats, as sops reads them.
    number = int(text)
    return number if -2**63 <= number < 2**63 else float(text)


# --- ini -----------------------------------------------------------------------

_SECTION = re.compile(r"\[(.*)\]")


def _ini_branch(text: str) -> Branch:
    sections = Branch()
    current = Branch()
    sections.append(("DEFAULT", current))
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        section = _SECTION.fullmatch(line)
        if section:
            current = Branch()
            sections.append((section.group(1).strip(), current))
            continue
        positions = [p for p in (line.find("="), line.find(":")) if p > 0]
        if not positions:
            raise FormatError("a line is neither [section] nor key = value")
        cut = min(positions)
        value = line[cut + 1:].strip()
        if value.startswith('"""'):
            value = _ini_long_value(value[3:], lines)
        else:
            value = _ini_value(value)
        current.append((line[:cut].strip(), value))
    if not sections[0][1]:
        del sections[0]     # the implicit section before the first [name], when empty
    return sections


def _ini_long_value(first: str, lines) -> str:
    """A value in triple quotes, which may run over several lines."""
    parts = [first]
    while not parts[-1].endswith('"""'):
        try:
            parts.append(next(lines))
        except StopIteration:
            raise FormatError('a """ value is not closed') from None
    return "\n".join(parts)[:-3]


def _ini_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"`":
        return value[1:-1]
    return value
