"""docs/reference.md's option table is the code's table (shim.pipeline.options.OPTIONS), and every
SHIM_* variable the code reads is documented."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("reference_tables",
                                                  ROOT / "scripts" / "reference_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_option_table_in_the_doc_matches_the_code():
    generator = _generator()
    text = generator.DOC.read_text()
    assert generator.rendered(text) == text, "run: python scripts/reference_tables.py"


def test_every_option_of_the_table_has_a_row():
    from shim.pipeline.options import OPTIONS
    table = _generator().table()
    for option in OPTIONS:
        assert f"`{option.env}`" in table if option.env else f"`{option.flags[0]}`" in table


def test_every_shim_variable_in_the_code_is_documented():
    used = set()
    for path in (ROOT / "shim").rglob("*.py"):
        used |= set(re.findall(r"\bSHIM_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    used.discard("SHIM_PREFIX")   # a constant's name, not a variable
    documented = set(re.findall(r"\bSHIM_[A-Z][A-Z_]*[A-Z]\b", (ROOT / "docs" / "reference.md").read_text()))
    assert used - documented == set()


def test_every_dev_init_option_is_in_the_commands_table():
    """dev-init's options live in shim/commands/devenv.py, not the option table: its row names them."""
    from shim.commands.devenv import dev_init_command
    row = next(line for line in (ROOT / "docs" / "reference.md").read_text().splitlines()
               if line.startswith("| `shim dev-init"))
    flags = [flag for param in dev_init_command.params for flag in param.opts
             if flag.startswith("--")]
    assert "--encrypt" in flags
    assert [flag for flag in flags if flag not in row] == []
