"""Issue 22 item 4: whoever can write an imported secret must not choose how the program runs.

A key named BASH_ENV, LD_PRELOAD, NODE_OPTIONS, PYTHONPATH, PATH... would become a variable that
runs the secret writer's code in the program (BASH_ENV: verified with a real `sh -c`), or that
`render --format github-actions` hands to every later step of the job. Each is refused (65,
naming the variable and the import) unless the import names it in ?allow_names=.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shim.syntax.controlling_names import EXACT, PREFIXES, controls_programs
from tests.hardening.conftest import one_line

ROOT = Path(__file__).resolve().parents[2]


def _import_file(tmp_path, canaries, key, value):
    path = tmp_path / "app.json"
    path.write_text(json.dumps({"DB_PASSWORD": canaries.new("db"), key: value}))
    return f"ref+file://{path}"


@pytest.mark.parametrize("key, name", [
    ("BASH_ENV", "BASH_ENV"), ("LD_PRELOAD", "LD_PRELOAD"), ("node-options", "NODE_OPTIONS"),
    ("pythonpath", "PYTHONPATH"), ("PATH", "PATH"), ("HOME", "HOME"), ("IFS", "IFS"),
    ("JAVA_TOOL_OPTIONS", "JAVA_TOOL_OPTIONS"), ("https_proxy", "HTTPS_PROXY"),
    ("PERL5OPT", "PERL5OPT"), ("GCONV_PATH", "GCONV_PATH"),
])
def test_an_import_that_would_set_a_controlling_name_is_refused(run_shim, canaries, probe, tmp_path,
                                                              shared_dir, key, name):
    planted = shared_dir / "planted"
    reference = _import_file(tmp_path, canaries, key, f"/bin/touch {planted}")
    result = run_shim(["exec", "--import", reference, "--", "sh", "-c", f"exec {probe.argv[0]} "
                       f"{probe.argv[1]}"], {})
    one_line(result, 65, f"{name}: --import {reference}:", f"would set {name}", "allow_names")
    assert not probe.ran and not planted.exists()


def test_bash_env_from_an_import_does_not_run_code_in_the_program(run_shim, canaries, tmp_path,
                                                                  shared_dir):
    """The attack as the issue verified it: BASH_ENV names a script, bash runs it first."""
    script, planted = shared_dir / "evil.sh", shared_dir / "planted"
    script.write_text(f"touch {planted}\n")
    reference = _import_file(tmp_path, canaries, "BASH_ENV", str(script))
    result = run_shim(["exec", "--import", reference, "--", "bash", "-c", "true"], {})
    assert result.returncode == 65, result.stderr
    assert not planted.exists()


def test_allow_names_lets_one_import_set_the_names_it_lists(run_shim, canaries, probe, tmp_path):
    reference = _import_file(tmp_path, canaries, "HOME", "/srv/app")
    refused = run_shim(["exec", "--import", reference + "?allow_names=PATH", "--", *probe.argv], {})
    assert refused.returncode == 65 and not probe.ran
    result = run_shim(["exec", "--import", reference + "?allow_names=PATH:HOME", "--", *probe.argv],
                      {"HOME": ""})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["HOME"] == "/srv/app"


def test_a_prefix_that_makes_the_name_harmless_is_accepted(run_shim, canaries, probe, tmp_path):
    reference = _import_file(tmp_path, canaries, "LD_PRELOAD", "/x.so")
    result = run_shim(["exec", "--import", reference + "?prefix=APP_", "--", *probe.argv], {})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["APP_LD_PRELOAD"] == "/x.so"
    assert "LD_PRELOAD" not in probe.read()["env"]


def test_azure_pipelines_export_does_not_pass_them_on(run_shim, canaries, tmp_path):
    reference = _import_file(tmp_path, canaries, "LD_PRELOAD", "/tmp/evil.so")
    result = run_shim(["render", "--format", "azure-pipelines", "--import", reference],
                      {"TF_BUILD": "True"})
    one_line(result, 65, "LD_PRELOAD", "would set LD_PRELOAD")
    assert "##vso" not in result.stdout


def test_github_actions_export_does_not_pass_them_on(run_shim, canaries, tmp_path):
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    reference = _import_file(tmp_path, canaries, "NODE_OPTIONS", "--require /tmp/evil.js")
    result = run_shim(["render", "--format", "github-actions", "--import", reference],
                      {"GITHUB_ACTIONS": "true", "GITHUB_ENV": str(github_env)})
    one_line(result, 65, "NODE_OPTIONS", "would set NODE_OPTIONS")
    assert github_env.read_text() == ""


def test_the_malformed_allow_list_is_a_usage_error(run_shim, canaries, tmp_path):
    reference = _import_file(tmp_path, canaries, "A", "b")
    result = run_shim(["check", "--import", reference + "?allow_names=PATH;rm"], {})
    one_line(result, 64, "allow_names is not a :-separated list")


def test_docs_list_exactly_the_names_the_code_refuses():
    text = (ROOT / "docs" / "import.md").read_text()
    section = text.split("## Names an import never sets", 1)[1].split("\n## ", 1)[0]
    whole = section.split("Whole names:", 1)[1].split("Families", 1)[0]
    families = section.split("Families", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", whole)) == EXACT
    assert set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)\*`", families)) == set(PREFIXES)
    assert controls_programs("http_proxy") and not controls_programs("DB_PASSWORD")
