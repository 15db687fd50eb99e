"""Issue 12 item 12 (store answers): shim reads at most a store's cap of any answer.

Whatever answers at VAULT_ADDR, AWS_ENDPOINT_URL or a Key Vault URL sends 300 MB with a
Content-Length, or a chunked body that never ends. Each store has a largest secret it can
hold (shim/providers/bodycap.py), so shim stops reading at its cap: exit 65 in one line,
nothing executed, and its peak memory stays far below what the old code reached (a 300 MB
Vault body took it to 620 MB). Peak memory is the child's ru_maxrss, taken by a small
wrapper that waits for shim (a memory bound, not a time bound: generous on purpose).
"""

from __future__ import annotations

import resource
import sys

import pytest

from tests.doubles.azure import AzureKeyVaultDouble
from tests.hardening.conftest import AWS_TEST_ENV
from tests.helpers.flood import FloodServer

HUGE = 300 * 1024 * 1024
PEAK_BOUND_KIB = 200 * 1024   # shim with every SDK imported stays well under this

WRAPPER = f"""#!{sys.executable}
import os, subprocess, sys
child = subprocess.Popen([{sys.executable!r}, *sys.argv[1:]])
_, status, usage = os.wait4(child.pid, 0)
with open(os.environ["SHIM_TEST_PEAK_FILE"], "w") as stream:
    stream.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.fixture
def measured(tmp_path):
    """(python to pass to run_shim, env to add, a function giving shim's peak RSS in KiB)."""
    wrapper = tmp_path / "peak-python"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    peak = tmp_path / "peak"
    return str(wrapper), {"SHIM_TEST_PEAK_FILE": str(peak)}, lambda: int(peak.read_text())


def _limit_address_space():
    # A safety net for the machine if the cap is ever broken: the old code read without end.
    resource.setrlimit(resource.RLIMIT_AS, (6 * 1024 ** 3, resource.RLIM_INFINITY))


def _run(run_shim, probe, measured, env):
    python, extra, peak = measured
    result = run_shim(["exec", "--deadline", "20s", "--", *probe.argv], {**env, **extra},
                      timeout=120, python=python, preexec_fn=_limit_address_space)
    return result, peak()


def _assert_refused(result, peak, store):
    lines = result.stderr.splitlines()
    assert result.returncode == 65, result.stderr
    assert len(lines) == 1, result.stderr
    assert f"{store}" in lines[0] and "shim stopped reading" in lines[0], lines[0]
    print(f"peak RSS {peak} KiB")  # reported with pytest -s (docs/security.md quotes it)
    assert peak < PEAK_BOUND_KIB, f"peak RSS {peak} KiB"


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.mark.parametrize("size", [HUGE, None], ids=["300MB", "endless"])
def test_vault_answer_too_large(run_shim, probe, measured, home, size):
    with FloodServer(size=size) as flood:
        result, peak = _run(run_shim, probe, measured, {
            "VAULT_ADDR": flood.url, "VAULT_TOKEN": "hvs.test", "HOME": str(home),
            "P": "vault:secret/data/app#password"})
    _assert_refused(result, peak, "more than 4 MiB")
    assert not probe.ran


@pytest.mark.parametrize("reference", ["ref+awssecrets://app/db", "ref+awsssm:///app/db"])
@pytest.mark.parametrize("size", [HUGE, None], ids=["300MB", "endless"])
def test_aws_answer_too_large(run_shim, probe, measured, size, reference):
    with FloodServer(size=size, content_type="application/x-amz-json-1.1") as flood:
        result, peak = _run(run_shim, probe, measured,
                            {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": flood.url, "P": reference})
    _assert_refused(result, peak, "more than 1 MiB")
    assert not probe.ran


@pytest.mark.parametrize("size", [HUGE, None], ids=["300MB", "endless"])
def test_azure_answer_too_large(run_shim, probe, measured, tmp_path, size):
    with AzureKeyVaultDouble(tmp_path) as kv:
        # The flood presents the double's own certificate, which shim trusts for the vault.
        with FloodServer(size=size, context=kv.pki.server_context()) as flood:
            host = flood.url[len("https://"):]
            result, peak = _run(run_shim, probe, measured, {
                **kv.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
                "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
                "P": f"ref+azurekeyvault://{host}/app"})
    _assert_refused(result, peak, "more than 256 KiB")
    assert not probe.ran


def test_a_normal_answer_is_read_whole(run_shim, probe, measured, home, canaries):
    """The control: the same wrapper and bound, an answer under the cap."""
    from tests.doubles.vault import VaultDouble
    value = canaries.new("vault")
    with VaultDouble() as vault:
        vault.kv2_put("secret", "app", {"password": value})
        python, extra, peak = measured
        result = run_shim(["exec", "--", *probe.argv],
                          {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token,
                           "HOME": str(home), "P": "vault:secret/data/app#password", **extra},
                          python=python)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == value
    assert peak() < PEAK_BOUND_KIB


@pytest.mark.parametrize("size", [HUGE, None], ids=["300MB", "endless"])
def test_azure_token_endpoint_answer_too_large(run_shim, probe, measured, tmp_path, size):
    """The managed identity's token endpoint floods instead: no token, bounded memory."""
    with AzureKeyVaultDouble(tmp_path) as kv, FloodServer(size=size) as flood:
        env = {**kv.app_service_env(), "IDENTITY_ENDPOINT": flood.url,
               "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
               "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
               "P": f"ref+azurekeyvault://{kv.url[len('https://'):]}/app"}
        result, peak = _run(run_shim, probe, measured, env)
    lines = result.stderr.splitlines()
    print(f"peak RSS {peak} KiB")
    assert result.returncode == 77, result.stderr
    assert len(lines) == 1 and "could not get a token" in lines[0], result.stderr
    assert peak < PEAK_BOUND_KIB, f"peak RSS {peak} KiB"
    assert not probe.ran
