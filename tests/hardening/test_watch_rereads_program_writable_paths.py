"""Issue 22 item 6: after the program started, --watch re-reads nothing the program can change.

`exec --user nobody --watch` re-reads as root. A program that owns its secrets directory
replaced its secret with a symlink to a root-only file and received that file on the next
tick; one that could write the env file added a reference and received a secret it was never
given. Now a path the program can change (the file, a directory on the way, a link followed)
is refused and logged (`watch.failed`, exit code 77 in the event); the program keeps the values
it has, and is not restarted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import BASE_ENV
from tests.integration.test_supervise import finish, wait_for

NOBODY = 65534


def _program(record) -> list[str]:
    """Writes $SECRET and $STOLEN (if set) to `record` at each start, then waits."""
    return ["/bin/sh", "-c", f'echo "start ${{SECRET:-}} ${{STOLEN:-unset}}" >> {record}; '
                             f'exec sleep 60']


def _failures(stderr: str) -> list[dict]:
    return [record for record in map(json.loads, filter(None, stderr.splitlines()))
            if record.get("event") == "watch.failed"]


@pytest.fixture
def root_only(tmp_path, canaries):
    """A root-only secret (0600 in a 0700 directory) the program must never see."""
    directory = tmp_path / "root-only"
    directory.mkdir(mode=0o700)
    secret = directory / "secret"
    secret.write_text(canaries.new("root-only"))
    secret.chmod(0o600)
    return secret


@pytest.fixture
def program_dir(shared_dir):
    directory = shared_dir / "app"
    directory.mkdir()
    os.chown(directory, NOBODY, NOBODY)     # the program owns its secrets directory
    return directory


def _run(start_shim, env, record):
    return start_shim(["exec", "--user", "nobody", "--watch", "300ms", "--log-format", "json",
                       *env.pop("_args", []), "--", *_program(record)], env)


def test_a_symlink_swapped_in_by_the_program_is_not_followed(start_shim, canaries, root_only,
                                                            program_dir, shared_dir):
    secret = program_dir / "secret"
    first = canaries.new("first")
    secret.write_text(first)
    os.chown(secret, NOBODY, NOBODY)
    record = shared_dir / "record"
    process = _run(start_shim, {"SECRET": f"file:{secret}"}, record)
    assert wait_for(lambda: record.exists())
    _swap_for_a_link(secret, root_only)
    time.sleep(3)                              # about ten ticks
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert record.read_text().splitlines() == [f"start {first} unset"]   # never restarted
    failures = _failures(stderr)
    assert failures and all(event["exit_code"] == 77 for event in failures), stderr
    assert f"can change {program_dir}" in failures[0]["message"], failures[0]["message"]


def test_a_reference_the_program_adds_to_its_env_file_is_not_resolved(start_shim, canaries,
                                                                     root_only, program_dir,
                                                                     shared_dir):
    env_file = program_dir / "app.env"
    env_file.write_text("APP_MODE=production\n")
    os.chown(env_file, NOBODY, NOBODY)
    record = shared_dir / "record"
    first = shared_dir / "first"
    first.write_text(canaries.new("first"))
    process = _run(start_shim, {"_args": ["--env-file", str(env_file)],
                                "SECRET": f"file:{first}"}, record)
    assert wait_for(lambda: record.exists())
    with open(env_file, "a") as stream:       # what the program (its owner) can do
        stream.write(f"STOLEN=file:{root_only}\n")
    time.sleep(3)                              # about ten ticks
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert len(record.read_text().splitlines()) == 1 and "unset" in record.read_text()
    failures = _failures(stderr)
    assert failures and f"env file {env_file}" in failures[0]["message"], stderr


def test_a_root_owned_path_is_still_re_read(start_shim, canaries, tmp_path, shared_dir):
    """The control: a secret root keeps to itself (in a directory nobody cannot change) is
    re-read, and a change restarts the program with the new value."""
    secret = tmp_path / "secret"          # pytest's 0700 root tree: nobody can change nothing
    first, second = canaries.new("first"), canaries.new("second")
    secret.write_text(first)
    record = shared_dir / "record"
    process = _run(start_shim, {"SECRET": f"file:{secret}"}, record)
    assert wait_for(lambda: record.exists())
    secret.write_text(second)
    assert wait_for(lambda: second in record.read_text(), timeout=20)
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert not _failures(stderr), stderr


def test_render_owner_still_signals_through_the_pid_file_the_app_writes(start_shim, canaries,
                                                                      tmp_path, program_dir):
    """render --watch --owner arms the same refusal for --owner's user; the --pid-file is the
    one file that user is meant to write (its content is checked as hostile anyway)."""
    secret = tmp_path / "secret"
    secret.write_text(canaries.new("first"))
    out, hups = tmp_path / "out", program_dir / "hups"
    out.mkdir()
    pid_file = program_dir / "app.pid"
    app = subprocess.Popen(
        ["/bin/sh", "-c", f'trap "echo hup >> {hups}" HUP; echo $$ > {pid_file}; '
                          f'while :; do sleep 0.1; done'],
        user=NOBODY, group=NOBODY, extra_groups=[], start_new_session=True)
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
        process = start_shim(["render", "--dir", str(out), "--owner", "nobody", "--watch", "200ms",
                              "--on-change", "signal:HUP", "--pid-file", str(pid_file)],
                             {"SECRET": f"file:{secret}"})
        assert wait_for(lambda: (out / "SECRET").exists())
        secret.write_text(canaries.new("second"))
        assert wait_for(lambda: hups.exists(), timeout=20)
        process.send_signal(signal.SIGTERM)
        returncode, _, stderr = finish(process, canaries)
        assert returncode == 0, stderr
        assert "not signalling" not in stderr
    finally:
        app.kill()
        app.wait(timeout=10)


def test_render_owner_does_not_follow_a_link_its_owner_swapped_in(start_shim, canaries, root_only,
                                                                 program_dir, tmp_path):
    secret = program_dir / "secret"
    secret.write_text(canaries.new("first"))
    os.chown(secret, NOBODY, NOBODY)
    out = tmp_path / "out"
    out.mkdir()
    process = start_shim(["render", "--dir", str(out), "--owner", "nobody", "--watch", "200ms",
                          "--log-format", "json"], {"SECRET": f"file:{secret}"})
    assert wait_for(lambda: (out / "SECRET").exists())
    first = (out / "SECRET").read_text()
    _swap_for_a_link(secret, root_only)
    time.sleep(3)                              # about ten ticks
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 0, stderr
    assert (out / "SECRET").read_text() == first
    failures = _failures(stderr)
    assert failures and all(event["exit_code"] == 77 for event in failures), stderr


def _swap_for_a_link(path, target):
    """What the program (nobody) does: its own file becomes a link to root's."""
    os.setegid(NOBODY), os.seteuid(NOBODY)
    try:
        path.unlink()
        path.symlink_to(target)
    finally:
        os.seteuid(0), os.setegid(0)


def test_a_shim_of_the_programs_own_uid_re_reads_its_secret_files(canaries, program_dir,
                                                                  shared_dir, nobody_python):
    """The sidecar case (compose-examples/vault-init): shim runs as the program's uid and
    re-reads files a `render --watch` of that uid writes. Such a shim reads nothing the program
    could not read itself, so a secret file's content (delivered as it is) is re-read; env files
    and sops files stay refused (the tests above)."""
    secret = program_dir / "secret"
    first, second = canaries.new("first"), canaries.new("second")
    secret.write_text(first)
    os.chown(secret, NOBODY, NOBODY)
    record = shared_dir / "record"
    python, python_env = nobody_python
    process = subprocess.Popen([python, "-m", "shim", "exec", "--watch", "300ms", "--log-format",
                                "json", "--", *_program(record)],
                               env={**BASE_ENV, **python_env, "SECRET": f"file:{secret}"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               user=NOBODY, group=NOBODY, extra_groups=[], cwd=shared_dir)
    assert wait_for(lambda: record.exists())
    secret.write_text(second)
    assert wait_for(lambda: second in record.read_text(), timeout=20), record.read_text()
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert not _failures(stderr), stderr
