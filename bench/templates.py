"""What a template adds to start-up: Jinja2's import and one render (a file on tmpfs).

`shim exec -- /bin/true` with one secret file delivered through a `_FILE` variable, against the
same command that also renders a 20-line template naming that secret twice (`secret()` and
`env`) into /dev/shm; interleaved run by run, medians of wall and CPU time, the difference is
the template's cost.

    .venv/bin/python bench/templates.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, interleaved, median, table


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="shim-bench-tmpl-"))
    out = Path(tempfile.mkdtemp(prefix="shim-bench-tmpl-", dir="/dev/shm"))
    try:
        secret = scratch / "db_password"
        secret.write_text("bench-password-value\n")
        template = scratch / "app.conf.tmpl"
        lines = [f"setting_{n} = value {n}" for n in range(18)]
        lines += ['password = {{ secret("ref+file://%s") | tojson }}' % secret,
                  "again = {{ env.DB_PASSWORD | shquote }}"]
        template.write_text("\n".join(lines) + "\n")
        env = {**BASE_ENV, "DB_PASSWORD_FILE": str(secret)}
        base = [str(DEV_PYTHON), "-m", "shim", "exec", "--allow-root", "--secrets-dir",
                str(scratch)]
        commands = {"without": [*base, "--", "/bin/true"],
                    "with --template": [*base, "--template", f"{template}:{out / 'app.conf'}",
                                        "--", "/bin/true"]}
        cpu: dict[str, list[float]] = {}
        wall = interleaved(commands, env, args.runs, cpu=cpu)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    rows = [[name, median(wall[name]), median(cpu[name])] for name in commands]
    rows.append(["difference (a template's cost)",
                 median(wall["with --template"]) - median(wall["without"]),
                 median(cpu["with --template"]) - median(cpu["without"])])
    return [table(f"--template: `shim exec` with one template, {args.runs} interleaved runs (ms)",
                  ["command", "wall median", "CPU median"], rows)]


if __name__ == "__main__":
    main()
