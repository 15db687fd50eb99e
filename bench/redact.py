"""--redact's cost: throughput against a plain pipe, and the delay of one line.

Throughput, at full speed: a file of SIZE MB of log lines (no value in it) is written by `cat`
to a pipe the benchmark's /dev/null drains, once through `sh -c 'cat FILE | cat'` (the plain
pipe: the same two copies through a second process that --redact adds) and once through
`shim exec --redact -- cat FILE` with 100 random values of 32 characters delivered through
`_FILE` variables (600 forms matched). Each command also runs without the data (`true`): the
difference is the time the stream itself took, start-up aside. Two more rows say where the
floor is: the redactor with no value (a relay that copies and matches nothing) and, unless
--no-engines, the ahocorasick-rs engine, chosen by making Hyperscan fail to import.

Throughput, at a program's own pace: a Python program writes SIZE MB of 100-byte log lines
(sys.stdout.write per line), into `| cat` and under `shim exec --redact`.

All runs interleaved, medians of wall time and of CPU time (user + system of every process).
Target: within 10% of the plain pipe.

Latency: `shim exec --redact` runs a program that writes one line holding CLOCK_MONOTONIC in
nanoseconds every 50 ms; the benchmark reads shim's stdout and takes the difference on arrival
(the same clock in both processes). Target: under 5 ms, median.

Engines in process: each installed engine's scan of 10 MB of the same data in 1 MiB chunks.

    .venv/bin/python bench/redact.py [--size 100] [--runs 5] [--no-engines]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, ROOT, interleaved, table, verdict

VALUES = 100
LINE = b"2026-12-07T02:00:00Z INFO request handled path=/api/v1/items status=200 ms=12\n"
WRITER = ("import sys\n"
          "write = sys.stdout.write\n"
          "line = '2026-12-07T02:00:00.000Z INFO request %07d handled path=/api/v1/items "
          "status=200 ms=12 ok\\n'\n"
          "for number in range({count}):\n"
          "    write(line % number)\n")
# What must be missing for ahocorasick-rs to be used (redactengines.fastest). The re fallback
# is only measured in process: at a few MB/s, 100 MB through it would take minutes.
SLOWER_ENGINES = {"ahocorasick-rs": ("hyperscan",)}
ENGINE_SAMPLE_MB = 10


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="MB of output")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-engines", action="store_true",
                        help="skip the rows of the slower engines")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="shim-bench-redact-"))
    try:
        values = [secrets.token_urlsafe(24) for _ in range(VALUES)]
        env = dict(BASE_ENV)
        for n, value in enumerate(values):
            (scratch / f"value_{n:03d}").write_text(value)
            env[f"SECRET_{n:03d}_FILE"] = str(scratch / f"value_{n:03d}")
        data = scratch / "output.log"
        block = LINE * (1024 * 1024 // len(LINE))
        with open(data, "wb") as stream:
            for _ in range(args.size):
                stream.write(block)
        writer = scratch / "writer.py"
        writer.write_text(WRITER.format(count=args.size * 1024 * 1024 // 100))
        shim = [str(DEV_PYTHON), "-m", "shim", "exec", "--redact", "--allow-root",
                "--secrets-dir", str(scratch), "--"]
        python = [str(DEV_PYTHON), "-S", str(writer)]
        commands = {"plain pipe": ["sh", "-c", f"cat {data} | cat"],
                    "plain pipe, no data": ["sh", "-c", "true | cat"],
                    "shim exec --redact": [*shim, "cat", str(data)],
                    "shim exec --redact, no data": [*shim, "true"],
                    "python writer | cat": ["sh", "-c", f"{' '.join(python)} | cat"],
                    "shim exec --redact -- python writer": [*shim, *python]}
        environments = {name: env for name in commands}
        commands["shim exec --redact, no value"] = [*shim, "cat", str(data)]
        commands["shim exec --redact, no value, no data"] = [*shim, "true"]
        for name in ("shim exec --redact, no value", "shim exec --redact, no value, no data"):
            environments[name] = dict(BASE_ENV)
        if not args.no_engines:
            for engine, blocked in SLOWER_ENGINES.items():
                name = f"shim exec --redact, {engine}"
                commands[name] = [*shim, "cat", str(data)]
                environments[name] = {**env, "PYTHONPATH": str(_blockers(scratch, blocked))}
        cpu: dict[str, list[float]] = {}
        wall = _interleaved(commands, environments, args.runs, cpu)
        latencies = _latency(shim, env)
        engines = _engine_speeds(values, data)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _tables(args, wall, cpu, latencies, engines)


def _interleaved(commands, environments, runs, cpu) -> dict[str, list[float]]:
    """interleaved() with one environment per command: one command at a time, round-robin."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    for round_number in range(runs + 1):          # the first round warms the page cache
        for name, argv in commands.items():
            samples = interleaved({name: argv}, environments[name], 1, warmup=0, cpu=(seen := {}))
            if round_number:
                wall[name] += samples[name]
                cpu.setdefault(name, []).extend(seen[name])
    return wall


def _blockers(scratch: Path, modules) -> Path:
    folder = scratch / ("blocked-" + "-".join(modules))
    folder.mkdir(exist_ok=True)
    for module in modules:
        (folder / f"{module}.py").write_text("raise ImportError('blocked by bench/redact.py')\n")
    return folder


def _tables(args, wall, cpu, latencies, engines) -> list[str]:
    median = {name: statistics.median(times) for name, times in wall.items()}
    cpu_median = {name: statistics.median(times) for name, times in cpu.items()}
    rows = [[name, median[name], cpu_median[name]] for name in wall]
    first = table(f"--redact throughput: {args.size} MB, {VALUES} values, {args.runs} runs each "
                  "(medians, ms)", ["command", "wall", "cpu (all processes)"], rows)
    def stream(name: str, start_up: str, of: dict) -> float:
        """The stream's time against the plain pipe's, start-up taken off both."""
        return (of[name] - of[start_up]) / (of["plain pipe"] - of["plain pipe, no data"])

    def both(name: str, start_up: str = "shim exec --redact, no data") -> list[float]:
        return [stream(name, start_up, median), stream(name, start_up, cpu_median)]

    full_speed = both("shim exec --redact")
    ratios = [["whole run, start-up included", median["shim exec --redact"] / median["plain pipe"],
               cpu_median["shim exec --redact"] / cpu_median["plain pipe"], "-", "-"],
              ["the stream (start-up taken off both)", *full_speed, "<= 1.10",
               verdict(full_speed[0] <= 1.10)],
              ["the stream, redactor with no value (the relay alone)",
               *both("shim exec --redact, no value", "shim exec --redact, no value, no data"),
               "-", "-"]]
    ratios += [[f"the stream, {name.rsplit(', ', 1)[1]} engine", *both(name), "-", "-"]
               for name in wall if name.split(", ")[-1] in SLOWER_ENGINES]
    writer = [of["shim exec --redact -- python writer"] / of["python writer | cat"]
              for of in (median, cpu_median)]
    writer_stream = [(of["shim exec --redact -- python writer"] - of["shim exec --redact, no data"])
                     / (of["python writer | cat"] - of["plain pipe, no data"])
                     for of in (median, cpu_median)]
    ratios += [["python writer, start-up included", *writer, "<= 1.10", verdict(writer[0] <= 1.10)],
               ["python writer, start-up taken off both", *writer_stream, "<= 1.10",
                verdict(writer_stream[0] <= 1.10)],
               ["start-up of shim exec --redact, ms", median["shim exec --redact, no data"],
                cpu_median["shim exec --redact, no data"], "-", "-"]]
    median_latency = statistics.median(latencies)
    ratios += [["one line's delay, median ms", median_latency, "-", "< 5",
                verdict(median_latency < 5)],
               ["one line's delay, max ms", max(latencies), "-", "-", "-"]]
    second = table("Ratios to the plain pipe, and targets",
                   ["figure", "wall", "cpu", "target (wall)", "verdict"], ratios)
    third = table(f"Engines in process: {ENGINE_SAMPLE_MB} MB in 1 MiB chunks, 600 forms",
                  ["engine", "MB/s"], [[name, speed] for name, speed in engines.items()])
    return [first, second, third]


def _engine_speeds(values: list[str], data: Path) -> dict[str, float]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from shim.delivery import redactengines
    from shim.delivery.redact import forms
    ordered = sorted({form for value in values for form in forms(value)}, key=len, reverse=True)
    content = data.read_bytes()[:ENGINE_SAMPLE_MB * 1024 * 1024]
    chunks = [content[start:start + (1 << 20)] for start in range(0, len(content), 1 << 20)]
    speeds = {}
    for name, build in redactengines.ENGINES.items():
        try:
            matcher = build(ordered)
        except ImportError:
            continue
        started = time.perf_counter()
        for chunk in chunks:
            matcher(chunk)
        speeds[name] = len(content) / 1e6 / (time.perf_counter() - started)
    return speeds


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
