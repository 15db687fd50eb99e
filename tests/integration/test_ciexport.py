"""`shim render --format github-actions|azure-pipelines`, read back by the CI systems' own rules.

The GitHub parser below follows the runner's rules for the GITHUB_ENV file: a
line is `NAME=value` when `=` comes before any `<<`, else `NAME<<DELIMITER`
followed by the value's lines up to the first line equal to DELIMITER (lines
end at LF; a CR stays in the value). The Azure decoder is the agent's: ; CR LF ]
unescaped first, then %AZP25 to %.

Values are on stdout only inside the mask commands: stderr is checked for every
canary, stdout must be exactly the expected mask lines.
"""

from __future__ import annotations

import json
import re

import pytest

TRICKY = {
    "PLAIN": "abc",
    "MULTILINE": "line1\nline2\n\n  line4\n",
    "HEREDOC": "x<<EOF\nEOF\n<<\nNAME<<SHIM_EOF_0\nSHIM_EOF_\n",
    "EQUALS": "a=b==c\nOTHER=injected",
    "CRLF": "one\r\ntwo\r",
    "PERCENT": "100%0A%25%AZP25;]]\r\n##vso[task.complete]",
    "MASKLIKE": "::add-mask::x\n::set-env name=A::b",
    "EMPTY": "",
}


def tricky_env(tmp_path, canaries):
    """One JSON document, one key per variable, and the values the program gets: every
    secret's trailing newlines are dropped, from a JSON key too (docs/references.md)."""
    values = {name: f"{canaries.new(name.lower())}{text}" if text else "" for name, text in TRICKY.items()}
    document = tmp_path / "values.json"
    document.write_text(json.dumps(values))
    delivered = {name: re.sub(r"(?:\r?\n)+\Z", "", value) for name, value in values.items()}
    return delivered, {name: f"ref+file://{document}#/{name}" for name in values}


def parse_github_env(text: str) -> dict[str, str]:
    """The runner's rules for a GITHUB_ENV file (Linux: lines end at LF)."""
    result = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line == "":
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1:]
        else:
            assert heredoc > 0, f"invalid line {index}"
            name, delimiter = line[:heredoc], line[heredoc + 2:]
            assert delimiter, "empty delimiter"
            body = []
            while True:
                assert index < len(lines), "no closing delimiter"
                line = lines[index]
                index += 1
                if line == delimiter:
                    break
                body.append(line)
            value = "\n".join(body)
        assert name, "empty name"
        result[name] = value
    return result


def azure_unescape(data: str) -> str:
    for token, replacement in ((";", "%3B"), ("\r", "%0D"), ("\n", "%0A"), ("]", "%5D")):
        data = data.replace(replacement, token)
    return data.replace("%AZP25", "%")


def expected_masks(values) -> list[str]:
    masks = []
    for name in sorted(values):
        for line in values[name].split("\n"):
            line = line.rstrip("\r")
            if line:
                masks.append("::add-mask::" + line.replace("%", "%25").replace("\r", "%0D"))
    return masks


def unescape_mask(data: str) -> str:
    return data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def test_github_actions_values_round_trip_and_every_line_is_masked(run_shim, canaries, tmp_path):
    values, env = tricky_env(tmp_path, canaries)
    github_env = tmp_path / "github_env"
    github_env.write_text("EARLIER=kept\n")
    env.update({"GITHUB_ACTIONS": "true", "GITHUB_ENV": str(github_env)})
    result = run_shim(["render", "--format", "github-actions"], env, check_leaks=False)
    assert result.returncode == 0, result.stderr
    canaries.assert_absent(result.stderr, where="stderr")

    parsed = parse_github_env(github_env.read_bytes().decode())
    assert parsed == {"EARLIER": "kept", **values}
    assert result.stdout.splitlines() == expected_masks(values)
    # Each mask, unescaped as the runner does, is exactly one line of a value.
    lines = {line.rstrip("\r") for value in values.values() for line in value.split("\n")}
    for mask in result.stdout.splitlines():
        assert unescape_mask(mask[len("::add-mask::"):]) in lines


def test_github_delimiters_are_random_and_absent_from_the_value(run_shim, canaries, tmp_path):
    value = canaries.new("same")
    source = tmp_path / "src"
    source.write_text(value)
    delimiters = []
    for _ in range(2):
        github_env = tmp_path / "github_env"
        github_env.write_text("")
        env = {"A": f"file:{source}", "GITHUB_ACTIONS": "true", "GITHUB_ENV": str(github_env)}
        result = run_shim(["render", "--format", "github-actions"], env, check_leaks=False)
        assert result.returncode == 0, result.stderr
        head = github_env.read_bytes().decode().split("\n")[0]
        delimiters.append(head.split("<<", 1)[1])
    assert delimiters[0] != delimiters[1]
    assert all(len(d) >= 32 and d not in value for d in delimiters)


def test_azure_pipelines_commands_decode_to_the_values(run_shim, canaries, tmp_path):
    values, env = tricky_env(tmp_path, canaries)
    env["TF_BUILD"] = "True"
    result = run_shim(["render", "--format", "azure-pipelines"], env, check_leaks=False)
    assert result.returncode == 0, result.stderr
    canaries.assert_absent(result.stderr, where="stderr")

    lines = result.stdout.split("\n")
    assert lines[-1] == ""
    decoded = {}
    for line in lines[:-1]:
        head, _, data = line.partition("]")
        assert head.startswith("##vso[task.setvariable variable=")
        properties = dict(item.split("=", 1) for item in head[len("##vso[task.setvariable "):].split(";"))
        assert properties["issecret"] == "true"
        decoded[properties["variable"]] = azure_unescape(data)
    assert decoded == values


@pytest.mark.parametrize("file_format,env", [
    ("github-actions", {}),
    ("github-actions", {"GITHUB_ACTIONS": "true"}),
    ("github-actions", {"GITHUB_ACTIONS": "false", "GITHUB_ENV": "{tmp}/github_env"}),
    ("azure-pipelines", {}),
    ("azure-pipelines", {"TF_BUILD": "1"}),
])
def test_outside_the_ci_system_it_refuses_before_resolving(run_shim, canaries, tmp_path, file_format, env):
    value = canaries.new("outside")
    source = tmp_path / "src"
    source.write_text(value)
    (tmp_path / "github_env").write_text("")
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    env["A"] = f"file:{source}"
    result = run_shim(["render", "--format", file_format], env)
    assert result.returncode == 78, result.stderr
    assert f"--format {file_format} only runs in" in result.stderr
    assert result.stdout == ""
    assert (tmp_path / "github_env").read_text() == ""


def test_a_name_that_is_not_an_identifier_writes_nothing(run_shim, canaries, tmp_path):
    source = tmp_path / "src"
    source.write_text(canaries.new("badname"))
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {"GOOD": f"file:{source}", "BAD.NAME": f"file:{source}",
           "GITHUB_ACTIONS": "true", "GITHUB_ENV": str(github_env)}
    result = run_shim(["render", "--format", "github-actions"], env)
    assert result.returncode == 65, result.stderr
    assert "BAD.NAME" in result.stderr and "not a valid identifier" in result.stderr
    assert result.stdout == ""
    assert github_env.read_text() == ""


def test_github_env_that_is_a_symlink_is_refused(run_shim, canaries, tmp_path):
    source = tmp_path / "src"
    source.write_text(canaries.new("symlink"))
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "github_env").symlink_to(target)
    env = {"A": f"file:{source}", "GITHUB_ACTIONS": "true", "GITHUB_ENV": str(tmp_path / "github_env")}
    result = run_shim(["render", "--format", "github-actions"], env, check_leaks=False)
    assert result.returncode == 78, result.stderr
    canaries.assert_absent(result.stderr, where="stderr")
    assert target.read_text() == ""
