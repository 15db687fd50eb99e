"""The images in images/ on a real Docker Engine, with secrets given only at run time.

Each test starts containers from `shim_images` (built once, cached by content hash), hands them
canary secrets the way users would (a mounted secret file, a Vault reference, a placeholder)
and checks what the programs really got: Redis and PostgreSQL servers that accept exactly the
delivered password and refuse others, a web app that reports hashes of what it sees. Every
container's log is checked for canaries; the last test sweeps every image built here (history,
metadata and every layer's files) for them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e.docker_helpers import (SESSION_CANARIES, container_logs, container_state, docker,
                                      start_vault_double, wait_for)

pytestmark = pytest.mark.docker

HERE = Path(__file__).resolve().parent


def secret_dir(tmp_path: Path, files: dict[str, str], *, mode: int = 0o400) -> Path:
    """A directory to mount as /run/secrets; files owned by root, 0400 unless said otherwise
    (shim reads them as root before it drops privileges, the program could not)."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    directory.chmod(0o755)
    for name, value in files.items():
        path = directory / name
        path.write_text(value)
        path.chmod(mode)
    return directory


def sha256_12(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def proc_status(container: str, pid: int = 1) -> dict[str, str]:
    text = docker("exec", container, "cat", f"/proc/{pid}/status").stdout
    return {key: value.strip() for key, _, value in
            (line.partition(":") for line in text.splitlines())}


def proc_read(container: str, name: str) -> str:
    """/proc/1/<name> as PID 1's own user sees it (root in a container lacks CAP_SYS_PTRACE,
    which reading another user's environ needs)."""
    uid = proc_status(container)["Uid"].split()[0]
    return docker("exec", "--user", uid, container, "cat", f"/proc/1/{name}").stdout


def app_get(container: str, path: str) -> dict | None:
    """GET http://127.0.0.1:8080<path> inside the app container; None until it answers."""
    script = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
              "'http://127.0.0.1:8080' + sys.argv[1], timeout=2).read().decode())")
    result = docker("exec", container, "python3", "-c", script, path, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def running_or_fail(container: str) -> None:
    state = container_state(container)
    if not state["Running"]:
        pytest.fail(f"{container} exited {state['ExitCode']}:\n{container_logs(container)}",
                    pytrace=False)


@pytest.fixture(scope="module")
def no_python_image(shim_images, build_image) -> str:
    return build_image("no-python", HERE / "images" / "no-python",
                       build_args={"SHIM_IMAGE": shim_images["bundle"]})


# --------------------------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------------------------

def test_bundle_needs_only_glibc_and_runs_as_any_uid_on_a_read_only_root(
        no_python_image, docker_objects, canaries, tmp_path):
    image = no_python_image
    for path in ("/usr/bin/python3", "/bin/sh", "/bin/bash",
                 "/usr/lib/x86_64-linux-gnu/libz.so.1"):
        absent = docker("run", "--rm", "--entrypoint", "/usr/bin/test", image, "-e", path,
                        check=False)
        assert absent.returncode == 1, f"{path} should not exist in {image}"

    token = canaries.new("token")
    secrets = secret_dir(tmp_path, {"api_token": token + "\n"}, mode=0o444)
    # Any uid (no passwd entry), read-only root, no tmpfs anywhere, no network.
    hardened = ["--read-only", "--user", "12345:12345", "--network", "none",
                "-v", f"{secrets}:/run/secrets:ro"]

    version = docker("run", "--rm", *hardened, "--entrypoint", "/opt/shim/shim", image,
                     "--version")
    assert version.stdout.startswith("shim, version "), version.stdout

    delivered = docker("run", "--rm", *hardened, "-e", "API_TOKEN_FILE=/run/secrets/api_token",
                       image, "/usr/bin/printenv", "API_TOKEN")
    # printenv is the program: its stdout is where the value is meant to arrive. shim's own
    # output (stderr) must not hold it.
    assert delivered.stdout == token + "\n"
    canaries.assert_absent(delivered.stderr, where="shim's output")

    assert docker("run", "--rm", *hardened, image, "/usr/bin/id", "-u").stdout.strip() == "12345"
    # execve in place: the program is PID 1, no bootloader process left above it.
    stat = docker("run", "--rm", *hardened, image, "/usr/bin/cat", "/proc/self/stat").stdout
    assert stat.split()[0] == "1"

    # Nothing is written anywhere, even where it could be: the container's diff holds only the
    # mount point docker made for /run/secrets.
    writable = docker_objects.container("bundle-diff")
    docker("run", "--name", writable, "--user", "12345", "-v", f"{secrets}:/run/secrets:ro",
           "-e", "API_TOKEN_FILE=/run/secrets/api_token", image, "/usr/bin/true")
    changes = set(docker("diff", writable).stdout.splitlines())
    assert changes <= {"C /run", "A /run/secrets"}, changes
    canaries.assert_absent(container_logs(writable), where="the container's log")


def test_bundle_hands_the_program_the_callers_environment(no_python_image):
    """PyInstaller's bootloader re-executes itself with LD_LIBRARY_PATH and _PYI_* set; the
    program must get the environment the container was started with, not that one."""
    for given in ([], ["-e", "LD_LIBRARY_PATH=/usr/local/lib"]):
        options = ["--hostname", "fixed", "-e", "GREETING=hello", *given]
        direct = docker("run", "--rm", *options, "--entrypoint", "/usr/bin/env",
                        no_python_image).stdout
        through_shim = docker("run", "--rm", *options, no_python_image, "/usr/bin/env").stdout
        assert sorted(through_shim.splitlines()) == sorted(direct.splitlines())
        assert "_PYI_" not in through_shim


# --------------------------------------------------------------------------------------------
# Redis: the password from a secret file, never in redis-server's argv
# --------------------------------------------------------------------------------------------

def test_redis_takes_its_password_from_a_secret_file(shim_images, docker_objects, canaries,
                                                      tmp_path):
    password = canaries.new("redis")
    wrong = canaries.new("wrong")
    secrets = secret_dir(tmp_path, {"redis_password": password + "\n"})
    redis = docker_objects.container("redis")
    docker("run", "-d", "--name", redis,
           "-v", f"{secrets / 'redis_password'}:/run/secrets/redis_password:ro",
           "-e", "REDIS_PASSWORD_FILE=/run/secrets/redis_password",  # pragma: allowlist secret
           shim_images["redis"])

    def cli(*args: str, auth: str | None = None) -> str:
        environment = ["-e", f"REDISCLI_AUTH={auth}"] if auth else []
        result = docker("exec", *environment, redis, "redis-cli", *args, check=False)
        return (result.stdout + result.stderr).strip()

    def answers() -> bool:
        running_or_fail(redis)
        return any(word in cli("PING") for word in ("PONG", "NOAUTH"))

    wait_for(answers, timeout=30, what="redis-server to answer",
             on_timeout=lambda: container_logs(redis))
    assert cli("PING", auth=password) == "PONG"
    assert "NOAUTH" in cli("PING")
    assert "WRONGPASS" in cli("PING", auth=wrong)

    # PID 1 is redis-server itself, running as the user redis.
    assert docker("exec", redis, "cat", "/proc/1/comm").stdout.strip() == "redis-server"
    redis_uid = docker("exec", redis, "id", "-u", "redis").stdout.strip()
    assert redis_uid != "0"
    assert proc_status(redis)["Uid"].split() == [redis_uid] * 4
    # The password is in neither its argv (what `ps` shows) nor its environment.
    cmdline = proc_read(redis, "cmdline")
    environ = proc_read(redis, "environ")
    canaries.assert_absent(cmdline, where="redis-server's argv")
    canaries.assert_absent(environ, where="redis-server's environment")
    assert "REDIS_PASSWORD" not in environ
    canaries.assert_absent(container_logs(redis), where="the container's log")


# --------------------------------------------------------------------------------------------
# PostgreSQL: the password from Vault (the double, in its own container)
# --------------------------------------------------------------------------------------------

def test_postgres_takes_its_password_from_vault(shim_images, docker_objects, canaries, tmp_path):
    password = canaries.new("pg")
    wrong = canaries.new("wrong")
    token = canaries.new("vault-token")
    network = docker_objects.network()
    vault = docker_objects.container("vault")
    start_vault_double(shim_images["vault-double"], vault, network, token,
                       {"secret/pg": {"password": password}}, tmp_path)

    postgres = docker_objects.container("postgres")
    docker("run", "-d", "--name", postgres, "--network", network, "--network-alias", "db",
           "-e", "POSTGRES_PASSWORD=vault:secret/data/pg#password",
           "-e", "VAULT_ADDR=http://vault:8200", "-e", f"VAULT_TOKEN={token}",
           shim_images["postgres"])

    def accepting() -> bool:
        running_or_fail(postgres)
        return docker("exec", postgres, "pg_isready", "-q", "-h", "127.0.0.1",
                      check=False).returncode == 0

    wait_for(accepting, timeout=120, what="PostgreSQL to accept connections",
             on_timeout=lambda: container_logs(postgres))

    def psql(secret: str) -> subprocess.CompletedProcess:
        return docker("run", "--rm", "--network", network, "-e", f"PGPASSWORD={secret}",
                      "--entrypoint", "psql", shim_images["postgres"],
                      "-h", "db", "-U", "postgres", "-tAc", "select current_user", check=False)

    accepted = psql(password)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "postgres"
    refused = psql(wrong)
    assert refused.returncode == 2
    assert "password authentication failed" in refused.stderr

    # The server runs as postgres, without the Vault token or address (shim scrubs VAULT_*).
    postgres_uid = docker("exec", postgres, "id", "-u", "postgres").stdout.strip()
    assert proc_status(postgres)["Uid"].split() == [postgres_uid] * 4
    environ = proc_read(postgres, "environ")
    assert "VAULT_" not in environ
    assert token not in environ
    canaries.assert_absent(container_logs(postgres), container_logs(vault), accepted.stderr,
                           refused.stderr, where="the containers' logs")


# --------------------------------------------------------------------------------------------
# The app: every kind of source at once, read-only, non-root; --init; a leftover placeholder
# --------------------------------------------------------------------------------------------

def test_app_sees_every_secret_as_non_root_on_a_read_only_root(shim_images, docker_objects,
                                                                 canaries, tmp_path):
    api_key = canaries.new("openai")
    pg_password = canaries.new("pg") + "/@:"       # must be percent-encoded inside the URL
    redis_password = canaries.new("redis")
    jwt = canaries.new("jwt")
    secrets = secret_dir(tmp_path, {
        "openai_api_key": api_key + "\n",
        "PG_PASSWORD": pg_password,
        "redis_password": redis_password + "\r\n",
        "app.json": json.dumps({"jwt": jwt}),
    })
    app = docker_objects.container("app")
    docker("run", "-d", "--name", app, "--read-only", "-v", f"{secrets}:/run/secrets:ro",
           # _FILE, a placeholder in a URL, Grafana's __FILE, a reference, and a VAULT_ variable
           # that must be scrubbed even though nothing uses it.
           "-e", "OPENAI_API_KEY_FILE=/run/secrets/openai_api_key",
           "-e", "DATABASE_URL=postgresql://app:CHANGEME_PG_PASSWORD@db:5432/app",
           "-e", "REDIS_PASSWORD__FILE=/run/secrets/redis_password",  # pragma: allowlist secret
           "-e", "JWT_SECRET=ref+file:///run/secrets/app.json#/jwt",
           "-e", "VAULT_ADDR=http://vault.invalid:8200",
           shim_images["app"])

    def seen() -> dict | None:
        running_or_fail(app)
        return app_get(app, "/seen")

    report = wait_for(seen, timeout=30, what="the app to answer",
                      on_timeout=lambda: container_logs(app))
    expected = {
        "OPENAI_API_KEY": api_key,
        "DATABASE_URL": f"postgresql://app:{quote(pg_password, safe='')}@db:5432/app",
        "REDIS_PASSWORD": redis_password,
        "JWT_SECRET": jwt,
    }
    for name, value in expected.items():
        assert report["variables"][name] == {"set": True, "length": len(value),
                                             "sha256_12": sha256_12(value)}, name
    assert report["user"] == "app" and report["uid"] != 0 and report["gid"] != 0
    assert report["file_variables"] == []
    assert report["vault_variables"] == []
    # The app is PID 1 (shim exec'd it in place), unprivileged, with no_new_privs set.
    assert docker("exec", app, "cat", "/proc/1/comm").stdout.strip().startswith("python")
    status = proc_status(app)
    assert status["Uid"].split() == [str(report["uid"])] * 4
    assert status["NoNewPrivs"] == "1"
    canaries.assert_absent(container_logs(app), json.dumps(report), where="the app's log")


def test_app_with_init_stops_within_the_grace_period(shim_images, docker_objects):
    app = docker_objects.container("app-init")
    docker("run", "-d", "--name", app, "--read-only", "-e", "SHIM_INIT=1", shim_images["app"])
    wait_for(lambda: running_or_fail(app) or app_get(app, "/health"), timeout=30,
             what="the app to answer", on_timeout=lambda: container_logs(app))
    # PID 1 is shim's supervisor, unprivileged like the app (--init without --watch drops too).
    assert docker("exec", app, "cat", "/proc/1/comm").stdout.strip() == "shim"
    assert proc_status(app)["Uid"].split()[0] != "0"

    started = time.monotonic()
    docker("stop", "-t", "10", app)
    elapsed = time.monotonic() - started
    assert container_state(app)["ExitCode"] == 143       # SIGTERM reached the app: 128 + 15
    assert elapsed < 3, f"docker stop took {elapsed:.1f}s"

    # Without --init the app is PID 1, the kernel drops the SIGTERM it does not handle, and
    # docker has to SIGKILL it when the grace period ends: the contrast that makes --init matter.
    plain = docker_objects.container("app-plain")
    docker("run", "-d", "--name", plain, "--read-only", shim_images["app"])
    wait_for(lambda: running_or_fail(plain) or app_get(plain, "/health"), timeout=30,
             what="the app to answer", on_timeout=lambda: container_logs(plain))
    docker("stop", "-t", "1", plain)
    assert container_state(plain)["ExitCode"] == 137


def test_a_leftover_placeholder_stops_the_container_with_78(shim_images, docker_objects,
                                                             canaries, tmp_path):
    api_key = canaries.new("openai")
    secrets = secret_dir(tmp_path, {"openai_api_key": api_key})
    app = docker_objects.container("app-placeholder")
    run = docker("run", "--name", app, "-v", f"{secrets}:/run/secrets:ro",
                 "-e", "OPENAI_API_KEY_FILE=/run/secrets/openai_api_key",
                 "-e", "JWT_SECRET=CHANGEME_JWT_SECRET", shim_images["app"], check=False)
    assert run.returncode == 78, run.stderr
    log = container_logs(app)
    assert "JWT_SECRET" in log
    assert "app: listening" not in log                   # nothing was started
    canaries.assert_absent(log, run.stdout, run.stderr, where="the container's log")


# --------------------------------------------------------------------------------------------
# Last: no image holds a secret (canaries are only ever given at run time)
# --------------------------------------------------------------------------------------------

def _layers_hold(tags: list[str], needles: list[bytes]) -> list[bytes]:
    """Which needles occur anywhere in `docker save` of the tags (every layer's files)."""
    overlap = max(len(needle) for needle in needles)
    found, tail = set(), b""
    with subprocess.Popen(["docker", "save", *tags], stdout=subprocess.PIPE) as save:
        for block in iter(lambda: save.stdout.read(1 << 22), b""):
            window = tail + block
            found.update(needle for needle in needles if needle in window)
            tail = window[-overlap:]
    assert save.returncode == 0, "docker save failed"
    return sorted(found)


def test_no_image_holds_a_secret(shim_images, no_python_image):
    tags = sorted({*shim_images.values(), no_python_image})
    for tag in tags:
        history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
        metadata = docker("image", "inspect", tag).stdout
        assert "canary-" not in history, f"{tag}: a canary in its history"
        assert "canary-" not in metadata, f"{tag}: a canary in its metadata"
    if SESSION_CANARIES:
        needles = [value.encode() for value in SESSION_CANARIES]
        assert _layers_hold(tags, needles) == [], "a canary in an image layer"
