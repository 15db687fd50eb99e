"""Target 2, round trips: how many requests shim makes, and how long they take, at 20 ms each.

The doubles run in this process with 20 ms of latency on every answer: the Vault double
(`latency`), the Azure Key Vault double (`set_latency`, vault and identity endpoint), the
Secret Manager double (`set_latency`, API and metadata server) and moto
behind a counting proxy that waits 20 ms before forwarding. shim runs as a real process
(`python -m shim exec -- /bin/true`, the checkout's .venv, every extra installed). Counts come
from the servers' request logs, never from shim's own output.

"one read" is the same command with a single variable: same start-up, same SDK import, same
login, one read. `T(n) / T(1)` is the target's ratio; `(T(n) - T(1)) / 20 ms` says how many
request latencies the extra secrets cost (a serial client would pay about n).

    .venv/bin/python bench/roundtrips.py [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

from _common import BASE_ENV, DEV_PYTHON, median, table, timed, verdict

LATENCY = 0.020
SHIM = [str(DEV_PYTHON), "-m", "shim", "exec", "--deadline", "60s", "--", "/bin/true"]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def run_shim(env: dict[str, str], runs: int, before=None) -> list[float]:
    """Wall time (ms) of `runs` runs; `before()` resets the request log before each."""
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        elapsed, result = timed(SHIM, {**BASE_ENV, **env})
        if result.returncode != 0:
            raise SystemExit(f"shim exited {result.returncode}:\n{result.stderr[-2000:]}")
        times.append(elapsed)
    return times


# --- Vault --------------------------------------------------------------------------------------

def bench_vault(runs: int, home: Path) -> list[list]:
    from tests.doubles.vault import VaultDouble

    rows = []
    with VaultDouble() as vault:
        for n in range(100):
            vault.kv2_put("secret", f"bench/path-{n:03d}", {"value": f"bench-vault-{n}"})
        vault.kv2_put("secret", "bench/shared", {f"key_{n:03d}": f"bench-shared-{n}" for n in range(100)})
        role_id = vault.add_approle("bench", ["secret/data/bench"])
        vault.latency = LATENCY

        def env(variables: dict) -> dict:
            # AppRole as in production; its secret id may be used any number of times.
            return {"VAULT_ADDR": vault.url, "VAULT_ROLE_ID": role_id,
                    "VAULT_SECRET_ID": vault.new_secret_id("bench"), "HOME": str(home), **variables}

        one = env({"V_000": "vault:secret/data/bench/path-000#value"})
        spread = env({f"V_{n:03d}": f"vault:secret/data/bench/path-{n:03d}#value" for n in range(100)})
        shared = env({f"V_{n:03d}": f"ref+vault://secret/bench/shared#/key_{n:03d}" for n in range(100)})

        def counts() -> dict:
            requests = vault.requests
            return {
                "reads": sum(1 for r in requests
                             if r.method == "GET" and r.path.startswith("/v1/secret/data/bench/")),
                "mount lookups": sum(1 for r in requests if "/sys/internal/ui/mounts/" in r.path),
                "logins": sum(1 for r in requests if r.path.endswith("/auth/approle/login")),
                "requests": len(requests),
                "max in flight": vault.max_in_flight,
            }

        results = {}
        for name, environment in (("1 path", one), ("100 paths", spread), ("1 path, 100 keys", shared)):
            times = run_shim(environment, runs, before=vault.reset_log)
            results[name] = (median(times), counts())
    one_time = results["1 path"][0]
    for name, (wall, count) in results.items():
        rows.append(["Vault", f"100 variables, {name}" if name != "1 path" else "1 variable (one read)",
                     wall, f"{wall / one_time:.2f}x", f"{(wall - one_time) / (LATENCY * 1000):.1f}",
                     f"{plural(count['reads'], 'read')}, "
                     f"{plural(count['mount lookups'], 'mount lookup')}, "
                     f"{plural(count['logins'], 'login')}, {count['max in flight']} in flight"])
    targets = [
        ["Vault: 100 paths, wall time / one read", f"{results['100 paths'][0] / one_time:.2f}x", "10x",
         verdict(results["100 paths"][0] / one_time <= 10)],
        ["Vault: 100 variables on one path, reads", results["1 path, 100 keys"][1]["reads"], "1",
         verdict(results["1 path, 100 keys"][1]["reads"] == 1)],
        ["Vault: logins per run", max(r[1]["logins"] for r in results.values()), "1",
         verdict(all(r[1]["logins"] == 1 for r in results.values()))],
        ["Vault: mount lookups per run (cached by mount)",
         max(r[1]["mount lookups"] for r in results.values()), "1",
         verdict(all(r[1]["mount lookups"] <= 1 for r in results.values()))],
    ]
    return rows, targets


# --- AWS ----------------------------------------------------------------------------------------

def bench_aws(runs: int, directory: Path) -> list[list]:
    from urllib.parse import parse_qs

    import boto3

    from tests.helpers.aws_moto import AwsProxy, MotoServer

    class SlowProxy(AwsProxy):
        """The counting proxy, answering every request LATENCY later; STS counted by Action."""

        def _handle(self, handler):
            time.sleep(LATENCY)
            super()._handle(handler)

        def _fault_for(self, target, body):
            if not target:   # query protocol (STS): the operation is in the form body
                action = parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
                target = f"sts.{action}"
            return super()._fault_for(target, body)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # moto's per-request log lines
    server = MotoServer()
    proxy = SlowProxy(server.host, server.port)
    region = "us-east-1"
    try:
        setup = dict(endpoint_url=server.url, region_name=region, aws_access_key_id="testing",
                     aws_secret_access_key="testing")  # pragma: allowlist secret
        secrets_client = boto3.client("secretsmanager", **setup)
        ssm = boto3.client("ssm", **setup)
        for n in range(100):
            secrets_client.create_secret(Name=f"bench/secret-{n:03d}", SecretString=f"bench-aws-{n}")
            ssm.put_parameter(Name=f"/bench/param-{n:03d}", Value=f"bench-ssm-{n}",
                              Type="SecureString", Overwrite=True)
        token = directory / "web-identity-token"
        token.write_text("bench-web-identity-token")
        # Web identity (as on EKS/ECS with IRSA): the one credential exchange shim makes is an
        # STS AssumeRoleWithWebIdentity, which the proxy counts like any other call.
        base = {"AWS_ENDPOINT_URL": proxy.url, "AWS_DEFAULT_REGION": region,
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/bench",
                "AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ROLE_SESSION_NAME": "bench",
                "AWS_CONFIG_FILE": "/nonexistent/aws-config",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
                "AWS_EC2_METADATA_DISABLED": "true"}
        scenarios = {
            "1 secret (one read)": {"S_000": "ref+awssecrets://bench/secret-000"},
            "100 Secrets Manager secrets": {f"S_{n:03d}": f"ref+awssecrets://bench/secret-{n:03d}"
                                            for n in range(100)},
            "100 SSM parameters": {f"P_{n:03d}": f"ref+awsssm:///bench/param-{n:03d}"
                                   for n in range(100)},
        }
        results = {}
        for name, variables in scenarios.items():
            times = run_shim({**base, **variables}, runs, before=proxy.reset)
            results[name] = (median(times), dict(proxy.counts))
    finally:
        proxy.stop()
        server.stop()

    def count(counts: dict, operation: str) -> int:
        return sum(n for target, n in counts.items() if target.endswith("." + operation))

    one_time = results["1 secret (one read)"][0]
    rows = []
    for name, (wall, counts) in results.items():
        calls = ", ".join(f"{n} {target.split('.', 1)[1]}" for target, n in sorted(counts.items()))
        rows.append(["AWS", name, wall, f"{wall / one_time:.2f}x",
                     f"{(wall - one_time) / (LATENCY * 1000):.1f}", calls])
    secrets_counts = results["100 Secrets Manager secrets"][1]
    ssm_counts = results["100 SSM parameters"][1]
    batch, params = count(secrets_counts, "BatchGetSecretValue"), count(ssm_counts, "GetParameters")
    singles = count(secrets_counts, "GetSecretValue") + count(ssm_counts, "GetParameter")
    logins = [count(c, "AssumeRoleWithWebIdentity") for _, c in results.values()]
    targets = [
        ["AWS: 100 secrets, BatchGetSecretValue calls", batch, "5", verdict(batch <= 5)],
        ["AWS: 100 parameters, GetParameters calls", params, "10", verdict(params <= 10)],
        ["AWS: single reads besides the batches", singles, "0", verdict(singles == 0)],
        ["AWS: AssumeRoleWithWebIdentity per run", max(logins), "1",
         verdict(all(n == 1 for n in logins))],
    ]
    return rows, targets


# --- Azure --------------------------------------------------------------------------------------

def bench_azure(runs: int, directory: Path) -> list[list]:
    from tests.doubles.azure import AzureKeyVaultDouble

    with AzureKeyVaultDouble(directory) as kv:
        for n in range(50):
            kv.add_secret(f"bench-{n:03d}", f"bench-azure-{n}")
        kv.set_latency(LATENCY)
        kv.set_latency(LATENCY, service="identity")
        host = kv.url[len("https://"):]
        base = {**kv.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
                "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false"}
        scenarios = {
            "1 secret (one read)": {"A_000": f"ref+azurekeyvault://{host}/bench-000"},
            "50 secrets": {f"A_{n:03d}": f"@Microsoft.KeyVault(SecretUri={kv.url}/secrets/bench-{n:03d}/)"
                           for n in range(50)},
        }
        results = {}
        for name, variables in scenarios.items():
            times = run_shim({**base, **variables}, runs, before=kv.clear_log)
            results[name] = (median(times), {
                "reads": kv.count(authorized=True),
                "challenges": kv.count(authorized=False),
                "tokens": kv.count("identity") + kv.count("login"),
            })
    one_time = results["1 secret (one read)"][0]
    rows = []
    for name, (wall, count) in results.items():
        rows.append(["Azure", name, wall, f"{wall / one_time:.2f}x",
                     f"{(wall - one_time) / (LATENCY * 1000):.1f}",
                     f"{plural(count['reads'], 'GET')}, {plural(count['challenges'], 'challenge')}, "
                     f"{plural(count['tokens'], 'token request')}"])
    ratio = results["50 secrets"][0] / one_time
    targets = [
        ["Azure: 50 secrets, wall time / one read", f"{ratio:.2f}x", "8x", verdict(ratio <= 8)],
        ["Azure: token requests per run", max(r[1]["tokens"] for r in results.values()), "1",
         verdict(all(r[1]["tokens"] == 1 for r in results.values()))],
        ["Azure: GETs for 50 secrets", results["50 secrets"][1]["reads"], "50",
         verdict(results["50 secrets"][1]["reads"] == 50)],
    ]
    return rows, targets


# --- Google Cloud Secret Manager ----------------------------------------------------------------

def bench_gcp(runs: int, directory: Path) -> list[list]:
    from tests.doubles.gcp import SecretManagerDouble

    with SecretManagerDouble(directory / "gcp") as gcp:
        for n in range(50):
            gcp.add_version(f"bench-{n:03d}", f"bench-gcp-{n}")
        for service in ("secretmanager", "metadata"):
            gcp.set_latency(LATENCY, service=service)
        base = {**gcp.base_env(), "CLOUDSDK_CONFIG": str(directory / "no-gcloud")}
        scenarios = {
            "1 secret (one read)": {"G_000": f"sm://{gcp.project}/bench-000"},
            "50 secrets": {f"G_{n:03d}": f"sm://{gcp.project}/bench-{n:03d}" for n in range(50)},
        }
        results = {}
        for name, variables in scenarios.items():
            times = run_shim({**base, **variables}, runs, before=gcp.clear_log)
            results[name] = (median(times), {
                "access": len([r for r in gcp.requests() if r.path.endswith(":access")]),
                "get": len([r for r in gcp.requests() if not r.path.endswith(":access")]),
                "tokens": gcp.count("metadata", path="/computeMetadata/v1/instance/service-accounts/default/token"),
            })
    one_time = results["1 secret (one read)"][0]
    rows = []
    for name, (wall, count) in results.items():
        rows.append(["GCP", name, wall, f"{wall / one_time:.2f}x",
                     f"{(wall - one_time) / (LATENCY * 1000):.1f}",
                     f"{plural(count['access'], 'access call')}, {plural(count['get'], 'get')}, "
                     f"{plural(count['tokens'], 'token request')}"])
    ratio = results["50 secrets"][0] / one_time
    targets = [
        ["GCP: 50 secrets, wall time / one read", f"{ratio:.2f}x", "2x", verdict(ratio <= 2)],
        ["GCP: token requests per run", max(r[1]["tokens"] for r in results.values()), "1",
         verdict(all(r[1]["tokens"] == 1 for r in results.values()))],
        ["GCP: access calls for 50 secrets", results["50 secrets"][1]["access"], "50",
         verdict(results["50 secrets"][1]["access"] == 50)],
    ]
    return rows, targets


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (median wall time)")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="shim-bench-roundtrips-"))
    try:
        (directory / "home").mkdir()
        rows, targets = [], []
        for bench in (lambda: bench_vault(args.runs, directory / "home"),
                      lambda: bench_aws(args.runs, directory),
                      lambda: bench_azure(args.runs, directory),
                      lambda: bench_gcp(args.runs, directory)):
            more_rows, more_targets = bench()
            rows += more_rows
            targets += more_targets
        out = [table(f"Round trips at {LATENCY * 1000:.0f} ms per request (median wall time of "
                     f"{args.runs} runs of a whole `shim exec`, ms)",
                     ["store", "scenario", "wall", "/ one read", "extra latencies", "requests"],
                     rows)]
        out.append(table("Round-trip targets", ["target", "measured", "limit", "verdict"], targets))
        return out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
