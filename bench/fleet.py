"""A fleet of `--watch` replicas against the Vault double: what cheap change probes save.

Method: N replicas of `shim exec --watch INTERVAL -- sh` start together, each reading its own
KV v2 secret (secret/data/fleet-I, so the double's request log tells the replicas apart).
Halfway through T intervals every secret gets a new version at once (one change); the run goes
on until T intervals have passed, then every replica gets SIGTERM. Counted on the double:

- value reads (GET secret/data/fleet-I) after each replica's first one: N x changes with probes;
- metadata calls (GET secret/metadata/fleet-I): one per resolution, i.e. N x ticks (plus the
  confirmation of the change and the first resolution);
- resolutions per replica, from its `helper.started` events (-vv);
- restarts: the program writes one line per start; every replica must start exactly twice;
- convergence: from the change to the last replica running with the new value;
- peak request rate: the most requests to the double in any one second (jitter spreads them).

The same fleet runs again with tokens whose policy denies the metadata path: each replica
logs that once and reads the value on every tick, which is what --watch did before probes.

    .venv/bin/python bench/fleet.py [--replicas 100] [--interval 2] [--ticks 20]

tests/integration/test_fleet.py runs `simulate()` at small N and asserts its counts.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, table


def simulate(vault, replicas: int, interval: float, ticks: int, *, deny_metadata: bool = False,
             directory: Path) -> dict:
    """Run one fleet against `vault` (a started VaultDouble); the counts, as a dict."""
    policies = ["secret/data/*"] if deny_metadata else ["secret/*"]
    processes, starts = [], []
    vault.reset_log()
    for index in range(replicas):
        vault.kv2_put("secret", f"fleet-{index}", {"password": f"fleet-{index}-v1"})
    for index in range(replicas):
        token = vault.create_token(policies, ttl=3600)
        started = directory / f"started-{index}"
        started.unlink(missing_ok=True)
        env = dict(BASE_ENV, VAULT_ADDR=vault.url, VAULT_TOKEN=token, HOME=str(directory),
                   APP_PASSWORD=f"vault:secret/data/fleet-{index}#password")
        argv = [str(DEV_PYTHON), "-m", "shim", "exec", "--watch", f"{interval}s", "-vv",
                "--log-format", "json", "--allow-root", "--",
                "sh", "-c", f'echo "$(date +%s.%N) $APP_PASSWORD" >> {started}; exec sleep 100000']
        processes.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        starts.append(started)
    began = time.time()
    _wait(lambda: all(path.exists() for path in starts), 60 + replicas)
    time.sleep(interval * ticks / 2)
    changed_at = time.time()
    for index in range(replicas):
        vault.kv2_put("secret", f"fleet-{index}", {"password": f"fleet-{index}-v2"})
    _wait(lambda: all(len(_lines(path)) >= 2 for path in starts), 60 + interval * 4)
    time.sleep(max(0.0, began + interval * ticks - time.time()))
    resolutions = []
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        resolutions.append(sum(1 for line in stderr.splitlines() if line.startswith("{")
                               and _is_resolve(json.loads(line))))
    log = vault.requests
    data = Counter(r.path.rsplit("/", 1)[-1] for r in log
                   if r.path.startswith("/v1/secret/data/fleet-"))
    metadata = Counter(r.path.rsplit("/", 1)[-1] for r in log
                       if r.path.startswith("/v1/secret/metadata/fleet-"))
    per_second = Counter(int(r.time) for r in log)
    lines = [_lines(path) for path in starts]
    converged = [float(line[1].split()[0]) - changed_at for line in lines if len(line) >= 2]
    return {
        "replicas": replicas,
        "value_reads_after_start": sum(data.values()) - replicas,
        "value_reads": [data[f"fleet-{i}"] for i in range(replicas)],
        "metadata_calls": [metadata[f"fleet-{i}"] for i in range(replicas)],
        "resolutions": resolutions,
        "starts": [len(line) for line in lines],
        "new_value_everywhere": all(line[-1].endswith(f"fleet-{i}-v2")
                                    for i, line in enumerate(lines)),
        "converge_seconds": max(converged) if converged else None,
        "peak_requests_per_second": max(per_second.values()) if per_second else 0,
        "requests": len(log),
    }


def _is_resolve(record: dict) -> bool:
    return record.get("event") == "helper.started" and record.get("job") == "resolve"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("the fleet did not get there in time")
        time.sleep(0.1)


def main(argv=None) -> list[str]:
    from tests.doubles.vault import VaultDouble

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="shim-bench-fleet-") as tmp, VaultDouble() as vault:
        for deny in (False, True):
            result = simulate(vault, args.replicas, args.interval, args.ticks,
                              deny_metadata=deny, directory=Path(tmp))
            rows.append(["reads every tick (metadata denied)" if deny else "probes (KV v2 metadata)",
                         result["replicas"], sum(result["resolutions"]),
                         result["value_reads_after_start"], sum(result["metadata_calls"]),
                         f"{sum(s == 2 for s in result['starts'])}/{result['replicas']}",
                         f"{result['converge_seconds']:.1f} s", result["peak_requests_per_second"],
                         result["requests"]])
    out = [table(f"{args.replicas} replicas of --watch {args.interval:g}s for {args.ticks} "
                 f"intervals, one change halfway (Vault double)",
                 ["mode", "replicas", "resolutions", "value reads after start", "metadata calls",
                  "restarted once", "converged", "peak req/s", "requests"], rows)]
    return out


if __name__ == "__main__":
    main()
