"""The lazy-import rule (docs/performance.md, "Lazy imports"), checked on the source.

An import inside a function is allowed only for a module tests/integration/test_imports.py
keeps off `shim exec`'s local path (its lists say which and why), and it carries the tag
`# lazy: <why>` on its line. Everything else, shim's own modules included, is imported at
the top of the module, where a reader sees what a module depends on. The one exception:
shim/entry.py makes the process non-dumpable before shim imports the rest of itself, so its
imports after protect() are tagged `# lazy: after protect()`; and shim/delivery/initloop.py runs as a
script under `python -I -S` after an execve, so its one import of shim, made once it has found
the package, is tagged `# lazy: after the execve`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.integration.test_imports import NOT_ON_THE_EXEC_PATH

SHIM = Path(__file__).resolve().parents[2] / "shim"
TAG = "# lazy: "
AFTER_PROTECT = "# lazy: after protect()"
AFTER_THE_EXECVE = "# lazy: after the execve"


def _function_imports():
    """(path, line number, imported module, source line) of every import inside a function."""
    for path in sorted(SHIM.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    modules = [f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}")
                               else node.module for alias in node.names]
                else:
                    continue
                for module in modules:
                    yield path, node.lineno, module, lines[node.lineno - 1]


def _is_module(dotted: str) -> bool:
    """`from shim.delivery import asfiles` imports the module shim.delivery.asfiles."""
    path = SHIM.parent.joinpath(*dotted.split("."))
    return dotted.startswith("shim.") and (path.with_suffix(".py").is_file() or path.is_dir())


FUNCTION_IMPORTS = sorted(set(_function_imports()))


def _guarded(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in NOT_ON_THE_EXEC_PATH)


def _id(item) -> str:
    path, line, module, _ = item
    return f"{path.relative_to(SHIM)}:{line}:{module}"


def test_the_check_sees_the_lazy_imports():
    assert any(module == "tenacity" for _, _, module, _ in FUNCTION_IMPORTS)


@pytest.mark.parametrize("item", FUNCTION_IMPORTS, ids=_id)
def test_a_function_level_import_is_guarded_and_tagged(item):
    path, line, module, text = item
    after_protect = (path == SHIM / "entry.py" and text.rstrip().endswith(AFTER_PROTECT)
                     or path == SHIM / "delivery" / "initloop.py" and text.rstrip().endswith(AFTER_THE_EXECVE))
    assert _guarded(module) or after_protect, (f"{_id(item)}: import it at the top of the module, or add it to "
                              f"tests/integration/test_imports.py's lists with the reason")
    assert TAG in text and text.split(TAG, 1)[1].strip(), f"{_id(item)}: tag it `{TAG}<why>`"
