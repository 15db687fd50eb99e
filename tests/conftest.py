"""Shared fixtures: canary secrets, running shim as a real process, the probe child.

Every secret a test makes is a canary; `run_shim` fails the test when any
canary made so far appears in shim's stdout or stderr.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.helpers import loopback_guard

# Fuzzing budgets: `ci` keeps `make test` fast; `long` is for a soak run (docs/security.md).
hypothesis_settings.register_profile("ci", max_examples=200, deadline=None)
hypothesis_settings.register_profile("long", max_examples=10000, deadline=None)
# `make mutate` runs the property tests once per mutant: fewer examples, same properties.
hypothesis_settings.register_profile("mutate", max_examples=25, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "helpers" / "probe.sh"
SYSTEM_PYTHON = "/usr/bin/python3"
# The one CI test: under CI a test that cannot run fails (the job must not pass silently);
# elsewhere it skips loudly.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """What a test does when its premise (root, Docker, gcc...) is missing: fail under CI, else skip."""
    message = f"NOT RUN: {reason}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# -- tests stay on loopback (docs/testing.md "Tests stay on this machine") ---------------------
# The audit hook of tests/helpers/loopback_guard.py refuses and reports any connection or DNS
# lookup beyond loopback: in this process at once, in every venv Python started with
# SHIM_TEST_LOOPBACK_GUARD set through the .pth file written below. `stays_on_loopback` fails
# the test that caused a report.
_GUARD_DIRECTORY = Path(tempfile.mkdtemp(prefix="shim-loopback-"))
atexit.register(shutil.rmtree, _GUARD_DIRECTORY, True)
os.chmod(_GUARD_DIRECTORY, 0o755)
LOOPBACK_REPORT = _GUARD_DIRECTORY / "report"
LOOPBACK_REPORT.touch()
os.chmod(LOOPBACK_REPORT, 0o666)   # shim may append to it after dropping root
loopback_guard.install(str(LOOPBACK_REPORT))
GUARD_PTH = Path(sysconfig.get_paths()["purelib"]) / "shim_test_loopback_guard.pth"

# Where each cloud SDK looks for credentials when it finds none: its metadata service, which is
# the network. Every run of shim gets these: the AWS instance metadata off (and its endpoint on a
# closed loopback port), Google's metadata server and Azure's IMDS on a closed loopback port.
# IDENTITY_ENDPOINT and MSI_ENDPOINT are not set: azure-identity chooses its credential by
# them (App Service, Azure Arc, Cloud Shell), so setting them would change what a test exercises;
# AZURE_POD_IDENTITY_AUTHORITY_HOST moves IMDS, the one it probes by default.
CLOSED_LOOPBACK = "127.0.0.1:9"
METADATA_ON_LOOPBACK = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{CLOSED_LOOPBACK}/",
    "GCE_METADATA_HOST": CLOSED_LOOPBACK,
    "GCE_METADATA_IP": CLOSED_LOOPBACK,
    "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://{CLOSED_LOOPBACK}",
}

BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            **METADATA_ON_LOOPBACK, loopback_guard.REPORT_VARIABLE: str(LOOPBACK_REPORT)}


def _write_guard_pth() -> str | None:
    """The .pth line that loads the guard into the venv's interpreters; an error text, or None."""
    line = loopback_guard.pth_line(str(Path(loopback_guard.__file__).resolve()))
    try:
        if GUARD_PTH.exists() and GUARD_PTH.read_text() == line:
            return None
        staging = GUARD_PTH.with_name(f".{GUARD_PTH.name}.{os.getpid()}")
        staging.write_text(line)
        os.replace(staging, GUARD_PTH)   # atomic: a Python starting now reads all or nothing
    except OSError as error:
        return f"cannot write {GUARD_PTH} ({error.strerror})"
    return None


_GUARD_PTH_PROBLEM = _write_guard_pth()
if _GUARD_PTH_PROBLEM and not IN_CI:
    # The hook still guards this process; only shim's processes go unguarded. Under CI every
    # test fails instead (stays_on_loopback).
    warnings.warn(f"NOT GUARDED: shim's processes may leave loopback: {_GUARD_PTH_PROBLEM}")


@pytest.fixture(autouse=True)
def stays_on_loopback():
    """Fail the test if it, or a Python process it started, reached beyond loopback."""
    if _GUARD_PTH_PROBLEM and IN_CI:
        pytest.fail(f"the loopback guard cannot reach child processes: {_GUARD_PTH_PROBLEM}",
                    pytrace=False)
    before = LOOPBACK_REPORT.stat().st_size
    yield
    with open(LOOPBACK_REPORT, "rb") as report:
        report.seek(before)
        new = report.read().decode(errors="replace").strip()
    if new:
        pytest.fail(f"the test left loopback (tests/helpers/loopback_guard.py refused it):\n{new}",
                    pytrace=False)


# A leak is any copy of a canary's random part long enough to matter: 12 characters of it,
# or those characters in an encoding a log line or an error body might use.
LEAK_WINDOW = 12


def _secret_part(value: str) -> str:
    """The part of a value nobody could guess: a canary's random tail, else the whole value."""
    return value.rsplit("-", 1)[1] if value.startswith("canary-") else value


def leak_forms(value: str) -> set[str]:
    """Every string whose presence in an output means `value` (or part of it) leaked.

    Lower-case forms are matched against the lower-cased text; base64 is matched as is.
    """
    import base64

    part = _secret_part(value)
    width = min(LEAK_WINDOW, len(part))
    windows = {part[i:i + width] for i in range(len(part) - width + 1)}
    forms = set()
    for window in windows:
        data = window.encode()
        forms.add(("lower", window.lower()))
        forms.add(("lower", "".join(f"%{b:02x}" for b in data)))      # percent-encoded
        forms.add(("lower", data.hex()))                                # hex
        forms.add(("lower", "".join(f"\\u{b:04x}" for b in data)))    # JSON \u escapes
        forms.add(("exact", base64.b64encode(data).decode()))
        forms.add(("exact", base64.urlsafe_b64encode(data).decode()))
    return forms


class Canaries:
    def __init__(self):
        self.values: list[str] = []

    def new(self, label: str = "secret") -> str:
        value = f"canary-{label}-{secrets.token_hex(8)}"
        self.values.append(value)
        return value

    def leaked(self, text: str) -> bool:
        lowered = text.lower()
        return any((form in lowered) if kind == "lower" else (form in text)
                   for value in self.values for kind, form in leak_forms(value))

    def assert_absent(self, *texts: str, where: str = "output") -> None:
        # The message names no canary: pytest would print it, and the report is output too.
        for text in texts:
            assert not self.leaked(text), f"a canary (or part or encoding of one) leaked into {where}"


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


# A run that names --deadline D must be over within D plus this (interpreter start, SDK imports,
# the exit): a retry that ignores the deadline then fails its test in seconds, not at `timeout`.
DEADLINE_ALLOWANCE = 15.0


def time_allowed(args, timeout: float) -> float:
    """`timeout`, or less when shim's own options (before any `--`) give a --deadline."""
    options = list(args)
    options = options[:options.index("--")] if "--" in options else options
    if "--deadline" not in options[:-1]:
        return timeout
    from shim.tools.durations import parse_duration
    from shim.tools.errors import UsageError
    try:
        deadline = parse_duration(options[options.index("--deadline") + 1])
    except UsageError:  # a test of a malformed --deadline: shim refuses it at once
        return timeout
    return min(timeout, deadline + DEADLINE_ALLOWANCE)


@pytest.fixture
def run_shim(canaries):
    """Run `python -m shim ARGS` with exactly `env` (plus PATH/LANG); check for leaks."""

    def run(args, env=None, *, input=None, timeout=60, cwd=None, check_leaks=True,
            base_env=True, preexec_fn=None, python=None):
        # Without the base, shim still gets the guard's variable (it scrubs SHIM_* from its child).
        environment = dict(BASE_ENV) if base_env else {
            loopback_guard.REPORT_VARIABLE: BASE_ENV[loopback_guard.REPORT_VARIABLE]}
        environment.update(env or {})
        result = subprocess.run([python or sys.executable, "-m", "shim", *args], env=environment,
                                capture_output=True, text=True, input=input,
                                timeout=time_allowed(args, timeout),
                                cwd=cwd, preexec_fn=preexec_fn)
        if check_leaks:
            canaries.assert_absent(result.stdout, result.stderr, where="shim's output")
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run


@pytest.fixture
def start_shim(canaries):
    """Start `python -m shim ARGS` in the background; `finish(process)` checks it like run_shim.

    Every background shim goes through here, so the leak check covers the ones a test stops with
    SIGTERM or SIGKILL too.
    """
    started = []

    def start(args, env=None, *, pid_namespace=False, **popen):
        environment = dict(BASE_ENV)
        environment.update(env or {})
        command = [sys.executable, "-m", "shim", *args]
        if pid_namespace:
            command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *command]
        process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, **popen)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        finish_process(process, canaries)


def finish_process(process, canaries, timeout=30):
    """Wait for a background shim; fail on a leaked canary or a traceback. Idempotent."""
    if not hasattr(process, "shim_output"):
        process.shim_output = process.communicate(timeout=timeout)
        stdout, stderr = process.shim_output
        canaries.assert_absent(stdout, stderr, where="shim's output")
        assert "Traceback" not in stderr, stderr
    return (process.returncode, *process.shim_output)
