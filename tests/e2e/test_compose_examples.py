"""The runnable examples in compose-examples/, run the way their READMEs say, on real Docker.

Each test uses the committed files in place (only the secrets, which are never committed, come
from a temporary directory through SECRETS_DIR) with the images tests/e2e/conftest.py builds,
passed in through the variables the compose files take (APP_IMAGE, ...). Every secret is a canary;
what shim, compose and the containers print (`docker compose logs`, `docker service logs`) must
not hold one. Compose projects are named shim-ex-<scenario>-<random> and taken down with
`down -v --remove-orphans`; the swarm test removes its stack and secrets, and leaves the swarm only
when it was the one to create it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.docker_helpers import docker, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "compose-examples"
PREFIX = "shim-ex-"
SECRET_NAMES = ("openai_api_key", "jwt_secret", "redis_password", "pg_password")
APP_VARIABLES = ("OPENAI_API_KEY", "JWT_SECRET", "REDIS_PASSWORD", "DATABASE_URL")

docker_test = pytest.mark.docker


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def fingerprint(value: str) -> str:
    """What the example app's /seen reports for a value: the first 12 hex digits of SHA-256."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def database_url(password: str, host: str = "postgres") -> str:
    # shim percent-encodes a secret placed in a URL's user-info.
    return f"postgresql://app:{urllib.parse.quote(password, safe='')}@{host}:5432/app"


def http_json(url: str, *, data: dict | None = None, headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, headers=headers or {},
                                     data=json.dumps(data).encode() if data is not None else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def compose_environment(**overrides: str) -> dict:
    """The caller's environment without compose settings of its own, plus the overrides."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("COMPOSE_") and name not in ("DOCKER_DEFAULT_PLATFORM",)}
    env.update(overrides)
    return env


class Compose:
    """`docker compose -p <unique> -f ...` for one example; output checked for canaries."""

    def __init__(self, scenario: str, files: list[Path], env: dict, canaries):
        self.project = f"{PREFIX}{scenario}-{secrets.token_hex(4)}"
        self.files = files
        self.env = env
        self.canaries = canaries

    def __call__(self, *args: str, check: bool = True, check_leaks: bool = True,
                 timeout: float = 300) -> subprocess.CompletedProcess:
        command = ["docker", "compose", "-p", self.project]
        for path in self.files:
            command += ["-f", str(path)]
        result = subprocess.run([*command, *args], capture_output=True, text=True,
                                env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)
        if check_leaks:
            self.canaries.assert_absent(result.stdout, result.stderr, where="compose's output")
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n"
                                 f"{self.logs()[-4000:]}")
        return result

    def logs(self) -> str:
        result = self("logs", "--no-color", "--timestamps", check=False, check_leaks=False)
        return result.stdout + result.stderr

    def assert_logs_clean(self) -> None:
        self.canaries.assert_absent(self.logs(), where="the containers' logs")

    def container(self, service: str) -> str:
        name = self("ps", "-a", "-q", service).stdout.strip()
        assert name, f"no container for service {service}"
        return name

    def port(self, service: str, port: int) -> str:
        return self("port", service, str(port)).stdout.strip()

    def down(self) -> None:
        self("down", "-v", "--remove-orphans", "-t", "5", check=False, check_leaks=False,
             timeout=180)
        leftovers = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
                           check=False).stdout.strip()
        assert not leftovers, f"containers of {self.project} left behind"


@pytest.fixture
def compose_projects():
    """Every Compose made through this fixture is taken down at the end of the test."""
    made: list[Compose] = []

    def make(scenario: str, files: list[Path], env: dict, canaries) -> Compose:
        made.append(Compose(scenario, files, env, canaries))
        return made[-1]

    yield make
    for project in reversed(made):
        project.down()


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def host_pids(container: str) -> list[int]:
    """Every process of a container, as host PIDs (we run as root on the Docker host)."""
    output = docker("top", container, "-eo", "pid").stdout.split()
    return [int(pid) for pid in output[1:]]


def process_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def assert_unprivileged(container: str, *, no_new_privs: bool = True) -> None:
    """Every process runs with a non-zero uid and no effective capability."""
    pids = host_pids(container)
    assert pids, f"{container} runs no process"
    for pid in pids:
        status = process_status(pid)
        uids = status["Uid"].split()
        assert "0" not in uids, f"{container}: pid {pid} ({status['Name']}) has uid 0: {uids}"
        assert int(status["CapEff"], 16) == 0, f"{container}: pid {pid} keeps capabilities"
        if no_new_privs:
            assert status["NoNewPrivs"] == "1", f"{container}: pid {pid} lacks no_new_privs"


def image_user_ids(image: str, user: str) -> tuple[int, int]:
    output = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image,
                    "-u", user).stdout.strip()
    uid = int(output)
    gid = int(docker("run", "--rm", "--network", "none", "--entrypoint", "id", image,
                     "-g", user).stdout.strip())
    return uid, gid


def parse_time(text: str) -> datetime:
    # Docker's RFC 3339 with nanoseconds; datetime takes microseconds.
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00")


def write_secret_files(directory: Path, values: dict[str, str]) -> Path:
    """As the READMEs say: a 0700 directory, files readable by the services' non-root users.

    Compose bind-mounts file secrets as they are (it ignores uid/gid/mode without Swarm), so a
    service running as its own non-root user can only read a file others may read; the 0700
    directory keeps other users of the host out.
    """
    directory.mkdir(mode=0o700)
    for name, value in values.items():
        path = directory / name
        path.write_text(value)
        path.chmod(0o444)
    return directory


@pytest.fixture(scope="session")
def example_images(shim_images) -> dict[str, str]:
    """The variables every example takes for its images, set to the locally built tags."""
    app_uid, app_gid = image_user_ids(shim_images["app"], "app")
    return {
        "APP_IMAGE": shim_images["app"],
        "REDIS_IMAGE": shim_images["redis"],
        "POSTGRES_IMAGE": shim_images["postgres"],
        "SHIM_IMAGE": shim_images["bundle"],
        "VAULT_DOUBLE_IMAGE": shim_images["vault-double"],
        "APP_UID": str(app_uid),
        "APP_GID": str(app_gid),
        "APP_PORT": "0",                       # a free loopback port, read with `compose port`
    }


# --------------------------------------------------------------------------------------------
# Kubernetes: every manifest validates offline (no cluster, no network)
# --------------------------------------------------------------------------------------------

KUBERNETES_MANIFESTS = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))


@pytest.mark.parametrize("version", ["1.30", "latest"])
@pytest.mark.parametrize("manifest", KUBERNETES_MANIFESTS, ids=lambda path: path.name)
def test_kubernetes_manifest_validates(manifest, version):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (the test extra has it)")
    import yaml
    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    documents = [document for document in yaml.safe_load_all(manifest.read_text()) if document]
    assert documents, f"{manifest.name} holds no resource"
    for document in documents:
        # strict: a misspelt or misplaced field fails instead of being ignored by the cluster.
        kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_manifests_cover_both_patterns():
    import yaml
    resources = {}
    for manifest in KUBERNETES_MANIFESTS:
        for document in yaml.safe_load_all(manifest.read_text()):
            resources[manifest.name] = document
    entrypoint = resources["entrypoint-deployment.yaml"]["spec"]["template"]["spec"]
    assert "initContainers" not in entrypoint
    assert "command" not in entrypoint["containers"][0], "pattern 1 uses the image's ENTRYPOINT"
    rendered = resources["init-container-deployment.yaml"]["spec"]["template"]["spec"]
    init, sidecar = rendered["initContainers"]
    assert init["command"][1] == "render" and "--watch" not in init["command"]
    assert sidecar["restartPolicy"] == "Always" and "--watch" in sidecar["command"]
    volume = next(v for v in rendered["volumes"] if v["name"] == "app-secrets")
    assert volume["emptyDir"]["medium"] == "Memory"
    for spec in (entrypoint, rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]


# --------------------------------------------------------------------------------------------
# No secret in any committed example file
# --------------------------------------------------------------------------------------------

def test_examples_hold_no_secret(run_shim):
    result = run_shim(["scan", "--untracked", str(EXAMPLES)], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# local-dev: shim dev-init, then shim run -- docker compose ...
# --------------------------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           "-c", "init.defaultBranch=main", *args], cwd=repo,
                          capture_output=True, text=True, timeout=60)


def _dev_env_values(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


@docker_test
def test_local_dev(tmp_path, run_shim, canaries, example_images, compose_projects):
    # A copy of the example inside a fresh git repository, as a newcomer's clone would be.
    repo = tmp_path / "repo"
    project_dir = repo / "compose-examples" / "local-dev"
    shutil.copytree(EXAMPLES / "local-dev", project_dir,
                    ignore=shutil.ignore_patterns(".secrets", "dev.env"))
    assert _git(repo, "init", "-q").returncode == 0
    _git(repo, "add", "-A")
    assert _git(repo, "commit", "-q", "-m", "example").returncode == 0

    docker_env = {name: os.environ[name] for name in ("HOME", "DOCKER_CONFIG", "DOCKER_HOST")
                  if name in os.environ}
    result = run_shim(["dev-init"], cwd=project_dir, env=docker_env)
    assert result.returncode == 0, result.stderr
    dev_env = project_dir / ".secrets" / "dev.env"
    assert dev_env.stat().st_mode & 0o777 == 0o600
    values = _dev_env_values(dev_env)
    assert set(values) == {"OPENAI_API_KEY", "PG_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"}
    canaries.values.extend(values.values())          # from now on, a leak of any is a failure
    canaries.assert_absent(result.stdout, result.stderr, where="dev-init's output")
    assert _git(repo, "check-ignore", "-q", str(dev_env)).returncode == 0, "dev.env not ignored"
    assert _git(repo, "status", "--porcelain").stdout.strip() == "", "dev-init left tracked changes"

    # 1. `docker compose config` through shim run: the values reach every service. Compose
    #    writes the configuration (which holds them) to a file, never to shim's output.
    env = {**docker_env, **{k: v for k, v in example_images.items() if k.endswith("_IMAGE")},
           "APP_PORT": "0"}
    project = compose_projects("local-dev", [project_dir / "compose.yaml"],
                               compose_environment(**env), canaries)
    config_file = tmp_path / "config.json"
    result = run_shim(["run", "--", "docker", "compose", "-p", project.project, "config",
                       "--format", "json", "--output", str(config_file)], cwd=project_dir, env=env)
    assert result.returncode == 0, result.stderr
    services = json.loads(config_file.read_text())["services"]
    config_file.unlink()
    app = services["app"]["environment"]
    assert app["OPENAI_API_KEY"] == values["OPENAI_API_KEY"]
    assert app["REDIS_PASSWORD"] == values["REDIS_PASSWORD"]
    assert app["JWT_SECRET"] == values["JWT_SECRET"]
    assert app["DATABASE_URL"] == database_url(values["PG_PASSWORD"])
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == values["PG_PASSWORD"]
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == values["REDIS_PASSWORD"]
    for service in services.values():
        for value in (service.get("environment") or {}).values():
            assert "CHANGEME" not in (value or "")

    # 2. The README's `shim run -- docker compose up`, detached here: everything starts with the
    #    dev.env values, which the app reports by fingerprint and Redis/PostgreSQL accept.
    result = run_shim(["run", "--", "docker", "compose", "-p", project.project, "up", "-d",
                       "--wait"], cwd=project_dir, env=env, timeout=300)
    assert result.returncode == 0, result.stderr + project.logs()[-3000:]
    seen = http_json(f"http://{project.port('app', 8080)}/seen")
    for name in ("OPENAI_API_KEY", "REDIS_PASSWORD", "JWT_SECRET"):
        assert seen["variables"][name]["sha256_12"] == fingerprint(values[name]), name
    assert seen["variables"]["DATABASE_URL"]["sha256_12"] == fingerprint(
        database_url(values["PG_PASSWORD"]))
    assert seen["uid"] != 0
    redis = project("exec", "-T", "-e", f"REDISCLI_AUTH={values['REDIS_PASSWORD']}", "redis",
                    "redis-cli", "ping")
    assert redis.stdout.strip() == "PONG"
    project.assert_logs_clean()

    # 3. A key missing from dev.env: shim run names service and variable, exits 78, starts nothing.
    kept = [line for line in dev_env.read_text().splitlines(keepends=True)
            if not line.startswith("REDIS_PASSWORD=")]
    dev_env.write_text("".join(kept))
    refused = compose_projects("local-dev-refused", [project_dir / "compose.yaml"],
                               compose_environment(**env), canaries)
    result = run_shim(["run", "--", "docker", "compose", "-p", refused.project, "up", "-d"],
                      cwd=project_dir, env=env)
    assert result.returncode == 78, result.stderr
    assert "service app: variable REDIS_PASSWORD still holds a placeholder" in result.stderr
    assert "service redis: variable REDIS_PASSWORD still holds a placeholder" in result.stderr
    assert "OPENAI_API_KEY" not in result.stderr
    assert docker("ps", "-aq", "--filter",
                  f"label=com.docker.compose.project={refused.project}").stdout.strip() == ""


# --------------------------------------------------------------------------------------------
# docker-secrets: _FILE variables, compose secrets, hardened services, network split
# --------------------------------------------------------------------------------------------

GATEWAY_PROBE = """
import json, socket
result = {}
for host, port in (("app", 8080), ("redis", 6379), ("postgres", 5432)):
    try:
        socket.create_connection((host, port), timeout=3).close()
        result[host] = "connected"
    except socket.gaierror:
        result[host] = "unknown name"
    except OSError as error:
        result[host] = type(error).__name__
print(json.dumps(result))
"""


@docker_test
def test_docker_secrets(tmp_path, canaries, example_images, compose_projects):
    values = {name: canaries.new(name) for name in SECRET_NAMES}
    secrets_dir = write_secret_files(tmp_path / "secrets", values)
    project = compose_projects("docker-secrets", [EXAMPLES / "docker-secrets" / "compose.yaml"],
                               compose_environment(**example_images, SECRETS_DIR=str(secrets_dir)),
                               canaries)
    project("up", "-d", "--wait", timeout=300)

    # The app got every variable from its secret file, as a non-root user, with no *_FILE left.
    seen = http_json(f"http://{project.port('app', 8080)}/seen")
    expected = {"OPENAI_API_KEY": values["openai_api_key"], "JWT_SECRET": values["jwt_secret"],
                "REDIS_PASSWORD": values["redis_password"],
                "DATABASE_URL": database_url(values["pg_password"])}
    for name, value in expected.items():
        assert seen["variables"][name]["sha256_12"] == fingerprint(value), name
    assert seen["uid"] != 0 and seen["user"] == "app"
    assert seen["file_variables"] == [] and seen["vault_variables"] == []

    # Seed section 7 on every service: non-root user, read-only root, no capabilities,
    # no-new-privileges; and so for every process they run.
    for service in ("app", "redis", "postgres"):
        container = project.container(service)
        details = inspect(container)
        assert details["Config"]["User"] not in ("", "root", "0"), service
        host_config = details["HostConfig"]
        assert host_config["ReadonlyRootfs"] is True, service
        assert host_config["CapDrop"] == ["ALL"] and not host_config["CapAdd"], service
        assert "no-new-privileges:true" in host_config["SecurityOpt"], service
        assert_unprivileged(container)

    # Redis and PostgreSQL accept the passwords only shim delivered, and refuse without.
    ping = project("exec", "-T", "-e", f"REDISCLI_AUTH={values['redis_password']}", "redis",
                   "redis-cli", "ping")
    assert ping.stdout.strip() == "PONG"
    assert "NOAUTH" in project("exec", "-T", "redis", "redis-cli", "ping").stdout
    query = ["psql", "-h", "127.0.0.1", "-U", "app", "-d", "postgres", "-tAc", "select 42"]
    accepted = project("exec", "-T", "-e", f"PGPASSWORD={values['pg_password']}", "postgres",
                       *query)
    assert accepted.stdout.strip() == "42"
    refused = project("exec", "-T", "-e", "PGPASSWORD=wrong", "postgres", *query, check=False)
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr

    # Network split: the internal network has no route out and holds Redis and PostgreSQL
    # alone with the app; whatever sits on the gateway network (a reverse proxy, say) reaches
    # the app but cannot even resolve the data stores.
    internal, gateway = f"{project.project}_internal", f"{project.project}_gateway"
    assert json.loads(docker("network", "inspect", internal).stdout)[0]["Internal"] is True
    for service, networks in (("app", {internal, gateway}), ("redis", {internal}),
                              ("postgres", {internal})):
        attached = set(inspect(project.container(service))["NetworkSettings"]["Networks"])
        assert attached == networks, (service, attached)
    probe = docker("run", "--rm", "--name", f"{project.project}-gateway-probe",
                   "--network", gateway, "--read-only", "--cap-drop", "ALL", "--user", "65534",
                   "--entrypoint", "python3", example_images["APP_IMAGE"], "-c", GATEWAY_PROBE)
    assert json.loads(probe.stdout) == {"app": "connected", "redis": "unknown name",
                                        "postgres": "unknown name"}
    from_app = project("exec", "-T", "app", "python3", "-c", GATEWAY_PROBE)
    assert json.loads(from_app.stdout) == {"app": "connected", "redis": "connected",
                                           "postgres": "connected"}
    project.assert_logs_clean()


# --------------------------------------------------------------------------------------------
# vault-init: shim render as an init container into a tmpfs, the sidecar with --watch
# --------------------------------------------------------------------------------------------

@docker_test
def test_vault_init_and_sidecar(tmp_path, canaries, example_images, compose_projects):
    token = canaries.new("vault-token")
    pg_password = canaries.new("pg") + " p@ss/word:1"     # reserved characters: percent-encoded
    canaries.values.append(pg_password)
    stored = {"openai_api_key": canaries.new("openai"), "jwt_secret": canaries.new("jwt"),
              "redis_password": canaries.new("redis"), "pg_password": pg_password}
    secrets_dir = write_secret_files(tmp_path / "secrets", {
        "vault_token": token,
        "vault_seed.json": json.dumps({"secret/app": stored}),
    })
    directory = EXAMPLES / "vault-init"
    env = compose_environment(**example_images, SECRETS_DIR=str(secrets_dir),
                              RENDER_WATCH="1s", APP_WATCH="1s")
    project = compose_projects("vault-init", [directory / "compose.yaml",
                                              directory / "compose.sidecar.yaml",
                                              directory / "compose.test.yaml"], env, canaries)
    project("up", "-d", "--wait", "app", "render-watch", timeout=300)

    # The app started only after render had exited 0.
    render = inspect(project.container("render"))["State"]
    app_container = project.container("app")
    app_state = inspect(app_container)["State"]
    assert render["Status"] == "exited" and render["ExitCode"] == 0
    assert parse_time(render["FinishedAt"]) <= parse_time(app_state["StartedAt"])

    # One file per secret in a tmpfs, mode 0400, owned by the app's user.
    uid, gid = example_images["APP_UID"], example_images["APP_GID"]
    listing = project("exec", "-T", "app", "stat", "-c", "%a %u %g %n", "/run/app-secrets",
                      *[f"/run/app-secrets/{name}" for name in APP_VARIABLES]).stdout.splitlines()
    assert listing[0] == f"700 {uid} {gid} /run/app-secrets"
    assert listing[1:] == [f"400 {uid} {gid} /run/app-secrets/{name}" for name in APP_VARIABLES]
    mounts = project("exec", "-T", "app", "cat", "/proc/mounts").stdout
    assert any(line.split()[1:3] == ["/run/app-secrets", "tmpfs"] for line in mounts.splitlines())

    # The app got the values, holds no Vault credential and is not on Vault's network.
    port = project.port("app", 8080)
    expected = {"OPENAI_API_KEY": stored["openai_api_key"], "JWT_SECRET": stored["jwt_secret"],
                "REDIS_PASSWORD": stored["redis_password"], "DATABASE_URL": database_url(pg_password)}
    seen = http_json(f"http://{port}/seen")
    for name, value in expected.items():
        assert seen["variables"][name]["sha256_12"] == fingerprint(value), name
    assert seen["uid"] == int(uid) and seen["file_variables"] == [] and seen["vault_variables"] == []
    assert set(inspect(app_container)["NetworkSettings"]["Networks"]) == {
        f"{project.project}_gateway"}
    assert_unprivileged(app_container)

    # Rotation: a new KV v2 version in Vault → render-watch rewrites the file → the app's shim
    # restarts the program with the new value, inside the same container.
    rotated = canaries.new("openai-rotated")
    vault = project.port("vault", 8200)
    http_json(f"http://{vault}/v1/secret/data/app", headers={"X-Vault-Token": token},
              data={"data": {**stored, "openai_api_key": rotated}})

    def file_rotated():
        read = project("exec", "-T", "app", "cat", "/run/app-secrets/OPENAI_API_KEY",
                       check=False, check_leaks=False)
        return read.returncode == 0 and read.stdout == rotated
    wait_for(file_rotated, timeout=30, what="render-watch to rewrite OPENAI_API_KEY",
             on_timeout=project.logs)

    def app_rotated():
        try:
            variables = http_json(f"http://{port}/seen")["variables"]
        except OSError:
            return False            # the program is being restarted
        return variables["OPENAI_API_KEY"]["sha256_12"] == fingerprint(rotated)
    wait_for(app_rotated, timeout=30, what="the app to run with the rotated OPENAI_API_KEY",
             on_timeout=project.logs)
    after = inspect(app_container)["State"]
    assert after["StartedAt"] == app_state["StartedAt"] and after["Running"], \
        "the container restarted: shim should have restarted the program inside it"
    unchanged = http_json(f"http://{port}/seen")["variables"]
    assert unchanged["JWT_SECRET"]["sha256_12"] == fingerprint(stored["jwt_secret"])
    project.assert_logs_clean()


# --------------------------------------------------------------------------------------------
# swarm: external secrets from `docker secret create`, delivered through _FILE
# --------------------------------------------------------------------------------------------

def _swarm_state() -> tuple[str, bool]:
    info = json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)
    return info.get("LocalNodeState", ""), bool(info.get("ControlAvailable"))


@pytest.fixture
def swarm_manager(docker_ready):
    """This node as a swarm manager: joined only when it is in no swarm yet, and then left."""
    state, manager = _swarm_state()
    created = False
    if state == "active":
        if not manager:
            pytest.skip("this node is a swarm worker, not a manager: cannot deploy a stack")
    else:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1", timeout=120)
        created = True
    yield
    if created:
        docker("swarm", "leave", "--force", check=False, timeout=120)
        docker("network", "rm", "docker_gwbridge", check=False)


def _stack_gone(stack: str) -> bool:
    label = f"label=com.docker.stack.namespace={stack}"
    return not (docker("ps", "-aq", "--filter", label, check=False).stdout.strip()
                or docker("network", "ls", "-q", "--filter", label, check=False).stdout.strip())


@docker_test
def test_swarm_stack(canaries, example_images, swarm_manager):
    stack = f"{PREFIX}swarm-{secrets.token_hex(4)}"
    values = {name: canaries.new(name) for name in SECRET_NAMES}
    env = compose_environment(**{k: v for k, v in example_images.items() if k.endswith("_IMAGE")})
    created = []
    try:
        for name, value in values.items():
            secret = f"{stack}-{name}"
            docker("secret", "create", "--label", "shim-ex=1", secret, "-", input=value)
            created.append(secret)
            env[f"{name.upper()}_SECRET"] = secret
        deploy = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never",
                                 "-c", str(EXAMPLES / "swarm" / "stack.yaml"), stack],
                                capture_output=True, text=True, env=env, timeout=120)
        assert deploy.returncode == 0, deploy.stderr
        canaries.assert_absent(deploy.stdout, deploy.stderr, where="stack deploy's output")

        def healthy(service):
            return docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={stack}_{service}",
                          "--filter", "health=healthy", check=False).stdout.strip()

        def tasks():
            return docker("stack", "ps", "--no-trunc", stack, check=False).stdout
        app = wait_for(lambda: healthy("app"), timeout=120, what="the app task to be healthy",
                       on_timeout=tasks, interval=1)
        redis = wait_for(lambda: healthy("redis"), timeout=60, what="the redis task to be healthy",
                         on_timeout=tasks, interval=1)

        seen = json.loads(docker("exec", app, "python3", "-c",
                                 "import urllib.request; print(urllib.request.urlopen("
                                 "'http://127.0.0.1:8080/seen').read().decode())").stdout)
        expected = {"OPENAI_API_KEY": values["openai_api_key"], "JWT_SECRET": values["jwt_secret"],
                    "REDIS_PASSWORD": values["redis_password"],
                    "DATABASE_URL": database_url(values["pg_password"], host="postgres.internal")}
        for name, value in expected.items():
            assert seen["variables"][name]["sha256_12"] == fingerprint(value), name
        assert seen["uid"] != 0 and seen["file_variables"] == [] and seen["vault_variables"] == []
        # The secrets are root's alone (0400); shim read them as root, then dropped to app.
        modes = docker("exec", app, "stat", "-c", "%a %u %n",
                       *[f"/run/secrets/{name}" for name in SECRET_NAMES]).stdout.splitlines()
        assert modes == [f"400 0 /run/secrets/{name}" for name in SECRET_NAMES]
        for container in (app, redis):
            # The supervisor (shim --init) dropped too; no_new_privs is set for the programs.
            assert_unprivileged(container, no_new_privs=False)
        ping = docker("exec", "-e", f"REDISCLI_AUTH={values['redis_password']}", redis,
                      "redis-cli", "ping")
        assert ping.stdout.strip() == "PONG"

        for service in ("app", "redis"):
            logs = docker("service", "logs", "--raw", f"{stack}_{service}", check=False)
            canaries.assert_absent(logs.stdout, logs.stderr, where=f"{service}'s logs")
    finally:
        docker("stack", "rm", stack, check=False, timeout=120)
        # `stack rm` returns before the tasks and networks are gone; secrets in use cannot go.
        wait_for(lambda: _stack_gone(stack), timeout=120, what=f"stack {stack} to be removed",
                 interval=0.5)
        for secret in created:
            docker("secret", "rm", secret, check=False)
