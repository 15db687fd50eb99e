"""--redact's cost: throughput against a plain pipe, and the delay of one line.

Throughput: a file of SIZE MB of log-like lines (no value in it) is written by `cat` to a pipe
the benchmark drains, once through `sh -c 'cat FILE | cat'` (the plain pipe) and once through
`shim exec --redact -- cat FILE` with 100 values of 32 characters delivered through `_FILE`
variables (every form of each matched); interleaved, medians of wall time. Target: within 10%.

Latency: `shim exec --redact` runs a program that writes one line holding CLOCK_MONOTONIC in
nanoseconds every 50 ms; the benchmark reads shim's stdout and takes the difference on arrival
(the same clock in both processes). Target: under 5 ms, median.

    .venv/bin/python bench/redact.py [--size 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, table, verdict

VALUES = 100


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="MB of output")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="shim-bench-redact-"))
    try:
        env = dict(BASE_ENV)
        for n in range(VALUES):
            (scratch / f"value_{n:03d}").write_text(f"bench-secret-{n:03d}-" + "k" * 15)
            env[f"SECRET_{n:03d}_FILE"] = str(scratch / f"value_{n:03d}")
        data = scratch / "output.log"
        line = b"2026-12-07T02:00:00Z INFO request handled path=/api/v1/items status=200 ms=12\n"
        with open(data, "wb") as stream:
            block = line * (1024 * 1024 // len(line))
            for _ in range(args.size):
                stream.write(block)
        shim = [str(DEV_PYTHON), "-m", "shim", "exec", "--redact", "--allow-root",
                "--secrets-dir", str(scratch), "--"]
        commands = {"plain pipe": ["sh", "-c", f"cat {data} | cat"],
                    "shim exec --redact": [*shim, "cat", str(data)]}
        times = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                started = time.perf_counter()
                subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - started)
        latencies = _latency(shim, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    plain, redacted = (statistics.median(times[name]) for name in commands)
    rows = [[name, statistics.median(times[name]), args.size / statistics.median(times[name])]
            for name in commands]
    ratio = redacted / plain
    first = table(f"--redact throughput: {args.size} MB, {VALUES} values, {args.runs} runs each "
                  "(wall s, MB/s)", ["command", "wall median", "MB/s"], rows)
    median_latency = statistics.median(latencies)
    second = table("Targets", ["figure", "measured", "target", "verdict"],
                   [["redacted / plain pipe", ratio, "<= 1.10", verdict(ratio <= 1.10)],
                    ["one line's delay, median ms", median_latency, "< 5",
                     verdict(median_latency < 5)],
                    ["one line's delay, max ms", max(latencies), "-", "-"]])
    return [first, second]


def _latency(shim: list[str], env: dict) -> list[float]:
    program = ("import time, sys\n"
               "for _ in range(40):\n"
               "    sys.stdout.write(f'{time.monotonic_ns()}\\n'); sys.stdout.flush()\n"
               "    time.sleep(0.05)\n")
    process = subprocess.Popen([*shim, sys.executable, "-S", "-c", program], env=env,
                               stdout=subprocess.PIPE)
    delays = []
    for raw in process.stdout:
        arrived = time.monotonic_ns()
        delays.append((arrived - int(raw)) / 1e6)
    process.wait()
    return delays[5:]   # the first lines pay for the program's start


if __name__ == "__main__":
    main()
