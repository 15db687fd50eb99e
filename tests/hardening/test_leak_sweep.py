"""Leak sweep: every command x log format x verbosity x outcome, with canary secrets.

A canary may reach only what shim was asked to produce (the child's
environment, rendered files). It must never reach stdout, stderr, the audit
file, or the argv/environment of the supervisor seen in /proc.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import BASE_ENV, finish_process
from tests.doubles.https import Reply

SCENARIOS = {
    # name: (env builder, expected exit code)
    "ok": 0,
    "not_found": 66,
    "nul_byte": 65,
    "not_json": 65,
    "both_set": 78,
    "unresolved_placeholder": 78,
    "malformed_reference": 64,
    "overdue": 78,
}


def scenario_env(name: str, secrets_dir: Path, canary: str) -> dict:
    good = secrets_dir / "good"
    good.write_text(canary)
    env = {"GOOD": f"file:{good}", "URL": f"postgres://app:${{file:{good}}}@db/app",
           "VIA_FILE_FILE": str(good), "SHIM_SECRETS_DIR": str(secrets_dir)}
    if name == "not_found":
        env["BAD"] = f"file:{secrets_dir}/absent"
    elif name == "nul_byte":
        (secrets_dir / "nul").write_bytes(canary.encode() + b"\0" + canary.encode())
        env["BAD"] = f"file:{secrets_dir}/nul"
    elif name == "not_json":
        env["BAD"] = f"ref+file://{good}#/key"
    elif name == "both_set":
        env["VIA_FILE"] = canary
    elif name == "unresolved_placeholder":
        env["BAD"] = "CHANGEME_NOPE"
    elif name == "malformed_reference":
        env["BAD"] = "vault:secret/data/app"
    elif name == "overdue":
        old = time.time() - 400 * 86400
        os.utime(good, (old, old))
        env["SHIM_MAX_AGE"] = "90d"
        env["SHIM_ENFORCE_MAX_AGE"] = "1"
    return env


COMMANDS = {
    "exec": lambda tmp: ["exec", "--", "true"],
    "check": lambda tmp: ["check"],
    "check-json": lambda tmp: ["check", "--json"],
    "render-dir": lambda tmp: ["render", "--dir", str(tmp / "out")],
    "render-env": lambda tmp: ["render", "--env-file", str(tmp / "out" / "app.env"), "--format", "json"],
}
FORMATS = ["text", "json"]
VERBOSITY = [[], ["-v"], ["-vv"], ["-q"]]
CASES = list(itertools.product(COMMANDS, FORMATS, range(len(VERBOSITY)), SCENARIOS))


@pytest.mark.parametrize("command,log_format,verbosity,scenario", CASES,
                         ids=[f"{c}-{f}-v{v}-{s}" for c, f, v, s in CASES])
def test_no_canary_in_any_output(run_shim, canaries, tmp_path, command, log_format, verbosity, scenario):
    canary = canaries.new(scenario)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (tmp_path / "out").mkdir()
    audit = tmp_path / "audit.log"
    env = scenario_env(scenario, secrets_dir, canary)
    args = COMMANDS[command](tmp_path)
    options = ["--log-format", log_format, "--audit-file", str(audit), *VERBOSITY[verbosity]]
    args = args[:1] + options + args[1:]
    result = run_shim(args, env)  # run_shim asserts: no canary in stdout/stderr, no traceback
    assert result.returncode == SCENARIOS[scenario], result.stderr
    canaries.assert_absent(audit.read_text() if audit.exists() else "", where="the audit file")
    if result.returncode != 0:
        assert result.stderr.strip(), "a failure must say something"
    if log_format == "json":
        for line in result.stderr.splitlines():
            json.loads(line)  # every stderr line is one JSON object


def test_the_sweep_covers_enough():
    assert len(CASES) >= 300


@pytest.mark.parametrize("mode", [["--watch", "1h"], ["--init"]], ids=["watch", "init"])
@pytest.mark.parametrize("user", ["root", "nobody"])
def test_supervisor_argv_and_environment_hold_no_secret(canaries, shared_dir, request, user, mode):
    """/proc of the supervisor (--init, --watch) and of the child's argv: no canary.

    As nobody (Kubernetes runAsUser) the supervisor shares its uid with the child, so its
    /proc entries must also be closed to that uid (non-dumpable: owned by root).
    """
    canary = canaries.new("proc")
    secret = shared_dir / "s"
    secret.write_text(canary)
    secret.chmod(0o644)
    marker = shared_dir / "started"
    env = dict(BASE_ENV, SECRET=f"file:{secret}")
    python, preexec_fn = sys.executable, None
    if user == "nobody":
        from tests.hardening.conftest import as_nobody
        python, extra = request.getfixturevalue("nobody_python")
        env.update(extra, VAULT_TOKEN=canaries.new("token"))
        preexec_fn = as_nobody()
    process = subprocess.Popen([python, "-m", "shim", "exec", *mode, "--",
                                "sh", "-c", f"touch {marker}; exec sleep 30"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=shared_dir, preexec_fn=preexec_fn)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists()
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for pid in [process.pid, *map(int, children)]:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            canaries.assert_absent(argv, where=f"argv of pid {pid}")
        child_env = Path(f"/proc/{children[0]}/environ").read_bytes().decode(errors="replace")
        assert canary in child_env  # the control: the child did get it
        if user == "nobody":
            # The caller's own environment (with VAULT_TOKEN) is the supervisor's; what
            # matters is that its uid-mate, the child, cannot open it.
            # --init: the lean loop says non-dumpable again just after its execve.
            deadline = time.monotonic() + 5
            while os.stat(f"/proc/{process.pid}/environ").st_uid != 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert os.stat(f"/proc/{process.pid}/environ").st_uid == 0
            assert os.stat(f"/proc/{children[0]}/environ").st_uid == 65534  # control
        else:
            supervisor_env = Path(f"/proc/{process.pid}/environ").read_bytes().decode(errors="replace")
            canaries.assert_absent(supervisor_env, where="the supervisor's environment")
    finally:
        process.send_signal(signal.SIGTERM)
        finish_process(process, canaries)


# --- the remote stores -------------------------------------------------------
#
# The same sweep against each store's HTTPS double: the store's canaries and every credential
# its double issued or accepts must reach only the child (or nothing), never shim's output or
# the audit file, whatever the outcome. Each store is one row of REMOTE_STORES: its outcomes
# (scenario -> exit code) and how a case is arranged on its double (`arrange`, a context that
# yields the environment and the credential material, and checks its control on the way out).


@contextlib.contextmanager
def gcp_case(double, canaries, tmp_path, name, scenario):
    """A payload canary and the OAuth tokens the double issued, whether the read succeeds, is
    refused or fails its checksum."""
    double.add_version(name, canaries.new(scenario))
    double.corrupt_checksums = scenario == "corrupt"
    key = double.service_account_key(tmp_path / "key.json", principal=f"sa-{name}")
    if scenario == "denied":
        double.deny(f"sa-{name}", name)
    asked_name = "absent" if scenario == "not_found" else name
    env = {**double.base_env(), "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud"),
           "GOOGLE_APPLICATION_CREDENTIALS": str(key),
           "GOOD": f"sm://{double.project}/{asked_name}"}
    try:
        yield env, double.credential_material
    finally:
        double.corrupt_checksums = False
    assert double.issued_tokens(), "the control: a token was issued"


@contextlib.contextmanager
def doppler_case(double, canaries, tmp_path, name, scenario):
    """The config's canaries and the token, whether the download succeeds, names a config that
    is not there, is refused, or answers more than the cap."""
    canary = canaries.new(scenario)
    double.add_config(name, "prd", {"GOOD": canary, "OTHER": canaries.new("other")})
    token = double.account_token() if scenario == "denied" else \
        double.account_token((name, "prd"), (name, "absent"))
    config = "absent" if scenario == "not_found" else "prd"
    if scenario == "too_large":
        double.inject_reply(Reply(200, {"GOOD": canary * (4 * 1024 * 1024 // len(canary) + 1)}))
    yield {**double.env(token), "GOOD": f"ref+doppler://{name}/{config}#/GOOD"}, \
        double.credential_material
    assert double.count(), "the control: the double was asked"


@contextlib.contextmanager
def infisical_case(double, canaries, tmp_path, name, scenario):
    """The folder's canaries, the client secret and the access token, whether the read
    succeeds, names a folder that is not there, or the login is refused."""
    double.add_secret(double.project, name, "/app", "GOOD", canaries.new(scenario))
    client_id, client_secret = double.machine_identity((double.project, name))
    if scenario == "denied":
        client_secret = client_secret[::-1]
    folder = "absent" if scenario == "not_found" else "app"
    yield ({**double.env(client_id, client_secret),
            "GOOD": f"ref+infisical://{double.project}/{name}/{folder}#/GOOD"},
           lambda: double.credential_material() + [client_secret])
    assert double.count(), "the control: the double was asked"


@contextlib.contextmanager
def onepassword_case(double, canaries, tmp_path, name, scenario):
    """Field canaries and the Connect token, whether the item is read, is not there, or the
    token is refused."""
    item = double.add_item(name, "app", {"password": canaries.new(scenario)},
                           sections={"admin": {"password": canaries.new("admin")}})
    token = double.token("elsewhere" if scenario == "denied" else name)
    title = "absent" if scenario == "not_found" else "app"
    # By ID when denied (a vault name the token may not read is answered as missing).
    reference = (f"op://{double.vault_id(name)}/{item}/password" if scenario == "denied"
                 else f"op://{name}/{title}/admin/password")
    yield {**double.env(token), "GOOD": reference}, double.credential_material
    assert double.count(), "the control: the double was asked"


@contextlib.contextmanager
def bitwarden_case(double, canaries, tmp_path, name, scenario):
    """Decrypted values, the access token (and its key part) and the bearer tokens, whether the
    read succeeds, names a secret that is not there, the login is refused, or the value does
    not open."""
    project = str(uuid.uuid4())
    secret = double.add_secret("GOOD", canaries.new(scenario), project=project)
    token = double.access_token(project)
    if scenario == "denied":
        double.revoke(token)
    target = str(uuid.uuid4()) if scenario == "not_found" else secret
    double.tamper_values = scenario == "tampered"
    try:
        yield {**double.env(token), "GOOD": f"ref+bws://{target}"}, double.credential_material
    finally:
        double.tamper_values = False
    assert double.count(), "the control: the double was asked"


REMOTE_STORES = {
    # store: (its double, outcome -> exit code, how a case is arranged)
    "gcp": ("tests.doubles.gcp:SecretManagerDouble",
            {"ok": 0, "not_found": 66, "corrupt": 65, "denied": 77}, gcp_case),
    "doppler": ("tests.doubles.doppler:DopplerDouble",
                {"ok": 0, "not_found": 66, "denied": 77, "too_large": 65}, doppler_case),
    "infisical": ("tests.doubles.infisical:InfisicalDouble",
                  {"ok": 0, "not_found": 66, "denied": 77}, infisical_case),
    "onepassword": ("tests.doubles.onepassword:ConnectDouble",
                    {"ok": 0, "not_found": 66, "denied": 77}, onepassword_case),
    "bitwarden": ("tests.doubles.bitwarden:BitwardenDouble",
                  {"ok": 0, "not_found": 66, "denied": 77, "tampered": 65}, bitwarden_case),
}
REMOTE_CASES = [(store, command, log_format, scenario)
                for store, (_, scenarios, _) in REMOTE_STORES.items()
                for command, log_format, scenario in itertools.product(COMMANDS, FORMATS, scenarios)]


@pytest.fixture(scope="module")
def remote_double(tmp_path_factory):
    """A store's double, started on first use and shared by the module's cases of that store."""
    started = {}
    with contextlib.ExitStack() as stack:
        def double_of(store: str):
            if store not in started:
                module, name = REMOTE_STORES[store][0].split(":")
                double = getattr(importlib.import_module(module), name)
                started[store] = stack.enter_context(double(tmp_path_factory.mktemp(store)))
            return started[store]
        yield double_of


@pytest.mark.parametrize("store,command,log_format,scenario", REMOTE_CASES,
                         ids=["-".join(case) for case in REMOTE_CASES])
def test_no_remote_canary_in_any_output(run_shim, canaries, tmp_path, remote_double,
                                        store, command, log_format, scenario):
    _, scenarios, arrange = REMOTE_STORES[store]
    name = f"leak-{command}-{log_format}-{scenario}"
    with arrange(remote_double(store), canaries, tmp_path, name, scenario) as (env, credentials):
        sweep_remote(run_shim, canaries, tmp_path, command, log_format, env,
                     scenarios[scenario], credentials)


def sweep_remote(run_shim, canaries, tmp_path, command, log_format, env, expected, credentials):
    """Run one command against a store's double with -vv and an audit file: the exit code is
    `expected`, and neither a canary nor any of `credentials()` reaches the output or the audit."""
    (tmp_path / "out").mkdir()
    audit = tmp_path / "audit.log"
    args = COMMANDS[command](tmp_path)
    args = args[:1] + ["--log-format", log_format, "--audit-file", str(audit), "-vv"] + args[1:]
    result = run_shim(args, env)  # no canary in stdout/stderr, no traceback
    assert result.returncode == expected, result.stderr
    audited = audit.read_text() if audit.exists() else ""
    canaries.assert_absent(audited, where="the audit file")
    written = result.stdout + result.stderr + audited
    for material in credentials():
        assert material not in written, "credential material leaked"
