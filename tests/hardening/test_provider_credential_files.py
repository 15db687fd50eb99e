"""Issue 12 item 12 (credential files): Vault's credential files are read like every other
file shim is told to read (shim/tools/safe_read.py): non-blocking, regular files only, capped.

A FIFO nobody writes to, /dev/zero and an oversized file as VAULT_TOKEN_FILE, as the AppRole
secret-id file and as the Kubernetes service-account token: one line, exit 78 (a credential
file that is not a usable file, as docs/vault.md says), no request to Vault, no hang (the
subprocess timeout is the only clock). A symlinked service-account token (as Kubernetes
mounts it, into ..data/) still works.
"""

from __future__ import annotations

import os

import pytest

from tests.doubles.vault import VaultDouble


@pytest.fixture
def vault(canaries):
    with VaultDouble() as double:
        double.kv2_put("secret", "app", {"password": canaries.new("vault")})
        yield double


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


def _bad_file(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        return str(path)
    if kind == "oversized":
        path = tmp_path / "huge"
        path.write_bytes(b"x" * (65 * 1024))
        return str(path)
    return "/dev/zero"


def _env(vault, home, method, path):
    env = {"VAULT_ADDR": vault.url, "HOME": str(home),
           "PASSWORD": "vault:secret/data/app#password"}
    if method == "token":
        env["VAULT_TOKEN_FILE"] = path
    elif method == "approle":
        env.update(VAULT_AUTH_METHOD="approle", VAULT_ROLE_ID="role",
                   VAULT_SECRET_ID_FILE=path)
    else:
        env.update(VAULT_ROLE="app", KUBERNETES_SERVICE_ACCOUNT_TOKEN=path)
    return env


@pytest.mark.parametrize("method", ["token", "approle", "kubernetes"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "oversized"])
def test_credential_file_that_would_hang_or_exhaust(run_shim, probe, vault, home, tmp_path,
                                                    method, kind):
    path = _bad_file(tmp_path, kind)
    result = run_shim(["exec", "--", *probe.argv], _env(vault, home, method, path), timeout=30)
    lines = result.stderr.splitlines()
    assert result.returncode == 78, result.stderr
    assert len(lines) == 1, result.stderr
    assert path in lines[0]
    assert ("larger than 64 KiB" if kind == "oversized" else "not a regular file") in lines[0]
    assert vault.requests == []
    assert not probe.ran


def test_symlinked_service_account_token_is_followed(run_shim, probe, vault, home, tmp_path,
                                                     canaries):
    data = tmp_path / "..data"
    data.mkdir()
    (data / "token").write_text("not-a-real-jwt\n")
    link = tmp_path / "token"
    link.symlink_to(data / "token")
    result = run_shim(["exec", "--", *probe.argv],
                      _env(vault, home, "kubernetes", str(link)), timeout=30)
    # The double knows no such role: the login is refused (77), which means the file was read.
    assert result.returncode == 77, result.stderr
    assert "kubernetes login" in result.stderr
