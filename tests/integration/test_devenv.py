"""`shim dev-init` and `shim run` as real processes, in real git repositories.

The compose check runs the real `docker compose config`; the passing cases
create real containers (`up --no-start`, from an empty image imported here,
since no registry can be reached) and read their environment back with
`docker inspect`. Every project is taken down again.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile

import pytest

from shim.commands.devenv import compose_call
from tests.conftest import unavailable

URLSAFE = re.compile(r"[A-Za-z0-9_-]{43,}")


# --- helpers ---------------------------------------------------------------------

def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=shim-test",
                           "-c", "user.email=shim-test@example.invalid", *args],
                          check=True, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path):
    """An empty git work tree (tmp_path lies outside any other repository)."""
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    return project


def write_dev_env(project, entries: dict, *, ignore=True):
    directory = project / ".secrets"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / "dev.env"
    path.write_text("".join(f"{name}={value}\n" for name, value in entries.items()))
    path.chmod(0o600)
    if ignore:
        (project / ".gitignore").write_text(".secrets/\n**/dev.env\n")
    return path


def read_env_file(path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


COMPOSE = """\
services:
  api:
    image: {image}
    environment:
      POSTGRES_PASSWORD: ${{PG_PASSWORD:-CHANGEME_PG_PASSWORD}}
      DATABASE_URL: postgresql://app:${{PG_PASSWORD:-CHANGEME_PG_PASSWORD}}@db/app
      JWT_SECRET: ${{JWT_SECRET:-CHANGEME}}
  worker:
    image: {image}
    environment:
      - REDIS_PASSWORD=${{REDIS_PASSWORD:-CHANGEME_REDIS_PASSWORD}}
"""

ENV_EXAMPLE = """\
# copy nothing from here: shim dev-init writes .secrets/dev.env
API_KEY=CHANGEME
DATABASE_URL=postgresql://app:CHANGEME_PG_PASSWORD@db/app
LOG_LEVEL=info
"""


def dev_init(run_shim, cwd, *extra):
    result = run_shim(["dev-init", *extra], cwd=cwd)
    project = cwd / extra[-1] if extra else cwd
    values = read_env_file(project / ".secrets" / "dev.env")
    for value in values.values():   # what dev-init wrote must never be printed either
        assert value not in result.stdout and value not in result.stderr
    return result, values


# --- dev-init --------------------------------------------------------------------

def test_dev_init_writes_a_strong_value_for_every_placeholder(run_shim, repo):
    (repo / "compose.yaml").write_text(COMPOSE.format(image="app"))
    (repo / ".env.example").write_text(ENV_EXAMPLE)
    result, values = dev_init(run_shim, repo)
    assert result.returncode == 0, result.stderr
    assert set(values) == {"PG_PASSWORD", "JWT_SECRET", "REDIS_PASSWORD", "API_KEY"}
    assert len(set(values.values())) == len(values)
    for value in values.values():
        assert URLSAFE.fullmatch(value)   # 32 random bytes: 43 URL-safe characters
    secrets_dir = repo / ".secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((secrets_dir / "dev.env").stat().st_mode) == 0o600
    assert "added 4 keys to .secrets/dev.env: PG_PASSWORD, JWT_SECRET, REDIS_PASSWORD, API_KEY; kept 0" \
        in result.stdout
    assert "scanned compose.yaml, .env.example" in result.stdout
    gitignore = (repo / ".gitignore").read_text().splitlines()
    assert gitignore == [".secrets/", "**/dev.env"]
    assert git(repo, "check-ignore", "-q", ".secrets/dev.env").returncode == 0


def test_dev_init_again_keeps_every_value_and_adds_only_new_keys(run_shim, repo):
    (repo / "compose.yaml").write_text(COMPOSE.format(image="app"))
    (repo / ".gitignore").write_text("node_modules/")   # no trailing newline
    _, first = dev_init(run_shim, repo)
    dev_env = repo / ".secrets" / "dev.env"
    with dev_env.open("a") as stream:
        stream.write("# mine\nMY_OWN=kept-as-is\n")
    (repo / "docker-compose.override.yml").write_text(
        "services:\n  api:\n    environment:\n      STRIPE_KEY: ${STRIPE_KEY:-CHANGEME_STRIPE_KEY}\n")
    result, second = dev_init(run_shim, repo)
    assert result.returncode == 0, result.stderr
    assert "added 1 key to .secrets/dev.env: STRIPE_KEY; kept 3" in result.stdout
    assert {k: second[k] for k in first} == first
    assert second["MY_OWN"] == "kept-as-is" and "# mine\n" in dev_env.read_text()
    assert set(second) == set(first) | {"MY_OWN", "STRIPE_KEY"}
    before = dev_env.read_bytes()
    result, _ = dev_init(run_shim, repo)
    assert "added 0 keys to .secrets/dev.env; kept 4" in result.stdout
    assert "gitignore" not in result.stdout
    assert dev_env.read_bytes() == before
    assert (repo / ".gitignore").read_text() == "node_modules/\n.secrets/\n**/dev.env\n"


def test_dev_init_fills_a_copied_example_in_place(run_shim, repo, canaries):
    """KEY= and KEY=CHANGEME hold no value yet; every other line, placeholders included, stays."""
    (repo / ".env.example").write_text(ENV_EXAMPLE)
    (repo / ".secrets").mkdir(mode=0o700)
    kept = canaries.new("kept")
    copied = ENV_EXAMPLE + f"PG_PASSWORD=\nexport OLD_TOKEN={kept}\n"
    (repo / ".secrets" / "dev.env").write_text(copied)
    result, values = dev_init(run_shim, repo)
    assert result.returncode == 0, result.stderr
    text = (repo / ".secrets" / "dev.env").read_text()
    assert "DATABASE_URL=postgresql://app:CHANGEME_PG_PASSWORD@db/app\n" in text
    assert f"export OLD_TOKEN={kept}\n" in text
    assert text.startswith("# copy nothing from here")
    assert URLSAFE.fullmatch(values["API_KEY"]) and URLSAFE.fullmatch(values["PG_PASSWORD"])
    assert text.index("API_KEY=") < text.index("DATABASE_URL=")   # filled where they stood
    assert text.count("PG_PASSWORD=") == 1 and text.index("PG_PASSWORD=") < text.index("OLD_TOKEN")
    assert "added 2 keys to .secrets/dev.env: API_KEY, PG_PASSWORD; kept 0" in result.stdout


def test_dev_init_refuses_a_dev_env_git_tracks(run_shim, repo):
    (repo / "compose.yaml").write_text(COMPOSE.format(image="app"))
    dev_env = write_dev_env(repo, {"PG_PASSWORD": "x"}, ignore=False)
    git(repo, "add", ".secrets/dev.env")
    before = dev_env.read_bytes()
    result = run_shim(["dev-init"], cwd=repo)
    assert result.returncode == 78
    assert ".secrets/dev.env is tracked by git; remove it from the index with git rm --cached " \
           ".secrets/dev.env" in result.stderr
    assert dev_env.read_bytes() == before
    assert not (repo / ".gitignore").exists()


def test_dev_init_names_a_bare_changeme_it_cannot_key(run_shim, repo):
    (repo / "compose.yaml").write_text("services:\n  api:\n    command: [serve, --token, CHANGEME]\n")
    result, values = dev_init(run_shim, repo)
    assert result.returncode == 0, result.stderr
    assert values == {}
    assert "compose.yaml:3: a bare CHANGEME with no variable name" in result.stderr


# --- run: dev.env, git guards, privileges ---------------------------------------

def test_run_loads_dev_env_and_resolves_placeholders_from_it(run_shim, repo, probe, canaries):
    password, token = canaries.new("pg"), canaries.new("token")
    write_dev_env(repo, {"PG_PASSWORD": password, "API_TOKEN": token})
    result = run_shim(["run", "--", *probe.argv], {
        "DATABASE_URL": "postgresql://app:CHANGEME_PG_PASSWORD@db/app"}, cwd=repo)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    env = probe.read()["env"]
    assert env["PG_PASSWORD"] == password and env["API_TOKEN"] == token
    assert env["DATABASE_URL"] == f"postgresql://app:{password}@db/app"
    assert probe.read()["uid"] == os.getuid()


def test_an_explicit_env_file_wins_over_dev_env(run_shim, repo, probe, canaries, tmp_path):
    write_dev_env(repo, {"PG_PASSWORD": canaries.new("dev")})
    override = canaries.new("override")
    explicit = tmp_path / "ci.env"
    explicit.write_text(f"PG_PASSWORD={override}\n")
    result = run_shim(["run", "--env-file", str(explicit), "--", *probe.argv], cwd=repo)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PG_PASSWORD"] == override


@pytest.mark.parametrize("how", ["committed", "staged"])
def test_run_refuses_a_dev_env_git_tracks(run_shim, repo, probe, canaries, how):
    write_dev_env(repo, {"PG_PASSWORD": canaries.new()}, ignore=False)
    git(repo, "add", ".secrets/dev.env")
    if how == "committed":
        git(repo, "commit", "-q", "-m", "oops")
    result = run_shim(["run", "--", *probe.argv], cwd=repo)
    assert result.returncode == 78
    lines = result.stderr.splitlines()
    assert lines == ["shim: error: .secrets/dev.env is tracked by git; remove it from the index with "
                     "git rm --cached .secrets/dev.env, add .secrets/ to .gitignore, and replace "
                     "every value it held if it was ever pushed"]
    assert not probe.ran


def test_run_refuses_a_tracked_dev_env_given_with_env_file(run_shim, repo, probe, canaries):
    (repo / "config").mkdir()
    path = repo / "config" / "dev.env"
    path.write_text(f"PG_PASSWORD={canaries.new()}\n")
    git(repo, "add", "config/dev.env")
    result = run_shim(["run", "--env-file", "config/dev.env", "--", *probe.argv], cwd=repo)
    assert result.returncode == 78
    assert "config/dev.env is tracked by git" in result.stderr
    assert not probe.ran


def test_run_warns_when_secrets_are_not_ignored(run_shim, repo, probe, canaries):
    value = canaries.new()
    write_dev_env(repo, {"PG_PASSWORD": value}, ignore=False)
    result = run_shim(["run", "--", *probe.argv], cwd=repo)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "shim: warning: .secrets/dev.env is not ignored by git: add .secrets/ and **/dev.env to "
        ".gitignore (shim dev-init does)"]
    assert probe.read()["env"]["PG_PASSWORD"] == value


def test_run_outside_git_and_without_dev_env_is_plain(run_shim, tmp_path, probe, canaries):
    value = canaries.new()
    result = run_shim(["run", "--", *probe.argv], {"TOKEN": value}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert probe.read()["env"]["TOKEN"] == value


@pytest.mark.parametrize("args", [["--user", "nobody"], ["--init"], ["--watch", "5m"]])
def test_run_rejects_what_would_change_the_process(run_shim, tmp_path, probe, args):
    result = run_shim(["run", *args, "--", *probe.argv], cwd=tmp_path)
    assert result.returncode == 64
    assert f"run does not take {args[0]}" in result.stderr
    assert not probe.ran


def test_run_rejects_user_from_the_environment(run_shim, tmp_path, probe):
    result = run_shim(["run", "--", *probe.argv], {"SHIM_USER": "nobody"}, cwd=tmp_path)
    assert result.returncode == 64
    assert not probe.ran


def test_run_is_all_or_nothing(run_shim, repo, probe, canaries):
    write_dev_env(repo, {"PG_PASSWORD": canaries.new()})
    result = run_shim(["run", "--", *probe.argv], {"REDIS_URL": "redis://:CHANGEME_REDIS@cache"},
                      cwd=repo)
    assert result.returncode == 78
    assert "REDIS_URL: unresolved placeholder CHANGEME_REDIS" in result.stderr
    assert not probe.ran


def test_compose_guard_without_docker(run_shim, repo, canaries, tmp_path):
    """The guard itself, where no Docker Engine runs: a stand-in `docker` prints the effective
    configuration `docker compose config` would, and records whether `up` was ever started."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started = tmp_path / "up-started"
    config = {"services": {"web": {"environment": {"PG": "CHANGEME_PG_PASSWORD", "MODE": "dev"}}}}
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        f"case \"$*\" in *config*) echo '{json.dumps(config)}';; *up*) touch {started};; esac\n")
    os.chmod(bin_dir / "docker", 0o755)
    write_dev_env(repo, {"JWT_SECRET": canaries.new("jwt")})
    path = f"{bin_dir}:/usr/bin:/bin"
    refused = run_shim(["run", "--", "docker", "compose", "up"], {"PATH": path}, cwd=repo)
    assert refused.returncode == 78, refused.stderr
    assert "service web: variable PG still holds a placeholder CHANGEME_PG_PASSWORD" in refused.stderr
    assert not started.exists()
    allowed = run_shim(["run", "--allow-placeholders", "--", "docker", "compose", "up"],
                       {"PATH": path}, cwd=repo)
    assert allowed.returncode == 0, allowed.stderr
    assert started.exists()  # the control: the stand-in does start when shim lets it


# --- run: which commands are compose commands ------------------------------------

@pytest.mark.parametrize("argv, base, subcommand", [
    (["docker", "compose", "up"], ["docker", "compose"], "up"),
    (["/usr/bin/docker", "--context", "x", "compose", "-f", "a.yml", "--file=b.yml", "-p", "p",
      "--dry-run", "up", "-d"],
     ["/usr/bin/docker", "--context", "x", "compose", "-f", "a.yml", "--file=b.yml", "-p", "p",
      "--dry-run"], "up"),
    (["docker-compose", "--profile", "dev", "run", "api"], ["docker-compose", "--profile", "dev"], "run"),
    (["docker", "compose"], ["docker", "compose"], None),
])
def test_compose_calls_are_recognised(argv, base, subcommand):
    call = compose_call(argv)
    assert list(call.base) == base and call.subcommand == subcommand


@pytest.mark.parametrize("argv", [["docker", "run", "x"], ["sh", "-c", "docker compose up"],
                                  ["docker", "--context", "compose", "ps"]])
def test_other_commands_are_not_compose(argv):
    assert compose_call(argv) is None


# --- run: docker compose, for real -----------------------------------------------

def _docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    for command in (["docker", "compose", "version"], ["docker", "info"]):
        if subprocess.run(command, capture_output=True, timeout=60).returncode != 0:
            return False
    return True


@pytest.fixture(scope="session")
def docker_ready():
    if not _docker_ready():
        unavailable("Docker Engine or docker compose not available (these tests need them)")


@pytest.fixture(scope="session")
def empty_image(docker_ready):
    """An image with no files: enough for `up --no-start` to create a container."""
    name = f"shim-devenv-empty:{secrets.token_hex(4)}"
    archive = io.BytesIO()
    tarfile.open(fileobj=archive, mode="w").close()
    subprocess.run(["docker", "import", "-", name], input=archive.getvalue(), check=True,
                   capture_output=True, timeout=120)
    yield name
    subprocess.run(["docker", "rmi", "-f", name], capture_output=True, timeout=120)


@pytest.fixture
def project(repo, docker_ready):
    """A compose project name, taken down after the test whatever happened."""
    name = f"shimdev{secrets.token_hex(4)}"
    yield name
    subprocess.run(["docker", "compose", "-p", name, "down", "--remove-orphans", "--volumes"],
                   cwd=repo, capture_output=True, timeout=120)
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"],
                          capture_output=True, text=True).stdout
    assert left.strip() == "", "containers left behind"


def container_env(project, service) -> dict:
    output = subprocess.run(["docker", "inspect", f"{project}-{service}-1", "--format",
                             "{{json .Config.Env}}"], capture_output=True, text=True, check=True).stdout
    return dict(item.partition("=")[::2] for item in json.loads(output))


@pytest.mark.docker
def test_compose_up_is_refused_while_a_service_holds_a_placeholder(run_shim, repo, project, canaries):
    """dev.env lacks REDIS_PASSWORD, so compose would interpolate the CHANGEME default."""
    (repo / "compose.yaml").write_text(COMPOSE.format(image="shim-devenv-no-such-image:1"))
    write_dev_env(repo, {"PG_PASSWORD": canaries.new("pg"), "JWT_SECRET": canaries.new("jwt")})
    result = run_shim(["run", "--", "docker", "compose", "-p", project, "up"], cwd=repo, timeout=120)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == [
        "shim: error: service worker: variable REDIS_PASSWORD still holds a placeholder "
        "CHANGEME_REDIS_PASSWORD; add REDIS_PASSWORD to .secrets/dev.env (shim dev-init) and write "
        "${REDIS_PASSWORD:-CHANGEME_REDIS_PASSWORD}"]
    assert result.stdout == ""      # compose never started: no pull, no network
    networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"name={project}"],
                              capture_output=True, text=True).stdout
    assert networks.strip() == ""


@pytest.mark.docker
def test_a_literal_placeholder_is_named_per_service_and_variable(run_shim, repo, project, canaries):
    (repo / "compose.yaml").write_text(
        "services:\n"
        "  b:\n    image: shim-devenv-no-such-image:1\n    environment: [TOKEN=CHANGEME]\n"
        "  a:\n    image: shim-devenv-no-such-image:1\n"
        "    environment:\n      URL: postgresql://app:CHANGEME_PG_PASSWORD@db/app\n"
        "      OTHER: CHANGEME_OTHER\n")
    write_dev_env(repo, {"PG_PASSWORD": canaries.new(), "TOKEN": canaries.new()})
    result = run_shim(["run", "--", "docker", "compose", "-p", project, "up", "-d"], cwd=repo,
                      timeout=120)
    assert result.returncode == 78
    errors = [line.split(";")[0] for line in result.stderr.splitlines()]
    assert errors == [
        "shim: error: service a: variable OTHER still holds a placeholder CHANGEME_OTHER",
        "shim: error: service a: variable URL still holds a placeholder CHANGEME_PG_PASSWORD",
        "shim: error: service b: variable TOKEN still holds a placeholder CHANGEME",
    ]
    assert "PG_PASSWORD is set but the compose file does not use it: write " \
           "${PG_PASSWORD:-CHANGEME_PG_PASSWORD}" in result.stderr


@pytest.mark.docker
def test_dev_init_then_compose_up_delivers_the_values(run_shim, repo, project, canaries, empty_image):
    """The whole laptop workflow: dev-init, then run -- docker compose up, into real containers."""
    (repo / "compose.yaml").write_text(
        COMPOSE.format(image=empty_image).replace("    environment:", "    command: [/none]\n"
                                                                        "    environment:"))
    result, values = dev_init(run_shim, repo)
    assert result.returncode == 0, result.stderr
    canaries.values.extend(values.values())   # from here on, any print of them fails the test
    result = run_shim(["run", "--", "docker", "compose", "-p", project, "up", "--no-start"],
                      cwd=repo, timeout=180)
    assert result.returncode == 0, result.stderr
    api, worker = container_env(project, "api"), container_env(project, "worker")
    assert api["POSTGRES_PASSWORD"] == values["PG_PASSWORD"]
    assert api["DATABASE_URL"] == f"postgresql://app:{values['PG_PASSWORD']}@db/app"
    assert api["JWT_SECRET"] == values["JWT_SECRET"]
    assert worker["REDIS_PASSWORD"] == values["REDIS_PASSWORD"]


@pytest.mark.docker
def test_a_placeholder_a_mounted_secret_serves_is_left_to_the_container(run_shim, repo, project,
                                                                        canaries, empty_image):
    """README's pattern: the image's own shim resolves CHANGEME_PG_PASSWORD from /run/secrets."""
    (repo / "pg_password").write_text(canaries.new())
    (repo / "compose.yaml").write_text(
        f"services:\n  api:\n    image: {empty_image}\n    command: [/none]\n"
        "    environment:\n      DATABASE_URL: postgresql://app:CHANGEME_PG_PASSWORD@db/app\n"
        "    secrets: [pg_password]\n"
        "secrets:\n  pg_password:\n    file: ./pg_password\n")
    result = run_shim(["run", "--", "docker", "compose", "-p", project, "up", "--no-start"],
                      cwd=repo, timeout=180)
    assert result.returncode == 0, result.stderr
    assert container_env(project, "api")["DATABASE_URL"] == "postgresql://app:CHANGEME_PG_PASSWORD@db/app"


@pytest.mark.docker
def test_allow_placeholders_turns_findings_into_warnings(run_shim, repo, project, empty_image):
    (repo / "compose.yaml").write_text(
        f"services:\n  api:\n    image: {empty_image}\n    command: [/none]\n"
        "    environment:\n      TOKEN: CHANGEME_TOKEN\n")
    result = run_shim(["run", "--allow-placeholders", "--", "docker", "compose", "-p", project, "up",
                       "--no-start"], cwd=repo, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "shim: warning: service api: variable TOKEN still holds a placeholder CHANGEME_TOKEN" \
        in result.stderr
    assert container_env(project, "api")["TOKEN"] == "CHANGEME_TOKEN"


@pytest.mark.docker
def test_a_compose_config_that_fails_stops_everything(run_shim, repo, project):
    (repo / "compose.yaml").write_text("services:\n  api:\n    image: [unclosed\n")
    result = run_shim(["run", "--", "docker", "compose", "-p", project, "up"], cwd=repo, timeout=120)
    assert result.returncode == 78
    assert "shim: error: docker compose config failed (exit 1), so the configuration was not " \
           "checked and nothing was started; compose's own message is above" in result.stderr


@pytest.mark.docker
def test_other_compose_commands_get_the_resolved_environment_unchecked(run_shim, repo, canaries,
                                                                       docker_ready):
    """`config` is not checked (nothing starts); its output, full of values, goes to a file."""
    password = canaries.new("pg")
    write_dev_env(repo, {"PG_PASSWORD": password})
    (repo / "compose.yaml").write_text(COMPOSE.format(image="app"))
    result = run_shim(["run", "--", "sh", "-c",
                       "docker compose config --format json > out.json"], cwd=repo, timeout=120)
    assert result.returncode == 0, result.stderr
    services = json.loads((repo / "out.json").read_text())["services"]
    assert services["api"]["environment"]["POSTGRES_PASSWORD"] == password
    assert services["worker"]["environment"]["REDIS_PASSWORD"] == "CHANGEME_REDIS_PASSWORD"


def test_dev_init_dir_option(run_shim, repo):
    (repo / "compose.yml").write_text("services:\n  a:\n    environment:\n      - TOKEN=${TOKEN:-CHANGEME}\n")
    result, _ = dev_init(run_shim, repo.parent, "--dir", "project")
    assert result.returncode == 0, result.stderr
    assert "added 1 key to project/.secrets/dev.env: TOKEN; kept 0" in result.stdout
    assert read_env_file(repo / ".secrets" / "dev.env").keys() == {"TOKEN"}
    assert (repo / ".gitignore").read_text() == ".secrets/\n**/dev.env\n"
    assert not (repo.parent / ".secrets").exists()
