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
    assert project["scripts"] == {"shim": "shim.entry:main"}
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
    assert re.search(r"^\[console_scripts\]\nshim = shim\.entry:main$", entry_points, re.M)
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
    assert seen >= 2, "the README and docs show the git URL form naming shim-secrets"


# -- Installing before the first release (README, "Install"; issue 25) ----------------------------
# Tests talk only to loopback, so the fresh venvs below never reach an index: the core's three
# dependencies (and setuptools, to build without an index) are linked in from this interpreter's
# own site-packages, and shim itself comes only from the wheel or the checkout under test.

OFFLINE_DISTRIBUTIONS = ("click", "tenacity", "python-dotenv", "setuptools", "pip")
SOURCE_FILES = ("pyproject.toml", "README.md", "Makefile")


def _readme_wheel() -> str:
    """The wheel file name the README's install lines use."""
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("## Use it in a Dockerfile")]
    (name,) = set(re.findall(r"dist/(shim_secrets-[^\s'\[]+\.whl)", install))
    return name


def _dependency_links(directory: Path) -> Path:
    """A directory of links to the offline distributions' modules and metadata."""
    from importlib.metadata import distribution
    directory.mkdir()
    for name in OFFLINE_DISTRIBUTIONS:
        dist = distribution(name)
        top = {str(file).split("/")[0] for file in dist.files or ()}
        for entry in top:
            source = Path(dist.locate_file(entry))
            if entry.endswith(".pth") or entry == ".." or not source.exists():
                continue
            link = directory / entry
            if not link.exists():
                link.symlink_to(source)
    return directory


def _fresh_venv(path: Path, links: Path) -> Path:
    """A new venv (no system site-packages, no pip of its own) that finds only `links` besides."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    (Path(site) / "offline-links.pth").write_text(f"{links}\n")
    return python


def _source_copy(directory: Path) -> Path:
    directory.mkdir()
    for name in SOURCE_FILES:
        shutil.copy2(ROOT / name, directory / name)
    shutil.copytree(ROOT / "shim", directory / "shim",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return directory


def _resolves_a_file_var(run_shim, canaries, probe, python: Path, tmp_path: Path) -> None:
    """`shim --version` and one resolution (a *_FILE secret) with the installed shim only."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    value = canaries.new("installed")
    (secrets_dir / "api_key").write_text(value + "\n")
    workdir = tmp_path / "elsewhere"        # not the checkout: `-m shim` must find the install
    workdir.mkdir()
    version = run_shim(["--version"], python=str(python), cwd=workdir, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "shim, version " + tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["version"]
    located = subprocess.run([str(python), "-c", "import shim; print(shim.__file__)"], cwd=workdir,
                             capture_output=True, text=True, timeout=60)
    assert located.stdout.startswith(str(python.parents[1])), located.stdout
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"API_KEY_FILE": str(secrets_dir / "api_key")}, python=str(python),
                      cwd=workdir, timeout=60)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["API_KEY"] == value
    script = python.parent / "shim"        # the console script the install made
    shown = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60,
                           cwd=workdir)
    assert shown.returncode == 0 and shown.stdout == version.stdout, shown.stderr


def test_make_wheel_builds_the_readmes_wheel_and_it_installs_by_path(run_shim, canaries, probe,
                                                                      tmp_path):
    links = _dependency_links(tmp_path / "links")
    source = _source_copy(tmp_path / "checkout")
    builder = _fresh_venv(tmp_path / "builder", links)
    made = subprocess.run(["make", "-C", str(source), "wheel", f"PY={builder}",
                           "WHEEL_FLAGS=--no-index --no-build-isolation"],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    (wheel,) = (source / "dist").glob("*.whl")
    assert wheel.name == _readme_wheel()          # the README's own words install it
    assert not (source / "build").exists()
    target = _fresh_venv(tmp_path / "target", links)
    installed = subprocess.run([str(target), "-m", "pip", "install", "-q", "--no-index",
                                "--disable-pip-version-check", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    _resolves_a_file_var(run_shim, canaries, probe, target, tmp_path)
    _the_documented_core_size_is_the_installed_one(target)


# How bench/size.py measures an install: the bytes of the files its RECORD lists, bytecode
# included (pip compiles it at install).
_SIZE = """
import importlib.metadata as metadata, os
print(sum(os.path.getsize(f.locate()) for f in metadata.distribution("shim-secrets").files
          if os.path.isfile(f.locate())))
"""


def _the_documented_core_size_is_the_installed_one(python: Path) -> None:
    """README's "The core install is about N MB" is within 10% of what this install weighs."""
    size = int(subprocess.run([str(python), "-c", _SIZE], capture_output=True, text=True,
                              check=True, timeout=60, cwd=python.parents[1]).stdout) / 1e6
    readme = (ROOT / "README.md").read_text()
    performance = (ROOT / "docs" / "performance.md").read_text()
    for documented in (re.search(r"The core install is about ([\d.]+) MB", readme),
                       re.search(r"installed core beyond [^|]+\| about ([\d.]+) MB", performance)):
        figure = float(documented.group(1))
        assert abs(size - figure) <= 0.1 * figure, f"installed: {size:.2f} MB"


def test_the_checkout_installs_as_the_readme_says(run_shim, canaries, probe, tmp_path):
    """`pip install './[vault]'` from the checkout; here without the extra's packages (no index),
    so the plain `pip install .` of the same line."""
    readme = (ROOT / "README.md").read_text()
    assert "pip install './[vault]'" in readme
    links = _dependency_links(tmp_path / "links")
    source = _source_copy(tmp_path / "checkout")
    target = _fresh_venv(tmp_path / "target", links)
    installed = subprocess.run([str(target), "-m", "pip", "install", "-q", "--no-index",
                                "--no-build-isolation", "--disable-pip-version-check", "./"],
                               cwd=source, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    _resolves_a_file_var(run_shim, canaries, probe, target, tmp_path)


def test_every_wheel_path_in_the_docs_is_the_version_being_built():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    expected = f"shim_secrets-{version}-py3-none-any.whl"
    found = [(str(file.relative_to(ROOT)), name) for file in _user_text_files()
             for name in re.findall(r"shim_secrets-\d[^\s'\[\]`)*]*\.whl", file.read_text(errors="replace"))]
    assert found and all(name == expected for _, name in found), found


def test_no_install_line_asks_the_index_for_shim_secrets_before_the_first_release():
    """`pip install shim-secrets` fails until the first release (README, "Install"); the
    remedies in shim's messages (`install shim-secrets[vault]`) name the extra, not a command."""
    wrong = []
    for file in _user_text_files():
        text = file.read_text(errors="replace")
        for match in INSTALL.finditer(text):
            rest = text[match.end():text.find("\n", match.end())]
            if match.group(1).split("[")[0] == NAME and not re.match(r"[^\s']*'? @ git\+", rest):
                wrong.append(f"{file.relative_to(ROOT)}: {match.group(0)}")
    assert wrong == []


def test_the_git_url_form_installs(run_shim, canaries, probe, tmp_path):
    """README: `pip install 'shim-secrets[vault] @ git+https://…/shim.git'`; here a clone's
    file URL (no network), without the extra's packages."""
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"pip install 'shim-secrets\[vault\] @ git\+https://", readme)
    links = _dependency_links(tmp_path / "links")
    source = _source_copy(tmp_path / "clone")
    for command in (["init", "-q"], ["add", "."],
                    ["-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=source, check=True, capture_output=True, timeout=60)
    target = _fresh_venv(tmp_path / "target", links)
    installed = subprocess.run([str(target), "-m", "pip", "install", "-q", "--no-index",
                                "--no-build-isolation", "--disable-pip-version-check",
                                f"shim-secrets @ git+file://localhost{source}"],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    _resolves_a_file_var(run_shim, canaries, probe, target, tmp_path)
