"""Issue 22 item 5: nothing shim runs as root after the program started loads code the program
could have written.

`exec --user nobody --watch` keeps a root supervisor. Each tick used to start `python -I` as
root: `site` ran, so a .pth file in the interpreter's site-packages ran as root, and a program
that could write there (a virtualenv chowned to the app) had root on the next tick. Helpers
are now forks (no interpreter start, no `site`), and every module imported after the program
started must come from a path the program cannot change (shim.tools.program_writable).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SYSTEM_PYTHON, unavailable

NOBODY = 65534
PYTHON_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"


def _chown_tree(path: Path, uid: int) -> None:
    for item in [path, *path.rglob("*")]:
        os.lchown(item, uid, uid)


def _program(marker: Path, plant: str, seconds: int = 4) -> list[str]:
    """The program (as nobody): plant code where root might load it, then wait some ticks."""
    return ["/usr/bin/python3", "-S", "-c",
            f"import time\n{plant}\ntime.sleep({seconds})"]


def _root_code(marker: Path) -> str:
    return f"import os; open({str(marker)!r}, 'a').write('uid %d ran this\\n' % os.getuid())"


def test_a_pth_file_the_program_writes_is_never_run_as_root(run_shim, nobody_python, shared_dir,
                                                           tmp_path, canaries):
    _, env = nobody_python
    if not os.path.exists(SYSTEM_PYTHON):
        unavailable("no system Python to make a virtualenv with")
    venv = shared_dir / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    _chown_tree(venv, NOBODY)                  # "a venv chowned to the app"
    site_packages = venv / "lib" / PYTHON_VERSION / "site-packages"
    marker = shared_dir / "root-ran-this"
    pth = site_packages / "zz_planted.pth"
    secret = tmp_path / "secret"
    secret.write_text(canaries.new())
    plant = f"open({str(pth)!r}, 'w').write({_root_code(marker) + chr(10)!r})"
    result = run_shim(["exec", "--user", "nobody", "--watch", "300ms", "--",
                       *_program(marker, plant)],
                      dict(env, SECRET=f"file:{secret}"), python=str(venv / "bin" / "python"),
                      cwd=shared_dir, timeout=60)
    assert result.returncode == 0, result.stderr
    assert pth.exists(), "the program could not plant its .pth: nothing was attacked"
    # The control: any interpreter that processes site runs it (as the one starting it).
    subprocess.run([str(venv / "bin" / "python"), "-c", "pass"], check=True, timeout=30,
                   user=NOBODY, group=NOBODY, extra_groups=[], cwd=shared_dir)
    # (a venv's lib64 is a link to lib: site may read the .pth twice)
    assert set(marker.read_text().splitlines()) == {f"uid {NOBODY} ran this"}


def test_a_module_the_program_rewrites_is_not_imported_as_root(run_shim, shared_dir, tmp_path,
                                                              canaries):
    """shim installed where the program can write (its copy chowned to nobody): the program
    rewrites a module a helper imports on its next tick. Refused and logged; the program keeps
    its values and nothing ran as root."""
    if not os.path.exists(SYSTEM_PYTHON):
        unavailable("no system Python for a copy of shim nobody owns")
    lib = shared_dir / "lib"
    shutil.copytree(ROOT / "shim", lib / "shim", ignore=shutil.ignore_patterns("__pycache__"))
    _chown_tree(lib, NOBODY)
    module = lib / "shim" / "providers" / "files.py"
    marker = shared_dir / "root-ran-this"
    secret = tmp_path / "secret"
    secret.write_text(canaries.new())
    # An --import is read at every tick (a file reference alone is only hashed by the change
    # probe, which imports no provider): each helper loads shim.providers.files again.
    imported = tmp_path / "imported.json"
    imported.write_text('{"IMPORTED_KEY": "%s"}' % canaries.new("imported"))
    plant = f"open({str(module)!r}, 'a').write('\\n' + {_root_code(marker)!r} + '\\n')"
    result = run_shim(["exec", "--user", "nobody", "--watch", "300ms",
                       "--import", f"ref+file://{imported}", "--",
                       *_program(marker, plant)],
                      {"PYTHONPATH": str(lib), "PYTHONDONTWRITEBYTECODE": "1",
                       "SECRET": f"file:{secret}"}, python=SYSTEM_PYTHON, cwd=shared_dir,
                      timeout=60)
    assert result.returncode == 0, result.stderr
    assert "_root_code" not in module.read_text() and "ran this" in module.read_text()
    assert not marker.exists(), marker.read_text()
    # The first module of the program's copy a helper would import is refused (shim.pipeline.imports
    # for the --import, before shim.providers.files).
    assert re.search(rf"refused to import shim\.[\w.]+ from {re.escape(str(lib))}/shim/",
                     result.stderr), result.stderr
