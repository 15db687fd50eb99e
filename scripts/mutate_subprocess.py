#!/usr/bin/env python3
"""Mutation testing for the code only subprocess tests reach (docs/testing.md).

mutmut switches its mutants on inside the pytest process, so the shim processes the tests
start (exec, --init, --watch helpers, the lean loop) never run them. This runner mutates the
files themselves instead, one mutant at a time, in a copy of the tree:

    <work>/tree/        a copy of the repository (shim/, tests/, docs/...; not .venv or .git)
    <work>/venv/        a venv with no packages of its own; a .pth puts <work>/tree first and
                        then this repository's .venv site-packages, so every interpreter the
                        tests start (sys.executable) imports the mutated shim

pytest runs in <work>/tree with that venv's python: the pytest process, `python -m shim`
children (cwd first on sys.path), the --watch helpers (they import shim from the directory of
the running shim) and the lean loop (a path next to shim/delivery/supervise.py) all see the mutant.

Mutants are small AST changes (comparisons, boolean operators, `not`, constants, arithmetic,
break/continue, and a statement replaced by `pass`); log calls and docstrings are left alone.
Each module gets a random sample of at most --per-module mutants (--seed fixes the sample),
run against the test files listed for it in MODULE_TESTS with a timeout per mutant: a failing
run kills the mutant, a run past the timeout counts as a timeout (a hang the suite's own
bounds did not turn into a failure), a passing run is a survivor. Everything runs under
`nice -n 19`. The unmutated tree is run first: a baseline that fails stops everything.

    .venv/bin/python scripts/mutate_subprocess.py [--modules launch watch ...]
        [--per-module 8] [--seed 31] [--timeout 120] [--report mutants/subprocess.json]
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Module -> the tests that exercise it as a real process (the cheapest set that reaches it).
MODULE_TESTS: dict[str, list[str]] = {
    "shim/pipeline/resolve.py": ["tests/integration/test_exec_lookups.py", "tests/unit/test_resolve_environment.py",
                        "tests/integration/test_guards.py", "tests/integration/test_exec.py",
                        "tests/integration/test_import.py",
                        "tests/integration/test_watch_policy.py::test_a_lease_kept_across_ticks_does_not_stop_the_reads_after_it"],
    "shim/delivery/launch.py": ["tests/integration/test_exec_lookups.py", "tests/integration/test_exec_user.py"],
    "shim/delivery/supervise.py": ["tests/integration/test_supervise.py", "tests/integration/test_watch_policy.py"],
    "shim/delivery/initloop.py": ["tests/integration/test_initloop.py", "tests/integration/test_supervise.py",
                         "tests/hardening/test_nondumpable.py"],
    "shim/delivery/watch.py": ["tests/integration/test_watch_policy.py", "tests/integration/test_watch_vault.py",
                      "tests/integration/test_supervise.py::test_watch_restarts_once_on_change_and_never_without"],
    "shim/pipeline/helper.py": ["tests/integration/test_watch_helper.py", "tests/integration/test_watch_policy.py",
                       "tests/real/test_watch_token_file.py"],
    "shim/delivery/asfiles.py": ["tests/integration/test_asfiles.py", "tests/integration/test_asfiles_watch.py"],
    "shim/providers/files.py": ["tests/integration/test_exec_lookups.py", "tests/integration/test_guards.py",
                                "tests/hardening/test_file_reads.py", "tests/integration/test_exec.py"],
    "shim/providers/sops/provider.py": ["tests/integration/test_sops.py", "tests/real/test_sops_max_age.py"],
    "shim/providers/sops/cipher.py": ["tests/unit/test_sops_format.py", "tests/integration/test_sops.py"],
    "shim/providers/gcp.py": ["tests/unit/test_gcp_token_source.py", "tests/unit/test_gcp.py",
                              "tests/integration/test_gcp.py"],
    "shim/providers/vault/provider.py": ["tests/integration/test_vault.py", "tests/integration/test_watch_helper.py"],
    "shim/providers/vault/auth.py": ["tests/integration/test_vault.py", "tests/real/test_watch_token_file.py",
                                     "tests/integration/test_watch_helper.py",
                                     "tests/integration/test_vault_wrapped_redaction.py",
                                     "tests/integration/test_vault_credential_text.py"],
}
SHORT_NAMES = {name[len("shim/"):-len(".py")].removeprefix("providers/"): name
               for name in MODULE_TESTS}

_LOG_METHODS = {"event", "debug", "warning", "error", "info"}
_SWAPPED_COMPARISONS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                        ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                        ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_SWAPPED_OPERATORS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                      ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.BitOr: ast.BitAnd,
                      ast.BitAnd: ast.BitOr}


@dataclass
class Mutant:
    module: str
    line: int
    kind: str
    before: str
    after: str
    outcome: str = "not run"
    seconds: float = 0.0


# -- making mutants ------------------------------------------------------------------------------

def _is_log_call(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Attribute)
            and statement.value.func.attr in _LOG_METHODS)


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _annotations(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.arg):
        return [node.annotation] if node.annotation else []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [node.returns] if node.returns else []
    if isinstance(node, ast.AnnAssign):
        return [node.annotation]
    return []


def _left_alone(tree: ast.AST) -> set[int]:
    """ids of the nodes not mutated: inside a log call or a docstring (their mutants change only
    what a line says), inside f-strings (whose inner positions Python 3.11 does not give), and
    annotations (never evaluated: every module has `from __future__ import annotations`)."""
    skipped = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.stmt) and (_is_log_call(node) or _is_docstring(node))) \
                or isinstance(node, ast.JoinedStr):
            skipped.update(id(inner) for inner in ast.walk(node))
        for annotation in _annotations(node):
            skipped.update(id(inner) for inner in ast.walk(annotation))
    return skipped


def _variants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(kind, replacement node) for each mutation of `node`."""
    found: list[tuple[str, ast.AST]] = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _SWAPPED_COMPARISONS:
        changed = copy.deepcopy(node)
        changed.ops = [_SWAPPED_COMPARISONS[type(node.ops[0])]()]
        found.append(("comparison", changed))
    elif isinstance(node, ast.BoolOp):
        changed = copy.deepcopy(node)
        changed.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        found.append(("boolean operator", changed))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        found.append(("not removed", copy.deepcopy(node.operand)))
    elif isinstance(node, ast.BinOp) and type(node.op) in _SWAPPED_OPERATORS:
        changed = copy.deepcopy(node)
        changed.op = _SWAPPED_OPERATORS[type(node.op)]()
        found.append(("arithmetic", changed))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        found.append(("boolean constant", ast.Constant(not node.value)))
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        found.append(("number", ast.Constant(node.value + 1)))
    elif isinstance(node, ast.Break):
        found.append(("break -> continue", ast.Continue()))
    elif isinstance(node, ast.Continue):
        found.append(("continue -> break", ast.Break()))
    elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Return, ast.Raise)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        found.append(("statement removed", ast.Pass()))
    return found


def mutants_of(module: str, source: str) -> list[tuple[Mutant, tuple[int, int], str]]:
    """Every mutant of `source`: (Mutant, (start, end) byte span, replacement text)."""
    tree = ast.parse(source)
    skipped = _left_alone(tree)
    data = source.encode()
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or not hasattr(node, "end_lineno") or node.end_lineno is None:
            continue
        span = (starts[node.lineno - 1] + node.col_offset, starts[node.end_lineno - 1] + node.end_col_offset)
        before = data[span[0]:span[1]].decode()
        for kind, replacement in _variants(node):
            # An expression goes in parentheses: its new operator must not bind differently.
            after = (ast.unparse(replacement) if isinstance(replacement, ast.stmt)
                     else f"({ast.unparse(replacement)})")
            text = apply(source, span, after)
            try:
                compile(text, module, "exec")
            except SyntaxError:
                continue
            found.append((Mutant(module, node.lineno, kind, _short(before), _short(after)), span, after))
    return found


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 90 else text[:87] + "..."


def apply(source: str, span: tuple[int, int], text: str) -> str:
    data = source.encode()
    return (data[:span[0]] + text.encode() + data[span[1]:]).decode()


# -- the copy of the tree and its interpreter --------------------------------------------------

def make_work(work: Path) -> tuple[Path, Path]:
    tree = work / "tree"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "mutants", ".cache", ".pytest_cache", ".hypothesis", "__pycache__",
        "*.egg-info", "build"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    ours = Path(sysconfig.get_path("purelib"))
    # Lines of a .pth are appended to sys.path in order; an `import` line runs, and addsitedir
    # processes the .venv's own .pth files (its editable install comes after the copy).
    (site / "_shim_mutant.pth").write_text(
        f"{tree}\nimport site; site.addsitedir({str(ours)!r})\n")
    # The real binaries the tests look for next to sys.executable (bao, sops...).
    for binary in (ROOT / ".venv" / "bin").iterdir():
        target = venv / "bin" / binary.name
        if not target.exists() and not binary.name.startswith(("python", "activate", "Activate")):
            target.symlink_to(binary)
    python = venv / "bin" / "python"
    found = subprocess.run([str(python), "-c", "import shim; print(shim.__file__)"], cwd="/",
                           capture_output=True, text=True, check=True).stdout.strip()
    if not found.startswith(str(tree)):
        raise SystemExit(f"the mutants' interpreter imports shim from {found}, not the copy")
    return tree, python


def _clear_bytecode(tree: Path) -> None:
    # A mutant restored within the same second and size would otherwise be run from its .pyc.
    for cache in (tree / "shim").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def run_tests(python: Path, tree: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """(outcome, seconds, the last lines pytest printed)."""
    _clear_bytecode(tree)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", HYPOTHESIS_PROFILE="mutate")
    started = time.monotonic()
    command = ["nice", "-n", "19", str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "--no-header", *tests]
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        return "timeout", time.monotonic() - started, ""
    seconds = time.monotonic() - started
    tail = "\n".join(output.decode(errors="replace").splitlines()[-8:])
    if process.returncode == 0:
        return "survived", seconds, tail
    if process.returncode == 5:
        return "no tests", seconds, tail
    return "killed", seconds, tail


# -- the run -------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="*", default=list(SHORT_NAMES),
                        help=f"short names: {' '.join(SHORT_NAMES)}")
    parser.add_argument("--per-module", type=int, default=8)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument("--report", default="mutants/subprocess.json")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    arguments = parser.parse_args()
    unknown = [name for name in arguments.modules if name not in SHORT_NAMES]
    if unknown:
        parser.error(f"unknown module(s) {' '.join(unknown)}; known: {' '.join(SHORT_NAMES)}")

    work = Path(tempfile.mkdtemp(prefix="shim-mutate-"))
    os.chmod(work, 0o755)   # tests running shim as nobody reach the copy through here
    results: list[Mutant] = []
    try:
        tree, python = make_work(work)
        for name in arguments.modules:
            module = SHORT_NAMES[name]
            tests = MODULE_TESTS[module]
            path = tree / module
            original = path.read_text()
            outcome, seconds, tail = run_tests(python, tree, tests, arguments.timeout * 2)
            if outcome != "survived":
                print(f"{module}: the unmutated tests did not pass ({outcome}); skipped\n{tail}",
                      flush=True)
                continue
            print(f"{module}: baseline passes in {seconds:.0f}s", flush=True)
            candidates = mutants_of(module, original)
            sample = random.Random(f"{arguments.seed}:{module}").sample(
                candidates, min(arguments.per_module, len(candidates)))
            for mutant, span, text in sorted(sample, key=lambda item: item[0].line):
                path.write_text(apply(original, span, text))
                try:
                    mutant.outcome, mutant.seconds, _ = run_tests(python, tree, tests,
                                                                  arguments.timeout)
                finally:
                    path.write_text(original)
                results.append(mutant)
                print(f"  {mutant.outcome:8} {module}:{mutant.line} {mutant.kind}: "
                      f"{mutant.before} -> {mutant.after} ({mutant.seconds:.0f}s)", flush=True)
    finally:
        if not arguments.keep:
            shutil.rmtree(work, ignore_errors=True)
    Path(arguments.report).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.report).write_text(json.dumps([asdict(m) for m in results], indent=1) + "\n")
    print_scores(results)
    return 0


def print_scores(results: list[Mutant]) -> None:
    print("\n| module | mutants | killed | timeouts | survived | score |")
    print("|---|---|---|---|---|---|")
    for module in dict.fromkeys(m.module for m in results):
        own = [m for m in results if m.module == module]
        killed = sum(m.outcome == "killed" for m in own)
        timeouts = sum(m.outcome == "timeout" for m in own)
        survived = sum(m.outcome == "survived" for m in own)
        score = 100 * (killed + timeouts) / max(1, killed + timeouts + survived)
        print(f"| `{module}` | {len(own)} | {killed} | {timeouts} | {survived} | {score:.0f} % |")


if __name__ == "__main__":
    sys.exit(main())
