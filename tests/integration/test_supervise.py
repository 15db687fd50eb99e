"""`shim exec --init` and `--watch` as real processes, as PID 1 of a new PID namespace."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import finish_process


@pytest.fixture
def start_shim(start_shim):
    """The shared fixture (leak-checked), as PID 1 of a fresh PID namespace unless told otherwise."""

    def start(args, env, *, pid_namespace=True):
        return start_shim(args, env, pid_namespace=pid_namespace)

    return start


def finish(process, canaries, timeout=30):
    return finish_process(process, canaries, timeout=timeout)


def shim_pid_inside(process) -> int:
    """The pid (seen from here) of shim, i.e. the unshare child running as PID 1 inside."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("shim did not start")


def memory_contains(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of `pid` holds `needle` (we are root: /proc/PID/mem)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, permissions = line.split()[:2]
            if not permissions.startswith("r"):
                continue
            start, end = (int(part, 16) for part in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def wait_for(predicate, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.mark.parametrize("code", [0, 1, 2, 42, 126, 127, 128, 200, 255])
def test_exit_codes_pass_through(start_shim, canaries, code):
    process = start_shim(["exec", "--init", "--", "sh", "-c", f"exit {code}"], {})
    returncode, _, _ = finish(process, canaries)
    assert returncode == code


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSEGV, signal.SIGUSR1])
def test_killed_child_gives_128_plus_signal(start_shim, canaries, signum):
    process = start_shim(["exec", "--init", "--", "sh", "-c", f"kill -{int(signum)} $$"], {})
    returncode, _, _ = finish(process, canaries)
    assert returncode == 128 + signum


def test_runs_as_pid_1_and_child_is_not(start_shim, canaries, tmp_path):
    out = tmp_path / "ids"
    process = start_shim(["exec", "--init", "--", "sh", "-c", f"echo $$ $PPID > {out}"], {})
    assert finish(process, canaries)[0] == 0
    pid, ppid = out.read_text().split()
    assert ppid == "1" and pid != "1"


def test_sigterm_reaches_the_child_and_shim_exits_143(start_shim, canaries, tmp_path):
    marker = tmp_path / "started"
    process = start_shim(["exec", "--init", "--", "sh", "-c", f"touch {marker}; exec sleep 60"], {})
    assert wait_for(marker.exists)
    os.kill(shim_pid_inside(process), signal.SIGTERM)
    returncode, _, _ = finish(process, canaries)
    assert returncode == 143


def test_signals_are_forwarded_to_the_group(start_shim, canaries, tmp_path):
    """A HUP to PID 1 reaches the child and its own child (the whole group)."""
    log = tmp_path / "hups"
    # The parent waits for the grandchild before it exits: once the parent (the program) is
    # gone, PID 1 exits and the namespace with it, whatever the grandchild was about to write.
    script = (f"trap 'echo parent >> {log}; wait; exit 0' HUP; "
              f"sh -c \"trap 'echo grandchild >> {log}; exit 0' HUP; touch {log}.g; "
              f"while :; do sleep 0.05; done\" & "
              f"touch {log}.p; wait")
    process = start_shim(["exec", "--init", "--", "sh", "-c", script], {})
    assert wait_for(lambda: Path(f"{log}.p").exists() and Path(f"{log}.g").exists())
    os.kill(shim_pid_inside(process), signal.SIGHUP)
    returncode, _, _ = finish(process, canaries)
    assert returncode == 0
    assert sorted(log.read_text().split()) == ["grandchild", "parent"]


def test_forward_to_child_only(start_shim, canaries, tmp_path):
    log = tmp_path / "hups"
    script = (f"trap 'echo parent >> {log}; exit 0' HUP; "
              f"sh -c \"trap 'echo grandchild >> {log}; exit 0' HUP; touch {log}.g; "
              f"while :; do sleep 0.05; done\" & "
              f"touch {log}.p; wait; kill $!")
    process = start_shim(["exec", "--init", "--forward-to", "child", "--", "sh", "-c", script], {})
    assert wait_for(lambda: Path(f"{log}.p").exists() and Path(f"{log}.g").exists())
    os.kill(shim_pid_inside(process), signal.SIGHUP)
    returncode, _, _ = finish(process, canaries)
    assert returncode == 0
    assert log.read_text().split() == ["parent"]


def test_orphaned_grandchildren_are_reaped(start_shim, canaries, tmp_path):
    report = tmp_path / "zombies"
    script = ("for i in $(seq 100); do (sleep 0.3 &) ; done; sleep 1.5; "
              f"ps -eo stat= | grep -c '^Z' > {report}; ps -eo pid= | wc -l >> {report}")
    process = start_shim(["exec", "--init", "--", "sh", "-c", script], {})
    assert finish(process, canaries)[0] == 0
    zombies, processes = report.read_text().split()
    assert zombies == "0"
    assert int(processes) <= 4  # shim, sh, ps, wc: the 100 orphans are gone


def test_subreaper_when_not_pid_1(start_shim, canaries, tmp_path):
    """Without a PID namespace shim registers as child subreaper: orphans come to it, not to init."""
    report = tmp_path / "ppid"
    # $PPID is fixed when a shell starts; read the parent at the moment of asking instead.
    script = (f"(sh -c 'sleep 1; cut -d\" \" -f4 /proc/$$/stat > {report}' &) ; "
              f"while [ ! -s {report} ]; do sleep 0.1; done")
    process = start_shim(["exec", "--init", "--", "sh", "-c", script], {}, pid_namespace=False)
    assert finish(process, canaries)[0] == 0
    assert int(report.read_text()) == process.pid


def test_child_gets_default_signals_and_empty_mask(start_shim, canaries, probe):
    process = start_shim(["exec", "--init", "--", *probe.argv], {})
    assert finish(process, canaries)[0] == 0
    record = probe.read()
    assert record["sig_ign"] == "0000000000000000"
    assert record["sig_blk"] == "0000000000000000"


def test_init_drops_privileges_for_child_and_supervisor(start_shim, canaries, tmp_path, shared_dir):
    out = shared_dir / "ids"
    process = start_shim(["exec", "--init", "--user", "nobody", "--", "sh", "-c",
                          f"echo $(id -u) $(awk '/^Uid/{{print $2}}' /proc/1/status) > {out}"], {})
    assert finish(process, canaries)[0] == 0
    child_uid, supervisor_uid = out.read_text().split()
    assert child_uid == "65534" and supervisor_uid == "65534"


# --- --watch with file secrets ------------------------------------------------

def watch_child(starts: Path) -> list[str]:
    """A child that records each start (the value it saw) and then waits."""
    return ["sh", "-c", f'echo "$SECRET" >> {starts}; exec sleep 60']


def test_watch_restarts_once_on_change_and_never_without(start_shim, canaries, tmp_path, shared_dir):
    first, second = canaries.new("v1"), canaries.new("v2")
    secret = tmp_path / "secret"
    secret.write_text(first)
    starts = shared_dir / "starts"
    process = start_shim(["exec", "--watch", "300ms", "--", *watch_child(starts)],
                         {"SECRET": f"file:{secret}"})
    assert wait_for(lambda: starts.exists() and starts.read_text().split() == [first])
    time.sleep(1.5)  # several ticks with nothing changed
    assert starts.read_text().split() == [first]
    secret.write_text(second)
    assert wait_for(lambda: starts.read_text().split() == [first, second])
    time.sleep(1.5)
    assert starts.read_text().split() == [first, second]  # restarted exactly once
    os.kill(shim_pid_inside(process), signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143


def test_watch_keeps_child_when_store_fails(start_shim, canaries, tmp_path, shared_dir):
    value = canaries.new()
    secret = tmp_path / "secret"
    secret.write_text(value)
    starts = shared_dir / "starts"
    process = start_shim(["exec", "--watch", "200ms", "--", *watch_child(starts)],
                         {"SECRET": f"file:{secret}"})
    assert wait_for(lambda: starts.exists())
    secret.unlink()  # the "store" is gone: re-resolution fails
    time.sleep(1.5)
    assert starts.read_text().split() == [value]
    secret.write_text(value)  # back, unchanged: still no restart
    time.sleep(1.0)
    assert starts.read_text().split() == [value]
    os.kill(shim_pid_inside(process), signal.SIGTERM)
    returncode, _, stderr = finish(process, canaries)
    assert returncode == 143
    assert "re-resolution failed, keeping the running values" in stderr


def test_restart_kills_a_child_that_ignores_sigterm_after_stop_timeout(start_shim, canaries, tmp_path, shared_dir):
    first, second = canaries.new("v1"), canaries.new("v2")
    secret = tmp_path / "secret"
    secret.write_text(first)
    starts = shared_dir / "starts"
    stubborn = ["sh", "-c", f"trap '' TERM; echo \"$SECRET\" >> {starts}; while :; do sleep 0.1; done"]
    process = start_shim(["exec", "--watch", "200ms", "--stop-timeout", "1s", "--", *stubborn],
                         {"SECRET": f"file:{secret}"})
    assert wait_for(lambda: starts.exists())
    changed_at = time.monotonic()
    secret.write_text(second)
    assert wait_for(lambda: starts.read_text().split() == [first, second])
    assert time.monotonic() - changed_at >= 1.0  # it waited the stop timeout before SIGKILL
    os.kill(shim_pid_inside(process), signal.SIGKILL)
    finish(process, canaries)


def test_on_change_signal_and_exit(start_shim, canaries, tmp_path, shared_dir):
    secret = tmp_path / "secret"
    secret.write_text(canaries.new("v1"))
    log = shared_dir / "log"
    child = ["sh", "-c", f"trap 'echo hup >> {log}' HUP; touch {log}; while :; do sleep 0.05; done"]
    process = start_shim(["exec", "--watch", "200ms", "--on-change", "signal:HUP", "--", *child],
                         {"SECRET": f"file:{secret}"})
    assert wait_for(log.exists)
    secret.write_text(canaries.new("v2"))
    assert wait_for(lambda: "hup" in log.read_text())
    os.kill(shim_pid_inside(process), signal.SIGKILL)
    finish(process, canaries)

    secret.write_text(canaries.new("v3"))
    marker = shared_dir / "exit-started"
    process = start_shim(["exec", "--watch", "200ms", "--on-change", "exit", "--",
                          "sh", "-c", f"touch {marker}; exec sleep 60"], {"SECRET": f"file:{secret}"})
    assert wait_for(marker.exists)
    secret.write_text(canaries.new("v4"))
    returncode, _, _ = finish(process, canaries)
    assert returncode == 143  # the child was stopped with SIGTERM and shim exited with its status


def test_bad_on_change_is_usage_error(run_shim):
    assert run_shim(["exec", "--watch", "1s", "--on-change", "reboot", "--", "true"], {}).returncode == 64
    assert run_shim(["exec", "--watch", "1s", "--on-change", "signal:NOPE", "--", "true"], {}).returncode == 64
    assert run_shim(["exec", "--watch", "soon", "--", "true"], {}).returncode == 64


def test_init_supervisor_keeps_no_secret_once_the_program_runs(start_shim, canaries, tmp_path):
    """Without --watch nothing is re-read, so the supervisor replaces itself with the lean
    loop: its environment is empty and its command line names only the loop and the child."""
    secret_file = tmp_path / "db_password"
    secret = canaries.new("init")
    secret_file.write_text(secret)
    marker = tmp_path / "started"
    process = start_shim(["exec", "--init", "--secrets-dir", str(tmp_path), "--",
                          "sh", "-c", f"touch {marker}; exec sleep 60"],
                         {"DB_PASSWORD_FILE": str(secret_file), "VAULT_TOKEN": canaries.new("token")})
    assert wait_for(marker.exists)
    supervisor = shim_pid_inside(process)
    assert wait_for(lambda: b"initloop.py" in Path(f"/proc/{supervisor}/cmdline").read_bytes())
    assert Path(f"/proc/{supervisor}/environ").read_bytes() == b""
    assert not memory_contains(supervisor, secret.encode())
    os.kill(supervisor, signal.SIGTERM)
    returncode, _, _ = finish(process, canaries)
    assert returncode == 143
