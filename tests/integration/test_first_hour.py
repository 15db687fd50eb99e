"""A newcomer's first hour (issue 25): what a person at a terminal sees, said once and pointing
the right way. Every run goes through run_shim/start_shim; every secret is a canary."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import time

from tests.conftest import ROOT


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unreachable_vault(canaries, tmp_path) -> dict:
    token = canaries.new("token")
    return {"VAULT_ADDR": f"http://127.0.0.1:{closed_loopback_port()}", "VAULT_TOKEN": token,
            "HOME": str(tmp_path), "API_KEY": "vault:secret/data/app#key"}


# -- feedback while waiting ------------------------------------------------------------------------

def test_waiting_on_an_unreachable_store_is_shown_in_plain_lines_and_the_error_says_what_was_tried(
        run_shim, canaries, probe, tmp_path):
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", "8s", "--", *probe.argv],
                      unreachable_vault(canaries, tmp_path), timeout=30)
    assert result.returncode == 69
    assert time.monotonic() - started < 8 + 6
    waiting = [line for line in result.stderr.splitlines() if "waiting for" in line]
    assert waiting, result.stderr
    assert re.fullmatch(r"shim: waiting for Vault \(.+\): connection refused; attempt \d+, "
                        r"retrying for \d+s more \(--deadline\)", waiting[0]), waiting[0]
    assert "\r" not in result.stderr and "\x1b" not in result.stderr   # not a terminal
    final = result.stderr.splitlines()[-1]
    assert re.search(r"Vault: connection refused on every attempt \(\d+, \d+\.\d+s\) within the "
                     r"deadline", final), final
    assert not probe.ran


def test_waiting_is_one_line_updated_in_place_on_a_terminal(run_shim, canaries, probe, tmp_path):
    controller, terminal = pty.openpty()
    try:
        # stderr becomes the terminal in the child (after subprocess set up its pipes).
        result = run_shim(["exec", "--deadline", "8s", "--", *probe.argv],
                          unreachable_vault(canaries, tmp_path), timeout=30,
                          preexec_fn=lambda: os.dup2(terminal, 2))
        os.close(terminal)
        seen = b""
        while select.select([controller], [], [], 0.5)[0]:
            try:
                chunk = os.read(controller, 4096)
            except OSError:          # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
    text = seen.decode(errors="replace")
    canaries.assert_absent(text, where="the terminal")
    assert result.returncode == 69
    updates = text.count("\r\x1b[Kshim: waiting for Vault")
    assert updates >= 2, text              # rewritten in place, once a second at most
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if "waiting for" in line]
    assert len(lines) == 1, text           # never a new line per attempt
    assert "on every attempt" in text.rsplit("\r\x1b[K", 1)[-1]   # erased before the error


def test_quiet_and_json_logs_get_no_waiting_line(run_shim, canaries, probe, tmp_path):
    for options in (["-q"], ["--log-format", "json"]):
        result = run_shim(["exec", "--deadline", "6s", *options, "--", *probe.argv],
                          unreachable_vault(canaries, tmp_path), timeout=30)
        assert result.returncode == 69
        assert "waiting for" not in result.stderr, options


# -- said once -------------------------------------------------------------------------------------

def test_no_arguments_prints_the_help_and_exits_0(run_shim):
    bare, helped = run_shim([]), run_shim(["--help"])
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout == helped.stdout and bare.stdout.startswith("Usage: shim")
    assert bare.stderr == ""


def test_the_same_failure_of_several_variables_is_one_line_naming_them(run_shim, tmp_path, probe):
    missing = tmp_path / "gone.json"
    env = {"A": f"ref+file://{missing}#/a", "B": f"ref+file://{missing}#/b",
           "C": f"ref+file://{missing}#/c"}
    result = run_shim(["exec", "--", *probe.argv], env)
    assert result.returncode == 66
    errors = [line for line in result.stderr.splitlines() if line.startswith("shim: error")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"shim: error: A, B, C (ref+file://{missing}): ")
    as_json = run_shim(["exec", "--log-format", "json", "--", *probe.argv], env)
    assert as_json.stderr.count('"secret.failed"') == 3     # machines keep one per variable


def test_enforced_max_age_is_one_line(run_shim, canaries, tmp_path, probe):
    old = tmp_path / "old"
    old.write_text(canaries.new())
    moment = time.time() - 10 * 86400
    os.utime(old, (moment, moment))
    result = run_shim(["exec", "--max-age", "1d", "--enforce-max-age", "--", *probe.argv],
                      {"OLD": f"file:{old}"})
    assert result.returncode == 78
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("shim: error: OLD (") and "rotation overdue" in result.stderr
    warned = run_shim(["exec", "--max-age", "1d", "--allow-root", "--", *probe.argv],
                      {"OLD": f"file:{old}"})
    assert warned.returncode == 0
    assert [line for line in warned.stderr.splitlines() if "rotation overdue" in line]


# -- hints that point the right way ----------------------------------------------------------------

def test_user_empty_is_the_callers_own_uid_without_the_root_warning(run_shim, probe):
    result = run_shim(["exec", "--user", "", "--", *probe.argv])
    assert result.returncode == 0, result.stderr
    assert "no --user given" not in result.stderr
    assert result.stderr == ""
    seen = probe.read()
    assert seen["uid"] == os.getuid()
    assert seen["env"]["HOME"] == "/root"     # from passwd, like any --user
    without = run_shim(["exec", "--", *probe.argv])
    assert "no --user given" in without.stderr   # the warning stays for a missing --user


def test_an_unknown_option_gets_the_nearest_known_one_and_quotes_nothing(run_shim, canaries,
                                                                         probe, tmp_path):
    result = run_shim(["exec", "--", *probe.argv],
                      {"A": f"ref+file://{tmp_path}/x?max_ag=1d"})
    assert result.returncode == 64
    assert "did you mean max_age?" in result.stderr
    assert "max_ag=" not in result.stderr
    hostile = canaries.new("option").replace("-", "")
    quoted = run_shim(["exec", "--", *probe.argv], {"A": f"ref+file://{tmp_path}/x?{hostile}=1"})
    assert quoted.returncode == 64 and "did you mean" not in quoted.stderr


def test_binary_in_the_environment_points_at_as_files(run_shim, tmp_path, probe):
    encoded = tmp_path / "keystore.b64"
    encoded.write_text("//79/A==\n")      # 0xff 0xfe 0xfd 0xfc: not UTF-8
    result = run_shim(["exec", "--", *probe.argv],
                      {"KEYSTORE": f"ref+file://{encoded}?encoding=base64"})
    assert result.returncode == 65
    assert "--as-files" in result.stderr and "base64-encode" not in result.stderr


def test_import_errors_start_with_the_import(run_shim, tmp_path, probe):
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    result = run_shim(["exec", "--import", f"ref+file://{listed}", "--", *probe.argv])
    assert result.returncode == 65
    assert result.stderr.startswith(f"shim: error: --import ref+file://{listed}: "), result.stderr


# -- one rule each ---------------------------------------------------------------------------------

def test_a_placeholder_key_is_tried_as_written_then_lowercased_in_both_places(run_shim, canaries,
                                                                               tmp_path, probe):
    secrets_dir, source = tmp_path / "secrets", tmp_path / "source.json"
    secrets_dir.mkdir()
    from_dir, from_source = canaries.new("dir"), canaries.new("source")
    (secrets_dir / "pg_password").write_text(from_dir)
    source.write_text('{"api_key": "%s"}' % from_source)
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--placeholder-source",
                       f"ref+file://{source}", "--", *probe.argv],
                      {"PG": "CHANGEME_PG_PASSWORD", "API": "CHANGEME_API_KEY"})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["PG"] == from_dir
    assert probe.read()["env"]["API"] == from_source


def test_check_shows_a_key_missing_from_the_placeholder_source_as_every_unresolved_placeholder(
        run_shim, tmp_path):
    source = tmp_path / "source.json"
    source.write_text("{}")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    both = run_shim(["check", "--json", "--secrets-dir", str(secrets_dir)],
                    {"A": "CHANGEME_A"})
    from_source = run_shim(["check", "--json", "--secrets-dir", str(secrets_dir),
                            "--placeholder-source", f"ref+file://{source}"], {"A": "CHANGEME_A"})
    import json
    rows = [json.loads(run.stdout)["variables"][0] for run in (both, from_source)]
    assert [(row["status"], row["exit_code"]) for row in rows] == [("config", 78)] * 2
    assert both.returncode == from_source.returncode == 78


def test_check_summarises_host_file_vars_and_lists_them_at_v(run_shim, canaries, tmp_path):
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    env = {"A": f"file:{secret}", "NIX_SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
           "TF_CLI_CONFIG_FILE": "/home/me/.terraformrc"}
    plain = run_shim(["check"], env)
    assert plain.returncode == 0, plain.stderr
    assert "NIX_SSL_CERT_FILE" not in plain.stdout and "TF_CLI_CONFIG_FILE" not in plain.stdout
    assert plain.stdout.splitlines()[-1] == ("(2 more *_FILE variables outside every secrets dir, "
                                             "left as is: -v lists them)")
    verbose = run_shim(["check", "-v"], env)
    assert "NIX_SSL_CERT_FILE" in verbose.stdout and "TF_CLI_CONFIG_FILE" in verbose.stdout
    assert "more *_FILE" not in verbose.stdout


def test_the_readme_entrypoint_flags_work_for_check(run_shim, canaries, tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("## Use it in a Dockerfile"):readme.index("## …and in a compose")]
    entrypoint = re.search(r'ENTRYPOINT \["shim", "exec", (.*), "--"\]', block).group(1)
    flags = re.findall(r'"([^"]+)"', entrypoint)
    assert "--no-new-privs" in flags and "--user" in flags
    flags[flags.index("--user") + 1] = "nobody"    # the image's `app` is not a user here
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    result = run_shim(["check", *flags], {"A": f"file:{secret}"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("shim: warning: check ignores --no-new-privs: only a running program "
                             "is affected (exec)\n")
    assert "shim: warning: check ignores --no-new-privs" in readme   # as the README says
