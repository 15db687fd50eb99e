"""--metrics: the supervisor of exec --watch and the loop of render --watch serve /metrics
(Prometheus text format, parsed here with prometheus_client's own parser) and /healthz, on
loopback unless told otherwise, and never a value."""

from __future__ import annotations

import http.client
import signal
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import finish_process
from tests.doubles.vault import VaultDouble
from tests.integration.test_supervise import wait_for

HTTP_SECONDS = 5


@pytest.fixture
def vault():
    with VaultDouble() as double:
        yield double


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) from the metrics server, or (0, "") while it is not listening yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_SECONDS)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    except OSError:
        return 0, ""
    finally:
        connection.close()


def samples(page: str) -> dict[tuple, float]:
    """{(name, sorted labels): value} of every sample, as Prometheus's parser reads the page."""
    found = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(port: int) -> dict[tuple, float]:
    status, page = get(port, "/metrics")
    return samples(page) if status == 200 else {}


def watch_with_metrics(start_shim, vault, canaries, tmp_path, port, *extra):
    """exec --watch with a KV v2 secret and a leased database credential."""
    vault.add_database_role("app", default_ttl=30, max_ttl=3600)
    vault.kv2_put("secret", "app", {"password": canaries.new("kv")})
    token = vault.create_token(["secret/*", "database/creds/app", "sys/leases/*"], ttl=3600)
    canaries.values.append(token)
    seen = tmp_path / "seen"
    process = start_shim(
        ["exec", "--watch", "300ms", "--metrics", f"127.0.0.1:{port}", "--log-format", "json",
         *extra, "--", "sh", "-c", f'echo "$APP_PASSWORD" >> {seen}; exec sleep 60'],
        {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token, "HOME": str(tmp_path),
         "APP_PASSWORD": "vault:secret/data/app#password",
         "DB_PASSWORD": "vault:database/creds/app#password"})
    assert wait_for(lambda: seen.exists() and seen.read_text().strip(), timeout=30)
    canaries.values.extend(issued.password for issued in vault.issued_credentials("app"))
    return process, seen


def test_metrics_count_resolutions_reads_ages_leases_and_restarts(start_shim, vault, canaries,
                                                                   tmp_path):
    port = free_port()
    process, seen = watch_with_metrics(start_shim, vault, canaries, tmp_path, port)
    success = ("shim_resolutions_total", (("outcome", "success"),))
    assert wait_for(lambda: scrape(port).get(success, 0) >= 3, timeout=30)
    _, page = get(port, "/metrics")
    canaries.assert_absent(page, where="/metrics")
    assert vault.root_token not in page and "secret/data/app" not in page
    found = samples(page)
    # Both secrets were read once at the start; since then each tick asked the KV secret's
    # metadata (it did not change) and kept the leased credential (shim/pipeline/probes.py).
    assert found[("shim_store_reads_total", (("store", "vault"),))] == 2
    probes = found[("shim_store_probes_total", (("store", "vault"),))]
    assert found[success] <= probes <= found[success] + 1
    assert 0 <= found[("shim_secret_age_seconds", (("variable", "APP_PASSWORD"),))] < 3600
    assert 0 < found[("shim_lease_ttl_seconds", (("variable", "DB_PASSWORD"),))] <= 30
    assert found[("shim_program_restarts_total", ())] == 0
    assert found[("shim_consecutive_failures", ())] == 0
    assert found[("shim_stale_values_served_total", ())] == 0
    assert found[("shim_last_success_timestamp_seconds", ())] > 1.7e9
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/nothing")[0] == 404

    rotated = canaries.new("kv-rotated")
    vault.kv2_put("secret", "app", {"password": rotated})
    restarts = ("shim_program_restarts_total", ())
    assert wait_for(lambda: scrape(port).get(restarts) == 1, timeout=30)
    assert wait_for(lambda: rotated in seen.read_text(), timeout=10)
    process.send_signal(signal.SIGTERM)
    returncode, _, _ = finish_process(process, canaries)
    assert returncode == 143


def test_the_supervisor_serving_metrics_loads_no_store_sdk(start_shim, vault, canaries, tmp_path):
    port = free_port()
    process, _ = watch_with_metrics(start_shim, vault, canaries, tmp_path, port)
    assert wait_for(lambda: get(port, "/metrics")[0] == 200, timeout=30)
    libraries = Path(f"/proc/{process.pid}/maps").read_text()
    assert "_ssl" not in libraries and "libssl" not in libraries, "the supervisor loaded TLS"
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 143


def test_healthz_turns_503_after_failed_ticks_and_200_after_a_success(start_shim, vault,
                                                                      canaries, tmp_path):
    """render --watch as the sidecar: a sealed store fails the ticks, unsealing heals them."""
    vault.kv2_put("secret", "app", {"api_key": canaries.new("v1")})
    token = vault.create_token(["secret/*"], ttl=3600)
    canaries.values.append(token)
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    process = start_shim(
        ["render", "--dir", str(out), "--watch", "300ms", "--deadline", "2s", "--metrics", f":{port}"],
        {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token, "HOME": str(tmp_path),
         "API_KEY": "vault:secret/data/app#api_key"})
    assert wait_for(lambda: (out / "API_KEY").exists(), timeout=30)
    assert get(port, "/healthz") == (200, "ok\n")
    vault.seal()
    assert wait_for(lambda: get(port, "/healthz")[0] == 503, timeout=40)
    assert get(port, "/healthz")[1].startswith("unhealthy: ")
    failures = scrape(port)
    assert failures[("shim_consecutive_failures", ())] >= 3
    assert failures[("shim_resolutions_total", (("outcome", "failure"),))] >= 3
    vault.unseal()
    assert wait_for(lambda: get(port, "/healthz") == (200, "ok\n"), timeout=30)
    assert scrape(port)[("shim_consecutive_failures", ())] == 0
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 0


def test_a_hostile_client_does_not_stop_the_page(start_shim, vault, canaries, tmp_path):
    """A client that connects and says nothing, or sends an endless line, is dropped within
    seconds; the next scrape is answered."""
    port = free_port()
    process, _ = watch_with_metrics(start_shim, vault, canaries, tmp_path, port)
    assert wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=30)
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_SECONDS) as silent:
        assert get(port, "/healthz") == (200, "ok\n")
        assert silent.recv(1) == b""    # closed by the server after its client timeout
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_SECONDS) as flood:
        try:
            flood.sendall(b"GET /" + b"a" * 65536)
        except OSError:
            pass    # the server stopped reading and closed: what we want
    assert get(port, "/healthz") == (200, "ok\n")
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 143


@pytest.mark.parametrize("arguments, fragment", [
    (["--metrics", "10.1.2.3:9464"], "not a loopback address"),
    (["--metrics", "0.0.0.0:9464"], "not a loopback address"),
    (["--metrics", "metrics.example:9464"], "must be an IP address or localhost"),
    (["--metrics", "127.0.0.1"], "is not HOST:PORT"),
    (["--metrics", "127.0.0.1:70000"], "is not HOST:PORT"),
])
def test_a_bad_or_public_address_is_a_usage_error(run_shim, tmp_path, arguments, fragment):
    result = run_shim(["exec", "--watch", "1m", *arguments, "--", "true"], {"A": "plain"},
                      timeout=30)
    assert result.returncode == 64, result.stderr
    lines = result.stderr.strip().splitlines()
    assert fragment in lines[0] and lines[0].startswith("shim: error:")


def test_metrics_without_watch_is_a_usage_error(run_shim):
    result = run_shim(["exec", "--init", "--metrics", "127.0.0.1:9464", "--", "true"], {},
                      timeout=30)
    assert result.returncode == 64
    assert "--metrics needs --watch" in result.stderr


def test_an_address_in_use_is_a_configuration_error_before_the_program_starts(run_shim, probe):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_shim(["exec", "--watch", "1m", "--metrics", f"127.0.0.1:{port}", "--",
                           *probe.argv], {"A": "plain"}, timeout=30)
    assert result.returncode == 78, result.stderr
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert not probe.ran


def test_the_opt_in_serves_on_any_address(start_shim, canaries, tmp_path):
    port = free_port()
    secret = tmp_path / "token"
    secret.write_text("plain-not-secret")
    ready = tmp_path / "ready"
    process = start_shim(["exec", "--watch", "1h", "--metrics", f"0.0.0.0:{port}",
                          "--metrics-allow-remote", "--", "sh", "-c",
                          f"touch {ready}; exec sleep 60"],
                         {"TOKEN_FILE": str(secret)})
    assert wait_for(lambda: get(port, "/healthz") == (200, "ok\n"), timeout=30)
    # SIGTERM once the program runs: before, the supervisor's signal handling is not set up.
    assert wait_for(ready.exists, timeout=30)
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 143


def test_the_program_does_not_inherit_the_listening_socket(start_shim, canaries, tmp_path):
    """A hostile program must not be able to answer /healthz or /metrics in shim's name."""
    port = free_port()
    fds = tmp_path / "fds"
    process = start_shim(["exec", "--watch", "1h", "--metrics", f"127.0.0.1:{port}", "--",
                          "sh", "-c", f"ls -l /proc/$$/fd > {fds}; exec sleep 60"], {})
    assert wait_for(lambda: fds.exists() and fds.read_text(), timeout=30)
    assert "socket:" not in fds.read_text()
    assert get(port, "/healthz") == (200, "ok\n")
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 143


def test_a_file_secret_s_age_is_served_though_a_plain_start_reads_no_dates(start_shim, canaries,
                                                                         tmp_path):
    # A plain exec leaves a file's mtime unread (no `datetime` on the start-up path); --metrics
    # reads ages, so the --watch helpers must be told to read them.
    secret = tmp_path / "password"
    secret.write_text(canaries.new("file"))
    port = free_port()
    process = start_shim(["exec", "--watch", "1s", "--metrics", f"127.0.0.1:{port}",
                          "--file-vars", "APP_PASSWORD", "--", "sleep", "60"],
                         {"APP_PASSWORD_FILE": str(secret), "HOME": str(tmp_path)})
    age = ("shim_secret_age_seconds", (("variable", "APP_PASSWORD"),))
    assert wait_for(lambda: age in scrape(port), timeout=30)
    assert 0 <= scrape(port)[age] < 3600
    assert scrape(port)[("shim_store_reads_total", (("store", "file"),))] == 1
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 143
