"""Target 1, start-up: `shim exec -- /bin/true` with 20 _FILE variables and 5 placeholders.

Measured side by side (interleaved, so every command shares the machine's noise) against
`python -c pass` of the same interpreter, the floors any Python exec-er pays (the interpreter
and an execve; the same plus `import click`), `tini -s -- /bin/true` and `gosu nobody /bin/true`.
Target: shim's median at most 2.5x `python -c pass` (aim: 2x).

shim is measured as a container runs it: `pip install .` (not editable) into a throwaway
venv under .cache/bench, started through its console script, whose usual `exec` line is read
by shim.commands.fastpath without click. The checkout's own .venv is an editable install whose .pth
finder makes every interpreter start slower (the baseline too), so it is shown apart, for
reference only.

Each command's wall time and CPU time (user + system of the process, from wait4) are
recorded: on a shared machine the wall time of a short process mostly measures the others'
load, its CPU time much less. `--repeat N` runs the whole interleaved measurement N times
and reports the spread of the ratio over those runs.

    .venv/bin/python bench/startup.py [--runs 40] [--repeat 3]
    .venv/bin/python bench/startup.py --compare REV [REV ...]   # before/after per commit
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

from _common import (CACHE, DEV_PYTHON, FILE_VARIABLES, PLACEHOLDERS, ROOT, base_python,
                     installed_venv, interleaved, median, p90, secrets_environment, table,
                     verdict)

# What a local-only `shim exec` must not import: the rule tests/integration/test_imports.py
# asserts (_common put the repository on sys.path).
from tests.integration.test_imports import NOT_ON_THE_EXEC_PATH

TARGET_RATIO = 2.5
AIM_RATIO = 2.0
EXEC_TRUE = "import os; os.execv('/bin/true', ['/bin/true'])"
BASELINE = "python -c pass (baseline)"
SHIM = "shim exec (pip install .)"


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
            if len(indent) == 1:
                depth0.add(module)
            self_times[module].append(int(own))
            cumulative[module].append(int(total))
    rows = [(module, median(self_times[module]) / 1000, median(cumulative[module]) / 1000)
            for module in depth0]
    rows.sort(key=lambda row: -row[2])
    baseline = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True,
                              text=True, check=True).stderr
    seen -= {line.rsplit("|", 1)[-1].strip() for line in baseline.splitlines()}
    forbidden = sorted(m for m in seen if any(m == name or m.startswith(name + ".")
                                              for name in NOT_ON_THE_EXEC_PATH))
    return rows, forbidden


_PHASES = r"""
import os, sys, time
marks = [time.perf_counter()]
regexes = [0.0, 0]
if sys.argv[1] == "@regexes":
    # Time what shim's own modules spend compiling regexes at import.
    import re
    compile_ = re.compile

    def timed(*arguments, **keywords):
        begun = time.perf_counter()
        try:
            return compile_(*arguments, **keywords)
        finally:
            if sys._getframe(1).f_globals.get("__name__", "").startswith("shim"):
                regexes[0] += time.perf_counter() - begun
                regexes[1] += 1

    re.compile = timed
    marks = [time.perf_counter()]
args = sys.argv[2:]
from shim.commands.fastpath import parse_exec
marks.append(time.perf_counter())
parse_exec(args, os.environ)
marks.append(time.perf_counter())
import shim.commands.execute, shim.pipeline.options, shim.pipeline.run
marks.append(time.perf_counter())
from shim.entry import main


def stop(*arguments):
    marks.append(time.perf_counter())
    print(*(b - a for a, b in zip(marks, marks[1:])), *regexes, "click" in sys.modules,
          file=sys.stderr)
    os._exit(0)


os.execve = stop
main(args)
"""

PHASE_NAMES = (
    "import shim.commands.fastpath (shim.pipeline.options, shim.syntax.refs, re, signal)",
    "parse_exec(): the command line and SHIM_* variables",
    "import shim.commands.execute (pipeline, plan, resolve, audit, privileges, launch, datetime)",
    "main() up to execve: parse, Options, plan, 25 file reads, environment",
)


def phases(python: str, directory: Path, env: dict[str, str], runs: int) -> list[list]:
    """Where the time goes, in-process (perf_counter), from the first import of shim to the
    execve; the interpreter's own start and the execve come on top."""
    argv = ["exec", "--secrets-dir", str(directory), "--", "/bin/true"]

    def sample(mode: str) -> list[str]:
        result = subprocess.run([python, "-c", _PHASES, mode, *argv], env=env,
                                capture_output=True, text=True, check=True)
        return result.stderr.splitlines()[-1].split()   # after shim's own warnings

    plain = [sample("") for _ in range(runs)]
    costs = [sample("@regexes") for _ in range(runs)]
    assert all(row[-1] == "False" for row in plain), "the fast path imported click"
    rows = [[name, median([float(row[index]) for row in plain]) * 1000]
            for index, name in enumerate(PHASE_NAMES)]
    rows.append([f"of the imports: compiling shim's {costs[0][5].split('.')[0]} module-level regexes",
                 median([float(row[4]) for row in costs]) * 1000])
    return rows


def revision_venv(revision: str) -> Path:
    """.cache/bench/venv-rev-<sha>: `pip install` (not editable) of shim as committed at
    `revision` (git archive), made once."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", revision], capture_output=True,
                         text=True, check=True).stdout.strip()
    venv = CACHE / f"venv-rev-{sha[:12]}"
    if not (venv / "bin" / "shim").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        source = Path(tempfile.mkdtemp(prefix="shim-bench-rev-"))
        try:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "shim",
                                      "pyproject.toml", "README.md"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
            subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip",
                            "--disable-pip-version-check", "-q", "install", str(source)],
                           stdout=subprocess.DEVNULL, check=True)
        finally:
            shutil.rmtree(source, ignore_errors=True)
    return venv


def compare(revisions: list[str], runs: int, repeat: int) -> list[str]:
    """shim exec / python -c pass for each revision and the working tree, interleaved in the
    same runs: the before/after of a change, measured side by side."""
    venvs = {revision: revision_venv(revision) for revision in revisions}
    venvs["working tree"] = installed_venv("core")
    directory = Path(tempfile.mkdtemp(prefix="shim-bench-secrets-"))
    try:
        env = secrets_environment(directory)
        argv = ["exec", "--secrets-dir", str(directory), "--", "/bin/true"]
        commands = {BASELINE: [str(venvs["working tree"] / "bin" / "python"), "-c", "pass"]}
        commands.update({name: [str(venv / "bin" / "shim"), *argv] for name, venv in venvs.items()})
        per_measurement: dict[str, list[str]] = {name: [] for name in venvs}
        walls, cpus = defaultdict(list), defaultdict(list)
        for _ in range(repeat):
            cpu: dict[str, list[float]] = {}
            wall = interleaved(commands, env, runs, cpu=cpu)
            for name in venvs:
                per_measurement[name].append(
                    f"{median(wall[name]) / median(wall[BASELINE]):.2f}x / "
                    f"{median(cpu[name]) / median(cpu[BASELINE]):.2f}x")
            for name in commands:
                walls[name] += wall[name]
                cpus[name] += cpu[name]
        rows = [[name, f"{median(walls[name]) / median(walls[BASELINE]):.2f}x",
                 f"{median(cpus[name]) / median(cpus[BASELINE]):.2f}x",
                 ", ".join(per_measurement[name])] for name in venvs]
        return [table(f"shim exec / python -c pass per revision ({repeat} x {runs} interleaved "
                      "runs; medians)", ["revision", "wall", "CPU",
                                         "each measurement (wall / CPU)"], rows)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def native_baselines() -> tuple[str | None, str | None]:
    """tini and gosu when installed. A benchmark never installs system packages by itself: a
    missing one's row is skipped, with the command that installs it (docs/performance.md)."""
    return shutil.which("tini"), shutil.which("gosu")


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3,
                        help="whole interleaved measurements, for the spread (default 3)")
    parser.add_argument("--compare", nargs="+", metavar="REV",
                        help="only compare these git revisions with the working tree")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.compare, args.runs, args.repeat)

    venv = installed_venv("core")
    python, shim = str(venv / "bin" / "python"), str(venv / "bin" / "shim")
    directory = Path(tempfile.mkdtemp(prefix="shim-bench-secrets-"))
    try:
        env = secrets_environment(directory)
        check_resolution(shim, directory, env)
        shim_argv = ["exec", "--secrets-dir", str(directory), "--", "/bin/true"]
        commands = {
            BASELINE: [python, "-c", "pass"],
            SHIM: [shim, *shim_argv],
            # Floors: what any Python exec-er pays, and what any click-based one pays.
            "floor: python, execve /bin/true": [python, "-c", EXEC_TRUE],
            "floor: python, import click, execve": [python, "-c", "import click; " + EXEC_TRUE],
            # pip's console-script wrapper imports re before shim's first line runs.
            "floor: python, import re, execve": [python, "-c", "import re; " + EXEC_TRUE],
            # shim's imports on this path without its work.
            "python, shim's exec-path imports, execve": [
                python, "-c", "import shim.commands.fastpath, shim.commands.execute, shim.providers.files; "
                + EXEC_TRUE],
            # A line the fast path hands over: what every start cost before it.
            "shim --version (click's path)": [shim, "--version"],
        }
        tini, gosu = native_baselines()
        if tini:
            # -s: register as a subreaper, as it would be PID 1 in a container (and not warn).
            commands["tini -s -- /bin/true"] = [tini, "-s", "--", "/bin/true"]
        if gosu and os.getuid() == 0:
            commands["gosu nobody /bin/true"] = [gosu, "nobody", "/bin/true"]
        commands["python -c pass (.venv, editable)"] = [str(DEV_PYTHON), "-c", "pass"]
        commands["shim exec (.venv, editable)"] = [str(ROOT / ".venv" / "bin" / "shim"), *shim_argv]

        walls, cpus = defaultdict(list), defaultdict(list)
        ratios: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            cpu: dict[str, list[float]] = {}
            wall = interleaved(commands, env, args.runs, cpu=cpu)
            ratios.append((median(wall[SHIM]) / median(wall[BASELINE]),
                           median(cpu[SHIM]) / median(cpu[BASELINE])))
            for name in commands:
                walls[name] += wall[name]
                cpus[name] += cpu[name]

        rows = []
        for name in commands:
            base = "python -c pass (.venv, editable)" if ".venv" in name else BASELINE
            rows.append([name, median(walls[name]), p90(walls[name]),
                         f"{median(walls[name]) / median(walls[base]):.2f}x",
                         median(cpus[name]), f"{median(cpus[name]) / median(cpus[base]):.2f}x"])
        total = args.runs * args.repeat
        out = [table(f"Start-up ({args.repeat} x {args.runs} interleaved runs of each, ms; "
                     "ratio to python -c pass of the same venv)",
                     ["command", "wall median", "wall p90", "wall ratio", "CPU median",
                      "CPU ratio"], rows)]
        out.append(table(f"Spread: shim exec / python -c pass in each of the {args.repeat} "
                         f"measurements ({args.runs} interleaved runs each)",
                         ["measurement", "wall ratio", "CPU ratio"],
                         [[str(number + 1), f"{wall:.2f}x", f"{cpu:.2f}x"]
                          for number, (wall, cpu) in enumerate(ratios)]))
        missing = [name for name, found in (("tini", tini), ("gosu", gosu)) if not found]
        if missing:
            print(f"skipped: {', '.join(missing)} not installed (apt-get install {' '.join(missing)})")
        if gosu and os.getuid() != 0:
            print("skipped: gosu needs root to switch users")

        out.append(table("Where shim's start-up goes (in-process, perf_counter, median of "
                         f"{args.runs // 2} runs, ms)", ["phase", "ms"],
                         phases(python, directory, env, args.runs // 2)))
        profile, forbidden = import_profile(python, shim, directory, env)
        out.append(table("python -X importtime, shim exec (top-level imports, median of 5, ms; "
                         "instrumented, so larger than real)", ["module", "self", "cumulative"],
                         [[m, s, c] for m, s, c in profile[:12]]))
        ratio = median(walls[SHIM]) / median(walls[BASELINE])
        cpu_ratio = median(cpus[SHIM]) / median(cpus[BASELINE])
        out.append(table(f"Start-up target (medians of all {total} runs)",
                         ["target", "measured", "limit", "verdict"], [
            ["shim exec / python -c pass, wall", f"{ratio:.2f}x", f"{TARGET_RATIO}x (aim {AIM_RATIO:.0f}x)",
             verdict(ratio <= TARGET_RATIO)],
            ["shim exec / python -c pass, CPU", f"{cpu_ratio:.2f}x", f"{TARGET_RATIO}x (aim {AIM_RATIO:.0f}x)",
             verdict(cpu_ratio <= TARGET_RATIO)],
            ["click or forbidden modules imported (local-only run)", ", ".join(forbidden) or "none",
             "none", verdict(not forbidden)],
        ]))
        return out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
