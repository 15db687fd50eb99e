"""The fallback cache's cost on every start: writing 50 values (target: under 5 ms).

Two figures, both against a baseline measured in the same run:

- whole process: `shim exec -- /bin/true` with 50 Vault references (the Vault double in this
  process, no latency), with and without `--fallback-cache`, interleaved run by run; the
  difference of the medians (wall and CPU) is what the cache costs a start, pyrage's import,
  the encryption, the write, fsync and rename included;
- in process: `FallbackCache.save()` alone for the same 50 values, after the import (the part
  that grows with the number of values).

    .venv/bin/python bench/fallback.py [--runs 30] [--values 50]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, interleaved, median, table, verdict

TARGET_MS = 5.0


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--values", type=int, default=50)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    import pyrage
    from tests.doubles.vault import VaultDouble

    with VaultDouble() as vault, tempfile.TemporaryDirectory(prefix="shim-bench-fb-") as scratch:
        scratch = Path(scratch)
        key = scratch / "key.txt"
        key.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
        os.chmod(key, 0o600)
        token = vault.create_token(["secret/*"], ttl=3600)
        env = {**BASE_ENV, "VAULT_ADDR": vault.url, "VAULT_TOKEN": token}
        for n in range(args.values):
            vault.kv2_put("secret", f"bench/{n}", {"value": f"bench-value-{n:03d}-" + "x" * 24})
            env[f"BENCH_{n:03d}"] = f"ref+vault://secret/bench/{n}#/value"
        base = [str(DEV_PYTHON), "-m", "shim", "exec"]
        commands = {
            "without": [*base, "--", "/bin/true"],
            "with --fallback-cache": [*base, "--fallback-cache", str(scratch / "cache"),
                                      "--fallback-key-file", str(key), "--", "/bin/true"],
        }
        cpu: dict[str, list[float]] = {}
        wall = interleaved(commands, env, args.runs, cpu=cpu)
        in_process = _save_only(scratch, key, args.values)

    rows = []
    for name in commands:
        rows.append([name, median(wall[name]), median(cpu[name])])
    extra_wall = median(wall["with --fallback-cache"]) - median(wall["without"])
    extra_cpu = median(cpu["with --fallback-cache"]) - median(cpu["without"])
    rows.append(["difference (the cache's cost a start)", extra_wall, extra_cpu])
    rows.append([f"save() alone, {args.values} values (median of 50)", in_process, "-"])
    first = table(f"Fallback cache: `shim exec` with {args.values} Vault references, "
                  f"{args.runs} interleaved runs (ms)", ["command", "wall median", "CPU median"],
                  rows)
    second = table("Target", ["figure", "ms", "target", "verdict"],
                   [["CPU cost a start", extra_cpu, f"< {TARGET_MS}", verdict(extra_cpu < TARGET_MS)]])
    return [first, second]


def _save_only(scratch: Path, key: Path, count: int) -> float:
    from shim.pipeline.fallback import FallbackCache, read_identities
    from shim.providers.base import Fetched, SecretMeta

    class Resolution:   # what save() reads of a resolution
        fetched = {("vault", "ref", f"secret/data/bench/{n}", None, ()):
                   ("vault", Fetched({"value": f"bench-value-{n:03d}"}, SecretMeta(version="1")))
                   for n in range(count)}

    directory = scratch / "cache-in-process"
    directory.mkdir(mode=0o700)
    cache = FallbackCache(str(directory), read_identities(str(key)), str(key), 86400.0)
    cache.save(Resolution())            # warm
    samples = []
    for _ in range(50):
        started = time.perf_counter()
        cache.save(Resolution())
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
