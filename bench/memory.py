"""Target 4, memory: the resident set of shim's long-lived processes, per provider.

- `exec --init --watch 10ms` with one reference to each store (the 20 _FILE variables and 5
  placeholders of the start-up benchmark, plus one Vault / AWS Secrets Manager / Azure Key
  Vault reference against the Vault double, moto's server and the Azure double), sampled
  after 0, 100, ... N re-resolutions: the supervisor's VmRSS (not the program's, not the
  helpers'). Re-resolutions are counted from the audit file (one `secret.resolved` event of
  BENCH_01 per resolution).
- `exec --init` without --watch once the program runs (the lean loop), the same providers.
- tini (`tini -s -- sleep`) in the same run, as the floor of a supervisor.
- `--with-metrics`: the same --watch runs again with `--metrics` on a loopback port, its
  /metrics page scraped every 50 ms meanwhile (the metrics server's cost: docs/metrics.md).
- `--compare-with REV`: the same --watch runs with the shim package of git revision REV (e.g.
  the commit before the helper processes), run by the same interpreter, for a before/after.
- The simpler options the helper design was weighed against, measured as the floor they
  cannot go under: a process holding what an in-process supervisor holds (shim's modules and
  the SDK), after gc.collect() and malloc_trim(0); and the same with the standard library's
  HTTP stack (http.client + ssl) instead of hvac/requests.

Every variant runs from this worktree's .venv (`make install-test` installs every extra),
as `python -m shim`. --watch variants run at the same time.

    .venv/bin/python bench/memory.py [--resolutions 1000] [--compare-with REV] [--with-metrics]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, ROOT, secrets_environment, table, verdict

FLAT_KIB = 512          # growth allowed from the 100th to the last re-resolution
TARGET_MIB = 20.0       # the --watch supervisor with any one provider
PROVIDERS = ("files", "vault", "aws", "azure")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class AuditCounter:
    """Counts `secret.resolved` events of one variable in a growing audit file."""

    def __init__(self, path: Path, variable: str):
        self.path, self.variable = path, variable
        self.offset, self.count, self._rest = 0, 0, b""

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self.offset)
                chunk = stream.read()
        except FileNotFoundError:
            return self.count
        self.offset += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            if b'"secret.resolved"' in line and json.loads(line).get("variable") == self.variable:
                self.count += 1
        return self.count


# -- the stores -----------------------------------------------------------------------------------

class Stores:
    """The Vault double, moto's server and the Azure double, each holding one bench secret;
    `environment(provider)` is what shim needs to read it."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._stack: list = []

    def __enter__(self) -> "Stores":
        from tests.doubles.azure import AzureKeyVaultDouble
        from tests.doubles.vault import VaultDouble
        from tests.helpers.aws_moto import MotoServer

        self.vault = VaultDouble().start()
        self._stack.append(self.vault.stop)
        self.vault.kv2_put("secret", "bench/app", {"value": "bench-vault-value"})
        self.vault_token = self.vault.create_token(["secret/data/bench"])
        import logging
        logging.getLogger("werkzeug").setLevel(logging.ERROR)   # moto's per-request lines
        self.moto = MotoServer()
        self._stack.append(self.moto.stop)
        self.aws_env = {"AWS_ENDPOINT_URL": self.moto.url, "AWS_ACCESS_KEY_ID": "bench",
                        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",  # pragma: allowlist secret
                        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                        "AWS_EC2_METADATA_DISABLED": "true"}
        import boto3
        client = boto3.client("secretsmanager", endpoint_url=self.moto.url, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        self.aws_arn = client.create_secret(Name="bench-app", SecretString="bench-aws-value")["ARN"]
        azure_dir = self.directory / "azure"
        azure_dir.mkdir()
        self.azure = AzureKeyVaultDouble(azure_dir)
        self.azure.__enter__()
        self._stack.append(lambda: self.azure.__exit__(None, None, None))
        self.azure.add_secret("bench-app", "bench-azure-value")
        return self

    def __exit__(self, *exc) -> None:
        for stop in reversed(self._stack):
            stop()

    def environment(self, provider: str) -> dict[str, str]:
        if provider == "vault":
            return {"VAULT_ADDR": self.vault.url, "VAULT_TOKEN": self.vault_token,
                    "BENCH_STORE": "vault:secret/data/bench/app#value"}
        if provider == "aws":
            return {**self.aws_env, "BENCH_STORE": self.aws_arn}
        if provider == "azure":
            return {**self.azure.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(self.azure.ca_path),
                    "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
                    "BENCH_STORE": f"ref+azurekeyvault://{self.azure.url[len('https://'):]}/bench-app"}
        return {}


# -- the runs -------------------------------------------------------------------------------------

def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> None:
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        connection.getresponse().read()
    except OSError:
        pass     # not listening yet
    finally:
        connection.close()


def watch_run(label: str, env: dict, directory: Path, checkpoints: list[int],
              pythonpath: str | None, metrics_port: int | None = None) -> list[tuple[int, int, float]]:
    """(re-resolutions, supervisor VmRSS KiB, seconds) at each checkpoint; with
    `metrics_port`, --metrics on that port, scraped between samples."""
    audit = directory / f"audit-{label}.jsonl"
    stderr_path = directory / f"stderr-{label}.txt"
    env = dict(env, PYTHONPATH=pythonpath) if pythonpath else env
    argv = [str(DEV_PYTHON), "-m", "shim", "exec", "--init", "--watch", "10ms",
            "--secrets-dir", str(directory), "--audit-file", str(audit),
            *(["--metrics", f"127.0.0.1:{metrics_port}"] if metrics_port else []),
            "--", "sleep", "100000"]
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        counter = AuditCounter(audit, "BENCH_01")
        samples = []
        started = time.monotonic()
        try:
            pending = [0] + checkpoints      # re-resolutions = resolutions - 1 (the first is the start)
            while pending:
                if process.poll() is not None:
                    raise RuntimeError(f"{label}: shim exited {process.returncode}: "
                                       f"{stderr_path.read_text(errors='replace')[-1000:]}")
                resolutions = counter.poll() - 1
                if resolutions >= pending[0]:
                    samples.append((resolutions, rss_kib(process.pid), time.monotonic() - started))
                    pending.pop(0)
                if metrics_port:
                    scrape(metrics_port)
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return samples


def init_rss(env: dict, directory: Path) -> int:
    """VmRSS of `exec --init` (no --watch) once it has handed over to the lean loop."""
    marker = directory / "init-started"
    marker.unlink(missing_ok=True)
    process = subprocess.Popen(
        [str(DEV_PYTHON), "-m", "shim", "exec", "--init", "--secrets-dir", str(directory), "--",
         "sh", "-c", f"touch {marker}; exec sleep 100000"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker.exists() and b"initloop" in Path(f"/proc/{process.pid}/cmdline").read_bytes():
                time.sleep(0.5)
                return rss_kib(process.pid)
            time.sleep(0.05)
        raise RuntimeError("exec --init did not hand over to the lean loop")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def tini_rss() -> int | None:
    tini = shutil.which("tini")
    if tini is None:
        return None
    process = subprocess.Popen([tini, "-s", "--", "sleep", "100000"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        return rss_kib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


_IN_PROCESS_FLOOR = """
import ctypes, gc, sys
import shim.commands.cli, shim.delivery.supervise, shim.delivery.watch, shim.pipeline.run
for name in sys.argv[1:]:
    __import__(name)
gc.collect()
ctypes.CDLL(None).malloc_trim(0)
print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')))
"""


def in_process_floor(*modules: str) -> int:
    """VmRSS of a process holding shim's supervisor modules and `modules`, after gc.collect()
    and malloc_trim(0): what an in-process supervisor cannot go under."""
    result = subprocess.run([str(DEV_PYTHON), "-c", _IN_PROCESS_FLOOR, *modules], env=BASE_ENV,
                            capture_output=True, text=True, check=True)
    return int(result.stdout)


def package_of(revision: str, directory: Path) -> str:
    """The shim package of `revision`, unpacked; the PYTHONPATH that runs it."""
    target = directory / f"rev-{revision}"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "shim"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return str(target)


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, default=1000)
    parser.add_argument("--compare-with", metavar="REV",
                        help="also run --watch with the shim package of this git revision")
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--with-metrics", action="store_true",
                        help="also run --watch with --metrics, scraped every 50 ms")
    args = parser.parse_args(argv)
    last = args.resolutions
    providers = [p for p in args.providers.split(",") if p]
    checkpoints = sorted({min(100, last), *(last * k // 4 for k in (1, 2, 3)), last} - {0})

    directory = Path(tempfile.mkdtemp(prefix="shim-bench-memory-"))
    os.chmod(directory, 0o755)
    results: dict = {}
    try:
        with Stores(directory) as stores:
            files_env = secrets_environment(directory)
            envs = {p: {**files_env, "HOME": str(directory), **stores.environment(p)}
                    for p in providers}
            init = {p: init_rss(envs[p], directory) for p in providers}
            tini = tini_rss()
            runs = [(p, "now", None) for p in providers]
            if args.compare_with:
                old = package_of(args.compare_with, directory)
                runs += [(p, args.compare_with, old) for p in providers]
            if args.with_metrics:
                runs += [(p, "metrics", None) for p in providers]

            def run(provider, version, pythonpath):
                label = f"{provider}-{version}"
                try:
                    results[(provider, version)] = watch_run(
                        label, envs[provider], directory, checkpoints, pythonpath,
                        free_port() if version == "metrics" else None)
                except Exception as error:  # noqa: BLE001 - reported after every thread ended
                    results[(provider, version)] = error

            threads = [threading.Thread(target=run, args=item) for item in runs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    failures = [f"{key}: {value}" for key, value in results.items() if isinstance(value, Exception)]
    if failures:
        raise SystemExit("\n".join(failures))
    out = []
    rows, targets = [], []
    for (provider, version), samples in results.items():
        growth = samples[-1][1] - samples[1][1]
        peak = max(rss for _, rss, _ in samples) / 1024
        kind = {"now": "helper processes", "metrics": "helper processes, --metrics scraped"}
        rows.append([provider, kind.get(version, f"in-process ({version})"),
                     *(f"{rss / 1024:.1f}" for _, rss, _ in samples),
                     f"{growth:+d}", f"{samples[-1][2]:.0f} s"])
        if version in ("now", "metrics"):
            provider = provider if version == "now" else f"{provider} with --metrics"
            targets.append([f"--watch supervisor, {provider}: at most", f"{peak:.1f} MiB",
                            f"{TARGET_MIB:g} MiB", verdict(peak <= TARGET_MIB)])
            targets.append([f"--watch supervisor, {provider}: growth {checkpoints[0]} -> {last}",
                            f"{growth:+d} KiB", f"{FLAT_KIB} KiB", verdict(growth <= FLAT_KIB)])
    out.append(table(f"`exec --init --watch 10ms` supervisor VmRSS (MiB) after N re-resolutions",
                     ["provider", "resolutions run", *(str(c) for c in [0, *checkpoints]),
                      "growth KiB", "time"], rows))
    floors = [["tini -s (C, static)", f"{tini / 1024:.1f}" if tini else "tini not installed"]]
    floors += [[f"`exec --init`, lean loop, {p}", f"{init[p] / 1024:.1f}"] for p in providers]
    floors += [
        ["in-process, files only: shim's modules, gc + malloc_trim", f"{in_process_floor() / 1024:.1f}"],
        ["in-process, Vault with hvac + requests, gc + malloc_trim",
         f"{in_process_floor('hvac', 'requests') / 1024:.1f}"],
        ["in-process, Vault with http.client + ssl (lighter HTTP stack), gc + malloc_trim",
         f"{in_process_floor('http.client', 'ssl', 'json') / 1024:.1f}"],
        ["in-process, AWS with boto3, gc + malloc_trim",
         f"{in_process_floor('boto3', 'botocore.session') / 1024:.1f}"],
        ["in-process, Azure with azure-keyvault-secrets + azure-identity, gc + malloc_trim",
         f"{in_process_floor('azure.keyvault.secrets', 'azure.identity') / 1024:.1f}"],
    ]
    out.append(table("Floors and alternatives (VmRSS, MiB)", ["process", "MiB"], floors))
    out.append(table("Memory targets", ["target", "measured", "limit", "verdict"], targets))
    return out


if __name__ == "__main__":
    main()
