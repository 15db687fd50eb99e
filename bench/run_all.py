"""`make bench`: every performance target of docs/performance.md, one script each, in one run.

    .venv/bin/python bench/run_all.py                      # everything (docs/performance.md: how long)
    .venv/bin/python bench/run_all.py --quick              # fewer runs, 100 re-resolutions, no bundle
    .venv/bin/python bench/run_all.py --only startup size  # some of them

The tables are printed as they come and, with --output (default .cache/bench/results.md),
written to one Markdown file with the machine they ran on: that file is what
docs/performance.md quotes.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

import memory
import roundtrips
import size
import startup
from _common import CACHE, ROOT, machine

SCRIPTS = {"startup": startup, "roundtrips": roundtrips, "size": size, "memory": memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--quick", action="store_true",
                        help="10 start-up runs, 3 round-trip runs, 100 re-resolutions, no bundle")
    parser.add_argument("--no-bundle", action="store_true", help="skip the Docker bundle builds")
    parser.add_argument("--output", type=Path, default=CACHE / "results.md")
    args = parser.parse_args()

    arguments = {
        "startup": ["--runs", "10", "--repeat", "1"] if args.quick else ["--runs", "40"],
        "roundtrips": ["--runs", "3" if args.quick else "5"],
        "size": ["--runs", "10" if args.quick else "40"]
        + (["--no-bundle"] if args.quick or args.no_bundle else []),
        "memory": ["--resolutions", "100" if args.quick else "1000"],
    }
    revision = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip() or "unknown"
    header = (f"Run {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} at {revision}"
              f"{' (--quick)' if args.quick else ''}\n\nMachine: {machine()}\n")
    print(header)
    sections = [header]
    for name in args.only:
        print(f"## {name}\n", flush=True)
        started = time.monotonic()
        output = SCRIPTS[name].main(arguments[name])
        sections.append(f"## {name} ({time.monotonic() - started:.0f} s)\n\n" + "\n".join(output))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(sections))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
