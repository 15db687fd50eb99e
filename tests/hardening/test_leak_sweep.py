"""Leak sweep: every command x log format x verbosity x outcome, with canary secrets.

A canary may reach only what shim was asked to produce (the child's
environment, rendered files). It must never reach stdout, stderr, the audit
file, or the argv/environment of the supervisor seen in /proc.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BASE_ENV, finish_process

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


# --- a remote store: Google Cloud Secret Manager ----------------------------
#
# The same sweep against the Secret Manager double: a payload canary and the OAuth tokens the
# double issued must reach only the child, never shim's output or the audit file, whether the
# read succeeds, is refused or fails a check.

REMOTE_SCENARIOS = {"ok": 0, "not_found": 66, "corrupt": 65, "denied": 77}


@pytest.fixture(scope="module")
def secret_manager(tmp_path_factory):
    from tests.doubles.gcp import SecretManagerDouble

    with SecretManagerDouble(tmp_path_factory.mktemp("gcp")) as double:
        yield double


REMOTE_CASES = list(itertools.product(COMMANDS, FORMATS, REMOTE_SCENARIOS))


@pytest.mark.parametrize("command,log_format,scenario", REMOTE_CASES,
                         ids=[f"{c}-{f}-{s}" for c, f, s in REMOTE_CASES])
def test_no_gcp_canary_in_any_output(run_shim, canaries, tmp_path, secret_manager,
                                     command, log_format, scenario):
    canary = canaries.new(scenario)
    secret = f"leak-{scenario}-{command}-{log_format}"
    secret_manager.add_version(secret, canary)
    secret_manager.corrupt_checksums = scenario == "corrupt"
    key = secret_manager.service_account_key(tmp_path / "key.json", principal=f"sa-{secret}")
    if scenario == "denied":
        secret_manager.deny(f"sa-{secret}", secret)
    name = "absent" if scenario == "not_found" else secret
    env = {**secret_manager.base_env(), "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud"),
           "GOOGLE_APPLICATION_CREDENTIALS": str(key),
           "GOOD": f"sm://{secret_manager.project}/{name}"}
    try:
        sweep_remote(run_shim, canaries, tmp_path, command, log_format, env,
                     REMOTE_SCENARIOS[scenario], secret_manager.credential_material)
    finally:
        secret_manager.corrupt_checksums = False
    assert secret_manager.issued_tokens(), "the control: a token was issued"


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


# --- a remote store: Doppler ----------------------------------------------------
#
# The same sweep against the Doppler double: the config's canaries and the token must reach
# only the child, whether the download succeeds, names a config that is not there, is refused,
# or answers more than the cap.

DOPPLER_SCENARIOS = {"ok": 0, "not_found": 66, "denied": 77, "too_large": 65}


@pytest.fixture(scope="module")
def doppler(tmp_path_factory):
    from tests.doubles.doppler import DopplerDouble

    with DopplerDouble(tmp_path_factory.mktemp("doppler")) as double:
        yield double


DOPPLER_CASES = list(itertools.product(COMMANDS, FORMATS, DOPPLER_SCENARIOS))


@pytest.mark.parametrize("command,log_format,scenario", DOPPLER_CASES,
                         ids=[f"{c}-{f}-{s}" for c, f, s in DOPPLER_CASES])
def test_no_doppler_canary_in_any_output(run_shim, canaries, tmp_path, doppler,
                                         command, log_format, scenario):
    from tests.doubles.https import Reply

    canary = canaries.new(scenario)
    project = f"leak-{command}-{log_format}-{scenario}"
    doppler.add_config(project, "prd", {"GOOD": canary, "OTHER": canaries.new("other")})
    token = doppler.account_token() if scenario == "denied" else \
        doppler.account_token((project, "prd"), (project, "absent"))
    config = "absent" if scenario == "not_found" else "prd"
    if scenario == "too_large":
        doppler.inject_reply(Reply(200, {"GOOD": canary * (4 * 1024 * 1024 // len(canary) + 1)}))
    env = {**doppler.env(token), "GOOD": f"ref+doppler://{project}/{config}#/GOOD"}
    sweep_remote(run_shim, canaries, tmp_path, command, log_format, env,
                 DOPPLER_SCENARIOS[scenario], doppler.credential_material)
    assert doppler.count(), "the control: the double was asked"


# --- a remote store: Infisical --------------------------------------------------
#
# The folder's canaries, the client secret and the access token must reach only the child
# (or nothing), whether the read succeeds, names a folder that is not there, or the login is
# refused.

INFISICAL_SCENARIOS = {"ok": 0, "not_found": 66, "denied": 77}


@pytest.fixture(scope="module")
def infisical(tmp_path_factory):
    from tests.doubles.infisical import InfisicalDouble

    with InfisicalDouble(tmp_path_factory.mktemp("infisical")) as double:
        yield double


INFISICAL_CASES = list(itertools.product(COMMANDS, FORMATS, INFISICAL_SCENARIOS))


@pytest.mark.parametrize("command,log_format,scenario", INFISICAL_CASES,
                         ids=[f"{c}-{f}-{s}" for c, f, s in INFISICAL_CASES])
def test_no_infisical_canary_in_any_output(run_shim, canaries, tmp_path, infisical,
                                           command, log_format, scenario):
    canary = canaries.new(scenario)
    environment = f"leak-{command}-{log_format}-{scenario}"
    infisical.add_secret(infisical.project, environment, "/app", "GOOD", canary)
    client_id, client_secret = infisical.machine_identity((infisical.project, environment))
    if scenario == "denied":
        client_secret = client_secret[::-1]
    folder = "absent" if scenario == "not_found" else "app"
    env = {**infisical.env(client_id, client_secret),
           "GOOD": f"ref+infisical://{infisical.project}/{environment}/{folder}#/GOOD"}
    sweep_remote(run_shim, canaries, tmp_path, command, log_format, env,
                 INFISICAL_SCENARIOS[scenario],
                 lambda: infisical.credential_material() + [client_secret])
    assert infisical.count(), "the control: the double was asked"


# --- a remote store: 1Password Connect ------------------------------------------
#
# Field canaries and the Connect token reach only the child, whether the item is read, is not
# there, or the token is refused.

ONEPASSWORD_SCENARIOS = {"ok": 0, "not_found": 66, "denied": 77}


@pytest.fixture(scope="module")
def connect(tmp_path_factory):
    from tests.doubles.onepassword import ConnectDouble

    with ConnectDouble(tmp_path_factory.mktemp("onepassword")) as double:
        yield double


ONEPASSWORD_CASES = list(itertools.product(COMMANDS, FORMATS, ONEPASSWORD_SCENARIOS))


@pytest.mark.parametrize("command,log_format,scenario", ONEPASSWORD_CASES,
                         ids=[f"{c}-{f}-{s}" for c, f, s in ONEPASSWORD_CASES])
def test_no_onepassword_canary_in_any_output(run_shim, canaries, tmp_path, connect,
                                             command, log_format, scenario):
    vault = f"leak-{command}-{log_format}-{scenario}"
    item = connect.add_item(vault, "app", {"password": canaries.new(scenario)},
                            sections={"admin": {"password": canaries.new("admin")}})
    token = connect.token("elsewhere" if scenario == "denied" else vault)
    title = "absent" if scenario == "not_found" else "app"
    # By ID when denied (a vault name the token may not read is answered as missing).
    reference = (f"op://{connect.vault_id(vault)}/{item}/password" if scenario == "denied"
                 else f"op://{vault}/{title}/admin/password")
    env = {**connect.env(token), "GOOD": reference}
    sweep_remote(run_shim, canaries, tmp_path, command, log_format, env,
                 ONEPASSWORD_SCENARIOS[scenario], connect.credential_material)
    assert connect.count(), "the control: the double was asked"


# --- a remote store: Bitwarden Secrets Manager ----------------------------------
#
# Decrypted values, the access token (and its key part) and the bearer tokens reach only the
# child, whether the read succeeds, names a secret that is not there, the login is refused, or
# the value does not open.

BITWARDEN_SCENARIOS = {"ok": 0, "not_found": 66, "denied": 77, "tampered": 65}


@pytest.fixture(scope="module")
def bws(tmp_path_factory):
    from tests.doubles.bitwarden import BitwardenDouble

    with BitwardenDouble(tmp_path_factory.mktemp("bitwarden")) as double:
        yield double


BITWARDEN_CASES = list(itertools.product(COMMANDS, FORMATS, BITWARDEN_SCENARIOS))


@pytest.mark.parametrize("command,log_format,scenario", BITWARDEN_CASES,
                         ids=[f"{c}-{f}-{s}" for c, f, s in BITWARDEN_CASES])
def test_no_bitwarden_canary_in_any_output(run_shim, canaries, tmp_path, bws,
                                           command, log_format, scenario):
    import uuid

    project = str(uuid.uuid4())
    secret = bws.add_secret("GOOD", canaries.new(scenario), project=project)
    token = bws.access_token(project)
    if scenario == "denied":
        bws.revoke(token)
    target = str(uuid.uuid4()) if scenario == "not_found" else secret
    env = {**bws.env(token), "GOOD": f"ref+bws://{target}"}
    bws.tamper_values = scenario == "tampered"
    try:
        sweep_remote(run_shim, canaries, tmp_path, command, log_format, env,
                     BITWARDEN_SCENARIOS[scenario], bws.credential_material)
    finally:
        bws.tamper_values = False
    assert bws.count(), "the control: the double was asked"
