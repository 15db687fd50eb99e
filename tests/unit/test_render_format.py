"""render.py's pure parts in-process: which names may become files or env-file lines, and how
an env file quotes values so that sourcing it runs nothing."""

from __future__ import annotations

import os
import subprocess

import pytest

from shim.tools.errors import UnusableValue
from shim.delivery.render import check_names, contained_path, format_env_file

# Each would run a command if the quoting let sh see it as code.
HOSTILE = ["$(touch {mark})", "`touch {mark}`", "'; touch {mark}; '", "\\'`touch {mark}`",
           "\"$(touch {mark})\"", "\\\"`touch {mark}`\\\"", "a'b\\$(touch {mark})",
           "\n touch {mark}\n", "x\\", "\\", "'", "$HOME ${HOME} \\$HOME", "\\\\`touch {mark}`"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc", "../x", "a\0b"])
def test_a_name_that_is_not_a_plain_file_name_is_refused_for_dir(name):
    with pytest.raises(UnusableValue) as error:
        check_names([name], directory="/run/out", file_format=None)
    assert error.value.exit_code == 65
    assert error.value.variable == name.encode("unicode_escape").decode("ascii")
    assert error.value.message == "is not a plain file name, so render --dir cannot write it"


@pytest.mark.parametrize("name", ["...", ".a", "a.b", "a b", "é", "-x"])
def test_odd_but_plain_file_names_are_accepted_for_dir(name):
    check_names([name], directory="/run/out", file_format="json")


@pytest.mark.parametrize("file_format", ["shell", "dotenv"])
@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A;id", "A\n", "A=B", "$(id)", "é",
                                  "A.B", "a/b", "A\0"])
def test_a_name_sh_would_not_take_as_a_name_is_refused(file_format, name):
    with pytest.raises(UnusableValue) as error:
        check_names([name], directory=None, file_format=file_format)
    assert error.value.exit_code == 65
    assert error.value.variable == name.encode("unicode_escape").decode("ascii")
    assert error.value.message == f"is not a valid {file_format} variable name"


@pytest.mark.parametrize("file_format", ["shell", "dotenv", "json", None])
def test_names_sh_takes_are_accepted(file_format):
    check_names(["A", "_", "_1", "a_B_9", "Z" * 200], directory=None, file_format=file_format)


def test_json_takes_any_name_without_dir():
    check_names(["A-B", "1", "a/b", ""], directory=None, file_format="json")


def test_the_first_bad_name_in_sorted_order_is_named():
    with pytest.raises(UnusableValue) as error:
        check_names(["Z;", "B-", "OK"], directory=None, file_format="shell")
    assert error.value.variable == "B-"


def test_contained_path_is_directly_inside_the_directory(tmp_path):
    assert contained_path(str(tmp_path), "db") == f"{tmp_path}/db"
    assert contained_path(f"{tmp_path}/", "db") == f"{tmp_path}/db"
    assert contained_path(f"{tmp_path}/./sub/..", "a.b") == f"{tmp_path}/./sub/../a.b"


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/etc/passwd", "a/../../x", ".", ""])
def test_contained_path_refuses_anything_else(tmp_path, name):
    with pytest.raises(UnusableValue) as error:
        contained_path(str(tmp_path), name)
    assert error.value.exit_code == 65
    assert error.value.message == "would be written outside --dir"
    assert error.value.variable == name


def _sourced(tmp_path, text: str, names) -> list[str]:
    """What `set -a; . file` in sh gives each name, in order."""
    path = tmp_path / "rendered.env"
    path.write_text(text)
    script = (f"set -a; . '{path}'; for n in {' '.join(names)}; do eval \"v=\\${{$n}}\"; "
              f"printf '%s\\0' \"$v\"; done")
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True, cwd=tmp_path,
                         env={"HOME": "/home-of-sh"}).stdout
    return out.decode().split("\0")[:-1]


@pytest.mark.parametrize("file_format", ["shell", "dotenv"])
def test_sourcing_the_file_gives_every_value_back_and_runs_nothing(tmp_path, file_format):
    mark = tmp_path / "ran"
    values = {f"V{index}": value.replace("{mark}", str(mark)) for index, value in enumerate(HOSTILE)}
    got = _sourced(tmp_path, format_env_file(values, file_format), values)
    assert not mark.exists()
    assert got == list(values.values())


def test_the_exact_text_of_each_format():
    values = {"B": "it's", "A": "plain $x", "C": "back\\slash `x` \"q\" $y"}
    assert format_env_file(values, "shell") == (
        "export A='plain $x'\nexport B='it'\\''s'\nexport C='back\\slash `x` \"q\" $y'\n")
    assert format_env_file(values, "dotenv") == (
        "A='plain $x'\nB=\"it's\"\nC=\"back\\\\slash \\`x\\` \\\"q\\\" \\$y\"\n")
    assert format_env_file(values, "json") == (
        '{\n  "A": "plain $x",\n  "B": "it\'s",\n  "C": "back\\\\slash `x` \\"q\\" $y"\n}\n')
    assert format_env_file({}, "dotenv") == format_env_file({}, "shell") == ""
    assert format_env_file({}, "json") == "{}\n"
