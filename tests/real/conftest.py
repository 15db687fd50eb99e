"""The real-server tier: the real OpenBao server (a Vault-API server) and the real sops.

Fixtures other tests reuse (keep their names and signatures):

    openbao                 a session-wide OpenBao dev server on loopback (`OpenBao`); tests that
                            write to it use paths of their own (`unique_path`).
    fresh_openbao()         a server of the test's own, for what changes the whole server
                            (sealing it, killing it, namespaces, auth methods); stopped at the end.
                            `fresh_openbao(tls=True)`: `-dev-tls`, its CA file in `.ca_file`.
    sops                    `Sops`: the real sops binary, with its version check off.
    age_identity()          (public recipient, path of an identity file) made by age-keygen.

Everything listens on 127.0.0.1. A missing binary skips loudly, or fails under CI=true.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import unavailable

BIN = Path(sys.executable).parent
# sops otherwise asks the internet for its newest version.
SOPS_ENV = {"SOPS_DISABLE_VERSION_CHECK": "1"}


def _binary(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        unavailable(f"`{name}` is missing (make install-test / scripts/test-packages.sh)")
    return str(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unique_path(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class OpenBao:
    """One `bao server -dev` on loopback, its root token, and plain HTTP calls to it."""

    def __init__(self, directory: Path, tls: bool = False):
        self.port = free_port()
        self.tls = tls
        self.address = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        # With tls, `-dev-tls` writes its CA here (vault-ca.pem): what VAULT_CACERT points at.
        self.ca_file = directory / "tls" / "vault-ca.pem" if tls else None
        self.root_token = f"root-{secrets.token_hex(8)}"
        self.directory = directory
        self.log = directory / "bao.log"
        self.process: subprocess.Popen | None = None

    # -- life ------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> "OpenBao":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.ca_file.parent.mkdir(exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [_binary("bao"), "server", "-dev", f"-dev-root-token-id={self.root_token}",
                 f"-dev-listen-address=127.0.0.1:{self.port}",
                 *(["-dev-tls", f"-dev-tls-cert-dir={self.ca_file.parent}"] if self.tls else [])],
                stdout=log, stderr=subprocess.STDOUT, env=self.cli_env(), start_new_session=True)
        self._wait_until_writable(timeout)
        return self

    def _wait_until_writable(self, timeout: float) -> None:
        # A fresh dev server answers its health check before `secret/` takes writes (about 10 s
        # on a loaded machine): wait for a write that succeeds.
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                status, body = self.request("POST", "secret/data/_ready", {"data": {"ok": "1"}})
                if status == 200:
                    return
                last = (status, body)
            except OSError as error:
                last = error
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"OpenBao did not take a write within {timeout}s ({last}); log: "
                    f"{self.log.read_text()[-2000:]}", pytrace=False)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL, as a crash: the next request is refused."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    # -- calls -----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict | None = None, *,
                token: str | None = None, namespace: str | None = None,
                timeout: float = 10) -> tuple[int, dict]:
        """`METHOD /v1/PATH` with the root token (or `token`); (status, parsed JSON or {})."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.address}/v1/{path.lstrip('/')}", data=data,
                                         method=method)
        request.add_header("X-Vault-Token", token if token is not None else self.root_token)
        if namespace:
            request.add_header("X-Vault-Namespace", namespace)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        context = None
        if self.tls:
            if not self.ca_file.exists():
                raise OSError("the dev server has not written its CA yet")
            context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        try:
            return status, (json.loads(text) if text.strip() else {})
        except ValueError:
            return status, {"raw": text.decode(errors="replace")}

    def ok(self, method: str, path: str, body: dict | None = None, **options) -> dict:
        """As `request`, failing the test on anything but 2xx."""
        status, answer = self.request(method, path, body, **options)
        assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
        return answer

    def mount_kv(self, path: str, version: int, namespace: str | None = None) -> str:
        """A KV mount of the given version at `path`; its path. A new version-2 mount upgrades
        itself in the background and answers 400 "Upgrading from non-versioned to versioned
        data" until it is done, so this waits until the mount's config reads."""
        self.ok("POST", f"sys/mounts/{path}", {"type": "kv", "options": {"version": str(version)}},
                namespace=namespace)
        if version == 2:
            deadline = time.monotonic() + 20
            while True:
                status, answer = self.request("GET", f"{path}/config", namespace=namespace)
                if status == 200:
                    break
                assert time.monotonic() < deadline, f"KV v2 mount {path}: {status} {answer}"
                time.sleep(0.05)
        return path

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.directory),
                "BAO_ADDR": self.address, "BAO_TOKEN": token or self.root_token,
                **({"BAO_CACERT": str(self.ca_file)} if self.tls else {})}

    def cli(self, *args: str, token: str | None = None, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:
        """The real `bao` CLI against this server."""
        result = subprocess.run([_binary("bao"), *args], env=self.cli_env(token), input=input,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            pytest.fail(f"bao {' '.join(args[:3])}... failed: {result.stderr[-1500:]}",
                        pytrace=False)
        return result

    def vault_env(self, token: str | None = None) -> dict[str, str]:
        """The variables shim reads to reach this server."""
        return {"VAULT_ADDR": self.address, "VAULT_TOKEN": token or self.root_token}

    def put_kv2(self, path: str, data: dict, mount: str = "secret") -> int:
        """Writes a KV v2 secret; its version."""
        return self.ok("POST", f"{mount}/data/{path}", {"data": data})["data"]["version"]


@pytest.fixture(scope="session")
def openbao(tmp_path_factory):
    server = OpenBao(tmp_path_factory.mktemp("openbao")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_openbao(tmp_path_factory):
    started = []

    def start(tls: bool = False) -> OpenBao:
        server = OpenBao(tmp_path_factory.mktemp("openbao-own"), tls=tls).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Sops:
    """The real sops binary."""

    def __init__(self):
        self.binary = _binary("sops")

    def run(self, *args: str, env: dict[str, str] | None = None, cwd=None,
            check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SOPS_ENV, **(env or {})}
        result = subprocess.run([self.binary, *args], env=environment, cwd=cwd, input=input,
                                capture_output=True, timeout=60)
        if check and result.returncode != 0:
            pytest.fail(f"sops {' '.join(args[:2])}... failed: "
                        f"{result.stderr.decode(errors='replace')[-1500:]}", pytrace=False)
        return result


@pytest.fixture(scope="session")
def sops() -> Sops:
    return Sops()


@pytest.fixture
def age_identity(tmp_path):
    """Makes an age key pair with the real age-keygen: (recipient, identity file)."""

    def make(name: str = "key") -> tuple[str, Path]:
        path = tmp_path / f"{name}-{secrets.token_hex(3)}.txt"
        result = subprocess.run([_binary("age-keygen"), "-o", str(path)], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        recipient = next(line.split(": ", 1)[1] for line in path.read_text().splitlines()
                         if line.startswith("# public key: "))
        return recipient, path

    return make
