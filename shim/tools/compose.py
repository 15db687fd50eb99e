"""Reading compose files: which files they are, and the variables they set.

Two readers, one shape: each yields `ComposeLine(line, name, value)`, and both
know the same spellings of a variable (`NAME: value` in a mapping, `- NAME=value`
in a list). They differ on purpose, because their callers need different things
and one reader cannot give both:

- `text_lines` (dev-init) reads lines, not YAML. dev-init runs from shim's core
  install, which has no YAML library (shim is baked into container images, and
  dev-init is a laptop command), and it wants every line of the file: a bare
  CHANGEME in `command:` or `healthcheck:` needs a value too, and is reported
  by its line. A name comes from an `environment:` or build `args:` block.
- `environment_entries` (scan) reads YAML with PyYAML, which the `scan` extra
  brings (detect-secrets depends on it). Whether a value is a literal secret
  depends on the value itself, so quotes, block scalars and escapes must be
  read as YAML reads them; and a secret in an `x-` block reaches a service
  through an anchor and a `<<:` merge, which only YAML resolves.

So the line reader cannot judge values, and the YAML reader would make dev-init
need a dependency the images do not carry; what is shared is the result's shape
and the spellings. Which files count differs too, as documented: dev-init reads
the files compose itself would load (docs/local-dev.md), scan anything named like
a compose file (docs/scan.md), since a scanner errs on the side of reading more.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# compose.yaml, docker-compose.yml, compose.override.yaml, docker-compose.prod.yml ...
COMPOSE_FILE = re.compile(r"(docker-)?compose(\.[^/]+)?\.ya?ml")
# ... and anything else named compose*.y(a)ml (compose-dev.yml).
COMPOSE_LIKE_FILE = re.compile(r"(docker-)?compose[^/]*\.ya?ml")

_VARIABLES_BLOCK = re.compile(r"^(\s*)(?:environment|args)\s*:(.*)$")
_FLOW_ITEM = re.compile(r"""["']?([A-Za-z_][A-Za-z0-9_]*)["']?\s*[=:]\s*([^,\]}]*)""")
_ASSIGNMENT = re.compile(r"""^\s*(?:-\s*)?["']?(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)["']?\s*[:=]""")


class ComposeLine(NamedTuple):
    line: int            # 1-based
    name: str | None     # the variable the line sets, when it sets one
    value: str           # text_lines: the line (or a one-line block's item); YAML: the value


def text_lines(text: str):
    """Every line of a compose file, read as text (whole-line comments skipped).

    A variable name comes from an `environment:` or build `args:` block, in
    each spelling compose accepts (`NAME: value`, `- NAME=value`, and the
    one-line `[NAME=value]` / `{NAME: value}`); elsewhere a line has none (a
    bare CHANGEME there can still take its name from `${NAME:-CHANGEME}`).
    """
    block = None    # indentation of the environment:/args: key we are under
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if block is not None and (indent < block or indent == block and not stripped.startswith("- ")):
            block = None
        opened = _VARIABLES_BLOCK.match(line)
        if opened:
            block = len(opened.group(1))
            rest = opened.group(2).strip()
            if rest and not rest.startswith("#"):
                block = None    # a one-line flow list or mapping, closed on its own line
                for item in _FLOW_ITEM.finditer(rest):
                    yield ComposeLine(number, item.group(1), item.group(2))
            continue
        match = _ASSIGNMENT.match(line) if block is not None else None
        yield ComposeLine(number, match.group(1) if match else None, line)


def environment_entries(text: str):
    """Every `environment:` entry with a value, read as YAML (needs PyYAML).

    Wherever an `environment:` key sits (services, `x-` blocks), with `<<:`
    merges followed; `NAME: ~` and a bare `- NAME` set nothing and are left
    out. Text that is not YAML yields nothing.
    """
    import yaml  # lazy: the scan extra brings it; dev-init never reads YAML

    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return
    seen: set[int] = set()
    for document in documents:
        for environment in _environment_nodes(document, seen):
            yield from _entries(environment, set())


def _environment_nodes(node, seen: set[int]):
    import yaml  # lazy: as above

    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "environment":
                yield value
            else:
                yield from _environment_nodes(value, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _environment_nodes(item, seen)


def _entries(node, seen: set[int]):
    """`NAME: value` mappings (with `<<:` merges) and `- NAME=value` lists."""
    import yaml  # lazy: as above

    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "<<":
                merged = value.value if isinstance(value, yaml.SequenceNode) else [value]
                for item in merged:
                    yield from _entries(item, seen)
            elif isinstance(value, yaml.ScalarNode) and value.tag != "tag:yaml.org,2002:null":
                yield ComposeLine(key.start_mark.line + 1, str(key.value), value.value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                name, sep, value = item.value.partition("=")
                if sep:
                    yield ComposeLine(item.start_mark.line + 1, name, value)
