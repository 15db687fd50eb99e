"""The README's Dockerfile snippets (section "Images"), built and run as written.

Only the FROM lines change: `shim:latest` becomes the bundle built here, and each registry image
a local stand-in from tests/e2e/images/anylibc/ (debian:bookworm-slim: the debootstrapped base;
postgres:16-alpine: musl, busybox and an entrypoint that reports what it got; distroless/static:
scratch with distroless' /etc/passwd). `myserver` is the probe program, linked statically.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.e2e.conftest import BASE_IMAGE, ROOT
from tests.e2e.docker_helpers import container_logs, docker, start_vault_double
from tests.e2e.test_any_image import ANYLIBC, KINDS, environment_of, ids_of

pytestmark = pytest.mark.docker

STAND_INS = {
    "debian:bookworm-slim": None,                         # BASE_IMAGE
    "postgres:16-alpine": "postgres-alpine.Dockerfile",
    "gcr.io/distroless/static-debian12": "distroless.Dockerfile",
}


def readme_snippets() -> dict[str, str]:
    """The README's ```dockerfile blocks that copy the bundle, by the image they build on."""
    text = (ROOT / "README.md").read_text()
    snippets = {}
    for block in re.findall(r"```dockerfile\n(.*?)```", text, re.S):
        if "COPY --from=shim /opt/shim /opt/shim" in block:
            bases = re.findall(r"^FROM (\S+)", block, re.M)
            assert bases[0] == "shim:latest", block
            snippets[bases[1]] = block
    return snippets


def test_the_readme_shows_the_three_kinds_of_image():
    assert set(readme_snippets()) == set(STAND_INS)


@pytest.fixture(scope="module")
def built(build_image, stage_context, tmp_path_factory):
    """Builds each snippet with its stand-in; returns {registry image: local tag}."""
    images = ROOT / "images"
    bundle = build_image("bundle", stage_context(images / "shim"),
                         build_args={"SHIM_EXTRAS": "all"},
                         dockerfile=images / "shim" / "Dockerfile")
    musl = build_image("anylibc-musl", ANYLIBC, build_args={"SHIM_IMAGE": bundle},
                       dockerfile=ANYLIBC / KINDS["musl"].dockerfile)
    context = tmp_path_factory.mktemp("readme-snippet")
    holder = docker("create", musl, "/usr/bin/probe-static").stdout.strip()
    try:
        docker("cp", f"{holder}:/usr/bin/probe-static", str(context / "myserver"))
    finally:
        docker("rm", holder, check=False)
    tags = {}
    for base, snippet in readme_snippets().items():
        stand_in = STAND_INS[base]
        local = BASE_IMAGE if stand_in is None else build_image(
            f"standin-{stand_in.split('.')[0]}", ANYLIBC, dockerfile=ANYLIBC / stand_in)
        dockerfile = context / f"{stand_in or 'debian'}.snippet"
        dockerfile.write_text(snippet.replace("FROM shim:latest ", f"FROM {bundle} ")
                              .replace(f"FROM {base}\n", f"FROM {local}\n"))
        tags[base] = build_image(f"readme-{(stand_in or 'debian').split('.')[0]}", context,
                                 dockerfile=dockerfile)
    return tags


@pytest.mark.parametrize("base, user", [("debian:bookworm-slim", "app"),
                                        ("gcr.io/distroless/static-debian12", "nonroot")])
def test_snippet_runs_its_program_as_its_user_with_the_secret(built, base, user, canaries,
                                                              tmp_path):
    token = canaries.new("token")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_token").write_text(token)
    (secrets / "api_token").chmod(0o400)
    result = docker("run", "--rm", "--read-only", "--network", "none",
                    "-v", f"{secrets}:/run/secrets:ro", "-e", "API_TOKEN_FILE=/run/secrets/api_token",
                    built[base])
    canaries.assert_absent(result.stderr, where="shim's output")
    uid, gid, _ = ids_of(result.stdout)
    expected = {"nonroot": 65532}.get(user) or int(docker(
        "run", "--rm", "--entrypoint", "/usr/bin/id", built[base], "-u", user).stdout)
    assert uid == expected and uid != 0
    assert environment_of(result.stdout)["API_TOKEN"] == token


def test_alpine_postgres_snippet_takes_the_password_from_vault(built, build_image, stage_context,
                                                              docker_objects, canaries, tmp_path):
    password, token = canaries.new("pg"), canaries.new("vault-token")
    images = ROOT / "images"
    vault_image = build_image("vault-double", stage_context(images / "vault-double"),
                              dockerfile=images / "vault-double" / "Dockerfile")
    network = docker_objects.network()
    vault = docker_objects.container("vault")
    start_vault_double(vault_image, vault, network, token,
                       {"secret/pg": {"password": password}}, tmp_path)

    # As the README's `docker run` line, the address being the double's.
    result = docker("run", "--rm", "--read-only", "--network", network,
                    "-e", "VAULT_ADDR=http://vault:8200", "-e", f"VAULT_TOKEN={token}",
                    "-e", "POSTGRES_PASSWORD=vault:secret/data/pg#password",
                    built["postgres:16-alpine"])
    lines = result.stdout.splitlines()
    assert lines[0] == "docker-entrypoint.sh postgres uid=0", result.stdout + result.stderr
    assert lines[1] == f"POSTGRES_PASSWORD sha256 {hashlib.sha256(password.encode()).hexdigest()}"
    assert lines[2] == "VAULT_ variables: 0"      # shim scrubs its own configuration
    canaries.assert_absent(result.stdout, result.stderr, container_logs(vault),
                           where="the containers' output")
