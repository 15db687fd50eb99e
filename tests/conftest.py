"""Shared fixtures: canary secrets, running shim as a real process, the probe child.

Every secret a test makes is a canary; `run_shim` fails the test when any
canary made so far appears in shim's stdout or stderr.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Fuzzing budgets: `ci` keeps `make test` fast; `long` is for a soak run (docs/security.md).
hypothesis_settings.register_profile("ci", max_examples=200, deadline=None)
hypothesis_settings.register_profile("long", max_examples=10000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "helpers" / "probe.sh"
SYSTEM_PYTHON = "/usr/bin/python3"
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class Canaries:
    def __init__(self):
        self.values: list[str] = []

    def new(self, label: str = "secret") -> str:
        value = f"canary-{label}-{secrets.token_hex(8)}"
        self.values.append(value)
        return value

    def assert_absent(self, *texts: str, where: str = "output") -> None:
        for text in texts:
            for value in self.values:
                assert value not in text, f"canary leaked into {where}"
                # A percent-encoded or JSON-escaped copy is a leak too.
                assert value.replace("-", "%2D") not in text


@pytest.fixture
def canaries():
    return Canaries()


@pytest.fixture
def shared_dir():
    """A directory any uid can write to (the probe may run as nobody)."""
    path = tempfile.mkdtemp(prefix="shim-test-")
    os.chmod(path, 0o777)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


class Probe:
    def __init__(self, directory: Path):
        self.output = directory / f"probe-{secrets.token_hex(4)}.json"

    @property
    def argv(self) -> list[str]:
        return [str(PROBE), str(self.output)]

    def read(self) -> dict:
        return json.loads(self.output.read_text())

    @property
    def ran(self) -> bool:
        return self.output.exists()


@pytest.fixture
def probe(shared_dir):
    return Probe(shared_dir)


@pytest.fixture
def run_shim(canaries):
    """Run `python -m shim ARGS` with exactly `env` (plus PATH/LANG); check for leaks."""

    def run(args, env=None, *, input=None, timeout=60, cwd=None, check_leaks=True,
            base_env=True, preexec_fn=None, python=None):
        environment = dict(BASE_ENV) if base_env else {}
        environment.update(env or {})
        result = subprocess.run([python or sys.executable, "-m", "shim", *args], env=environment,
                                capture_output=True, text=True, input=input, timeout=timeout,
                                cwd=cwd, preexec_fn=preexec_fn)
        if check_leaks:
            canaries.assert_absent(result.stdout, result.stderr, where="shim's output")
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run
