"""The Secret Manager provider, end to end: `shim exec` as a real process against the double.

The double (tests/doubles/gcp.py) runs in the pytest process; shim finds it the way a container
finds Google Cloud: GOOGLE_APPLICATION_CREDENTIALS (a service-account key or a workload identity
federation configuration), gcloud's ADC file, or the metadata server at GCE_METADATA_HOST.
google-auth itself talks to the double's token endpoints. Every secret is a canary; `run_shim`
fails a test whose output holds one, and `assert_no_credentials` does the same for every token.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import BASE_ENV
from tests.doubles.gcp import SecretManagerDouble


@pytest.fixture
def gcp(tmp_path):
    with SecretManagerDouble(tmp_path) as double:
        yield double


def credential_env(gcp, tmp_path, path: str) -> dict:
    """The environment of one credential path (`metadata`, `key`, `federation`)."""
    env = {**gcp.base_env(), "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud")}
    if path == "key":
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(gcp.service_account_key(tmp_path / "key.json"))
    elif path == "federation":
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(gcp.workload_identity_config(tmp_path / "wif"))
    return env


def token_requests(gcp) -> int:
    return (gcp.count("oauth2") + gcp.count("sts")
            + gcp.count("metadata", path="/computeMetadata/v1/instance/service-accounts/default/token"))


def assert_no_credentials(gcp, result) -> None:
    output = result.stdout + result.stderr
    for material in gcp.credential_material():
        assert material not in output, "credential material leaked into shim's output"


def events(result, name: str) -> list[dict]:
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == name]


def exec_probe(run_shim, probe, env, *options):
    return run_shim(["exec", *options, "--", *probe.argv], env)


@pytest.mark.parametrize("path", ["metadata", "key", "federation"])
def test_three_syntaxes_resolve_through_each_credential_path(gcp, tmp_path, canaries, run_shim, probe, path):
    old, new, config = canaries.new("old"), canaries.new("new"), canaries.new("cfg")
    gcp.add_version("db-password", old)
    gcp.add_version("db-password", new)
    gcp.add_version("app-config", json.dumps({"db": {"user": "app", "password": config}}))
    project = gcp.project
    env = credential_env(gcp, tmp_path, path)
    env.update(
        BERGLAS=f"sm://{project}/db-password",
        BERGLAS_PINNED=f"sm://{project}/db-password#1",
        VALS=f"ref+gcpsecrets://{project}/db-password?version=latest",
        VALS_POINTER=f"ref+gcpsecrets://{project}/app-config#/db/password",
        SECRETS_INIT=f"gcp:secretmanager:projects/{gcp.project_number}/secrets/db-password/versions/1",
        DATABASE_URL=f"postgresql://app:${{sm://{project}/db-password}}@db/app",
    )

    # As a container runs it: the reads happen before the drop to --user, nothing is imported after.
    result = exec_probe(run_shim, probe, env, "--user", "nobody")

    assert result.returncode == 0, result.stderr
    assert probe.read()["uid"] == 65534
    child = probe.read()["env"]
    assert child["BERGLAS"] == child["VALS"] == new
    assert child["BERGLAS_PINNED"] == child["SECRETS_INIT"] == old
    assert child["VALS_POINTER"] == config
    assert child["DATABASE_URL"] == f"postgresql://app:{new}@db/app"
    assert token_requests(gcp) == 1
    # Four distinct (project, secret, version): BERGLAS, VALS and DATABASE_URL share one read.
    assert gcp.count(path=f"/v1/projects/{project}/secrets/db-password/versions/latest:access") == 1
    assert len([r for r in gcp.requests() if r.path.endswith(":access")]) == 4
    assert_no_credentials(gcp, result)


def test_regional_secret_through_the_secrets_init_form(gcp, tmp_path, canaries, run_shim, probe):
    value = canaries.new("regional")
    gcp.add_version("eu-only", value, location="europe-west1")
    env = credential_env(gcp, tmp_path, "metadata")
    env.update(
        LONG=f"gcp:secretmanager:projects/{gcp.project}/locations/europe-west1/secrets/eu-only",
        VALS=f"ref+gcpsecrets://{gcp.project}/eu-only?location=europe-west1",
    )

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["LONG"] == probe.read()["env"]["VALS"] == value
    assert gcp.requests()[0].path == \
        f"/v1/projects/{gcp.project}/locations/europe-west1/secrets/eu-only/versions/latest:access"
    assert gcp.count() == 1  # one access (no get: nothing reads dates): both spellings are one read


def test_check_shows_one_canonical_form(gcp, tmp_path, canaries, run_shim):
    gcp.add_version("db", canaries.new())
    env = credential_env(gcp, tmp_path, "metadata")
    env.update(A=f"sm://{gcp.project}/db#3", B=f"gcp:secretmanager:projects/{gcp.project}/secrets/db/versions/3")

    result = run_shim(["check", "--json"], env)

    text = result.stdout
    assert text.count(f"ref+gcpsecrets://{gcp.project}/db?version=3") >= 2
    assert "sm://" not in text and "gcp:secretmanager:" not in text


@pytest.mark.parametrize("state,code,words", [("DISABLED", 77, "is disabled"),
                                              ("DESTROYED", 66, "was destroyed")])
def test_disabled_and_destroyed_versions(gcp, tmp_path, canaries, run_shim, probe, state, code, words):
    gcp.add_version("db", canaries.new())
    gcp.set_state("db", 1, state)
    env = {**credential_env(gcp, tmp_path, "metadata"), "DB": f"sm://{gcp.project}/db#1"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == code
    assert not probe.ran
    assert words in result.stderr and "FAILED_PRECONDITION" in result.stderr


def test_a_destroyed_latest_is_not_told_to_use_latest(gcp, tmp_path, canaries, run_shim, probe):
    """Issue 25: `latest` is the newest version, destroyed or not; a pinned one may use latest."""
    gcp.add_version("db", canaries.new())
    gcp.set_state("db", 1, "DESTROYED")
    env = credential_env(gcp, tmp_path, "metadata")
    latest = exec_probe(run_shim, probe, {**env, "DB": f"sm://{gcp.project}/db"})
    assert latest.returncode == 66
    assert "was destroyed" in latest.stderr and "use latest" not in latest.stderr
    assert "add a new version" in latest.stderr
    pinned = exec_probe(run_shim, probe, {**env, "DB": f"sm://{gcp.project}/db#1"})
    assert pinned.returncode == 66 and "or use latest" in pinned.stderr


def test_missing_secret_and_version_are_66(gcp, tmp_path, canaries, run_shim, probe):
    gcp.add_version("present", canaries.new())
    env = {**credential_env(gcp, tmp_path, "metadata"),
           "MISSING": f"sm://{gcp.project}/absent", "NO_VERSION": f"sm://{gcp.project}/present#9",
           "OPTIONAL": f"ref+gcpsecrets://{gcp.project}/absent?optional=true"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 66
    assert not probe.ran
    assert "MISSING (" in result.stderr and "NO_VERSION (" in result.stderr
    assert "OPTIONAL" not in result.stderr
    assert result.stderr.count("does not exist") == 2


def test_optional_missing_secret_leaves_the_variable_unset(gcp, tmp_path, canaries, run_shim, probe):
    value = canaries.new()
    gcp.add_version("present", value)
    env = {**credential_env(gcp, tmp_path, "metadata"),
           "OPTIONAL": f"ref+gcpsecrets://{gcp.project}/absent?optional=true",
           "PRESENT": f"sm://{gcp.project}/present"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert "OPTIONAL" not in probe.read()["env"] and probe.read()["env"]["PRESENT"] == value


def test_permission_denied_is_77(gcp, tmp_path, canaries, run_shim, probe):
    gcp.add_version("locked", canaries.new())
    gcp.deny(gcp.service_account_email, "locked")
    env = {**credential_env(gcp, tmp_path, "key"), "LOCKED": f"sm://{gcp.project}/locked"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77
    assert "PERMISSION_DENIED" in result.stderr and "secretAccessor" in result.stderr
    assert_no_credentials(gcp, result)


@pytest.mark.parametrize("mistake", ["rotated-away key", "unknown subject token", "no metadata server"])
def test_refused_or_absent_credentials_are_77(gcp, tmp_path, canaries, run_shim, probe, mistake):
    gcp.add_version("db", canaries.new())
    env = {**credential_env(gcp, tmp_path, "metadata"), "DB": f"sm://{gcp.project}/db"}
    if mistake == "rotated-away key":
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(gcp.service_account_key(tmp_path / "old.json"))
        gcp.service_account_key(tmp_path / "new.json")  # the old key is rotated away
    elif mistake == "unknown subject token":
        config = gcp.workload_identity_config(tmp_path / "wif")
        (tmp_path / "wif" / "subject-token").write_text("eyJhbGciOiJSUzI1NiJ9.forged.signature")
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(config)
    else:
        gcp.stop()
        env["SHIM_GCP_ENDPOINT"] = "https://127.0.0.1:9"

    result = exec_probe(run_shim, probe, env, "--deadline", "20s")

    assert result.returncode == 77, result.stderr
    assert not probe.ran
    if mistake == "no metadata server":
        assert "no Google credentials" in result.stderr
    else:
        assert "token request" in result.stderr and "was refused" in result.stderr
        assert gcp.count() == 0
    assert_no_credentials(gcp, result)


@pytest.mark.parametrize("path,service", [("key", "oauth2"), ("federation", "sts"), ("metadata", "metadata")])
def test_a_bad_token_answer_is_77(gcp, tmp_path, canaries, run_shim, probe, path, service):
    gcp.add_version("db", canaries.new())
    gcp.inject_garbage(10, service=service)
    env = {**credential_env(gcp, tmp_path, path), "DB": f"sm://{gcp.project}/db"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 77, result.stderr
    assert not probe.ran
    assert gcp.count() == 0


def test_unusable_credentials_file_is_78(gcp, tmp_path, canaries, run_shim, probe):
    gcp.add_version("db", canaries.new())
    bad = tmp_path / "creds.json"
    bad.write_text(json.dumps({"type": "service_account", "client_email": "x@y"}))
    env = {**credential_env(gcp, tmp_path, "metadata"), "DB": f"sm://{gcp.project}/db",
           "GOOGLE_APPLICATION_CREDENTIALS": str(bad)}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78
    assert f"GOOGLE_APPLICATION_CREDENTIALS ({bad}) is not a usable service_account file" in result.stderr


def test_gcloud_adc_file_comes_before_the_metadata_server(gcp, tmp_path, canaries, run_shim, probe):
    # google-auth always sends a gcloud user's refresh grant to oauth2.googleapis.com, which the
    # double cannot stand in for; the order is what is checked here (no metadata request). The
    # grant goes to a proxy on a closed loopback port, so it never leaves the machine (not even
    # as a DNS lookup: requests leaves the name to the proxy).
    gcp.add_version("db", canaries.new())
    config = tmp_path / "gcloud"
    gcp.authorized_user_file(config / "application_default_credentials.json")
    env = {**credential_env(gcp, tmp_path, "metadata"), "CLOUDSDK_CONFIG": str(config),
           "DB": f"sm://{gcp.project}/db", "HTTPS_PROXY": "http://127.0.0.1:9"}

    result = exec_probe(run_shim, probe, env, "--deadline", "5s")

    assert result.returncode == 69, result.stderr   # the token endpoint cannot be reached
    assert "gcloud application-default" in result.stderr
    assert gcp.count("metadata") == 0 and gcp.count() == 0
    assert_no_credentials(gcp, result)


def test_wrong_checksum_is_65_and_non_utf8_is_65(gcp, tmp_path, canaries, run_shim, probe):
    gcp.add_version("binary", b"\xff\xfe\x00" + canaries.new().encode())
    env = {**credential_env(gcp, tmp_path, "metadata"), "BINARY": f"sm://{gcp.project}/binary"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 65
    assert "UTF-8" in result.stderr

    gcp.add_version("text", canaries.new())
    gcp.corrupt_checksums = True
    env = {**credential_env(gcp, tmp_path, "metadata"), "TEXT": f"sm://{gcp.project}/text"}
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 65
    assert "dataCrc32c" in result.stderr


def test_encoding_option_decodes_a_secret_manager_value(gcp, tmp_path, canaries, run_shim, probe):
    import base64

    plain, inner = canaries.new("plain"), canaries.new("inner")
    gcp.add_version("encoded", base64.b64encode(plain.encode()).decode())
    gcp.add_version("encoded-json", json.dumps({"key": inner.encode().hex()}))
    project = gcp.project
    env = {**credential_env(gcp, tmp_path, "metadata"),
           "WHOLE": f"ref+gcpsecrets://{project}/encoded?encoding=base64",
           "RAW": f"sm://{project}/encoded",
           "KEY": f"ref+gcpsecrets://{project}/encoded-json?encoding=hex#/key"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["WHOLE"] == plain and child["KEY"] == inner
    assert child["RAW"] == base64.b64encode(plain.encode()).decode()
    # encoding is not part of what is read: WHOLE and RAW share one access call.
    assert len(gcp.requests(path=f"/v1/projects/{project}/secrets/encoded/versions/latest:access")) == 1


def test_import_of_a_secret_holding_a_json_object(gcp, tmp_path, canaries, run_shim, probe):
    password, key = canaries.new("pw"), canaries.new("key")
    gcp.add_version("app-config", json.dumps({"db-password": password, "apiKey": key}))
    project = gcp.project
    env = {**credential_env(gcp, tmp_path, "metadata"), "AGAIN": f"sm://{project}/app-config#latest"}

    result = exec_probe(run_shim, probe, env, "--import",
                        f"ref+gcpsecrets://{project}/app-config?prefix=APP_")

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["APP_DB_PASSWORD"] == password and child["APP_APIKEY"] == key
    assert json.loads(child["AGAIN"]) == {"db-password": password, "apiKey": key}
    # The import and the explicit reference (?prefix= is not part of the read) share one call.
    assert gcp.count(path=f"/v1/projects/{project}/secrets/app-config/versions/latest:access") == 1


def test_throttling_and_server_errors_are_retried(gcp, tmp_path, canaries, run_shim, probe):
    value = canaries.new()
    gcp.add_version("busy", value)
    gcp.inject_failure(429, retry_after=0.1)
    gcp.inject_failure(503)
    gcp.inject_failure(504)
    gcp.inject_garbage()  # after the failures: a 200 whose body is not JSON
    env = {**credential_env(gcp, tmp_path, "metadata"), "BUSY": f"sm://{gcp.project}/busy"}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["BUSY"] == value
    assert [r.status for r in gcp.requests() if r.path.endswith(":access")] == [429, 503, 504, 200, 200]


@pytest.mark.parametrize("status", [429, 500, 503, 504])
def test_storm_outlasting_the_deadline_is_69(gcp, tmp_path, canaries, run_shim, probe, status):
    gcp.add_version("hot", canaries.new())
    gcp.inject_failure(status, count=10_000)
    env = {**credential_env(gcp, tmp_path, "metadata"), "HOT": f"sm://{gcp.project}/hot"}

    started = time.monotonic()
    result = exec_probe(run_shim, probe, env, "--deadline", "2s")
    elapsed = time.monotonic() - started

    assert result.returncode == 69
    assert not probe.ran
    assert f"HTTP {status}" in result.stderr
    assert gcp.count() > 2  # retried, not given up at once
    assert elapsed < 2 + 5  # an upper bound only: retries stop at the deadline


def test_slow_body_past_the_deadline_is_69(gcp, tmp_path, canaries, run_shim, probe):
    gcp.add_version("slow", canaries.new())
    gcp.set_slow_body(0.05)
    env = {**credential_env(gcp, tmp_path, "metadata"), "SLOW": f"sm://{gcp.project}/slow"}

    result = exec_probe(run_shim, probe, env, "--deadline", "2s")

    assert result.returncode == 69
    assert not probe.ran


def test_fifty_secrets_one_token_and_fifty_concurrent_reads(gcp, tmp_path, canaries, run_shim, probe):
    count, latency = 50, 1.0
    values = {f"SECRET_{index}": canaries.new(f"p{index}") for index in range(count)}
    for index, value in enumerate(values.values()):
        gcp.add_version(f"parallel-{index}", value)
    gcp.set_latency(latency)
    env = {**credential_env(gcp, tmp_path, "key"),
           **{name: f"sm://{gcp.project}/parallel-{index}" for index, name in enumerate(values)}}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert {name: child[name] for name in values} == values
    reads = [r for r in gcp.requests() if r.path.endswith(":access")]
    assert len(reads) == count
    assert token_requests(gcp) == 1
    # Most access calls were in flight at the same moment (the double's own clock; on a loaded
    # machine the last TLS handshakes may start after the first answers).
    assert peak_overlap(reads) >= count // 2
    assert_no_credentials(gcp, result)


def peak_overlap(requests) -> int:
    moments = sorted([(r.started, 1) for r in requests] + [(r.finished, -1) for r in requests],
                     key=lambda pair: (pair[0], pair[1]))
    peak = current = 0
    for _, step in moments:
        current += step
        peak = max(peak, current)
    return peak


def test_audit_carries_version_and_age_never_the_value(gcp, tmp_path, canaries, run_shim, probe):
    value = canaries.new()
    gcp.add_version("aged", value, created=datetime.now(timezone.utc) - timedelta(days=100))
    env = {**credential_env(gcp, tmp_path, "metadata"), "AGED": f"sm://{gcp.project}/aged"}

    result = exec_probe(run_shim, probe, env, "--log-format", "json", "--max-age", "90d")

    assert result.returncode == 0, result.stderr
    resolved = events(result, "secret.resolved")[0]
    assert resolved["version"] == "1"
    assert 100 * 86400 - 60 <= resolved["age_seconds"] <= 100 * 86400 + 60
    assert events(result, "secret.rotation_overdue")[0]["variable"] == "AGED"


def test_without_the_get_permission_the_age_is_unknown_but_the_read_works(gcp, tmp_path, canaries,
                                                                          run_shim, probe):
    value = canaries.new()
    gcp.add_version("plain", value)
    gcp.allow_get = False  # roles/secretmanager.secretAccessor: access only
    env = {**credential_env(gcp, tmp_path, "metadata"), "PLAIN": f"sm://{gcp.project}/plain"}

    result = exec_probe(run_shim, probe, env, "--log-format", "json")

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PLAIN"] == value
    resolved = events(result, "secret.resolved")[0]
    assert resolved["version"] == "1" and resolved.get("age_seconds") is None


def test_untrusted_certificate_is_78(gcp, tmp_path, canaries, run_shim, probe):
    gcp.add_version("db", canaries.new())
    env = {**credential_env(gcp, tmp_path, "metadata"), "DB": f"sm://{gcp.project}/db"}
    del env["REQUESTS_CA_BUNDLE"]

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78
    assert "not trusted" in result.stderr and "REQUESTS_CA_BUNDLE" in result.stderr


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080", "secretmanager.example", "https://"])
def test_endpoint_must_be_https(gcp, tmp_path, canaries, run_shim, probe, endpoint):
    gcp.add_version("db", canaries.new())
    env = {**credential_env(gcp, tmp_path, "metadata"), "DB": f"sm://{gcp.project}/db",
           "SHIM_GCP_ENDPOINT": endpoint}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78
    assert "SHIM_GCP_ENDPOINT must be an https:// base URL" in result.stderr
    assert gcp.count(None) == 0


def test_not_installed_is_78_with_the_extra(gcp, tmp_path, canaries, run_shim, probe):
    # An interpreter that cannot import google.auth: a path entry that shadows it with nothing.
    shadow = tmp_path / "shadow" / "google"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden', name='google')\n")
    env = {**credential_env(gcp, tmp_path, "metadata"), "DB": f"sm://{gcp.project}/db",
           "PYTHONPATH": str(shadow.parent)}

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 78
    assert "install shim-secrets[gcp]" in result.stderr


def test_watch_picks_up_a_new_latest_version(gcp, tmp_path, canaries, shared_dir):
    first, second = canaries.new("v1"), canaries.new("v2")
    gcp.add_version("rotating", first)
    starts = shared_dir / "starts"
    env = {**BASE_ENV, **credential_env(gcp, tmp_path, "metadata"),
           "SECRET": f"sm://{gcp.project}/rotating"}
    process = subprocess.Popen(
        [sys.executable, "-m", "shim", "exec", "--watch", "300ms", "--",
         "sh", "-c", f'echo "$SECRET" >> {starts}; exec sleep 60'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: starts.exists() and starts.read_text().split() == [first])
        gcp.add_version("rotating", second)
        assert _wait_for(lambda: starts.read_text().split() == [first, second])
        assert token_requests(gcp) == 1  # the token is kept across ticks
    finally:
        os.kill(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    canaries.assert_absent(stdout, stderr, where="shim's output")
    assert "Traceback" not in stderr


def _wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
