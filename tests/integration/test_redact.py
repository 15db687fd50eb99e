"""--redact: the program's output with every delivered value replaced, terminal or not.

The program prints a canary in every form the redactor promises to catch; every run goes
through `run_shim`/`start_shim`, whose leak check is the assertion that nothing got through
(the program's output is shim's output here).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import BASE_ENV, finish_process, unavailable
from tests.integration.test_supervise import wait_for

PRINTER = r'''
import base64, json, os, sys, time, urllib.parse
value = os.environ["API_KEY"]
raw = value.encode()
out = sys.stdout.buffer
def line(text): out.write(text + b"\n"); out.flush()
line(b"raw " + raw)
for prefix in (b"", b"a", b"ab"):
    line(b"b64 " + base64.b64encode(prefix + raw + b"!"))
    line(b"b64url " + base64.urlsafe_b64encode(prefix + raw + b"?>"))
line(b"url " + urllib.parse.quote("postgres://u:" + value + "@db", safe=":/@").encode())
line(b"json " + json.dumps({"key": value}).encode())
line(b"hex " + raw.hex().encode() + b" HEX " + raw.hex().upper().encode())
line(b"colour \x1b[31m" + raw + b"\x1b[0m")
out.write(b"split " + raw[:9]); out.flush(); time.sleep(0.03)
line(raw[9:] + b" end")
sys.stderr.buffer.write(b"stderr " + raw + b"\n")
line(b"short " + os.environ["PORT"].encode())
sys.exit(int(os.environ.get("EXIT", "0")))
'''


@pytest.fixture
def printer(tmp_path):
    path = tmp_path / "printer.py"
    path.write_text(PRINTER)
    return [sys.executable, "-S", str(path)]


# shim takes the fastest engine installed (shim/delivery/redactengines.py); a test runs with
# another by making the faster ones fail to import, as they do where the extra is missing.
FASTER_THAN = {"hyperscan": (), "ahocorasick-rs": ("hyperscan",),
               "re": ("hyperscan", "ahocorasick_rs")}


@pytest.fixture(params=sorted(FASTER_THAN))
def engine_env(request, tmp_path) -> dict[str, str]:
    """PYTHONPATH for shim such that it redacts with the engine of the parameter."""
    module = {"hyperscan": "hyperscan", "ahocorasick-rs": "ahocorasick_rs"}.get(request.param)
    if module is not None and importlib.util.find_spec(module) is None:
        unavailable(f"the redaction engine {request.param} is not installed (the [redact] extra)")
    blockers = tmp_path / "blocked-engines"
    blockers.mkdir()
    for blocked in FASTER_THAN[request.param]:
        (blockers / f"{blocked}.py").write_text("raise ImportError('blocked by the test')\n")
    return {"PYTHONPATH": str(blockers)}


def test_every_form_of_a_value_is_replaced_and_the_streams_stay_apart(run_shim, canaries,
                                                                       tmp_path, printer,
                                                                       engine_env):
    secret = tmp_path / "api_key"
    secret.write_text(canaries.new("api"))
    result = run_shim(["exec", "--redact", "--allow-root", "--secrets-dir", str(tmp_path), "--",
                       *printer], {"API_KEY_FILE": str(secret), "PORT": "80", "EXIT": "3",
                                   **engine_env})
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "raw [redacted:API_KEY]"
    assert sum("[redacted:API_KEY]" in line for line in lines) == 12   # every line but "short"
    assert "split [redacted:API_KEY] end" in lines
    assert "short 80" in lines                     # shorter than the minimum: left as is
    assert "stderr [redacted:API_KEY]" in result.stderr
    assert "stderr" not in result.stdout


def test_without_redact_the_output_is_the_program_s(run_shim, canaries, tmp_path, printer):
    # The premise of the test above: the printer really prints the value.
    secret = tmp_path / "api_key"
    value = canaries.new("api")
    secret.write_text(value)
    result = run_shim(["exec", "--allow-root", "--secrets-dir", str(tmp_path), "--", *printer],
                      {"API_KEY_FILE": str(secret), "PORT": "80"}, check_leaks=False)
    assert result.stdout.splitlines()[0] == f"raw {value}"


def test_shim_run_redacts_by_default_and_no_redact_turns_it_off(run_shim, canaries, tmp_path,
                                                                printer):
    value = canaries.new("api")
    (tmp_path / ".secrets").mkdir()
    (tmp_path / ".secrets" / "api").write_text(value)
    env = {"API_KEY_FILE": str(tmp_path / ".secrets" / "api"), "PORT": "80",
           "HOME": str(tmp_path)}
    redacted = run_shim(["run", "--secrets-dir", str(tmp_path / ".secrets"), "--", *printer],
                        env, cwd=tmp_path)
    assert redacted.returncode == 0, redacted.stderr
    assert redacted.stdout.splitlines()[0] == "raw [redacted:API_KEY]"
    plain = run_shim(["run", "--no-redact", "--secrets-dir", str(tmp_path / ".secrets"), "--",
                      *printer], env, cwd=tmp_path, check_leaks=False)
    assert plain.stdout.splitlines()[0] == f"raw {value}"


def test_signals_and_exit_status_are_as_under_init(start_shim, canaries, tmp_path):
    secret = tmp_path / "api_key"
    secret.write_text(canaries.new("api"))
    ready = tmp_path / "ready"
    script = f"trap 'echo got-term; exit 7' TERM; echo $API_KEY; touch {ready}; while :; do sleep 0.1; done"
    process = start_shim(["exec", "--redact", "--allow-root", "--secrets-dir", str(tmp_path),
                          "--", "sh", "-c", script], {"API_KEY_FILE": str(secret)})
    assert wait_for(ready.exists)
    process.send_signal(signal.SIGTERM)
    returncode, stdout, _ = finish_process(process, canaries)
    assert returncode == 7
    assert stdout.splitlines() == ["[redacted:API_KEY]", "got-term"]


def _script_command(shell_line: str, rows: int, cols: int) -> list[str]:
    if shutil.which("script") is None:
        unavailable("script (util-linux) is missing: it gives shim a terminal")
    return ["script", "-qec", f"stty rows {rows} cols {cols}; {shell_line}", "/dev/null"]


def test_on_a_terminal_the_program_gets_one_with_its_size_and_colours_pass(canaries, tmp_path):
    secret = tmp_path / "api_key"
    secret.write_text(canaries.new("api"))
    program = tmp_path / "p.sh"
    program.write_text("#!/bin/sh\n[ -t 1 ] && echo tty-yes || echo tty-no\nstty size\n"
                       "printf '\\033[31m%s\\033[0m\\n' \"$API_KEY\"\n")
    program.chmod(0o755)
    shim = shlex.join([sys.executable, "-m", "shim", "exec", "--redact", "--allow-root",
                       "--secrets-dir", str(tmp_path), "--", str(program)])
    result = subprocess.run(_script_command(shim, 45, 123), capture_output=True, timeout=60,
                            env={**BASE_ENV, "API_KEY_FILE": str(secret),
                                 "PYTHONPATH": os.getcwd()})
    output = result.stdout.decode(errors="replace")
    canaries.assert_absent(output, result.stderr.decode(errors="replace"))
    lines = [line.rstrip("\r") for line in output.splitlines()]
    assert lines[:3] == ["tty-yes", "45 123", "\x1b[31m[redacted:API_KEY]\x1b[0m"], output


def test_a_full_screen_program_works_under_tmux(canaries, tmp_path):
    if shutil.which("tmux") is None or shutil.which("less") is None:
        unavailable("tmux and less are needed for the full-screen test")
    secret = tmp_path / "api_key"
    secret.write_text(canaries.new("api"))
    page = tmp_path / "page.txt"
    page.write_text("".join(f"line {n} key={'$'}API_KEY\n" for n in range(200)))
    viewer = tmp_path / "view.sh"
    viewer.write_text(f"#!/bin/sh\nsed \"s/\\$API_KEY/$API_KEY/\" {page} > {tmp_path}/shown.txt\n"
                      f"exec less {tmp_path}/shown.txt\n")
    viewer.chmod(0o755)
    socket = str(tmp_path / "tmux.sock")
    env = {**BASE_ENV, "API_KEY_FILE": str(secret), "PYTHONPATH": os.getcwd(), "TERM": "xterm"}
    shim = shlex.join([sys.executable, "-m", "shim", "exec", "--redact", "--allow-root",
                       "--secrets-dir", str(tmp_path), "--", str(viewer)])
    subprocess.run(["tmux", "-S", socket, "new-session", "-d", "-x", "100", "-y", "30", shim],
                   env=env, check=True, timeout=30)
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "-S", socket, "capture-pane", "-p"], env=env,
                                  capture_output=True, text=True, timeout=10).stdout
        assert wait_for(lambda: "line 0 key=[redacted:API_KEY]" in screen(), timeout=20), screen()
        subprocess.run(["tmux", "-S", socket, "send-keys", "G"], env=env, check=True, timeout=10)
        assert wait_for(lambda: "line 199 key=[redacted:API_KEY]" in screen(), timeout=20), screen()
        canaries.assert_absent(screen(), where="the terminal")
        subprocess.run(["tmux", "-S", socket, "send-keys", "q"], env=env, check=True, timeout=10)
        assert wait_for(lambda: subprocess.run(["tmux", "-S", socket, "has-session"], env=env,
                                               capture_output=True).returncode != 0, timeout=20)
    finally:
        subprocess.run(["tmux", "-S", socket, "kill-server"], env=env, capture_output=True)


def test_after_a_rotation_the_new_value_is_redacted_and_the_old_one_still(start_shim, canaries,
                                                                          tmp_path):
    from tests.doubles.vault import VaultDouble

    old, new = canaries.new("old"), canaries.new("new")
    remembered = tmp_path / "old-value"
    remembered.write_text(old)
    printed = tmp_path / "printed"
    starts = tmp_path / "starts"
    script = (f"echo start >> {starts}; "
              f"while :; do echo \"now=$API_KEY old=$(cat {remembered})\"; "
              f"echo x >> {printed}; sleep 0.1; done")
    with VaultDouble() as vault:
        vault.kv2_put("secret", "app", {"key": old})
        token = vault.create_token(["secret/*"], ttl=3600)
        canaries.values.append(token)
        process = start_shim(["exec", "--redact", "--allow-root", "--watch", "300ms", "--",
                              "sh", "-c", script],
                             {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
                              "API_KEY": "ref+vault://secret/app#/key"})
        assert wait_for(printed.exists, timeout=30)
        vault.kv2_put("secret", "app", {"key": new})
        # --watch confirms the change, then restarts the program with the new value.
        assert wait_for(lambda: starts.read_text().count("start") >= 2, timeout=30)
        printed.unlink()
        assert wait_for(printed.exists, timeout=30)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        returncode, stdout, _ = finish_process(process, canaries)
    lines = [line for line in stdout.splitlines() if line.startswith("now=")]
    assert lines and set(lines) == {"now=[redacted:API_KEY] old=[redacted:API_KEY]"}
