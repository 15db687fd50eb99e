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
