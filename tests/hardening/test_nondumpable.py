"""Issue 12 items 1 and 10: a program sharing shim's uid gets nothing out of the supervisor.

Started as uid 65534 with --init or --watch, the supervisor and the program share a uid.
The program (tests/hardening/attacker.py) tries the supervisor's /proc/PID/environ and
/proc/PID/mem, then sends it SIGABRT under `ulimit -c unlimited`. Whether a core would be
written depends on core_pattern, so the checks that decide are the kernel's own marks of a
non-dumpable process: /proc/PID owned by root, and the supervisor's soft core limit 0.
The program itself must see the core limit its caller set.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BASE_ENV
from tests.hardening.conftest import NOBODY, as_nobody

ATTACKER = Path(__file__).with_name("attacker.py")


def _cores(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith("core")]


@pytest.mark.parametrize("mode", [["--init"], ["--watch", "1h"]], ids=["init", "watch"])
def test_the_program_cannot_read_or_dump_its_supervisor(run_shim, canaries, nobody_python,
                                                         shared_dir, mode):
    python, env = nobody_python
    token = canaries.new("vault-token")
    secret = shared_dir / "secret"
    secret.write_text(canaries.new("file"))
    os.chmod(secret, 0o644)
    report = shared_dir / "report.json"
    env = dict(env, VAULT_TOKEN=token, SECRET=f"file:{secret}")
    result = run_shim(["exec", *mode, "--", "/usr/bin/python3", "-S", str(ATTACKER), str(report),
                       *mode],
                      env, python=python, cwd=shared_dir, preexec_fn=as_nobody(), timeout=60)
    assert result.returncode == -signal.SIGABRT, result.stderr  # the supervisor died of it
    seen = json.loads(report.read_text())
    assert seen["uid"] == NOBODY and seen["parent_uid"] == NOBODY
    assert seen["environ"] == "PermissionError"
    assert seen["mem"] == "PermissionError"
    assert seen["parent_proc_owner"] == 0          # the kernel's mark of a non-dumpable process
    assert seen["parent_core_soft_limit"] == "0"
    assert seen["own_core_soft_limit"] == "unlimited"  # the program got the caller's limit
    assert _cores(shared_dir) == []


def test_the_program_gets_the_core_limit_its_caller_set(run_shim, shared_dir, nobody_python):
    python, env = nobody_python
    result = run_shim(["exec", "--", "sh", "-c", "ulimit -c"], env, python=python,
                      cwd=shared_dir, preexec_fn=as_nobody(4096 * 1024))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8192"  # sh counts 512-byte blocks


def test_sigabrt_during_resolution_writes_no_core(canaries, tmp_path):
    """Item 10: `ulimit -c unlimited`, SIGABRT while a store is being asked: no core."""
    token = canaries.new("vault-token")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = dict(BASE_ENV, VAULT_ADDR=f"http://127.0.0.1:{server.getsockname()[1]}",
               VAULT_TOKEN=token, DB="vault:secret/data/app#password")
    process = subprocess.Popen([sys.executable, "-m", "shim", "exec", "--deadline", "60s", "--",
                                "true"], env=env, cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: resource.setrlimit(
                                   resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2))
    try:
        server.settimeout(30)
        connection, _ = server.accept()  # shim is now waiting for the store's answer
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        core_line = next(line for line in limits.splitlines() if line.startswith("Max core"))
        assert core_line.split()[4] == "0"
        process.send_signal(signal.SIGABRT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        server.close()
    assert process.returncode == -signal.SIGABRT
    canaries.assert_absent(stdout, stderr)
    assert _cores(workdir) == []
    connection.close()
