"""--template under --watch against the real OpenBao: a rotation rewrites only the template whose
text changed and signals the program once; a variable no template uses rewrites nothing; a
template that fails on a tick keeps the old file and the program; `render --watch` the same.

The program counts the SIGHUPs it gets in a file; the ticks are counted on shim's own /metrics
page, so "exactly one" is checked over ticks that happened, not over a guessed wait.
"""

from __future__ import annotations

import json
import pwd
import signal
import subprocess
from pathlib import Path

from tests.conftest import finish_process
from tests.integration.test_metrics import free_port, scrape
from tests.integration.test_supervise import wait_for
from tests.integration.test_templates import on_tmpfs  # noqa: F401 - fixture
from tests.real.conftest import unique_path

SUCCESS = ("shim_resolutions_total", (("outcome", "success"),))
FAILURE = ("shim_resolutions_total", (("outcome", "failure"),))
# The program: count every SIGHUP, one line each (`sleep` in the background, so the trap runs
# at once rather than after a sleep in the foreground). It holds none of shim's pipes and ends
# with its parent, so a test that fails early leaves nothing behind.
COUNTING_PROGRAM = ("exec >/dev/null 2>&1; trap 'echo hup >> {hups}' HUP; : > {hups}; "
                    "while [ -d /proc/$PPID ]; do sleep 0.05 & wait $!; done")


def default_sighup():
    """pytest may run with SIGHUP ignored (nohup, some CI runners): the program must not inherit it."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def count(port: int, sample) -> float:
    return scrape(port).get(sample, 0)


def ticks_pass(port: int, sample, more: int = 3, timeout: float = 30) -> bool:
    """True once `more` further resolutions of that outcome were counted."""
    start = count(port, sample)
    return wait_for(lambda: count(port, sample) >= start + more, timeout=timeout)


def hups(path: Path) -> int:
    return path.read_text().count("hup") if path.exists() else 0


def identity(path: Path) -> tuple:
    """What a rewrite changes: the inode (a rename puts a new one in place) and the mtime."""
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


def records(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def rotate_the_template_only_secret(openbao, canaries, path, hash_, conf_out, htpasswd_out,
                                    counted, port) -> str:
    """Rotate the secret only app.conf uses: app.conf alone is rewritten, and over the ticks
    that follow the program got exactly one SIGHUP. The new value."""
    untouched = identity(htpasswd_out)
    new_key = canaries.new("key2")
    openbao.put_kv2(path, {"api_key": new_key, "admin_hash": hash_})
    assert wait_for(lambda: conf_out.read_text() == f'api_key = "{new_key}"\n', timeout=30)
    assert wait_for(lambda: hups(counted) == 1, timeout=10)
    assert ticks_pass(port, SUCCESS)
    assert hups(counted) == 1
    assert identity(htpasswd_out) == untouched
    return new_key


def write_templates(directory: Path, path: str) -> tuple[Path, Path]:
    conf = directory / "app.conf.tmpl"
    conf.write_text(f'api_key = {{{{ secret("ref+vault://secret/{path}#/api_key") | tojson }}}}\n')
    htpasswd = directory / "htpasswd.tmpl"
    htpasswd.write_text(f'admin:{{{{ secret("ref+vault://secret/{path}#/admin_hash") | raw }}}}\n')
    return conf, htpasswd


def test_exec_watch_rewrites_only_the_changed_template_and_signals_once(
        openbao, start_shim, canaries, tmp_path, shared_dir, on_tmpfs):
    path, other = unique_path("tplw"), unique_path("tplw-env")
    key, hash_ = canaries.new("key1"), canaries.new("hash")
    openbao.put_kv2(path, {"api_key": key, "admin_hash": hash_})
    openbao.put_kv2(other, {"token": canaries.new("token1")})
    conf, htpasswd = write_templates(tmp_path, path)
    conf_out, htpasswd_out = on_tmpfs / "app.conf", on_tmpfs / "htpasswd"
    counted, port = shared_dir / "hups", free_port()
    nobody = pwd.getpwnam("nobody")
    process = start_shim(
        ["exec", "--user", "nobody", "--watch", "300ms", "--on-change", "signal:HUP",
         "--metrics", f"127.0.0.1:{port}", "--log-format", "json",
         "--template", f"{conf}:{conf_out}", "--template", f"{htpasswd}:{htpasswd_out}",
         "--", "sh", "-c", COUNTING_PROGRAM.format(hups=counted)],
        {**openbao.vault_env(), "HOME": str(tmp_path),
         "APP_TOKEN": f"vault:secret/data/{other}#token"}, preexec_fn=default_sighup)
    assert wait_for(lambda: counted.exists() and count(port, SUCCESS) >= 2, timeout=30)
    assert conf_out.read_text() == f'api_key = "{key}"\n'
    assert htpasswd_out.read_text() == f"admin:{hash_}\n"
    untouched = identity(htpasswd_out)
    new_key = rotate_the_template_only_secret(openbao, canaries, path, hash_, conf_out,
                                              htpasswd_out, counted, port)
    for written in (conf_out, htpasswd_out):   # the owner and mode of the start
        info = written.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (nobody.pw_uid, nobody.pw_gid, 0o400)

    # A variable no template uses rotates: --on-change applies, no template is rewritten.
    rewritten = identity(conf_out)
    openbao.put_kv2(other, {"token": canaries.new("token2")})
    assert wait_for(lambda: hups(counted) == 2, timeout=30)
    assert ticks_pass(port, SUCCESS)
    assert (identity(conf_out), identity(htpasswd_out)) == (rewritten, untouched)

    # The template's secret disappears: the tick fails, the files and the program stay.
    openbao.put_kv2(path, {"admin_hash": hash_})
    assert ticks_pass(port, FAILURE)
    assert conf_out.read_text() == f'api_key = "{new_key}"\n'
    assert (identity(conf_out), identity(htpasswd_out)) == (rewritten, untouched)
    assert hups(counted) == 2 and process.poll() is None

    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish_process(process, canaries)
    assert returncode == 143
    failed = [r for r in records(stderr) if r.get("event") == "watch.failed"]
    assert failed and {r["exit_code"] for r in failed} == {66}
    assert {r["variable"] for r in failed} == {f"template {conf}"}
    changed = [r["variables"] for r in records(stderr) if r.get("event") == "secret.changed"]
    assert changed == [[f"template {conf_out}"], ["APP_TOKEN"]]


def test_render_watch_rewrites_the_changed_template_and_signals_the_pid_file_once(
        openbao, start_shim, canaries, tmp_path, on_tmpfs):
    path = unique_path("tplw-render")
    key, hash_ = canaries.new("key1"), canaries.new("hash")
    openbao.put_kv2(path, {"api_key": key, "admin_hash": hash_})
    conf, htpasswd = write_templates(tmp_path, path)
    conf_out, htpasswd_out = on_tmpfs / "app.conf", on_tmpfs / "htpasswd"
    counted = tmp_path / "hups"
    target = subprocess.Popen(["sh", "-c", COUNTING_PROGRAM.format(hups=counted)],
                              preexec_fn=default_sighup)
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(target.pid))
    port = free_port()
    try:
        process = start_shim(
            ["render", "--owner", "nobody", "--watch", "300ms", "--on-change", "signal:HUP",
             "--pid-file", str(pid_file), "--metrics", f"127.0.0.1:{port}", "--log-format", "json",
             "--template", f"{conf}:{conf_out}", "--template", f"{htpasswd}:{htpasswd_out}"],
            {**openbao.vault_env(), "HOME": str(tmp_path)}, preexec_fn=default_sighup)
        assert wait_for(lambda: htpasswd_out.exists() and count(port, SUCCESS) >= 2, timeout=30)
        new_key = rotate_the_template_only_secret(openbao, canaries, path, hash_, conf_out,
                                                  htpasswd_out, counted, port)
        assert conf_out.stat().st_uid == pwd.getpwnam("nobody").pw_uid

        openbao.put_kv2(path, {"admin_hash": hash_})
        assert ticks_pass(port, FAILURE)
        assert conf_out.read_text() == f'api_key = "{new_key}"\n' and hups(counted) == 1
        process.send_signal(signal.SIGTERM)
        returncode, _, stderr = finish_process(process, canaries)
        assert returncode == 0
    finally:
        target.kill()
        target.wait(timeout=10)
    assert {r["exit_code"] for r in records(stderr) if r.get("event") == "watch.failed"} == {66}
