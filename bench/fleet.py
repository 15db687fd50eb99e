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
- started together (unless --apart): the double holds every answer until each replica has
  asked its first question, then answers them all at once, so every --watch timer starts at
  the same moment (a fleet rolled out at once; without it this machine's start-up spreads
  replicas apart);
- peak request rate: the most requests to the double in any one second, and in any 100 ms
  window from the change to the end (each replica's probe, its read, the confirmation and the
  restart's first resolution land there; jitter spreads them).

The same fleet runs again without jitter (every interval exactly DURATION: the supervisor is
started through a `python -c` that replaces Watcher._jittered by the identity, the one
difference), and with tokens whose policy denies the metadata path: each replica logs that
once and reads the value on every tick, which is what --watch did before probes.

    .venv/bin/python bench/fleet.py [--replicas 100] [--interval 2] [--ticks 20]
                                    [--skip-denied] [--apart]

docs/long-running.md has the method's results at 100 replicas.

tests/integration/test_fleet.py runs `simulate()` at small N and asserts its counts.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, table

# `python -m shim` with every --watch interval exactly DURATION (no ±10% jitter): the baseline
# that jitter is measured against. The forked helpers inherit the patched class.
WITHOUT_JITTER = ("import runpy, sys; from shim.delivery.watch import Watcher; "
                  "Watcher._jittered = staticmethod(lambda seconds: seconds); "
                  "sys.argv[0] = 'shim'; runpy.run_module('shim', run_name='__main__')")
WINDOW = 0.1    # seconds: the window of the peak request rate after the change


def simulate(vault, replicas: int, interval: float, ticks: int, *, deny_metadata: bool = False,
             jitter: bool = True, together: bool = True, directory: Path) -> dict:
    """Run one fleet against `vault` (a started VaultDouble); the counts, as a dict.
    `together`: every replica's first resolution ends at the same moment (_hold_until_all)."""
    policies = ["secret/data/*"] if deny_metadata else ["secret/*"]
    processes, starts = [], []
    vault.reset_log()
    release = _hold_until_all(vault) if together else None
    for index in range(replicas):
        vault.kv2_put("secret", f"fleet-{index}", {"password": f"fleet-{index}-v1"})
    try:
        for index in range(replicas):
            token = vault.create_token(policies, ttl=3600)
            started = directory / f"started-{index}"
            started.unlink(missing_ok=True)
            env = dict(BASE_ENV, VAULT_ADDR=vault.url, VAULT_TOKEN=token, HOME=str(directory),
                       APP_PASSWORD=f"vault:secret/data/fleet-{index}#password")
            if together:
                env["VAULT_CLIENT_TIMEOUT"] = "55s"     # a held first answer is not a timeout
            shim = ["-m", "shim"] if jitter else ["-c", WITHOUT_JITTER]
            argv = [str(DEV_PYTHON), *shim, "exec", "--watch", f"{interval}s", "-vv",
                    "--log-format", "json", "--allow-root", "--", "sh", "-c",
                    f'echo "$(date +%s.%N) $APP_PASSWORD" >> {started}; exec sleep 100000']
            processes.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              text=True))
            starts.append(started)
        held = release(replicas) if release else 0
        began = time.time()
        _wait(lambda: all(path.exists() for path in starts), 60 + replicas)
        time.sleep(interval * ticks / 2)
        changed_at = time.time()
        for index in range(replicas):
            vault.kv2_put("secret", f"fleet-{index}", {"password": f"fleet-{index}-v2"})
        _wait(lambda: all(len(_lines(path)) >= 2 for path in starts), 60 + interval * 4)
        time.sleep(max(0.0, began + interval * ticks - time.time()))
    finally:
        if release:
            release(0)      # never leave answers held
        for process in processes:
            process.send_signal(signal.SIGTERM)     # docker stop: the program goes with it
    resolutions = []
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
    per_window = Counter(int((r.time - changed_at) / WINDOW) for r in log if r.time >= changed_at)
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
        "peak_requests_per_100ms_after_change": max(per_window.values()) if per_window else 0,
        "requests": len(log),
        "held_together": held,
    }


def _hold_until_all(vault):
    """Hold the double's answers until `release(replicas)`, which waits (at most 45 s, inside
    --deadline and the replicas' VAULT_CLIENT_TIMEOUT) until that many requests are held, answers them all at once and
    returns how many were held. Replicas started one after another on this machine then
    finish their first resolution together, as a fleet started at once on many machines
    does, so their --watch timers start in phase (what jitter is there to break up). Bench
    only: it wraps the double's request handler, nothing of shim."""
    opened = threading.Event()
    handle = vault._handle
    waiting = [0]
    lock = threading.Lock()

    def held(request):
        with lock:
            waiting[0] += 1
        opened.wait()
        return handle(request)

    vault._handle = held

    def release(replicas: int) -> int:
        limit = time.monotonic() + 45
        while waiting[0] < replicas and time.monotonic() < limit:
            time.sleep(0.05)
        vault.__dict__.pop("_handle", None)     # later requests are answered at once
        opened.set()
        return waiting[0]

    return release


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
    parser.add_argument("--skip-denied", action="store_true",
                        help="leave out the run without probes (metadata denied)")
    parser.add_argument("--apart", action="store_true",
                        help="start the replicas as this machine manages, not held together")
    args = parser.parse_args(argv)
    modes = [("probes (KV v2 metadata), jitter ±10%", False, True),
             ("probes, no jitter", False, False)]
    if not args.skip_denied:
        modes.append(("reads every tick (metadata denied), jitter ±10%", True, True))
    rows = []
    with tempfile.TemporaryDirectory(prefix="shim-bench-fleet-") as tmp, VaultDouble() as vault:
        for title, deny, jitter in modes:
            result = simulate(vault, args.replicas, args.interval, args.ticks,
                              deny_metadata=deny, jitter=jitter, together=not args.apart,
                              directory=Path(tmp))
            rows.append([title, result["replicas"], sum(result["resolutions"]),
                         result["value_reads_after_start"], sum(result["metadata_calls"]),
                         f"{sum(s == 2 for s in result['starts'])}/{result['replicas']}",
                         f"{result['converge_seconds']:.1f} s", result["peak_requests_per_second"],
                         result["peak_requests_per_100ms_after_change"], result["requests"],
                         f"{result['held_together']}/{result['replicas']}"])
    out = [table(f"{args.replicas} replicas of --watch {args.interval:g}s for {args.ticks} "
                 f"intervals, one change halfway (Vault double)",
                 ["mode", "replicas", "resolutions", "value reads after start", "metadata calls",
                  "restarted once", "converged", "peak req/s", "peak req/100 ms after change",
                  "requests", "started together"], rows)]
    return out


if __name__ == "__main__":
    main()
