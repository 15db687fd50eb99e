"""Cheap change probes against the real software: OpenBao's KV v2 metadata (and a real policy
that denies it), and a file the real sops encrypted. What shim read is observed on its own
/metrics page (reads and probes per store), what the program got in the file it writes."""

from __future__ import annotations

import json
import signal

from tests.conftest import finish_process
from tests.integration.test_metrics import free_port, scrape
from tests.integration.test_supervise import wait_for
from tests.real.conftest import unique_path


def sample(port: int, name: str, store: str) -> float:
    return scrape(port).get((name, (("store", store),)), 0)


def seen_values(seen) -> list[str]:
    return seen.read_text().split() if seen.exists() else []


def watch(start_shim, env, seen, port):
    return start_shim(["exec", "--watch", "300ms", "--log-format", "json", "--metrics",
                       f"127.0.0.1:{port}", "--", "sh", "-c",
                       f'echo "$APP_PASSWORD" >> {seen}; exec sleep 60'], env)


def stop(process, canaries) -> list[dict]:
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish_process(process, canaries)
    assert returncode == 143
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_openbao_kv2_is_probed_by_its_metadata_and_read_on_a_change(openbao, start_shim,
                                                                      canaries, tmp_path):
    path = unique_path("probe")
    first, second = canaries.new("v1"), canaries.new("v2")
    openbao.put_kv2(path, {"password": first})
    seen, port = tmp_path / "seen", free_port()
    process = watch(start_shim, {**openbao.vault_env(), "HOME": str(tmp_path),
                                 "APP_PASSWORD": f"vault:secret/data/{path}#password"}, seen, port)
    assert wait_for(lambda: sample(port, "shim_store_probes_total", "vault") >= 5, timeout=40)
    assert sample(port, "shim_store_reads_total", "vault") == 1
    openbao.put_kv2(path, {"password": second})
    assert wait_for(lambda: seen_values(seen) == [first, second], timeout=40)
    assert sample(port, "shim_store_reads_total", "vault") == 2
    stop(process, canaries)


def test_a_real_policy_denying_the_metadata_path_falls_back_to_reading(openbao, start_shim,
                                                                        canaries, tmp_path):
    path = unique_path("denied")
    first, second = canaries.new("v1"), canaries.new("v2")
    openbao.put_kv2(path, {"password": first})
    policy = unique_path("data-only")
    openbao.ok("PUT", f"sys/policies/acl/{policy}",
               {"policy": f'path "secret/data/{path}" {{ capabilities = ["read"] }}'})
    created = openbao.ok("POST", "auth/token/create", {"policies": [policy], "ttl": "1h"})
    token = created["auth"]["client_token"]
    canaries.values.append(token)
    seen, port = tmp_path / "seen", free_port()
    process = watch(start_shim, {**openbao.vault_env(token), "HOME": str(tmp_path),
                                 "APP_PASSWORD": f"vault:secret/data/{path}#password"}, seen, port)
    assert wait_for(lambda: sample(port, "shim_store_reads_total", "vault") >= 4, timeout=40)
    openbao.put_kv2(path, {"password": second})
    assert wait_for(lambda: seen_values(seen) == [first, second], timeout=40)
    records = stop(process, canaries)
    denied = [r for r in records if r.get("event") == "watch.probe_denied"]
    assert [r["reference"] for r in denied] == [f"vault:secret/data/{path}#..."]   # quoted up to its path


def test_a_sops_file_is_decrypted_again_only_when_it_changes(sops, age_identity, start_shim,
                                                             canaries, tmp_path):
    recipient, identity = age_identity()
    first, second = canaries.new("v1"), canaries.new("v2")
    encrypted = tmp_path / "app.enc.yaml"

    def write(value: str) -> None:
        plain = tmp_path / "app.yaml"
        plain.write_text(f"password: {value}\n")
        encrypted.write_bytes(sops.run("encrypt", "--age", recipient, str(plain)).stdout)
        plain.unlink()

    write(first)
    seen, port = tmp_path / "seen", free_port()
    process = watch(start_shim, {"SOPS_AGE_KEY_FILE": str(identity),
                                 "APP_PASSWORD": f"ref+sops://{encrypted}#/password"}, seen, port)
    assert wait_for(lambda: sample(port, "shim_store_probes_total", "sops") >= 5, timeout=40)
    assert sample(port, "shim_store_reads_total", "sops") == 1
    write(second)
    assert wait_for(lambda: seen_values(seen) == [first, second], timeout=40)
    assert sample(port, "shim_store_reads_total", "sops") == 2
    stop(process, canaries)
