"""Issue 12 items 3 and 4: render with hostile variable names and a hostile --pid-file.

Names come from the environment, where execve and Kubernetes allow '/', '..', ';' and
spaces. The pid file sits on a volume the application can write.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from shim.commands import render
from tests.conftest import BASE_ENV, ROOT


@pytest.fixture
def secret(tmp_path, canaries):
    path = tmp_path / "secret"
    path.write_text(canaries.new())
    return path


@pytest.mark.parametrize("name", ["../escape", "..", ".", "a/b", "{tmp}/absolute"])
def test_render_dir_refuses_a_name_that_is_not_a_file_name(run_shim, tmp_path, secret, name):
    name = name.format(tmp=tmp_path)
    out = tmp_path / "out" / "inner"
    out.mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = run_shim(["render", "--dir", str(out)], {name: f"file:{secret}", "GOOD": f"file:{secret}"})
    assert result.returncode == 65, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"shim: error: {name}: is not a plain file name")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("file_format", ["shell", "dotenv"])
@pytest.mark.parametrize("name", ["A;touch {tmp}/pwned;B", "A B", "1A", "A-B", "A.B"])
def test_env_file_formats_refuse_a_name_that_is_not_a_shell_name(run_shim, tmp_path, secret,
                                                                  file_format, name):
    name = name.format(tmp=tmp_path)
    out = tmp_path / "app.env"
    result = run_shim(["render", "--env-file", str(out), "--format", file_format],
                      {name: f"file:{secret}"})
    assert result.returncode == 65, result.stderr
    assert f"is not a valid {file_format} variable name" in result.stderr
    assert not out.exists() and not (tmp_path / "pwned").exists()


def test_json_keeps_any_name(run_shim, tmp_path, secret):
    out = tmp_path / "app.json"
    result = run_shim(["render", "--env-file", str(out), "--format", "json"],
                      {"A;B C/../d": f"file:{secret}"})
    assert result.returncode == 0, result.stderr
    assert "A;B C/../d" in out.read_text()


@pytest.mark.parametrize("content", ["-1", "0", "1", "-42", "abc", "", "1 2"])
def test_pid_file_takes_only_a_pid_above_1(tmp_path, content):
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(content)
    pid, problem = render._signal_target(str(pid_file))
    assert pid is None and problem


def test_pid_file_target_must_still_be_the_same_process(tmp_path):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{victim.pid}\n")
        assert render._signal_target(str(pid_file)) == (victim.pid, "")
        # The kernel handing the PID to another process looks like this: another start time.
        render._known_start_times[victim.pid] = "0"
        assert render._signal_target(str(pid_file)) == (None, "that process id now belongs to another process")
    finally:
        render._known_start_times.pop(victim.pid, None)
        victim.kill()
        victim.wait()


def test_pid_file_minus_one_signals_nobody(tmp_path, canaries):
    """The attack itself, in a PID namespace of its own (kill(-1) must not reach this machine)."""
    secret = tmp_path / "secret"
    secret.write_text(canaries.new("v1"))
    second = canaries.new("v2")
    hups, out, pid_file = tmp_path / "hups", tmp_path / "out", tmp_path / "app.pid"
    out.mkdir()
    pid_file.write_text("-1")
    script = f"""
sh -c 'trap "echo hup >> {hups}" HUP; touch {hups}; while :; do sleep 0.05; done' &
victim=$!
{sys.executable} -m shim render --dir {out} --watch 100ms --on-change signal:HUP --pid-file {pid_file} &
shim=$!
i=0; while [ ! -e {out}/SECRET ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
printf %s {second} > {secret}
i=0; while ! grep -q signal_failed {tmp_path}/stderr 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
kill -TERM $shim; wait $shim; echo "shim=$?"; kill $victim
"""
    env = dict(BASE_ENV, SECRET=f"file:{secret}", PYTHONPATH=str(ROOT))
    with open(tmp_path / "stderr", "w") as stderr:
        result = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                 "sh", "-c", script], env=env, stdout=subprocess.PIPE,
                                stderr=stderr, text=True, timeout=60)
    log = (tmp_path / "stderr").read_text()
    canaries.assert_absent(result.stdout, log)
    assert "shim=0" in result.stdout, log
    assert (out / "SECRET").read_text() == second
    assert "not signalling the process in" in log and "above 1" in log
    assert hups.read_text() == ""
