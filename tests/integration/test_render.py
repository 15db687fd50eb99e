"""`shim render`: files per variable and env files, read back by their real readers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from tests.conftest import unavailable
from tests.integration.test_supervise import finish, wait_for
from tests.integration.test_watch_vault import default_sighup

TRICKY = {
    "PLAIN": "abc",
    "SPACES": "  a b  ",
    "SINGLE": "it's",
    "DOUBLE": 'say "hi"',
    "DOLLAR": "$HOME ${PATH} $(id) `id`",
    "BACKSLASH": "a\\b\\\\c\\n",
    "EQUALS": "a=b==c",
    "MULTILINE": "line1\nline2\n  line3",
    "MIXED": "it's $HOME \"q\" \\ =\nnext",
    "HASH": "a #not a comment",
    "UNICODE": "pässwörd-✓",
    "EMPTY": "",
}


def tricky_env(tmp_path, canaries):
    """Each tricky value in its own file, delivered through a file: reference, with a canary in it."""
    values, env = {}, {}
    for name, text in TRICKY.items():
        value = f"{canaries.new(name.lower())}{text}" if text else ""
        path = tmp_path / f"src-{name}"
        path.write_text(value)
        values[name] = value
        env[name] = f"file:{path}"
    return values, env


def read_shell(path) -> dict:
    names = " ".join(TRICKY)
    script = f". '{path}'; for n in {names}; do eval \"v=\\${{$n}}\"; printf '%s\\0%s\\0' \"$n\" \"$v\"; done"
    output = subprocess.run(["sh", "-c", script], capture_output=True, check=True, env={}).stdout
    parts = output.decode().split("\0")[:-1]
    return dict(zip(parts[::2], parts[1::2]))


@pytest.mark.parametrize("file_format", ["shell", "json", "dotenv"])
def test_env_file_round_trip(run_shim, canaries, tmp_path, file_format):
    values, env = tricky_env(tmp_path, canaries)
    out = tmp_path / f"out.{file_format}"
    result = run_shim(["render", "--env-file", str(out), "--format", file_format], env)
    assert result.returncode == 0, result.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o400"
    if file_format == "shell":
        assert read_shell(out) == values
    elif file_format == "json":
        assert json.loads(out.read_text()) == values
    else:
        from dotenv import dotenv_values
        read = dotenv_values(out, interpolate=False)
        # python-dotenv reads every value back exactly except a "$" inside double quotes,
        # where compose needs it escaped; docker compose config is checked separately.
        for name, value in values.items():
            if "$" in value and any(char in value for char in "'\\\n"):
                continue
            assert read[name] == value, name


def test_dotenv_round_trip_through_docker_compose(run_shim, canaries, tmp_path):
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"],
                                                         capture_output=True).returncode != 0:
        unavailable("docker compose not installed")
    values, env = tricky_env(tmp_path, canaries)
    out = tmp_path / "app.env"
    assert run_shim(["render", "--env-file", str(out), "--format", "dotenv"], env).returncode == 0
    (tmp_path / "compose.yaml").write_text(
        "services:\n  app:\n    image: shim-base:bookworm\n    env_file: [app.env]\n")
    config = subprocess.run(["docker", "compose", "-f", str(tmp_path / "compose.yaml"), "config",
                             "--format", "json"], capture_output=True, text=True, cwd=tmp_path)
    assert config.returncode == 0, config.stderr
    environment = json.loads(config.stdout)["services"]["app"]["environment"]
    for name, value in values.items():
        # compose escapes $ as $$ in its *output* so that it survives a second interpolation
        assert environment[name].replace("$$", "$") == value, name


def test_dir_files_mode_and_owner(run_shim, canaries, tmp_path):
    values, env = tricky_env(tmp_path, canaries)
    out = tmp_path / "shared"
    out.mkdir()
    result = run_shim(["render", "--dir", str(out), "--owner", "nobody:nogroup", "--mode", "0440"], env)
    assert result.returncode == 0, result.stderr
    for name, value in values.items():
        path = out / name
        assert path.read_text() == value
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (65534, 65534)
        assert oct(info.st_mode & 0o777) == "0o440"
    assert not [p for p in os.listdir(out) if p.startswith(".shim-")]  # no temporary files left


def test_render_only_writes_secret_variables(run_shim, canaries, tmp_path):
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    out = tmp_path / "shared"
    out.mkdir()
    result = run_shim(["render", "--dir", str(out)], {"DB_PASSWORD": f"file:{secret}", "PLAIN": "x"})
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["DB_PASSWORD"]


def test_render_failure_writes_nothing(run_shim, canaries, tmp_path):
    good = tmp_path / "good"
    good.write_text(canaries.new())
    out = tmp_path / "shared"
    out.mkdir()
    result = run_shim(["render", "--dir", str(out)], {"A": f"file:{good}", "B": f"file:{tmp_path}/absent"})
    assert result.returncode == 66
    assert os.listdir(out) == []


def test_render_usage_errors(run_shim, tmp_path):
    assert run_shim(["render"], {}).returncode == 64
    assert run_shim(["render", "--dir", str(tmp_path / "missing")], {}).returncode == 64
    assert run_shim(["render", "--dir", str(tmp_path), "--mode", "rw"], {}).returncode == 64
    assert run_shim(["render", "--dir", str(tmp_path), "--watch", "1s", "--on-change", "restart"],
                    {}).returncode == 64
    assert run_shim(["render", "--dir", str(tmp_path), "--watch", "1s", "--on-change", "signal:HUP"],
                    {}).returncode == 64  # needs --pid-file


def test_watch_rewrites_atomically_and_signals(start_shim, canaries, tmp_path):
    secret = tmp_path / "secret"
    values = [canaries.new(f"v{i}") for i in range(4)]
    secret.write_text(values[0])
    out = tmp_path / "shared"
    out.mkdir()
    # A process to notify: it counts HUPs into a file.
    hups = tmp_path / "hups"
    # SIGHUP at its default in both processes: a shell started with it ignored cannot trap it,
    # and pytest itself may run with it ignored (nohup, some CI runners).
    target = subprocess.Popen(["sh", "-c", f"trap 'echo hup >> {hups}' HUP; touch {hups}; "
                               "while :; do sleep 0.05; done"], preexec_fn=default_sighup)
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(target.pid))
    shim = start_shim(["render", "--dir", str(out), "--watch", "200ms", "--on-change", "signal:HUP",
                       "--pid-file", str(pid_file)], {"SECRET": f"file:{secret}"},
                      preexec_fn=default_sighup)
    seen, bad = [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                text = (out / "SECRET").read_text()
            except FileNotFoundError:
                continue
            if text not in values:
                bad.append(len(text))
            elif not seen or seen[-1] != text:
                seen.append(text)

    thread = threading.Thread(target=reader)
    try:
        assert wait_for(lambda: (out / "SECRET").exists())
        thread.start()
        for value in values[1:]:
            secret.write_text(value)
            assert wait_for(lambda: seen and seen[-1] == value)
        assert wait_for(lambda: hups.read_text().count("hup") == 3)
    finally:
        stop.set()
        thread.join()
        shim.send_signal(signal.SIGTERM)
        returncode, _, stderr = finish(shim, canaries)
        target.kill()
    assert returncode == 0  # a sidecar stopped with SIGTERM exits cleanly
    assert bad == []        # never a partial or empty file
    assert seen == values


def test_watch_on_change_runs_a_command_without_secrets_in_it(start_shim, canaries, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(canaries.new("v1"))
    out = tmp_path / "shared"
    out.mkdir()
    record = tmp_path / "hook"
    hook = f"run:sh -c 'env > {record}'"
    shim = start_shim(["render", "--dir", str(out), "--watch", "200ms", "--on-change", hook],
                      {"SECRET": f"file:{secret}"})
    try:
        assert wait_for(lambda: (out / "SECRET").exists())
        secret.write_text(canaries.new("v2"))
        assert wait_for(record.exists)
    finally:
        shim.send_signal(signal.SIGTERM)
        finish(shim, canaries)
    canaries.assert_absent(record.read_text(), where="the hook's environment")
