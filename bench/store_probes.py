"""What `--watch` asks the REST stores per tick: Doppler, 1Password Connect, Bitwarden Secrets
Manager and Infisical, against their doubles (tests/doubles/), with and without change probes.

Method: for each store one `shim exec --watch 200ms -- sleep` reads three secrets (Doppler: one
config; 1Password: three items of one vault, by title; Bitwarden: three secrets by id;
Infisical: one folder) for SECONDS, with one change halfway (one of the three values edited);
then SIGTERM. Counted on the double: requests per resolution (resolutions from the
supervisor's `helper.started` events, -vv), requests that carried values per resolution, and
logins for the whole run. `--tree DIR` runs shim from another source tree (e.g. `git archive
REV | tar -x -C DIR`) to compare with a revision before the probes, in the same run.

    .venv/bin/python bench/store_probes.py [--seconds 8] [--tree /tmp/before]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, ROOT

from tests.doubles.bitwarden import BitwardenDouble
from tests.doubles.doppler import DopplerDouble
from tests.doubles.infisical import LOGIN, InfisicalDouble
from tests.doubles.onepassword import ConnectDouble


def watch(env: dict, seconds: float, change, tree: Path) -> int:
    """Run `exec --watch 200ms` for `seconds`, calling `change()` halfway; its resolutions."""
    environment = {**BASE_ENV, **env, "PYTHONPATH": str(tree)}
    process = subprocess.Popen([str(DEV_PYTHON), "-m", "shim", "exec", "--watch", "200ms", "-vv",
                                "--log-format", "json", "--", "sleep", "600"],
                               env=environment, cwd=tree, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(seconds / 2, change)
    timer.start()
    time.sleep(seconds)
    timer.cancel()
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    return sum(1 for line in stderr.splitlines()
               if '"helper.started"' in line and '"resolve"' in line)


def doppler(directory: Path, seconds: float, tree: Path):
    with DopplerDouble(directory) as double:
        double.add_config("billing", "prd", {"A": "a1", "B": "b1", "C": "c1"})
        env = {**double.env(double.service_token("billing", "prd")),
               **{f"V_{name}": f"ref+doppler://billing/prd#/{name}" for name in "ABC"}}
        runs = watch(env, seconds, lambda: double.add_config("billing", "prd", {"A": "a2"}), tree)
        return runs, double.requests(), lambda r: r.status == 200, lambda r: False


def onepassword(directory: Path, seconds: float, tree: Path):
    with ConnectDouble(directory) as double:
        ids = {name: double.add_item("prod", name, {"password": f"{name}1"}) for name in "abc"}
        env = {**double.env(double.token("prod")),
               **{f"V_{name}": f"op://prod/{name}/password" for name in "abc"}}
        runs = watch(env, seconds, lambda: double.update_item("prod", ids["a"], {"password": "a2"}),
                     tree)
        item = re.compile(r"/v1/vaults/\w+/items/\w+")
        return runs, double.requests(), lambda r: item.fullmatch(r.path) is not None, \
            lambda r: False


def bitwarden(directory: Path, seconds: float, tree: Path):
    with BitwardenDouble(directory) as double:
        project = str(uuid.uuid4())
        ids = [double.add_secret(name, f"{name}1", project=project) for name in "ABC"]
        env = {**double.env(double.access_token(project)),
               **{f"V_{n}": f"ref+bws://{secret_id}" for n, secret_id in enumerate(ids)}}
        runs = watch(env, seconds, lambda: double.update_secret(ids[0], "A2"), tree)
        return runs, double.requests(), lambda r: r.path.startswith("/api/secrets/"), \
            lambda r: r.path == "/identity/connect/token"


def infisical(directory: Path, seconds: float, tree: Path):
    with InfisicalDouble(directory) as double:
        for name in "ABC":
            double.add_secret(double.project, "prod", "/", name, f"{name}1")
        client_id, client_secret = double.machine_identity((double.project, "prod"))
        env = {**double.env(client_id, client_secret),
               **{f"V_{n}": f"ref+infisical://{double.project}/prod#/{n}" for n in "ABC"}}
        runs = watch(env, seconds, lambda: double.add_secret(double.project, "prod", "/", "A",
                                                             "A2"), tree)
        return runs, double.requests(), lambda r: r.path == "/api/v4/secrets", \
            lambda r: r.path == LOGIN


STORES = {"Doppler (one config)": doppler, "1Password (3 items, by title)": onepassword,
          "Bitwarden (3 secrets, by id)": bitwarden, "Infisical (one folder)": infisical}


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the source tree to run shim from (default: this one)")
    options = parser.parse_args(argv)
    rows = ["| store | resolutions | requests per resolution | requests with values per "
            "resolution | logins |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as scratch:
        for title, run in STORES.items():
            runs, requests, carries_values, is_login = run(Path(scratch) / title[:4],
                                                           options.seconds, options.tree)
            runs = max(runs, 1)
            valued = sum(1 for entry in requests if carries_values(entry))
            logins = sum(1 for entry in requests if is_login(entry))
            rows.append(f"| {title} | {runs} | {len(requests) / runs:.2f} | "
                        f"{valued / runs:.2f} | {logins} |")
    print("\n".join(rows))
    return rows


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(0 if main() else 1)
