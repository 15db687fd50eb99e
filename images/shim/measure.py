"""Size and start-up time of shim bundles (the figures in docs/images.md).

    .venv/bin/python images/shim/measure.py TAG [TAG...]     # bundle images, e.g. one per extra

For each bundle image: `du` of /opt/shim; then, inside a container of that image (so docker's
own start-up is not counted), the median and 90th percentile wall time over --runs runs,
interleaved, of

    python3 -c pass                              the baseline: a bare interpreter start
    /opt/shim/shim --version                     the bundle starts and exits
    /opt/shim/shim exec -- /bin/true             plus a real resolution (one _FILE, one
                                                 placeholder) and the execve

The image must have python3 for the baseline (the bundle built on shim-base:bookworm or
debian:bookworm-slim + python3 does). Prints a Markdown table. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

COMMANDS = {
    "python3 -c pass": "python3 -c pass",
    "shim --version": "/opt/shim/shim --version >/dev/null",
    "shim exec -- /bin/true": "/opt/shim/shim exec -- /bin/true",
}

def in_container(tag: str, runs: int) -> dict[str, list[float]]:
    script = (
        "import json, os, subprocess, sys, time\n"
        "os.makedirs('/run/secrets', exist_ok=True)\n"
        "open('/run/secrets/token', 'w').write('value\\n')\n"
        "open('/run/secrets/KEY', 'w').write('x')\n"
        "env = dict(os.environ, TOKEN_FILE='/run/secrets/token', PLACEHOLDER='CHANGEME_KEY')\n"
        f"commands = {json.dumps(COMMANDS)}\n"
        "times = {label: [] for label in commands}\n"
        f"for _ in range({runs}):\n"
        "    for label, command in commands.items():\n"
        "        start = time.perf_counter()\n"
        "        subprocess.run(['sh', '-c', command], env=env, check=True)\n"
        "        times[label].append(time.perf_counter() - start)\n"
        "shell = time.perf_counter()\n"
        f"for _ in range({runs}):\n"
        "    subprocess.run(['sh', '-c', 'true'], check=True)\n"
        f"overhead = (time.perf_counter() - shell) / {runs}\n"
        "print(json.dumps({k: [t - overhead for t in v] for k, v in times.items()}))\n"
    )
    result = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python3", tag, "-c", script],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def size(tag: str) -> int:
    result = subprocess.run(["docker", "run", "--rm", "--entrypoint", "du", tag, "-sb",
                             "/opt/shim"], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tags", nargs="+")
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    print("| bundle image | /opt/shim (MB) | " + " | ".join(
        f"{label} median / p90 (ms)" for label in COMMANDS) + " | --version ÷ python3 |")
    print("|---|---|" + "---|" * len(COMMANDS) + "---|")
    for tag in options.tags:
        total = size(tag)
        times = in_container(tag, options.runs)
        cells, medians = [], {}
        for label in COMMANDS:
            values = sorted(times[label])
            medians[label] = statistics.median(values)
            p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
            cells.append(f"{medians[label] * 1000:.0f} / {p90 * 1000:.0f}")
        ratio = medians["shim --version"] / medians["python3 -c pass"]
        print(f"| {tag} | {total / 1e6:.1f} | " + " | ".join(cells) + f" | {ratio:.1f}× |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
