"""One bundle, copied with one line, runs in any Linux image (docs/images.md, "Which images").

Three images built here from Debian packages only (tests/e2e/images/anylibc/), standing for the
three kinds a user meets: (a) FROM scratch with Debian's static busybox as the program (no C
library, no /etc/passwd), (b) a musl userland with a dynamically linked musl program (what an
Alpine image is to the bundle), (c) the debootstrapped glibc base. In each: a `_FILE` variable
and a placeholder resolve, the program runs as a named user (where /etc/passwd exists) and as a
numeric uid, gets none of the bundle's loader or library paths, `--init` makes `docker stop`
end it with 143 at once, an unresolved placeholder stops it with 78 before it runs, and nothing
is written to the image's file system.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import BUNDLE_EXTRAS, ROOT
from tests.e2e.docker_helpers import container_logs, container_state, docker, wait_for

pytestmark = pytest.mark.docker

ANYLIBC = Path(__file__).resolve().parent / "images" / "anylibc"
SHIM = "/opt/shim/shim"
NUMERIC = "12345:12345"


@dataclass(frozen=True)
class Kind:
    dockerfile: str
    env: tuple[str, ...]            # prints the environment
    ids: tuple[str, ...]            # prints uid=, gid=, groups=
    sleep: tuple[str, ...]          # waits; SIGTERM ends it
    maps: tuple[str, ...] | None    # prints its own /proc/self/maps
    user: str | None                # a named user of the image, uid 1234, also in group 2000


KINDS = {
    "scratch": Kind("scratch.Dockerfile", ("/bin/busybox", "env"), ("/bin/busybox", "id"),
                    ("/bin/busybox", "sleep", "600"), ("/bin/busybox", "cat", "/proc/self/maps"),
                    None),
    "musl": Kind("musl.Dockerfile", ("/usr/bin/probe",), ("/usr/bin/probe",),
                 ("/usr/bin/probe", "sleep"), None, "app"),
    "glibc": Kind("glibc.Dockerfile", ("/usr/bin/env",), ("/usr/bin/id",),
                  ("/usr/bin/sleep", "600"), ("/usr/bin/cat", "/proc/self/maps"), "app"),
}


@pytest.fixture(scope="module")
def bundle(build_image, stage_context) -> str:
    """The bundle alone (the same tag as shim_images' "bundle", without the other images), or
    SHIM_E2E_BUNDLE_IMAGE: a bundle built elsewhere, e.g. for arm64 (docs/images.md, Arm64)."""
    if os.environ.get("SHIM_E2E_BUNDLE_IMAGE"):
        return os.environ["SHIM_E2E_BUNDLE_IMAGE"]
    images = ROOT / "images"
    return build_image("bundle", stage_context(images / "shim"),
                       build_args={"SHIM_EXTRAS": BUNDLE_EXTRAS},
                       dockerfile=images / "shim" / "Dockerfile")


@pytest.fixture(scope="module", params=sorted(KINDS))
def kind_image(request, bundle, build_image) -> tuple[Kind, str]:
    kind = KINDS[request.param]
    tag = build_image(f"anylibc-{request.param}", ANYLIBC, build_args={"SHIM_IMAGE": bundle},
                      dockerfile=ANYLIBC / kind.dockerfile)
    return kind, tag


def ids_of(output: str) -> tuple[int, int, set[int]]:
    """uid, gid and groups from `id` (busybox or coreutils, names in parentheses) or the probe."""
    found = re.search(r"uid=(\d+)\S* gid=(\d+)\S*(?: groups=(\S*))?", output)
    assert found, output
    groups = {int(number) for number in re.findall(r"(\d+)(?:\([^)]*\))?", found[3] or "")}
    return int(found[1]), int(found[2]), groups


def environment_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line
                and not line.startswith(("uid=",)))


def run(image: str, *argv: str, options: tuple[str, ...] = (), check: bool = True):
    return docker("run", "--rm", "--read-only", "--network", "none", *options,
                  "--entrypoint", SHIM, image, *argv, check=check)


def test_secrets_resolve_and_the_program_runs_as_its_user(kind_image, docker_objects, canaries,
                                                          tmp_path):
    kind, image = kind_image
    token, password = canaries.new("token"), canaries.new("db")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_token").write_text(token + "\n")
    (secrets / "db_pass").write_text(password)
    for path in secrets.iterdir():
        path.chmod(0o400)       # root's: shim reads them before it drops privileges
    given = ("-v", f"{secrets}:/run/secrets:ro", "-e", "API_TOKEN_FILE=/run/secrets/api_token",
             "-e", "DB_PASS=CHANGEME_DB_PASS", "-e", "LD_LIBRARY_PATH=/caller/lib")
    user = kind.user or NUMERIC

    # Written to a container that could write (no --read-only), to see that nothing is.
    written = docker_objects.container("anylibc")
    result = docker("run", "--name", written, "--network", "none", *given,
                    "--entrypoint", SHIM, image, "exec", "--user", user, "--", *kind.env)
    canaries.assert_absent(result.stderr, where="shim's output")
    environment = environment_of(result.stdout)
    assert environment["API_TOKEN"] == token and environment["DB_PASS"] == password
    assert "API_TOKEN_FILE" not in environment
    # The caller's LD_LIBRARY_PATH, not the bundle's; no bootloader bookkeeping.
    assert environment["LD_LIBRARY_PATH"] == "/caller/lib"
    assert not [name for name in environment if name.startswith("_PYI")], environment
    changes = set(docker("diff", written).stdout.splitlines())
    assert changes <= {"A /run", "C /run", "A /run/secrets"}, changes

    if kind.user:
        uid, gid, groups = ids_of(run(image, "exec", "--user", "app", "--", *kind.ids,
                                      options=given).stdout)
        assert (uid, gid) == (1234, 1234) and 2000 in groups
    uid, gid, groups = ids_of(run(image, "exec", "--user", NUMERIC, "--", *kind.ids,
                                  options=given).stdout)
    assert (uid, gid, groups) == (12345, 12345, {12345} & groups)
    if kind.maps:
        # The program is loaded by its own loader: nothing of the bundle is mapped into it.
        maps = run(image, "exec", "--user", NUMERIC, "--", *kind.maps).stdout
        assert "/opt/shim" not in maps and maps


def test_unresolved_placeholder_stops_with_78_before_the_program_runs(kind_image):
    kind, image = kind_image
    result = run(image, "exec", "--user", NUMERIC, "--", *kind.env,
                 options=("-e", "DB_PASS=CHANGEME_DB_PASS"), check=False)
    assert result.returncode == 78, result.stderr
    assert "DB_PASS" in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_init_makes_docker_stop_end_it_with_143(kind_image, docker_objects):
    kind, image = kind_image
    container = docker_objects.container("anylibc-init")
    docker("run", "-d", "--name", container, "--read-only", "--network", "none",
           "--entrypoint", SHIM, image, "exec", "--init", "--user", kind.user or NUMERIC, "--",
           *kind.sleep)

    def program_started() -> bool:
        if not container_state(container)["Running"]:
            pytest.fail(f"{container} exited:\n{container_logs(container)}", pytrace=False)
        return len(docker("top", container).stdout.splitlines()) >= 3   # header, shim, program
    wait_for(program_started, timeout=30, what="the program under shim --init",
             on_timeout=lambda: container_logs(container))

    started = time.monotonic()
    docker("stop", "-t", "10", container)
    elapsed = time.monotonic() - started
    assert container_state(container)["ExitCode"] == 143     # SIGTERM reached the program
    assert elapsed < 5, f"docker stop took {elapsed:.1f}s"
