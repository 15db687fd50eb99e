"""`--as-files DIR`: secrets as files in a tmpfs, the child gets NAME_FILE; read back as the child."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_supervise import finish, shim_pid_inside, wait_for


@pytest.fixture
def tmpfs():
    """A fresh tmpfs mount (we are root), unmounted afterwards."""
    directory = tempfile.mkdtemp(prefix="shim-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", directory], check=True)
    yield Path(directory)
    subprocess.run(["umount", "-l", directory], check=True)
    os.rmdir(directory)


def reader(shared_dir, probe, *names):
    """A command that copies each NAME_FILE to shared_dir/NAME.out as the child, then runs the probe."""
    copies = "; ".join(f'cat "${name}_FILE" > {shared_dir}/{name}.out' for name in names)
    return ["sh", "-c", f'{copies}; exec "$@"', "reader", *probe.argv]


def test_values_become_files_owned_by_the_user_and_read_by_the_child(
        run_shim, probe, canaries, tmp_path, tmpfs, shared_dir):
    text = canaries.new("text")
    binary = b"\x00\xff" + canaries.new("binary").encode() + b"\x00"
    (tmp_path / "text").write_text(text)
    (tmp_path / "bin.b64").write_text(base64.b64encode(binary).decode())
    plain = canaries.new("plain")
    env = {"TEXT": f"file:{tmp_path}/text", "BIN": f"ref+file://{tmp_path}/bin.b64?encoding=base64",
           "LITERAL": plain, "PLAIN": "not-a-secret"}
    result = run_shim(["exec", "--user", "nobody", "--as-files", str(tmpfs), "--log-format", "json",
                       "--", *reader(shared_dir, probe, "TEXT", "BIN")], env)
    assert result.returncode == 0, result.stderr
    record = probe.read()
    child = record["env"]
    assert child["TEXT_FILE"] == f"{tmpfs}/TEXT" and "TEXT" not in child
    assert child["BIN_FILE"] == f"{tmpfs}/BIN" and "BIN" not in child
    assert child["LITERAL"] == plain and child["PLAIN"] == "not-a-secret"  # not resolved by shim
    assert (shared_dir / "TEXT.out").read_text() == text
    assert (shared_dir / "BIN.out").read_bytes() == binary
    for name in ("TEXT", "BIN"):
        status = os.lstat(tmpfs / name)
        assert (status.st_uid, status.st_gid) == (record["uid"], record["gid"]) == (65534, 65534)
        assert status.st_mode & 0o7777 == 0o400
    assert sorted(os.listdir(tmpfs)) == ["BIN", "TEXT"]  # no temporary file left
    written = [json.loads(line) for line in result.stderr.splitlines()
               if '"files.written"' in line]
    assert written and written[0]["variables"] == ["BIN", "TEXT"]
    assert written[0]["paths"] == [f"{tmpfs}/BIN", f"{tmpfs}/TEXT"]


def test_only_the_named_variables_become_files(run_shim, probe, canaries, tmp_path, tmpfs):
    one, two = canaries.new("one"), canaries.new("two")
    (tmp_path / "one").write_text(one)
    (tmp_path / "two").write_text(two)
    env = {"ONE": f"file:{tmp_path}/one", "TWO": f"file:{tmp_path}/two",
           "SHIM_AS_FILES": str(tmpfs), "SHIM_AS_FILES_ONLY": "TWO"}
    result = run_shim(["exec", "--", *probe.argv], env)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["ONE"] == one and "ONE_FILE" not in child
    assert child["TWO_FILE"] == f"{tmpfs}/TWO" and "TWO" not in child
    assert (tmpfs / "TWO").read_text() == two and not (tmpfs / "ONE").exists()


def test_a_planted_symlink_is_replaced_not_followed(run_shim, probe, canaries, tmp_path, tmpfs):
    value = canaries.new("planted")
    (tmp_path / "src").write_text(value)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmpfs / "A").symlink_to(victim)
    result = run_shim(["exec", "--as-files", str(tmpfs), "--", *probe.argv], {"A": f"file:{tmp_path}/src"})
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "untouched"
    assert not (tmpfs / "A").is_symlink() and (tmpfs / "A").read_text() == value


def test_check_shows_the_delivery(run_shim, canaries, tmp_path, tmpfs):
    (tmp_path / "a").write_text(canaries.new("check"))
    env = {"A": f"file:{tmp_path}/a", "B": f"file:{tmp_path}/a", "SHIM_AS_FILES_ONLY": "A"}
    result = run_shim(["check", "--json", "--as-files", str(tmpfs)], env)
    assert result.returncode == 0, result.stderr
    rows = {row["variable"]: row["delivery"] for row in json.loads(result.stdout)["variables"]}
    assert rows == {"A": f"{tmpfs}/A", "B": "env"}
    assert os.listdir(tmpfs) == []  # check writes nothing
    table = run_shim(["check", "--as-files", str(tmpfs)], env).stdout
    assert "DELIVERY" in table.splitlines()[0] and f"{tmpfs}/A" in table


def test_a_directory_on_disk_needs_allow_disk(run_shim, probe, canaries, tmp_path):
    (tmp_path / "a").write_text(canaries.new("disk"))
    out = tmp_path / "out"
    out.mkdir()
    env = {"A": f"file:{tmp_path}/a"}
    result = run_shim(["exec", "--as-files", str(out), "--", *probe.argv], env)
    assert result.returncode == 78 and "not tmpfs or ramfs" in result.stderr
    assert not probe.ran and os.listdir(out) == []
    result = run_shim(["exec", "--as-files", str(out), "--as-files-allow-disk", "--", *probe.argv], env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["A_FILE"] == f"{out}/A"


def test_init_removes_the_files_when_the_program_exits(start_shim, canaries, tmp_path, tmpfs):
    (tmp_path / "a").write_text(canaries.new("init"))
    process = start_shim(["exec", "--init", "--as-files", str(tmpfs), "--",
                          "sh", "-c", 'test -s "$A_FILE"'], {"A": f"file:{tmp_path}/a"},
                         pid_namespace=True)
    code, _, stderr = finish(process, canaries)
    assert code == 0, stderr
    assert os.listdir(tmpfs) == []


def test_watch_rewrites_the_file_on_rotation_and_removes_it_at_the_end(start_shim, canaries, tmp_path, tmpfs,
                                                                        shared_dir):
    first, second = canaries.new("first"), canaries.new("second")
    source = tmp_path / "a"
    source.write_text(first)
    log = shared_dir / "seen"
    script = f'cat "$A_FILE" >> {log}; echo >> {log}; exec sleep 60'
    process = start_shim(["exec", "--watch", "1s", "--user", "nobody", "--as-files", str(tmpfs),
                          "--", "sh", "-c", script], {"A": f"file:{source}"}, pid_namespace=True)
    try:
        assert wait_for(lambda: log.exists() and first in log.read_text())
        source.write_text(second)
        assert wait_for(lambda: second in log.read_text(), timeout=30)
        assert (tmpfs / "A").read_text() == second
        assert os.lstat(tmpfs / "A").st_uid == 65534
    finally:
        os.kill(shim_pid_inside(process), signal.SIGTERM)
    code, _, stderr = finish(process, canaries)
    assert code in (0, 143), stderr
    assert os.listdir(tmpfs) == []
