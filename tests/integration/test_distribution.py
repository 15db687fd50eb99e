"""The distribution installs by its own name: `shim-secrets`, command and module `shim`.

"shim" on the package index is an unrelated project, so every install line a user may copy
(README, docs, Dockerfiles, shim's own "install ..." remedies) must name this distribution.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "shim-secrets"
# Everything a user reads or copies an install line from.
USER_TEXTS = ["README.md", "docs", "images", "compose-examples", "demo", "shim"]
INSTALL = re.compile(r"\b(?:pip|pipx|uv tool|uv pip) install\s+(?:-\S+\s+)*'?([A-Za-z0-9_.-]+)")


def test_pyproject_names_the_distribution_and_its_extras_by_that_name():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == NAME
    assert project["scripts"] == {"shim": "shim.cli:main"}
    self_references = [requirement for extra in project["optional-dependencies"].values()
                       for requirement in extra if requirement.split("[")[0] in ("shim", NAME)]
    assert self_references and all(ref.startswith(f"{NAME}[") for ref in self_references)


def test_the_wheel_carries_the_name_and_the_shim_console_script(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "shim", source / "shim",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("shim_secrets-")
    with zipfile.ZipFile(wheel) as archive:
        dist_info = next(name.split("/")[0] for name in archive.namelist()
                         if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        modules = {name.split("/")[0] for name in archive.namelist()} - {dist_info}
    assert metadata["Name"] == NAME
    assert {"vault", "aws", "azure", "all"} <= set(metadata.get_all("Provides-Extra"))
    assert re.search(r"^\[console_scripts\]\nshim = shim\.cli:main$", entry_points, re.M)
    assert modules == {"shim"}


def test_version_comes_from_the_installed_distribution(run_shim):
    result = run_shim(["--version"])
    assert result.returncode == 0
    from importlib.metadata import version
    assert result.stdout.strip() == f"shim, version {version(NAME)}"


def _user_text_files():
    for entry in USER_TEXTS:
        path = ROOT / entry
        for file in ([path] if path.is_file() else sorted(path.rglob("*"))):
            if file.is_file() and "__pycache__" not in file.parts:
                yield file


def test_every_install_line_and_remedy_names_this_distribution():
    wrong, seen = [], 0
    for file in _user_text_files():
        text = file.read_text(errors="replace")
        for match in INSTALL.finditer(text):
            package = match.group(1)
            if package.split("[")[0] in ("shim", "shim-secrets"):
                seen += 1
                if package != NAME:
                    wrong.append(f"{file.relative_to(ROOT)}: {match.group(0)}")
        # shim's own messages: "install shim[vault]" would point at the other project.
        wrong += [f"{file.relative_to(ROOT)}: {hit}" for hit in re.findall(r"install shim\[\w+", text)]
    assert not wrong, wrong
    assert seen >= 5, "the README and docs show how to install shim-secrets"
