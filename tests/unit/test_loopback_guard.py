"""The loopback guard (tests/helpers/loopback_guard.py) refuses and reports traffic beyond loopback,
in the pytest process and in the shim processes the tests start."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import BASE_ENV, LOOPBACK_REPORT
from tests.helpers import loopback_guard

# The metadata address every cloud SDK probes, and a public address (one of example.com's).
OUTSIDE = ["169.254.169.254", "93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]


def _report_after(action) -> str:
    before = LOOPBACK_REPORT.stat().st_size
    try:
        action()
    finally:
        with open(LOOPBACK_REPORT, "rb") as report:
            report.seek(before)
            added = report.read().decode()
        # Taken back, so this test's own deliberate attempts do not fail it.
        with open(LOOPBACK_REPORT, "r+b") as report:
            report.truncate(before)
    return added


@pytest.mark.parametrize("address", OUTSIDE)
def test_a_connect_beyond_loopback_is_refused_and_reported(address):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def connect():
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            with pytest.raises(loopback_guard.LoopbackOnly):
                sock.connect((address, 80))

    assert f"socket.connect to '{address}' port 80" in _report_after(connect)


def test_udp_and_dns_beyond_loopback_are_refused_and_reported():
    def send():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(loopback_guard.LoopbackOnly):
                sock.sendto(b"x", ("169.254.169.254", 53))
        with pytest.raises(loopback_guard.LoopbackOnly):
            socket.getaddrinfo("metadata.google.internal", 80)
        with pytest.raises(loopback_guard.LoopbackOnly):
            socket.gethostbyaddr("93.184.215.14")
        with pytest.raises(OSError) as raised:   # urllib wraps it in URLError
            urllib.request.urlopen("http://example.com/", timeout=2)
        assert isinstance(raised.value.reason, loopback_guard.LoopbackOnly)

    report = _report_after(send)
    assert "socket.sendto to '169.254.169.254' port 53" in report
    assert "socket.getaddrinfo of 'metadata.google.internal'" in report
    assert "socket.getaddrinfo of 'example.com'" in report
    assert "socket.gethostbyaddr of '93.184.215.14' (a reverse DNS query)" in report


def test_a_reserved_invalid_name_fails_to_resolve_without_a_lookup():
    """The DNS-failure tests name `.invalid` hosts: the guard answers as every resolver must."""
    def lookup():
        with pytest.raises(socket.gaierror) as raised:
            socket.getaddrinfo("shim-no-such-host.invalid", 80)
        assert raised.value.errno == socket.EAI_NONAME
        assert not isinstance(raised.value, loopback_guard.LoopbackOnly)

    assert _report_after(lookup) == ""


def test_loopback_stays_allowed():
    def local():
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            for host in ("127.0.0.1", "localhost"):
                with socket.create_connection((host, port), timeout=2):
                    pass
        socket.getaddrinfo("127.0.0.2", 1)   # numeric: no DNS traffic
        socket.getaddrinfo("localhost", 1)

    assert _report_after(local) == ""


@pytest.mark.parametrize("address", OUTSIDE[:2])
def test_a_python_child_started_with_the_base_environment_is_guarded_too(address):
    """What shim's processes get: the venv interpreter, BASE_ENV, no import of the guard."""
    code = ("import socket, sys\n"
            "s = socket.socket()\n"
            "s.settimeout(2)\n"
            f"try: s.connect(({address!r}, 80))\n"
            "except OSError as error: print(type(error).__name__)\n")

    def child():
        result = subprocess.run([sys.executable, "-c", code], env=BASE_ENV, capture_output=True,
                                text=True, timeout=30)
        assert result.stdout.strip() == "LoopbackOnly", result.stderr

    assert f"socket.connect to '{address}' port 80" in _report_after(child)


def test_shim_itself_is_guarded(run_shim, probe):
    """A reference to a store beyond loopback is refused inside shim, and reported."""
    def shim():
        result = run_shim(["exec", "--deadline", "2s", "--", *probe.argv],
                          {"VAULT_ADDR": "http://169.254.169.254:8200", "VAULT_TOKEN": "t",
                           "A": "vault:secret/data/app#x"}, timeout=30)
        assert result.returncode == 69, result.stderr
        assert not probe.ran

    assert "socket.connect to '169.254.169.254' port 8200" in _report_after(shim)


def test_the_guard_variable_does_not_reach_the_program(run_shim, probe):
    result = run_shim(["exec", "--", *probe.argv])
    assert result.returncode == 0, result.stderr
    assert loopback_guard.REPORT_VARIABLE not in probe.read()["env"]


INNER_TESTS = '''
import socket, subprocess, sys
from tests.conftest import BASE_ENV

def _swallowed(address):
    try:
        socket.create_connection((address, 80), timeout=2).close()
    except OSError:
        pass    # code under test that hides the failure

def test_metadata_address():
    _swallowed("169.254.169.254")

def test_public_address():
    _swallowed("93.184.215.14")

def test_public_name():
    _swallowed("example.com")

def test_a_child_process():
    subprocess.run([sys.executable, "-c",
                    "import socket\\ntry: socket.create_connection(('169.254.169.254', 80), 2)\\n"
                    "except OSError: pass"], env=BASE_ENV, timeout=30)

def test_loopback_only():
    server = socket.create_server(("127.0.0.1", 0))
    socket.create_connection(server.getsockname(), timeout=2).close()
    server.close()
'''


def test_the_suite_fails_a_test_that_leaves_loopback_even_when_the_error_is_swallowed(tmp_path):
    """The guard as a test run meets it: tests that swallow the refusal still fail."""
    (tmp_path / "test_leaving.py").write_text(INNER_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_leaving.py")],
        cwd=str(loopback_guard_root()), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {name: f"ERROR at teardown of test_{name} " in result.stdout
              for name in ("metadata_address", "public_address", "public_name", "a_child_process",
                           "loopback_only")}
    assert failed == {"metadata_address": True, "public_address": True, "public_name": True,
                      "a_child_process": True, "loopback_only": False}, result.stdout
    # Once per test at teardown, and again in the summary when CI is set (pytest does not cut
    # its summary lines under CI): at least four.
    assert result.stdout.count("the test left loopback") >= 4
    assert "socket.connect to '169.254.169.254' port 80" in result.stdout
    assert "socket.getaddrinfo of 'example.com' (a DNS query)" in result.stdout
    assert "5 passed, 4 errors" in result.stdout   # failed at teardown, after the test body ran


def loopback_guard_root():
    from tests.conftest import ROOT
    return ROOT
