"""The docs against the code: tables that list what the code does are checked here, so they
cannot drift. (Command examples that need no server are run in tests/integration/test_doc_examples.py.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_METHODS_WITH_DEFAULT_EVENT = {"warning": "warning", "debug": "debug", "error": "error"}


def _string(node) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _string(node.body) | _string(node.orelse)
    raise AssertionError(f"an event name that is not a literal at line {node.lineno}: "
                         "name events with literals so docs/audit.md can be checked")


def events_in_code() -> dict[str, str]:
    """Every event name shim can emit -> the first place it is emitted."""
    found = {}
    for path in sorted((ROOT / "shim").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = ast.unparse(node.func.value)
            if not (receiver == "self" or receiver.endswith("log")):
                continue
            method = node.func.attr
            if path.name == "audit.py" and receiver == "self":
                continue  # Log's own methods forward the name their caller gave
            keyword = next((k.value for k in node.keywords if k.arg == "event"), None)
            if method == "event" and node.args:
                names = _string(node.args[0])
            elif method in LOG_METHODS_WITH_DEFAULT_EVENT and keyword is not None:
                names = _string(keyword)
            elif method in LOG_METHODS_WITH_DEFAULT_EVENT:
                names = {LOG_METHODS_WITH_DEFAULT_EVENT[method]}
            else:
                continue
            for name in names:
                found.setdefault(name, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def events_in_audit_md() -> set[str]:
    text = (ROOT / "docs" / "audit.md").read_text()
    table = text.split("| event | level | fields | when |", 1)[1].split("\n\n", 1)[0]
    names = set()
    for line in table.strip().splitlines()[1:]:
        first_cell = line.split("|")[1]
        names.update(re.findall(r"`([a-z_.]+)`", first_cell))
    return names


def test_the_event_extraction_works():
    code = events_in_code()
    assert {"secret.resolved", "exec", "lease.renewed", "error", "secret.failed",
            "placeholder.kept"} <= set(code)


def test_audit_md_lists_exactly_the_events_the_code_emits():
    code = events_in_code()
    documented = events_in_audit_md()
    missing = {name: where for name, where in code.items() if name not in documented}
    assert missing == {}, "events emitted but not in docs/audit.md's table"
    assert documented - set(code) == set(), "docs/audit.md lists events the code never emits"


def test_docker_secrets_readme_database_url_length():
    """The length /seen reports: the compose file's DATABASE_URL with the placeholder replaced
    by what the README's `openssl rand -hex 32` writes (64 hex digits, nothing to percent-encode)."""
    example = ROOT / "compose-examples" / "docker-secrets"
    url = re.search(r"DATABASE_URL: (\S+)", (example / "compose.yaml").read_text()).group(1)
    readme = (example / "README.md").read_text()
    assert "openssl rand -hex 32" in readme
    documented = int(re.search(r'"DATABASE_URL": \{"length": (\d+)', readme).group(1))
    assert documented == len(url.replace("CHANGEME_PG_PASSWORD", "0" * 64))


# -- numbers that change with the code (issue 25): each is counted or measured here ---------------

HARDENING_COUNTS = {   # the suite -> how README.md and docs/security.md name its size
    "tests/hardening/test_bad_inputs.py": "bad inputs",
    "tests/hardening/test_faults.py": "fault scenarios",
    "tests/hardening/test_leak_sweep.py": "runs",
}


def collected(path: str) -> int:
    """How many tests pytest collects from `path` (parametrized cases each count)."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                             "no:cacheprovider", path], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    found = re.search(r"^(\d+) tests? collected", result.stdout, re.M)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    return int(found.group(1))


def test_the_hardening_counts_in_the_readme_and_security_md_are_the_suites_sizes():
    readme = (ROOT / "README.md").read_text()
    security = (ROOT / "docs" / "security.md").read_text()
    section = readme[readme.index("## Security: what is tested"):]
    for path, unit in HARDENING_COUNTS.items():
        count = collected(path)
        name = Path(path).name
        in_readme = re.search(rf"([\d,]+) {unit}\b", section)
        row = next(line for line in security.splitlines() if line.startswith(f"| `{name}`"))
        in_security = re.search(rf"\| ([\d,]+) {unit} \|$", row)
        assert in_readme and int(in_readme.group(1).replace(",", "")) == count, (path, count)
        assert in_security and int(in_security.group(1).replace(",", "")) == count, (path, count)


def test_make_bench_states_its_duration_in_one_place():
    """docs/performance.md ("Reproduce") says how long `make bench` takes; the Makefile and
    bench/run_all.py point there instead of carrying a figure of their own that goes stale."""
    makefile = (ROOT / "Makefile").read_text()
    bench_comment = makefile[:makefile.index("\nbench:")].rsplit("\n\n", 1)[-1]
    run_all = (ROOT / "bench" / "run_all.py").read_text()
    docstring = ast.get_docstring(ast.parse(run_all))
    for text in (bench_comment, docstring):
        assert not re.search(r"\d+\s*min", text), text
    assert re.search(r"make bench\s+# everything: about \d+ minutes",
                     (ROOT / "docs" / "performance.md").read_text())


def test_scan_md_pins_no_tag_that_does_not_exist():
    import subprocess
    text = (ROOT / "docs" / "scan.md").read_text()
    tags = set(subprocess.run(["git", "tag"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    for rev in re.findall(r"^\s+rev: (\S+)", text, re.M):
        assert rev in tags or rev == "<commit>", f"scan.md pins rev {rev}, which is no tag here"


def test_the_bundles_entry_point_is_what_performance_md_says():
    entry = (ROOT / "images" / "shim" / "entry.py").read_text()
    assert "from shim.entry import main" in entry and "shim.commands.cli" not in entry
    performance = (ROOT / "docs" / "performance.md").read_text()
    assert "still starts through `shim.commands.cli" not in performance
    assert "starts through `shim.entry:main`" in performance


def test_bench_startup_never_installs_system_packages():
    text = (ROOT / "bench" / "startup.py").read_text()
    assert not re.search(r"\[\s*\"apt-get\",\s*\"install\"", text)
    assert "apt-get install" in text     # it says how, for the skipped rows
