"""Static security checks of the shipped code (bandit), so CI fails on a new finding."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_is_clean():
    result = subprocess.run([sys.executable, "-m", "bandit", "-q", "-r", "shim", "-c", "pyproject.toml"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
