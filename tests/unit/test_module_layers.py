"""Calls flow one way (docs/architecture.md): every import of a shim module, at the top of a
module or inside a function, goes to the importer's own folder or to a folder below it, and no
chain of imports comes back to where it started.

Read from the source with `ast`, so an import that only runs on one path (a lazy import, one
under `if TYPE_CHECKING:`) counts as much as one at the top.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "shim"

# Top to bottom: a module may import from its own layer and the layers after it.
LAYERS = (
    ("shim.entry", "shim.__main__"),     # the console script and `python -m shim`
    ("shim.commands",),
    ("shim.pipeline",),
    ("shim.delivery",),
    ("shim.providers",),
    ("shim.syntax",),
    ("shim.tools",),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SHIM.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(SHIM.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    return None


def imports_of(source: str, modules=MODULES) -> list[tuple[int, str]]:
    """(line, shim module) of every import in `source`: `from P import M` of a module M
    counts as an import of P.M, `from P import name` as one of P."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((node.lineno, full if full in modules else node.module))
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return sorted({(line, name) for line, name in found if name == "shim" or name.startswith(("shim.", "."))})


GRAPH = {module: imports_of(path.read_text()) for module, path in MODULES.items()}


def upward_imports(graph) -> list[str]:
    found = []
    for module, imported in graph.items():
        for line, target in imported:
            if layer_of(target) is not None and layer_of(target) < layer_of(module):
                found.append(f"{module}:{line} imports {target}, a layer above it")
    return found


def circles(graph) -> list[list[str]]:
    """Import circles found by a depth-first walk from each module in sorted order: empty
    exactly when the graph has none (a walk that meets a module on its own path has one)."""
    edges = {module: sorted({target for _, target in imported if target in graph and target != module})
             for module, imported in graph.items()}
    found, done = [], set()

    def visit(module, path):
        for target in edges[module]:
            if target in path:
                cycle = path[path.index(target):]
                if frozenset(cycle) not in done:
                    done.add(frozenset(cycle))
                    found.append(cycle + [target])
            elif target not in finished:
                visit(target, path + [target])
        finished.add(module)

    finished: set[str] = set()
    for module in sorted(edges):
        if module not in finished:
            visit(module, [module])
    return found


def test_every_module_is_in_a_layer():
    """A module written at the top of shim/ (or in a new folder) must be given its place."""
    assert [module for module in MODULES if module != "shim" and layer_of(module) is None] == []


def test_no_relative_imports():
    """Absolute imports only: the folder a module imports from is on the line."""
    assert [f"{module}:{line}" for module, imported in GRAPH.items()
            for line, target in imported if target.startswith(".")] == []


def test_no_module_imports_from_a_layer_above():
    assert upward_imports(GRAPH) == []


def test_no_import_circles():
    assert circles(GRAPH) == []


def test_package_init_files_hold_no_code():
    """Importing any shim module runs its packages' __init__.py first: they hold nothing but
    a docstring, so a folder costs nothing at start-up and no code hides where a reader would
    not look for it."""
    def code_in(path):
        body = ast.parse(path.read_text()).body
        return body[1:] if ast.get_docstring(ast.Module(body=body, type_ignores=[])) else body

    assert [str(path.relative_to(SHIM)) for path in SHIM.rglob("__init__.py") if code_in(path)] == []


def test_the_architecture_page_lists_the_layers_in_order():
    """docs/architecture.md's picture in words: one line per layer, in this order, and every
    folder of the package on one of them."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^- `(shim/[a-z_/]*)`", text, flags=re.M)
    assert listed == ["shim/"] + [prefixes[0].replace(".", "/") + "/" for prefixes in LAYERS[1:]]
    folders = {path.parent for path in SHIM.rglob("__init__.py")}
    top_folders = {f"shim/{folder.relative_to(SHIM).parts[0]}/" for folder in folders if folder != SHIM}
    assert top_folders == set(listed[1:])


# -- the checks see what they are for ------------------------------------------------------------

def test_a_lazy_upward_import_is_seen():
    source = "def run():\n    from shim.commands.cli import main  # lazy: only here\n"
    graph = {"shim.tools.example": imports_of(source, {"shim.commands.cli": None})}
    assert upward_imports(graph) == ["shim.tools.example:2 imports shim.commands.cli, a layer above it"]


def test_an_import_of_a_module_by_name_is_seen():
    source = "if TYPE_CHECKING:\n    from shim.pipeline import run\n"
    assert imports_of(source, {"shim.pipeline.run": None}) == [(2, "shim.pipeline.run")]


@pytest.mark.parametrize("sources, expected", [
    ({"shim.a": "import shim.b", "shim.b": "def f():\n    from shim.a import x"},
     [["shim.a", "shim.b", "shim.a"]]),
    ({"shim.a": "import shim.b", "shim.b": "import shim.c", "shim.c": "import shim.a"},
     [["shim.a", "shim.b", "shim.c", "shim.a"]]),
    ({"shim.a": "import shim.b", "shim.b": "import shim.c", "shim.c": ""}, []),
])
def test_a_circle_is_seen(sources, expected):
    graph = {module: imports_of(source, sources) for module, source in sources.items()}
    assert circles(graph) == expected
