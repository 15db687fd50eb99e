"""Issue 12 item 7: `render --format dotenv` is safe to source, and the per-reader table in
docs/long-running.md says exactly what each reader gets back. The table is parsed here and
every cell is checked against the real reader: sh, docker compose, python-dotenv, shim's
own --env-file and `docker run --env-file` on the engine."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess

import pytest

from shim.delivery.render import format_env_file
from tests.conftest import ROOT

DOC = ROOT / "docs" / "long-running.md"
IMAGE = "shim-base:bookworm"

# Sample values for each row of the table, by its first cell.
ROWS = {
    "neither `'` nor `\\`": ["abc $HOME ${PATH} $(id) `id` \"q\" #x  sp", "l1\nl2\n  l3", "", "a=b"],
    "a carriage return, neither `'` nor `\\`": ["a\rb", "a\r\nb"],
    "`'` or `\\`, and neither `$` nor `` ` ``": ["it's", "a\\b\\\\c\\", "it's \"q\"\n\\n", "'"],
    "`'` or `\\`, and `$` or `` ` ``": ["it's $HOME `id` $(id)", "\\$x", "x'`touch pwned`"],
}
READERS = ["`sh` (`set -a; . file`)", "docker compose `env_file`", "python-dotenv",
           "shim `--env-file`", "`docker run --env-file`"]


def _written(value: str) -> str:
    return format_env_file({"V": value}, "dotenv")[len("V="):-1]


CELLS = {
    "exact": lambda value: value,
    "CR read as LF": lambda value: value.replace("\r\n", "\n").replace("\r", "\n"),
    "`\\` kept before `` ` ``": lambda value: value.replace("`", "\\`"),
    "`\\` kept before `$` and `` ` ``": lambda value: value.replace("$", "\\$").replace("`", "\\`"),
    "the written text, quotes included; a multi-line value is cut at its first line":
        lambda value: _written(value).split("\n")[0].split("\r")[0] if "\n" in value
        else _written(value),
}


def doc_table() -> dict[str, dict[str, str]]:
    text = DOC.read_text()
    section = text.split("#### What each reader gets back from `--format dotenv`")[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("| ").split(" | ")]
        table[cells[0]] = dict(zip(header, cells))
    return table


def test_the_table_covers_every_row_and_reader():
    table = doc_table()
    assert sorted(table) == sorted(ROWS)
    for row in table.values():
        for reader in READERS:
            assert row[reader] in CELLS, (reader, row[reader])


def _values():
    return {f"V{index}_{number}": value for index, samples in enumerate(ROWS.values())
            for number, value in enumerate(samples)}


@pytest.fixture
def rendered(run_shim, canaries, tmp_path):
    """The sample values rendered by shim itself (each delivered through a file: reference)."""
    env = {}
    for name, value in _values().items():
        source = tmp_path / f"src-{name}"
        source.write_bytes(value.encode())
        env[name] = f"file:{source}"
    out = tmp_path / "app.env"
    result = run_shim(["render", "--env-file", str(out), "--format", "dotenv", "--mode", "0644"], env)
    assert result.returncode == 0, result.stderr
    # The file: provider strips trailing newlines, as docker-library's file_env does.
    assert out.read_bytes().decode() == format_env_file({k: v.rstrip("\r\n") for k, v in _values().items()},
                                              "dotenv")
    return out


def _check(reader: str, got: dict):
    values = {k: v.rstrip("\r\n") for k, v in _values().items()}
    table = doc_table()
    for index, (row, samples) in enumerate(ROWS.items()):
        for number, _ in enumerate(samples):
            name = f"V{index}_{number}"
            assert got.get(name) == CELLS[table[row][reader]](values[name]), (reader, name)


def test_sh_gets_the_table_and_runs_nothing(rendered, tmp_path):
    out = subprocess.run(["sh", "-c", f"set -a; . '{rendered}'; env -0"], capture_output=True,
                         env={}, cwd=tmp_path, check=True).stdout.decode()
    _check(READERS[0], dict(item.split("=", 1) for item in out.split("\0") if "=" in item))
    assert not (tmp_path / "pwned").exists()  # the backticks ran nothing


def test_python_dotenv_gets_the_table(rendered):
    from dotenv import dotenv_values
    _check(READERS[2], dotenv_values(rendered, interpolate=False))


def test_shims_own_env_file_gets_the_table(run_shim, rendered, probe):
    result = run_shim(["exec", "--env-file", str(rendered), "--", *probe.argv], {})
    assert result.returncode == 0, result.stderr
    _check(READERS[3], probe.read()["env"])


def _docker(*args, **kwargs):
    if shutil.which("docker") is None or subprocess.run(["docker", "image", "inspect", IMAGE],
                                                         capture_output=True).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"docker and the {IMAGE} image are required under CI=true")
        pytest.skip(f"docker or the {IMAGE} image is not available")
    return subprocess.run(["docker", *args], capture_output=True, **kwargs)


@pytest.mark.docker
def test_docker_compose_gets_the_table(rendered, tmp_path):
    _docker("version")
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  app:\n    image: {IMAGE}\n    env_file: [{rendered.name}]\n")
    config = _docker("compose", "-f", str(tmp_path / "compose.yaml"), "config", "--format", "json",
                     cwd=tmp_path, text=True)
    assert config.returncode == 0, config.stderr
    environment = json.loads(config.stdout)["services"]["app"]["environment"]
    # compose escapes $ as $$ in its output so that it survives a second interpolation
    _check(READERS[1], {k: v.replace("$$", "$") for k, v in environment.items()})


@pytest.mark.docker
def test_docker_run_env_file_gets_the_table(rendered):
    name = f"shim-harden-dotenv-{secrets.token_hex(4)}"
    result = _docker("run", "--rm", "--name", name, "--network", "none", "--env-file",
                     str(rendered), IMAGE, "env", "-0")
    assert result.returncode == 0, result.stderr
    got = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    _check(READERS[4], got)
