"""No shim module imports a private (_name) of another: shared code is public where it lives."""

from __future__ import annotations

import ast
from pathlib import Path

SHIM = Path(__file__).resolve().parents[2] / "shim"


def private_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shim"):
            found += [f"{node.module}.{alias.name}" for alias in node.names
                      if alias.name.startswith("_")]
    return found


def test_no_module_imports_a_private_name():
    offenders = {str(path.relative_to(SHIM)): private_imports(path.read_text())
                 for path in SHIM.rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_check_sees_one():
    assert private_imports("from shim.commands.cli import _prepare, run\nfrom os import _exit") == \
        ["shim.commands.cli._prepare"]
