"""Guards that once survived a deliberate breakage of shim (docs/testing.md lists each breakage and
the test that now catches it). Each test states the behaviour, not the implementation."""

from __future__ import annotations

import os
import stat

import pytest


@pytest.fixture
def secrets_dir(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


def test_a_sibling_with_the_same_prefix_is_not_inside_the_secrets_dir(run_shim, probe, canaries,
                                                                      secrets_dir):
    """/run/secretsX/pw is not under /run/secrets: its NAME_FILE is left as is."""
    sibling = secrets_dir.parent / (secrets_dir.name + "X")
    sibling.mkdir()
    (sibling / "pw").write_text(canaries.new())
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"PW_FILE": str(sibling / "pw")})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["PW_FILE"] == str(sibling / "pw") and "PW" not in env


def test_a_fifo_in_place_of_a_secret_is_refused_without_hanging(run_shim, probe, secrets_dir):
    """A FIFO nobody writes to: opening it blocking would hang start-up forever."""
    fifo = secrets_dir / "pw"
    os.mkfifo(fifo)
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"PW_FILE": str(fifo)}, timeout=20)
    assert result.returncode == 66, result.stderr
    assert "not a regular file" in result.stderr
    assert not probe.ran


def test_optional_forgives_only_a_missing_secret(run_shim, probe, canaries, tmp_path):
    """`?optional=true` leaves a missing secret unset; any other failure still fails the start."""
    missing = run_shim(["exec", "--", *probe.argv],
                       {"MAYBE": f"ref+file://{tmp_path}/absent?optional=true"})
    assert missing.returncode == 0, missing.stderr
    assert "MAYBE" not in probe.read()["env"]
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (1024 * 1024 + 1))
    too_large = run_shim(["exec", "--", *probe.argv], {"MAYBE": f"ref+file://{huge}?optional=true"})
    assert too_large.returncode == 65, too_large.stderr
    assert "larger than 1 MiB" in too_large.stderr


def test_render_env_file_honours_mode_and_owner(run_shim, canaries, tmp_path):
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    out = tmp_path / "out"
    out.mkdir()
    result = run_shim(["render", "--env-file", str(out / "app.env"), "--mode", "0440",
                       "--owner", "nobody:nogroup"], {"S": f"file:{secret}"})
    assert result.returncode == 0, result.stderr
    info = (out / "app.env").stat()
    assert stat.S_IMODE(info.st_mode) == 0o440
    assert (info.st_uid, info.st_gid) == (65534, 65534)


def test_the_environment_string_limit_counts_the_name_and_the_nul(run_shim, probe, tmp_path):
    """README: NAME=value plus its NUL may be 131,072 bytes; one byte more is refused (65)."""
    largest = tmp_path / "largest"
    largest.write_text("x" * (131072 - len("BIG=") - 1))
    fits = run_shim(["exec", "--", *probe.argv], {"BIG": f"file:{largest}"})
    assert fits.returncode == 0, fits.stderr
    assert len(probe.read()["env"]["BIG"]) == 131067
    largest.write_text("x" * (131072 - len("BIG=")))
    refused = run_shim(["exec", "--", *probe.argv], {"BIG": f"file:{largest}"})
    assert refused.returncode == 65
    assert "BIG=value with its NUL is 131073 bytes" in refused.stderr
