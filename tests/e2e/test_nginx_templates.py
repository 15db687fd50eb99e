"""compose-examples/nginx-templates on real Docker: nginx's config is a template holding an API key
from a compose secret; a rotation of the key reloads nginx (SIGHUP from shim), never restarts it.

The example's files are used in place; the key files (canaries) come from a temporary directory
through SECRETS_DIR, the images from this run through SHIM_IMAGE and NGINX_IMAGE.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.e2e.docker_helpers import wait_for
from tests.e2e.test_compose_examples import (EXAMPLES, ROOT, compose_environment,  # noqa: F401
                                             compose_projects, example_images,
                                             write_secret_files)

EXAMPLE = EXAMPLES / "nginx-templates"
IMAGES = ROOT / "images"


@pytest.fixture(scope="module")
def nginx_image(example_images, build_image, stage_context) -> str:  # noqa: F811
    """images/nginx on the local Debian base (Debian's nginx: no registry needed)."""
    return build_image("nginx", stage_context(IMAGES / "nginx"),
                       build_args={"SHIM_IMAGE": example_images["SHIM_IMAGE"]},
                       dockerfile=IMAGES / "nginx" / "Dockerfile")


def status(address: str, key: str | None) -> int:
    headers = {"X-Api-Key": key} if key is not None else {}
    request = urllib.request.Request(f"http://{address}/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0      # not listening (yet, or any more)


def test_a_rotated_key_reloads_nginx_without_a_restart(tmp_path, canaries, example_images,  # noqa: F811
                                                       nginx_image, compose_projects):  # noqa: F811
    first, second = canaries.new("key1"), canaries.new("key2")
    secrets = write_secret_files(tmp_path / "secrets", {"api_key": first})
    env = compose_environment(SHIM_IMAGE=example_images["SHIM_IMAGE"], NGINX_IMAGE=nginx_image,
                              SECRETS_DIR=str(secrets), NGINX_WATCH="1s", NGINX_PORT="0")
    project = compose_projects("nginx-templates", [EXAMPLE / "compose.yaml"], env, canaries)
    project("up", "-d", "--wait", "--wait-timeout", "60", timeout=120)
    address = project.port("nginx", 8080)
    assert status(address, first) == 200
    assert status(address, None) == 401
    master = project("exec", "-T", "nginx", "cat", "/tmp/nginx.pid").stdout.strip()
    assert master.isdigit()

    (secrets / "api_key").write_text(second)     # in place: compose mounts the file itself
    wait_for(lambda: status(address, second) == 200, timeout=30, what="nginx to take the new key",
             on_timeout=lambda: project.logs()[-3000:])
    assert status(address, first) == 401
    assert project("exec", "-T", "nginx", "cat", "/tmp/nginx.pid").stdout.strip() == master
    logs = project.logs()
    assert "reconfiguring" in logs              # nginx's own word for a SIGHUP reload
    assert "values changed (template /run/nginx/nginx.conf)" in logs
    project.assert_logs_clean()
