"""What every bench script shares: timing, tables, throwaway installs.

Benchmarks are not tests: they print figures and ratios against baselines
measured in the same run, side by side, because machines are noisy. Each
script's `main()` returns its table rows so `run_all.py` can collect them.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
DEV_PYTHON = ROOT / ".venv" / "bin" / "python"
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # tests.doubles, tests.helpers


FILE_VARIABLES = 20
PLACEHOLDERS = 5


def secrets_environment(directory: Path) -> dict[str, str]:
    """BASE_ENV plus 20 NAME_FILE variables and 5 whole-value placeholders, all served by
    `directory` (give shim `--secrets-dir DIRECTORY`)."""
    env = dict(BASE_ENV)
    for n in range(1, FILE_VARIABLES + 1):
        path = directory / f"file_{n:02d}"
        path.write_text(f"bench-file-value-{n}\n")
        env[f"BENCH_{n:02d}_FILE"] = str(path)
    for n in range(1, PLACEHOLDERS + 1):
        (directory / f"KEY_{n}").write_text(f"bench-placeholder-{n}\n")
        env[f"BENCH_PLACEHOLDER_{n}"] = f"CHANGEME_KEY_{n}"
    return env


# --- timing --------------------------------------------------------------------------------

def interleaved(commands: dict[str, list[str]], env: dict[str, str], runs: int,
                warmup: int = 3, cpu: dict[str, list[float]] | None = None
                ) -> dict[str, list[float]]:
    """Wall time in ms of each command, `runs` times, round-robin so they share the noise.

    With `cpu`, also each run's CPU time in ms (user + system, from wait4): on a shared machine
    the wall time of a short process mostly measures the others' load, its CPU time much less.
    """
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for round_number in range(warmup + runs):
        for name, argv in commands.items():
            started = time.perf_counter()
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            errors = process.stderr.read()
            _, status, usage = os.wait4(process.pid, 0)
            elapsed = (time.perf_counter() - started) * 1000
            process.stderr.close()
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise SystemExit(f"{name}: exit {process.returncode}: "
                                 f"{errors.decode(errors='replace')[-500:]}")
            if round_number >= warmup:
                samples[name].append(elapsed)
                if cpu is not None:
                    cpu.setdefault(name, []).append((usage.ru_utime + usage.ru_stime) * 1000)
    return samples


def median(values) -> float:
    return statistics.median(values)


def p90(values) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def timed(argv: list[str], env: dict[str, str],
          timeout: float = 120) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=timeout)
    return (time.perf_counter() - started) * 1000, result


# --- output --------------------------------------------------------------------------------

def table(title: str, headers: list[str], rows: list[list]) -> str:
    """A Markdown table (readable as text too), printed and returned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = [f"### {title}", "",
             "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in cells:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) // 1024 // 1024 + 1} GiB RAM"
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} x {cpu}{memory}, "
            f"Python {platform.python_version()} ({sys.executable})")


# --- throwaway installs -----------------------------------------------------------------------

def base_python() -> str:
    """The interpreter .venv was made from: throwaway venvs use the very same one."""
    return getattr(sys, "_base_executable", None) or sys.executable


def source_copy() -> Path:
    """The working tree's package (shim/, pyproject.toml, README.md) copied to a temporary
    directory, so `pip install` leaves no build/ or *.egg-info behind in the checkout."""
    directory = Path(tempfile.mkdtemp(prefix="shim-bench-src-"))
    shutil.copytree(ROOT / "shim", directory / "shim",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, directory / name)
    return directory


def installed_venv(name: str, extras: str = "", *, fresh: bool = False) -> Path:
    """.cache/bench/venv-<name>: `pip install .[extras]` of the working tree, not editable.

    Dependencies are installed once (pip's cache makes later runs quick); shim itself is
    reinstalled every time, so the figures are always those of the current working tree.
    """
    venv = CACHE / f"venv-{name}"
    if venv in _REFRESHED and not fresh:
        return venv
    if fresh and venv.exists():
        shutil.rmtree(venv)
    python = venv / "bin" / "python"
    if not python.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)
    source = source_copy()
    try:
        spec = f"{source}[{extras}]" if extras else str(source)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
        # A venv made before the rename to shim-secrets still holds "shim" (same module).
        _pip([str(python), "-m", "pip", "--disable-pip-version-check", "-q", "uninstall", "-y",
              "shim"])
        _pip(pip + [spec])
        _pip(pip + ["--no-deps", "--force-reinstall", str(source)])
    finally:
        shutil.rmtree(source, ignore_errors=True)
    _REFRESHED.add(venv)
    return venv


_REFRESHED: set[Path] = set()      # venvs already brought up to date by this process


def _pip(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-2:])} failed:\n{result.stderr[-2000:]}")
