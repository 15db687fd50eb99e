"""Small helpers for tests that drive the real Docker Engine (used by conftest.py and tests)."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Callable

import pytest

from tests.conftest import unavailable as _not_run

# Every canary any e2e test made in this session (the image hygiene test sweeps for them).
SESSION_CANARIES: list[str] = []


def docker(*args: str, check: bool = True, timeout: float = 120,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run `docker ARGS`, text output captured; raises with the output when check fails."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                            input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])}... exited {result.returncode}:\n"
                             f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def unavailable(reason: str) -> None:
    """No usable Docker: fail under CI=true (the job must not pass silently), else skip loudly."""
    _not_run(f"DOCKER UNAVAILABLE, e2e test not run: {reason}")


def engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False, timeout=30).returncode == 0


def image_id(tag: str) -> str | None:
    result = docker("image", "inspect", "-f", "{{.Id}}", tag, check=False, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else None


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str,
             interval: float = 0.25, on_timeout: Callable[[], str] | None = None):
    """Poll predicate until it returns something truthy; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{detail}", pytrace=False)
        time.sleep(interval)


def container_logs(name: str) -> str:
    result = docker("logs", name, check=False, timeout=60)
    return result.stdout + result.stderr


def container_state(name: str) -> dict:
    return json.loads(docker("inspect", "-f", "{{json .State}}", name).stdout)


def start_vault_double(image: str, name: str, network: str, token: str, seed: dict,
                       directory) -> None:
    """Run the Vault double as `vault` on network (http://vault:8200), root token `token`,
    seeded with {"mount/path": {key: value}}; returns once it listens."""
    seed_file = directory / "seed.json"
    seed_file.write_text(json.dumps(seed))
    seed_file.chmod(0o444)
    docker("run", "-d", "--name", name, "--network", network, "--network-alias", "vault",
           "-e", f"VAULT_DEV_ROOT_TOKEN_ID={token}", "-v", f"{seed_file}:/seed.json:ro",
           "-e", "VAULT_DOUBLE_SEED_FILE=/seed.json", image)
    wait_for(lambda: "listening" in container_logs(name), timeout=30, what="the Vault double",
             on_timeout=lambda: container_logs(name))
