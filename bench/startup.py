"""Target 1, start-up: `shim exec -- /bin/true` with 20 _FILE variables and 5 placeholders.

Measured side by side (interleaved, so every command shares the machine's noise) against
`python -c pass` of the same interpreter, `tini -s -- /bin/true` and `gosu nobody /bin/true`.
Target: shim's median at most 4x `python -c pass`.

shim is measured as a container runs it: `pip install .` (not editable) into a throwaway
venv under .cache/bench, started through its console script. The checkout's own .venv is an
editable install whose .pth finder makes every interpreter start slower (the baseline too),
so it is shown apart, for reference only.

    .venv/bin/python bench/startup.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

from _common import (DEV_PYTHON, FILE_VARIABLES, PLACEHOLDERS, ROOT, installed_venv,
                     interleaved, median, p90, secrets_environment, table, verdict)

# What a local-only run must not import: the list tests/integration/test_imports.py asserts
# (_common put the repository on sys.path).
from tests.integration.test_imports import LAZY, NEVER_ON_THE_LOCAL_PATH

TARGET_RATIO = 4.0
EXEC_TRUE = "import os; os.execv('/bin/true', ['/bin/true'])"
FORBIDDEN = NEVER_ON_THE_LOCAL_PATH + LAZY
# The modules a local-only `shim exec` imports besides shim.cli (and click).
EXEC_PATH_MODULES = ("shim.privileges", "shim.launch", "shim.audit", "shim.durations", "shim.plan",
                     "shim.supervise", "shim.environment", "shim.resolve", "shim.rotation",
                     "shim.deadline", "shim.providers.files")


def check_resolution(shim: str, directory: Path, env: dict[str, str]) -> None:
    """The measured command really resolves all 25 variables (not a fast failure)."""
    result = subprocess.run([shim, "exec", "--secrets-dir", str(directory), "--", "/usr/bin/env"],
                            env=env, capture_output=True, text=True, check=True)
    child = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert all(child.get(f"BENCH_{n:02d}") == f"bench-file-value-{n}"
               for n in range(1, FILE_VARIABLES + 1)), "file variables not resolved"
    assert all(child.get(f"BENCH_PLACEHOLDER_{n}") == f"bench-placeholder-{n}"
               for n in range(1, PLACEHOLDERS + 1)), "placeholders not resolved"


def import_profile(python: str, shim: str, directory: Path, env: dict[str, str],
                   repeats: int = 5) -> tuple[list[tuple[str, float, float]], list[str]]:
    """`python -X importtime` of the shim path: the median self/cumulative us per module."""
    cumulative = defaultdict(list)
    self_times = defaultdict(list)
    depth0 = set()
    seen: set[str] = set()
    for _ in range(repeats):
        result = subprocess.run([python, "-X", "importtime", shim, "exec", "--secrets-dir",
                                 str(directory), "--", "/bin/true"],
                                env=env, capture_output=True, text=True, check=True)
        for line in result.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not match:
                continue
            own, total, indent, module = match.groups()
            seen.add(module)
            if len(indent) == 1 or module == "click":   # click is imported by shim.cli
                depth0.add(module)
            self_times[module].append(int(own))
            cumulative[module].append(int(total))
    rows = [(module, median(self_times[module]) / 1000, median(cumulative[module]) / 1000)
            for module in depth0]
    rows.sort(key=lambda row: -row[2])
    baseline = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True,
                              text=True, check=True).stderr
    seen -= {line.rsplit("|", 1)[-1].strip() for line in baseline.splitlines()}
    forbidden = sorted(m for m in seen
                       if any(m == name or m.startswith(name + ".") for name in FORBIDDEN))
    return rows, forbidden


_PHASES = r"""
import os, sys, time
started = time.perf_counter()
preload = sys.argv[1]
costs = {"dataclasses": [0.0, 0], "regexes": [0.0, 0]}
if preload == "@costs":
    # Time what shim's own modules spend creating dataclasses and compiling regexes.
    import dataclasses, re

    def timed(kind, function, from_shim):
        def wrapper(*arguments, **keywords):
            begun = time.perf_counter()
            try:
                return function(*arguments, **keywords)
            finally:
                if from_shim(sys._getframe(1)):
                    costs[kind][0] += time.perf_counter() - begun
                    costs[kind][1] += 1
        return wrapper

    dataclasses._process_class = timed("dataclasses", dataclasses._process_class, lambda f: True)
    re.compile = timed("regexes", re.compile,
                       lambda f: f.f_globals.get("__name__", "").startswith("shim"))
    preload = ""
if preload:
    import importlib
    for name in preload.split(","):
        importlib.import_module(name)
after_preload = time.perf_counter()
import click
after_click = time.perf_counter()
from shim.cli import main
after_cli = time.perf_counter()

def stop(*arguments):
    done = time.perf_counter()
    modules = ",".join(sorted(m for m in sys.modules if m.startswith("shim.")))
    print(after_click - after_preload, after_cli - after_click, done - after_cli,
          costs["dataclasses"][0], costs["dataclasses"][1], costs["regexes"][0],
          costs["regexes"][1], modules, file=sys.stderr)
    os._exit(0)

os.execve = stop
sys.argv = ["shim"] + sys.argv[2:]
main()
"""


def phases(python: str, directory: Path, env: dict[str, str], runs: int) -> list[list]:
    """Where the time goes, in-process: click's import, shim.cli's, then main() up to execve,
    split into the imports main() makes and the work itself (a second run with every shim
    module imported beforehand)."""
    argv = ["exec", "--secrets-dir", str(directory), "--", "/bin/true"]

    def sample(preload: str) -> tuple[list[float], str]:
        result = subprocess.run([python, "-c", _PHASES, preload, *argv], env=env,
                                capture_output=True, text=True, check=True)
        *times, modules = result.stderr.split()
        return [float(t) for t in times], modules

    cold, warm, costs, modules = [], [], [], ""
    for _ in range(runs):
        times, modules = sample("")
        cold.append(times)
        warm.append(sample(modules)[0])
        costs.append(sample("@costs")[0])
    def ms(samples, index):
        return median([sample[index] for sample in samples]) * 1000

    click_ms, cli_ms, main_ms, work_ms = ms(cold, 0), ms(cold, 1), ms(cold, 2), ms(warm, 2)
    dataclass_ms, dataclass_count = ms(costs, 3), int(costs[0][4])
    regex_ms, regex_count = ms(costs, 5), int(costs[0][6])
    return [
        ["import click", click_ms],
        ["import shim.cli (beyond click: gettext/locale, dataclasses, shim.errors, the commands)",
         cli_ms],
        [f"main() up to execve: shim's other imports ({len(modules.split(','))} shim modules in all)",
         main_ms - work_ms],
        ["main() up to execve: the work (options, plan, 25 file reads, environment)", work_ms],
        [f"of shim's imports (2nd and 3rd rows): creating its {dataclass_count} dataclasses",
         dataclass_ms],
        [f"of shim's imports (2nd and 3rd rows): compiling its {regex_count} module-level regexes",
         regex_ms],
    ]


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)

    venv = installed_venv("core")
    python, shim = str(venv / "bin" / "python"), str(venv / "bin" / "shim")
    directory = Path(tempfile.mkdtemp(prefix="shim-bench-secrets-"))
    try:
        env = secrets_environment(directory)
        check_resolution(shim, directory, env)
        shim_argv = ["exec", "--secrets-dir", str(directory), "--", "/bin/true"]
        commands = {
            "python -c pass (baseline)": [python, "-c", "pass"],
            "shim exec (pip install .)": [shim, *shim_argv],
            # Floors: what any Python exec-er pays, and what any click-based one pays.
            "floor: python, execve /bin/true": [python, "-c", EXEC_TRUE],
            "floor: python, import click, execve": [python, "-c", "import click; " + EXEC_TRUE],
            # What a click-free `exec` would still pay for shim's other modules as they are.
            "shim's modules but not click/shim.cli, execve": [
                python, "-c", f"import {', '.join(EXEC_PATH_MODULES)}; " + EXEC_TRUE],
        }
        tini, gosu = shutil.which("tini"), shutil.which("gosu")
        if tini:
            # -s: register as a subreaper, as it would be PID 1 in a container (and not warn).
            commands["tini -s -- /bin/true"] = [tini, "-s", "--", "/bin/true"]
        if gosu and os.getuid() == 0:
            commands["gosu nobody /bin/true"] = [gosu, "nobody", "/bin/true"]
        commands["python -c pass (.venv, editable)"] = [str(DEV_PYTHON), "-c", "pass"]
        commands["shim exec (.venv, editable)"] = [str(ROOT / ".venv" / "bin" / "shim"), *shim_argv]
        samples = interleaved(commands, env, args.runs)

        baseline = median(samples["python -c pass (baseline)"])
        dev_baseline = median(samples["python -c pass (.venv, editable)"])
        rows = []
        for name, values in samples.items():
            base = dev_baseline if ".venv" in name else baseline
            rows.append([name, median(values), p90(values), f"{median(values) / base:.2f}x"])
        ratio = median(samples["shim exec (pip install .)"]) / baseline
        out = [table(f"Start-up ({args.runs} interleaved runs each, ms; ratio to python -c pass "
                     f"of the same venv)", ["command", "median", "p90", "ratio"], rows)]
        missing = [name for name, found in (("tini", tini), ("gosu", gosu)) if not found]
        if missing:
            print(f"skipped: {', '.join(missing)} not installed (apt-get install {' '.join(missing)})")
        if gosu and os.getuid() != 0:
            print("skipped: gosu needs root to switch users")

        out.append(table("Where shim's start-up goes (in-process, perf_counter, median of "
                         f"{args.runs // 2} runs, ms; the interpreter's own start and the execve "
                         "come on top)", ["phase", "ms"], phases(python, directory, env,
                                                                 args.runs // 2)))
        profile, forbidden = import_profile(python, shim, directory, env)
        out.append(table("python -X importtime, shim exec (top-level imports and click, median "
                         "of 5, ms; instrumented, so larger than real)",
                         ["module", "self", "cumulative"],
                         [[m, s, c] for m, s, c in profile[:12]]))
        out.append(table("Start-up target", ["target", "measured", "limit", "verdict"], [
            ["shim exec / python -c pass", f"{ratio:.2f}x", f"{TARGET_RATIO:.0f}x",
             verdict(ratio <= TARGET_RATIO)],
            ["forbidden modules imported (local-only run)", ", ".join(forbidden) or "none",
             "none", verdict(not forbidden)],
        ]))
        return out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
