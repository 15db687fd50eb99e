"""The cost of one --watch helper: a resolution's round trip from the supervisor's side.

Every --watch tick, lease renewal and token renewal runs in a helper process (shim/pipeline/helper.py).
This times `RemotePool.resolve()` (start the helper, resolve, read its answer, reap it) for a
run with one file reference, N times, with this tree's shim and, with `--compare-with REV`,
with the shim package of git revision REV (e.g. 2c2b176, whose helpers were new interpreters
started with `python -I`; they are forks of the supervisor since issue 22), run alternately
by the same interpreter so both see the same load. `--template` adds this tree with a 20-line
--template of the same secret (each helper renders it and hands the text back), the cost a
template adds to a tick.

    .venv/bin/python bench/watch_helpers.py [--resolutions 50] [--compare-with REV] [--template]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine, median, p90, table  # noqa: E402
from memory import package_of  # noqa: E402

# Runs inside the measured tree: its own Pipeline builds its own RemotePool.
_DRIVER = """
import json, os, sys, time
from shim.pipeline.options import Options
from shim.pipeline.run import Pipeline
if os.environ.get("BENCH_TEMPLATE"):   # SRC:DEST, loaded before the first helper as exec does
    from shim.delivery.templates import parse_specs
    run = Pipeline(Options("exec", templates=parse_specs([os.environ["BENCH_TEMPLATE"]])))
    run.prepare_templates()
else:
    run = Pipeline(Options("exec"))
pool = run.remote
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    output, errors, _ = pool.resolve("environment")
    times.append(time.perf_counter() - start)
    values = output.values if hasattr(output, "files") else output   # a Snapshot since --template under --watch
    assert not errors and values["S"] == "bench-value", errors
    assert not os.environ.get("BENCH_TEMPLATE") or output.files, "no template rendered"
print(json.dumps(times))
"""


def _round_trips(package: str, count: int, secret: Path, template: str | None = None) -> list[float]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": package,
           "S": f"file:{secret}", **({"BENCH_TEMPLATE": template} if template else {})}
    result = subprocess.run([sys.executable, "-c", _DRIVER, str(count)], env=env, cwd=package,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, default=50)
    parser.add_argument("--compare-with", metavar="REV")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the variants")
    parser.add_argument("--template", action="store_true",
                        help="add this tree with a 20-line --template (DEST in /dev/shm)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch, \
            tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        directory = Path(scratch)
        secret = directory / "secret"
        secret.write_text("bench-value")
        variants = {"this tree": (str(ROOT), None)}
        if args.compare_with:
            variants[args.compare_with] = (package_of(args.compare_with, directory), None)
        if args.template:
            source = directory / "app.conf.tmpl"
            source.write_text("".join(f'key{line} = {{{{ secret("file:{secret}") | tojson }}}}\n'
                                      for line in range(20)))
            os.chmod(shm, 0o755)
            variants["this tree, --template"] = (str(ROOT), f"{source}:{shm}/app.conf")
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (package, template) in variants.items():
                times[name] += _round_trips(package, args.resolutions, secret, template)
    rows = [[name, len(values), median(values) * 1000, p90(values) * 1000]
            for name, values in times.items()]
    if args.compare_with:
        base = median(times[args.compare_with])
        rows = [row + [f"{median(times[row[0]]) / base:.2f}x"] for row in rows]
    headers = ["shim", "round trips", "median ms", "p90 ms"] + (["vs REV"] if args.compare_with else [])
    print(machine(), f"(load: {os.getloadavg()[0]:.1f})")
    return table("one --watch helper round trip (file reference)", headers, rows)


if __name__ == "__main__":
    main()
