"""Issue 22 item 11: what an error or the audit file may quote of a reference.

A literal value that parses as a reference (a password such as `vault:Tr0ub4dor&3#xkcd`) used to
be printed whole in errors and in the audit file. The rule now (shim.syntax.refs.shown_reference): the
path, yes (an operator needs it, and the variable is named beside it); the `#` selector and the
`?query`, the likeliest place for the rest of such a value, never: they are shown as `#...` and
`?...`. One helper does it, and a static check makes sure nothing quotes `.canonical` instead.
"""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where `.canonical` may still be read: not output.
CANONICAL_ALLOWED = {
    ("helper.py", "encode_options"),     # a reference handed to a helper, parsed again there
    ("check.py", "plan_rows"),           # `shim check` lists references as written (its job)
    ("check.py", "template_rows"),       # the same listing for each --template reference
    ("imports.py", "apply_imports"),     # an imported entry's origin, for `shim check`'s listing
}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cases(canary: str, tmp: Path) -> list[tuple[str, dict, str]]:
    """(value, extra environment, what may be quoted): the secret part sits in the selector or
    the query of something that parses as a reference."""
    secret_part = canary.split("-")[-1]
    vault = {"VAULT_ADDR": f"http://127.0.0.1:{_closed_port()}", "VAULT_TOKEN": "t"}
    aws = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1",  # pragma: allowlist secret
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "AWS_EC2_METADATA_DISABLED": "true"}
    (tmp / "app.json").write_text('{"user": "app"}')
    return [
        (f"vault:Tr0ub4dor&3#{secret_part}", vault, "vault:Tr0ub4dor&3#..."),
        (f"ref+file://{tmp}/app.json#/{secret_part}", {}, f"ref+file://{tmp}/app.json#..."),
        (f"ref+file://{tmp}/missing?max_age=1d#/{secret_part}", {},
         f"ref+file://{tmp}/missing?...#..."),
        (f"ref+awsssm:///app/db?label={secret_part}", aws, "ref+awsssm://app/db?..."),
    ]


@pytest.mark.parametrize("index", range(4), ids=["bank-vaults-selector", "file-key",
                                                 "file-query-and-key", "ssm-label"])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_value_that_parses_as_a_reference_is_quoted_by_its_path_only(
        run_shim, canaries, probe, tmp_path, index, log_format):
    canary = canaries.new("looks-like-a-reference")
    value, env, shown = _cases(canary, tmp_path)[index]
    audit = tmp_path / "audit.jsonl"
    result = run_shim(["exec", "--deadline", "2s", "--audit-file", str(audit), "--log-format",
                       log_format, "--", *probe.argv], dict(env, DB_PASSWORD=value), timeout=60)
    assert result.returncode in (65, 66, 69, 77), result.stderr
    assert not probe.ran
    canaries.assert_absent(audit.read_text(), where="the audit file")
    assert shown in result.stderr, result.stderr
    failed = [json.loads(line) for line in audit.read_text().splitlines()
              if json.loads(line)["event"] == "secret.failed"]
    assert failed and failed[0]["reference"] == shown, failed


def _canonical_reads():
    for path in sorted((ROOT / "shim").rglob("*.py")):
        if path.name == "refs.py":
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.Attribute) and node.attr == "canonical":
                        yield path.name, function.name, node.lineno
        for node in tree.body:      # module level, outside any function
            for inner in ast.walk(node):
                if (not isinstance(node, (ast.FunctionDef, ast.ClassDef))
                        and isinstance(inner, ast.Attribute) and inner.attr == "canonical"):
                    yield path.name, "<module>", inner.lineno


def test_nothing_bypasses_the_quoting_helper():
    """Every message, log field and audit field quotes `reference.shown`; `.canonical` is read
    only where nothing is output (the list above says where and why)."""
    reads = list(_canonical_reads())
    assert reads, "the check finds nothing: it would pass whatever the code does"
    outside = [read for read in reads if read[:2] not in CANONICAL_ALLOWED]
    assert outside == [], f"quote reference.shown instead: {outside}"


def test_the_helper_hides_selector_and_query():
    from shim.syntax.refs import parse_reference, shown_reference

    assert parse_reference("vault:secret/data/app#password#3").shown == "vault:secret/data/app#..."
    assert parse_reference("ref+vault://secret/app?version=2#/password").shown == \
        "ref+vault://secret/app?...#..."
    assert shown_reference("ref+file:///run/secrets/db") == "ref+file:///run/secrets/db"
    assert parse_reference("ref+file:///run/a%23b%3Fc#/k").shown == "ref+file:///run/a%23b%3Fc#..."
