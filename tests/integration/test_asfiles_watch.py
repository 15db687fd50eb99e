"""`--as-files DIR --watch`: what happens to DIR after the start.

A variable that goes away takes its file with it, and a DIR swapped after shim checked it (the
tmpfs unmounted, a directory on disk in its place) never receives a secret.
Each test here was written against a change that passed every other test (issue 31).
"""

from __future__ import annotations

import os
import signal
import subprocess

from tests.integration.test_asfiles import tmpfs  # noqa: F401 - fixture
from tests.integration.test_supervise import finish, shim_pid_inside, start_shim, wait_for  # noqa: F401

STOP_TIMEOUT = 20


def test_a_variable_that_went_away_loses_its_file(start_shim, canaries, tmp_path, tmpfs,  # noqa: F811
                                                  shared_dir):
    kept, leaving = tmp_path / "kept", tmp_path / "leaving"
    kept.write_text(canaries.new("kept"))
    leaving.write_text(canaries.new("leaving"))
    starts = shared_dir / "starts"
    script = f'echo "${{KEPT_FILE:-}} ${{LEAVING_FILE:-none}}" >> {starts}; exec sleep 60'
    process = start_shim(["exec", "--watch", "300ms", "--as-files", str(tmpfs), "--",
                          "sh", "-c", script],
                         {"KEPT": f"file:{kept}", "LEAVING": f"ref+file://{leaving}?optional=true"})
    try:
        assert wait_for(lambda: starts.exists() and starts.read_text().count("\n") == 1)
        assert sorted(os.listdir(tmpfs)) == ["KEPT", "LEAVING"]
        leaving.unlink()     # optional and gone: the variable is unset from now on
        assert wait_for(lambda: starts.read_text().count("\n") == 2, timeout=20)
        assert starts.read_text().splitlines()[1] == f"{tmpfs}/KEPT none"
        assert os.listdir(tmpfs) == ["KEPT"], "the file of a variable that went away is still there"
    finally:
        os.kill(shim_pid_inside(process), signal.SIGTERM)
    code, _, stderr = finish(process, canaries, timeout=STOP_TIMEOUT)
    assert code == 143, stderr


def _swap_under_a_running_shim(start_shim, canaries, tmp_path, shared_dir, directory, swap):
    """Starts `exec --watch --as-files DIR`, calls swap() once the first file is written, rotates
    the secret; (exit code, stderr). Asserts that nothing reached the DIR swapped in."""
    first, second = canaries.new("first"), canaries.new("second")
    source = tmp_path / "a"
    source.write_text(first)
    starts = shared_dir / "starts"
    # Not in a PID namespace of its own: unshare's --mount-proc would give shim a mount namespace
    # of its own too, where an unmount by the test would not happen.
    process = start_shim(["exec", "--watch", "300ms", "--as-files", str(directory), "--",
                          "sh", "-c", f'echo $$ >> {starts}; exec sleep 60'],
                         {"A": f"file:{source}"}, pid_namespace=False)
    try:
        assert wait_for(lambda: starts.exists() and starts.read_text().strip())
        assert os.listdir(directory) == ["A"]
        swap()
        assert os.listdir(directory) == []
        source.write_text(second)
        assert wait_for(lambda: process.poll() is not None or os.listdir(directory), timeout=15)
        assert os.listdir(directory) == [], "a secret was written to the directory swapped in"
    finally:
        # shim is not PID 1 here: its end does not take the program along, and the program
        # holds shim's stdout and stderr, which finish() reads to the end.
        if process.poll() is None:      # it went on with a swapped DIR: the test failed
            process.kill()
            process.wait(timeout=10)
        for pid in starts.read_text().split() if starts.exists() else ():
            _kill(int(pid))
        for name in os.listdir(directory):
            os.unlink(directory / name)
    code, _, stderr = finish(process, canaries, timeout=STOP_TIMEOUT)
    return code, stderr


def test_a_tmpfs_unmounted_after_the_check_never_gets_a_secret(start_shim, canaries, tmp_path,
                                                               tmpfs, shared_dir):  # noqa: F811
    """DIR's tmpfs is unmounted under a running shim: DIR is now a directory on disk."""
    def unmount():
        subprocess.run(["umount", "-l", str(tmpfs)], check=True, timeout=10)

    try:
        code, stderr = _swap_under_a_running_shim(start_shim, canaries, tmp_path, shared_dir,
                                                  tmpfs, unmount)
    finally:
        # The fixture unmounts DIR at the end: give it a mount again.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmpfs)], check=True,
                       timeout=10)
    assert code == 77, stderr
    assert f"--as-files: cannot write {tmpfs}/A" in stderr
    assert "no longer the one checked" in stderr


def test_a_directory_replaced_on_the_same_tmpfs_never_gets_a_secret(start_shim, canaries, tmp_path,
                                                                    tmpfs, shared_dir):  # noqa: F811
    """DIR is moved away and another directory (anyone's, mode 1777) takes its name on the same
    tmpfs: the device is the same, the directory is not."""
    directory = tmpfs / "secrets"
    directory.mkdir()

    def replace():
        directory.rename(tmpfs / "checked")
        directory.mkdir()
        directory.chmod(0o1777)

    code, stderr = _swap_under_a_running_shim(start_shim, canaries, tmp_path, shared_dir,
                                              directory, replace)
    assert code == 77, stderr
    assert f"--as-files: cannot write {directory}/A" in stderr
    assert "no longer the one checked" in stderr


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
