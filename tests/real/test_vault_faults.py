"""The real OpenBao when things go wrong: sealed, killed while shim waits on it, TLS and its
certificate, the wrong scheme in VAULT_ADDR, and a token about to cross the network in clear.

Every shim run has its own bound: `--deadline` for shim, the run's timeout for the test.
"""

from __future__ import annotations

import os
import re
import signal
import time

from tests.helpers.log_records import events
from tests.real.conftest import free_port, unique_path
from tests.real.vault_tier import doc_example, enable_kv, error_line, exec_probe, put, shim_env


def _secret(server, canaries) -> tuple[str, str]:
    mount = enable_kv(server, unique_path("kv2"), 2)
    value = canaries.new()
    put(server, mount, "app", {"password": value}, 2)
    return f"ref+vault://{mount}/app#/password", value


def test_a_sealed_server_is_69_within_the_deadline(fresh_openbao, run_shim, probe, canaries,
                                                   tmp_path):
    server = fresh_openbao()
    reference, _value = _secret(server, canaries)
    server.cli("operator", "seal")

    result = exec_probe(run_shim, probe, shim_env(server, canaries, tmp_path, P=reference),
                        deadline="3s", timeout=20)

    assert result.returncode == 69, result.stderr
    assert "Vault is sealed" in error_line(result), result.stderr
    assert not probe.ran


def _unseal_key(server) -> str:
    """The dev server prints its unseal key in its banner, which may follow its first writes."""
    waited_until = time.monotonic() + 20
    while not (found := re.search(r"Unseal Key: (\S+)", server.log.read_text())):
        assert time.monotonic() < waited_until, "the dev server printed no unseal key"
        time.sleep(0.1)
    return found.group(1)


def test_sealed_at_start_and_unsealed_while_shim_retries_delivers(
        fresh_openbao, start_shim, probe, canaries, tmp_path):
    from tests.conftest import finish_process

    server = fresh_openbao()
    reference, value = _secret(server, canaries)
    unseal_key = _unseal_key(server)
    server.cli("operator", "seal")
    process = start_shim(["exec", "--deadline", "40s", "--log-format", "json", "--",
                          *probe.argv], shim_env(server, canaries, tmp_path, P=reference))
    waited_until = time.monotonic() + 30
    while not _connected_to(server.port):        # shim is retrying against the sealed server
        assert time.monotonic() < waited_until and process.poll() is None, "shim never connected"
        time.sleep(0.05)
    server.cli("operator", "unseal", unseal_key)

    code, _stdout, stderr = finish_process(process, canaries, timeout=60)

    assert code == 0, stderr
    assert probe.read()["env"]["P"] == value
    assert any("503" in str(retry.get("reason")) for retry in events(stderr, "provider.retry"))


def _connected_to(port: int) -> bool:
    """An established TCP connection to 127.0.0.1:port exists (the client's end of it)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(fields[2] == wanted and fields[3] == "01"
                   for fields in (line.split() for line in table.readlines()[1:]))


def test_a_server_killed_while_shim_waits_on_it_is_69_within_the_deadline(
        fresh_openbao, start_shim, probe, canaries, tmp_path):
    from tests.conftest import finish_process

    server = fresh_openbao()
    reference, _value = _secret(server, canaries)
    # Stopped, the server still completes TCP handshakes (the kernel does) but never answers:
    # shim's first request is in flight when the server dies.
    os.killpg(server.process.pid, signal.SIGSTOP)
    process = start_shim(["exec", "--deadline", "6s", "--", *probe.argv],
                         shim_env(server, canaries, tmp_path, P=reference))
    waited_until = time.monotonic() + 10
    while not _connected_to(server.port):
        assert time.monotonic() < waited_until and process.poll() is None, "shim never connected"
        time.sleep(0.05)
    server.kill()

    code, _stdout, stderr = finish_process(process, canaries, timeout=20)

    assert code == 69, stderr
    assert "within the deadline" in stderr, stderr
    assert not probe.ran


def test_tls_with_the_servers_ca_and_without_it(fresh_openbao, run_shim, probe, canaries,
                                                tmp_path):
    server = fresh_openbao(tls=True)
    reference, value = _secret(server, canaries)

    for variable in ("VAULT_CACERT", "BAO_CACERT"):
        result = exec_probe(run_shim, probe, shim_env(server, canaries, tmp_path, P=reference,
                                                      **{variable: str(server.ca_file)}))
        assert result.returncode == 0, (variable, result.stderr)
        assert probe.read()["env"]["P"] == value

    result = exec_probe(run_shim, probe, shim_env(server, canaries, tmp_path, P=reference))
    assert result.returncode == 78, result.stderr
    assert "TLS verification of https://127.0.0.1" in error_line(result)

    result = exec_probe(run_shim, probe, shim_env(server, canaries, tmp_path, P=reference,
                                                  VAULT_SKIP_VERIFY="true"))
    assert result.returncode == 0, result.stderr
    assert "VAULT_SKIP_VERIFY is set" in result.stderr

    # http:// to this https server: OpenBao says "Client sent an HTTP request to an HTTPS
    # server"; shim names the scheme, not a missing path.
    plain = server.address.replace("https://", "http://")
    result = exec_probe(run_shim, probe, shim_env(server, canaries, tmp_path, P=reference,
                                                  VAULT_ADDR=plain))
    assert result.returncode == 78, result.stderr
    example = doc_example("VAULT_ADDR=http://vault:8200 says http://")   # docs/vault.md
    assert example.replace("http://vault:8200", plain) in error_line(result)


def test_https_to_a_plain_http_server_names_the_scheme_not_the_certificate(
        openbao, run_shim, probe, canaries, tmp_path):
    reference, _value = _secret(openbao, canaries)
    secure = openbao.address.replace("http://", "https://")

    result = exec_probe(run_shim, probe, shim_env(openbao, canaries, tmp_path, P=reference,
                                                  VAULT_ADDR=secure))

    assert result.returncode == 78, result.stderr
    line = error_line(result)
    example = doc_example("VAULT_ADDR=https://vault:8200 says https://")  # docs/vault.md
    assert example.replace("https://vault:8200", secure) in line and "VAULT_CACERT" not in line


def test_a_token_sent_in_clear_to_another_host_is_warned_about_once(
        openbao, run_shim, probe, canaries, tmp_path):
    # The request goes to a proxy on loopback that refuses it: nothing leaves this machine,
    # and shim retries (several requests) until the deadline.
    env = shim_env(openbao, canaries, tmp_path, P="vault:secret/data/app#password",
                   VAULT_ADDR="http://vault.example.com:8200",
                   HTTP_PROXY=f"http://127.0.0.1:{free_port()}")
    result = exec_probe(run_shim, probe, env, deadline="2s", timeout=20)
    assert result.returncode == 69, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "in clear" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("shim: warning:") and "vault.example.com" in warnings[0]

    # Loopback is not the network: no warning.
    reference, _value = _secret(openbao, canaries)
    result = exec_probe(run_shim, probe, shim_env(openbao, canaries, tmp_path, P=reference))
    assert result.returncode == 0 and "in clear" not in result.stderr, result.stderr
