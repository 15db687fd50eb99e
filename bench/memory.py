"""Target 4, memory: the `--init --watch` supervisor's resident set over 1,000 re-resolutions.

    shim exec --init --watch 10ms --secrets-dir D --audit-file A -- sleep 1000

with the 20 _FILE variables and 5 placeholders of the start-up benchmark; the second variant
adds one Vault reference (against the in-process Vault double), so hvac and requests are loaded
and every re-resolution makes a real HTTP read. Both run at the same time, each from its own
`pip install .[extras]` venv under .cache/bench. Re-resolutions are counted from the audit file
(one `secret.resolved` event for BENCH_01 per resolution) and, for Vault, cross-checked with the
double's request log. VmRSS of the supervisor (not of `sleep`) is read from /proc.

A --watch resolution runs in a background thread that the supervisor polls every 0.2 s, so
1,000 re-resolutions take about 3.5 minutes whatever the interval.

    .venv/bin/python bench/memory.py [--resolutions 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _common import installed_venv, secrets_environment, table, verdict

# Growth allowed between the 100th and the last re-resolution before the set is not "flat".
FLAT_KIB = 512


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class AuditCounter:
    """Counts `secret.resolved` events of one variable in a growing audit file."""

    def __init__(self, path: Path, variable: str):
        self.path, self.variable = path, variable
        self.offset, self.count, self._rest = 0, 0, b""

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self.offset)
                chunk = stream.read()
        except FileNotFoundError:
            return self.count
        self.offset += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            if b'"secret.resolved"' in line and json.loads(line).get("variable") == self.variable:
                self.count += 1
        return self.count


FILES = "files + placeholders"
WITH_VAULT = "files + placeholders + 1 Vault reference (hvac loaded)"


def run_variant(name: str, shim: str, env: dict, directory: Path, checkpoints: list[int],
                results: dict, vault=None) -> None:
    try:
        results[name] = _run_variant(name, shim, env, directory, checkpoints, vault)
    except Exception as error:  # noqa: BLE001 - reported by main() after both threads ended
        results[name] = error


def _run_variant(name: str, shim: str, env: dict, directory: Path, checkpoints: list[int],
                 vault) -> tuple[list, Counter | None]:
    label = "vault" if vault is not None else "files"
    audit = directory / f"audit-{label}.jsonl"
    stderr_path = directory / f"stderr-{label}.txt"
    argv = [shim, "exec", "--init", "--watch", "10ms", "--secrets-dir", str(directory),
            "--audit-file", str(audit), "--", "sleep", "1000"]
    stderr = open(stderr_path, "wb")
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=stderr)
    counter = AuditCounter(audit, "BENCH_01")
    samples = []
    started = time.monotonic()
    try:
        pending = [0] + checkpoints      # re-resolutions = resolutions - 1 (the first is the start)
        while pending:
            if process.poll() is not None:
                raise RuntimeError(f"{name}: shim exited {process.returncode}: "
                                   f"{stderr_path.read_text(errors='replace')[-1000:]}")
            resolutions = counter.poll() - 1
            if resolutions >= pending[0]:
                samples.append((resolutions, rss_kib(process.pid), time.monotonic() - started,
                                vault.count("secret/data/bench/app", "GET") if vault else None))
                pending.pop(0)
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()
    paths = None
    if vault is not None:
        paths = Counter(f"{r.method} {r.path.split('?')[0]}" for r in vault.requests)
    return samples, paths


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, default=1000)
    args = parser.parse_args(argv)
    last = args.resolutions
    checkpoints = sorted({min(100, last), *(last * k // 4 for k in (1, 2, 3)), last} - {0})

    from tests.doubles.vault import VaultDouble

    core = installed_venv("core")
    with_vault = installed_venv("vault", "vault")
    directory = Path(tempfile.mkdtemp(prefix="shim-bench-memory-"))
    os.chmod(directory, 0o755)
    try:
        with VaultDouble() as vault:
            vault.kv2_put("secret", "bench/app", {"value": "bench-vault-value"})
            token = vault.create_token(["secret/data/bench"])
            files_env = secrets_environment(directory)
            vault_env = {**files_env, "VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
                         "HOME": str(directory), "BENCH_VAULT": "vault:secret/data/bench/app#value"}
            results: dict = {}
            threads = [
                threading.Thread(target=run_variant, args=(
                    FILES, str(core / "bin" / "shim"), files_env, directory, checkpoints,
                    results)),
                threading.Thread(target=run_variant, args=(
                    WITH_VAULT, str(with_vault / "bin" / "shim"), vault_env, directory,
                    checkpoints, results), kwargs={"vault": vault}),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    failures = [f"{name}: {error}" for name, error in results.items() if isinstance(error, Exception)]
    if failures:
        raise SystemExit("\n".join(failures))
    rows, targets = [], []
    for name in (FILES, WITH_VAULT):
        samples, _ = results[name]
        by_count = {count: rss for count, rss, _, _ in samples}
        first = samples[0][1]
        at_100 = samples[1][1]           # the first checkpoint: 100 re-resolutions
        final = samples[-1][1]
        elapsed = samples[-1][2]
        reads = samples[-1][3]
        rows.append([name, f"{first / 1024:.1f}", *(f"{by_count[c] / 1024:.1f}" for c in checkpoints),
                     f"{final - at_100:+d}", f"{elapsed:.0f} s"
                     + (f", {reads} Vault reads" if reads is not None else "")])
        targets.append([f"growth {checkpoints[0]} -> {last} re-resolutions: {name}",
                        f"{final - at_100:+d} KiB", f"{FLAT_KIB} KiB",
                        verdict(final - at_100 <= FLAT_KIB)])
    start = {name: results[name][0][0][1] for name in (FILES, WITH_VAULT)}
    out = [table("Supervisor resident set (VmRSS, MiB) after N re-resolutions at --watch 10ms",
                 ["variant", "start", *(f"{c}" for c in checkpoints), "growth KiB", "time"], rows)]
    paths = results[WITH_VAULT][1]
    out.append(table(f"Vault requests of the whole run (start + {last} re-resolutions): the "
                     f"token lookup and the mount lookup are made once, not per re-resolution",
                     ["request", "count"], [[path, count] for path, count in paths.most_common()]))
    out.append(table("Memory targets", ["target", "measured", "limit", "verdict"], [
        ["RSS with the Vault provider loaded minus without",
         f"{(start[WITH_VAULT] - start[FILES]) / 1024:+.1f} MiB", "reported", "-"],
        *targets,
    ]))
    return out


if __name__ == "__main__":
    main()
