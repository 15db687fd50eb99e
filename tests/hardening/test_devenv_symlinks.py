"""Issue 12 item 6: dev-init and run do not follow symlinks into files they must not touch.

`.secrets/dev.env -> ../app.env` (a tracked file) got generated passwords and a new mode
from dev-init, and run loaded it without the tracked-file refusal; a `.gitignore` linked
outside the project had lines appended to the outside file.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.test_devenv import COMPOSE, git


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    (root / "compose.yaml").write_text(COMPOSE.format(image="app"))
    return root


def _snapshot(path):
    return path.read_bytes(), path.stat().st_mode


def test_dev_init_refuses_a_dev_env_link_to_a_tracked_file(run_shim, project):
    tracked = project / "app.env"
    tracked.write_text("LOG_LEVEL=info\n")
    tracked.chmod(0o644)
    git(project, "add", "app.env")
    (project / ".secrets").mkdir(mode=0o700)
    (project / ".secrets" / "dev.env").symlink_to("../app.env")
    before = _snapshot(tracked)
    result = run_shim(["dev-init"], cwd=project)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == [
        "shim: error: .secrets/dev.env is a symbolic link; dev-init writes only a regular file "
        "there; remove the link (rm .secrets/dev.env) and run shim dev-init again"]
    assert _snapshot(tracked) == before
    assert not (project / ".gitignore").exists()


def test_dev_init_refuses_a_gitignore_link_outside_the_project(run_shim, project, tmp_path):
    outside = tmp_path / "outside-ignore"
    outside.write_text("*.log\n")
    (project / ".gitignore").symlink_to(outside)
    result = run_shim(["dev-init"], cwd=project)
    assert result.returncode == 78, result.stderr
    assert ".gitignore is a symbolic link" in result.stderr
    assert outside.read_text() == "*.log\n"
    assert not (project / ".secrets" / "dev.env").exists()  # refused before writing anything


def test_dev_init_refuses_a_secrets_dir_link(run_shim, project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / ".secrets").symlink_to(elsewhere)
    result = run_shim(["dev-init"], cwd=project)
    assert result.returncode == 78, result.stderr
    assert ".secrets is a symbolic link" in result.stderr
    assert os.listdir(elsewhere) == []


def test_run_refuses_a_dev_env_link_to_a_tracked_file(run_shim, project, probe, canaries):
    tracked = project / "app.env"
    tracked.write_text(f"PG_PASSWORD={canaries.new('pg')}\n")
    git(project, "add", "app.env")
    (project / ".secrets").mkdir(mode=0o700)
    (project / ".secrets" / "dev.env").symlink_to("../app.env")
    (project / ".gitignore").write_text(".secrets/\n**/dev.env\n")
    result = run_shim(["run", "--", *probe.argv], {}, cwd=project)
    assert result.returncode == 78, result.stderr
    assert "is tracked by git" in result.stderr and "app.env" in result.stderr
    assert not probe.ran
