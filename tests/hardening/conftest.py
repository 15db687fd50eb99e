"""Running shim as a non-root user (uid 65534), as Kubernetes runAsUser or `USER app` does.

The checkout's interpreter may live under a root-only directory, so these runs use the
system Python with shim and its two pure-Python dependencies copied where anyone can read.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from pathlib import Path

import click
import dotenv
import pytest

from tests.conftest import ROOT, SYSTEM_PYTHON

NOBODY = 65534


@pytest.fixture(scope="session")
def nobody_python():
    """(python, env) that uid 65534 can run shim with.

    In a directory of its own under /tmp: pytest keeps its base temporary directory 0700
    (and other pytest sessions reset it), so nobody could not reach a copy there.
    """
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no system Python for a non-root shim")
    lib = Path(tempfile.mkdtemp(prefix="shim-nobody-lib-"))
    _copy_shim_and_dependencies(lib)
    yield SYSTEM_PYTHON, {"PYTHONPATH": str(lib), "PYTHONDONTWRITEBYTECODE": "1"}
    shutil.rmtree(lib, ignore_errors=True)


@pytest.fixture(scope="session")
def nobody_python_with_vault():
    """nobody_python, plus what the Vault provider imports (hvac, requests and theirs)."""
    import certifi
    import charset_normalizer
    import hvac
    import idna
    import requests
    import tenacity
    import urllib3

    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no system Python for a non-root shim")
    lib = Path(tempfile.mkdtemp(prefix="shim-nobody-vault-lib-"))
    _copy_shim_and_dependencies(lib, (hvac, requests, urllib3, certifi, idna, charset_normalizer,
                                      tenacity))
    yield SYSTEM_PYTHON, {"PYTHONPATH": str(lib), "PYTHONDONTWRITEBYTECODE": "1"}
    shutil.rmtree(lib, ignore_errors=True)


def _copy_shim_and_dependencies(lib: Path, more=()) -> None:
    for package in (click, dotenv, *more):
        source = Path(package.__file__).parent
        shutil.copytree(source, lib / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "shim", lib / "shim", ignore=shutil.ignore_patterns("__pycache__"))
    os.chmod(lib, 0o755)
    for path in lib.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def as_nobody(core_limit=resource.RLIM_INFINITY):
    """preexec_fn: become uid/gid 65534 with the given core limit, as `ulimit -c` would."""
    def become():
        resource.setrlimit(resource.RLIMIT_CORE, (core_limit, resource.RLIM_INFINITY))
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    return become


# What every AWS run in these suites needs: test credentials, one region, and nothing read from
# the machine's own AWS configuration or instance metadata.
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}


def one_line(result, code, *fragments):
    """shim failed with `code`, in exactly one stderr line holding every fragment."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
