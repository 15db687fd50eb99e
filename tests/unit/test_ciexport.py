"""ciexport.py in-process: the GitHub Actions and Azure Pipelines hand-over, its escaping and
its delimiters."""

from __future__ import annotations

import io
import os
import re

import pytest

from shim.delivery.ciexport import AZURE, GITHUB, azure_command, azure_escape, export, github_masks, new_delimiter, preflight
from shim.tools.errors import ConfigError, UnusableValue, UsageError

IN_GITHUB = {"GITHUB_ACTIONS": "true", "GITHUB_ENV": "/x"}


@pytest.mark.parametrize("file_format", [GITHUB, AZURE])
@pytest.mark.parametrize("options, wrong", [
    ({"directory": "/d", "env_file": None, "watching": False}, "not to --dir/--env-file"),
    ({"directory": None, "env_file": "/f", "watching": False}, "not to --dir/--env-file"),
    ({"directory": None, "env_file": None, "watching": True}, "--watch does not apply")])
def test_options_that_do_not_apply_are_a_usage_error(file_format, options, wrong):
    environ = {**IN_GITHUB, "TF_BUILD": "True"}
    with pytest.raises(UsageError) as error:
        preflight(file_format, environ, **options)
    assert error.value.exit_code == 64
    assert error.value.message.startswith(f"--format {file_format} ")
    assert wrong in error.value.message


@pytest.mark.parametrize("file_format, environ, runs", [
    (GITHUB, IN_GITHUB, True),
    (GITHUB, {"GITHUB_ACTIONS": "True", "GITHUB_ENV": "/x"}, False),
    (GITHUB, {"GITHUB_ACTIONS": "true", "GITHUB_ENV": ""}, False),
    (GITHUB, {"GITHUB_ACTIONS": "true"}, False),
    (GITHUB, {"GITHUB_ENV": "/x", "TF_BUILD": "True"}, False),
    (AZURE, {"TF_BUILD": "True"}, True),
    (AZURE, {"TF_BUILD": "true"}, True),
    (AZURE, {"TF_BUILD": "1"}, False),
    (AZURE, IN_GITHUB, False),
    (AZURE, {}, False)])
def test_each_format_runs_only_inside_its_ci(file_format, environ, runs):
    options = {"directory": None, "env_file": None, "watching": False}
    if runs:
        preflight(file_format, environ, **options)
        return
    with pytest.raises(ConfigError) as error:
        preflight(file_format, environ, **options)
    assert error.value.exit_code == 78
    assert error.value.message.startswith(f"--format {file_format} only runs in ")


def _runner_reads(text: str) -> dict[str, str]:
    """GITHUB_ENV as the runner reads it: NAME<<DELIM, then lines up to the one equal to DELIM."""
    values, lines = {}, iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        name, _, delimiter = line.partition("<<")
        body = []
        for body_line in lines:
            if body_line == delimiter:
                break
            body.append(body_line)
        else:
            raise AssertionError(f"{name}: no closing delimiter")
        values[name] = "\n".join(body)
    return values


def test_github_appends_every_value_so_the_runner_reads_it_back(tmp_path, canaries):
    env_file = tmp_path / "github_env"
    env_file.write_text("EARLIER<<EOF\nkept\nEOF\n")
    secret = canaries.new()
    values = {"B": f"{secret}\nSHIM_EOF_\nEOF\n", "A": f"50% {secret}\r", "C": ""}
    stdout = io.StringIO()
    export(GITHUB, values, {**IN_GITHUB, "GITHUB_ENV": str(env_file)}, stdout)
    written = env_file.read_bytes().decode()
    assert written.startswith("EARLIER<<EOF\nkept\nEOF\nA<<SHIM_EOF_")
    assert _runner_reads(written) == {"EARLIER": "kept", **values}
    delimiters = re.findall(r"^[ABC]<<(.*)$", written, re.M)
    assert len(delimiters) == 3 and all(re.fullmatch(r"SHIM_EOF_[0-9a-f]{32}", delimiter)
                                        for delimiter in delimiters)
    assert stdout.getvalue() == (f"::add-mask::50%25 {secret}\n"
                                 f"::add-mask::{secret}\n::add-mask::SHIM_EOF_\n::add-mask::EOF\n")


def test_github_masks_each_non_empty_line_escaped_as_the_runner_unescapes():
    assert github_masks("a%b\r\n\n\rc\rd\r\r\n") == ["::add-mask::a%25b\n",
                                                     "::add-mask::%0Dc%0Dd\n"]
    assert github_masks("") == github_masks("\n\r\n") == []
    # Only the CR of a CRLF goes: a mask one character short would leave that character shown.
    assert github_masks("ends in X\r\nspace \t\r") == ["::add-mask::ends in X\n",
                                                          "::add-mask::space \t\n"]


@pytest.mark.parametrize("target, wrong", [
    ("symlink", "cannot open it for appending"), ("directory", "cannot open it for appending"),
    ("missing", "cannot open it for appending"), ("fifo", "cannot open it for appending"),
    ("fifo with a reader", "is not a regular file"), ("device", "is not a regular file")])
def test_github_refuses_a_file_the_runner_did_not_make(tmp_path, target, wrong, canaries):
    real = tmp_path / "real"
    real.write_text("")
    path = tmp_path / "github_env"
    reader = None
    if target == "symlink":
        path.symlink_to(real)
    elif target == "directory":
        path.mkdir()
    elif target.startswith("fifo"):
        os.mkfifo(path)
        if target == "fifo with a reader":
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    elif target == "device":
        path = "/dev/null"
    stdout = io.StringIO()
    try:
        with pytest.raises(ConfigError) as error:
            export(GITHUB, {"A": canaries.new()}, {**IN_GITHUB, "GITHUB_ENV": str(path)}, stdout)
    finally:
        if reader is not None:
            os.close(reader)
    assert error.value.exit_code == 78
    assert error.value.message.startswith(f"GITHUB_ENV {path}")
    assert wrong in error.value.message
    assert stdout.getvalue() == "" and real.read_text() == ""


@pytest.mark.parametrize("file_format", [GITHUB, AZURE])
def test_a_name_that_is_not_an_identifier_writes_nothing(tmp_path, file_format, canaries):
    env_file = tmp_path / "github_env"
    env_file.write_text("")
    stdout = io.StringIO()
    values = {"OK": canaries.new(), "B-1": canaries.new(), "A;x": canaries.new()}
    with pytest.raises(UnusableValue) as error:
        export(file_format, values, {**IN_GITHUB, "GITHUB_ENV": str(env_file)}, stdout)
    assert error.value.exit_code == 65
    assert error.value.variable == "A;x"
    assert error.value.message == "the name is not a valid identifier for a CI variable"
    assert stdout.getvalue() == "" and env_file.read_text() == ""


@pytest.mark.parametrize("name", ["1A", "A B", "é", "", "A\n"])
def test_identifiers_are_letters_digits_and_underscore_not_leading_digit(name):
    with pytest.raises(UnusableValue):
        export(AZURE, {name: "v"}, {}, io.StringIO())


def test_azure_prints_one_command_per_variable_in_name_order(canaries):
    secret = canaries.new()
    stdout = io.StringIO()
    export(AZURE, {"B_2": f"{secret};]", "A": "x"}, {"TF_BUILD": "True"}, stdout)
    assert stdout.getvalue() == (
        "##vso[task.setvariable variable=A;issecret=true]x\n"
        f"##vso[task.setvariable variable=B_2;issecret=true]{secret}%3B%5D\n")


def test_azure_escapes_percent_first_then_each_special_character():
    assert azure_escape("%;\r\n]") == "%AZP25%3B%0D%0A%5D"
    assert azure_escape("%3B") == "%AZP253B"
    assert azure_escape("plain [text]") == "plain [text%5D"
    assert azure_command("N", "a\nb") == "##vso[task.setvariable variable=N;issecret=true]a%0Ab\n"


def test_a_delimiter_is_random_and_not_in_the_value():
    value = "SHIM_EOF_" + "0" * 32
    first, second = new_delimiter(value), new_delimiter(value)
    assert first != second and first not in value
    assert re.fullmatch(r"SHIM_EOF_[0-9a-f]{32}", first)
