"""Each command offers exactly the options it honours (shim.pipeline.options.OPTIONS), refuses the
others with 64 naming the command, and the small warnings a newcomer needs."""

from __future__ import annotations

import re

import pytest

from shim.pipeline.options import PIPELINE_COMMANDS, ignored_flags, options_of, refused_flags


def _help_flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", text)) - {"-h", "--help"}


@pytest.mark.parametrize("command", PIPELINE_COMMANDS)
def test_help_lists_exactly_the_options_the_command_honours(run_shim, command):
    result = run_shim([command, "--help"])
    assert result.returncode == 0
    options_part = result.stdout.split("Options:", 1)[1]
    expected = {flag for option in options_of(command) for flag in option.flags_of(command)}
    assert _help_flags(options_part) >= expected
    for flag in refused_flags(command):
        assert not re.search(rf"^\s+(-\w, )?{re.escape(flag)}\b", options_part, re.M), flag


@pytest.mark.parametrize("command, flag", [(command, flag) for command in PIPELINE_COMMANDS
                                           for flag in sorted(refused_flags(command))
                                           if flag not in ignored_flags(command)])
def test_every_refused_option_is_a_usage_error_naming_the_command(run_shim, probe, tmp_path,
                                                                   command, flag):
    option = refused_flags(command)[flag]
    args = [flag] if option.kind in ("flag", "count") else [flag, "1s"]
    tail = ["--", *probe.argv] if command in ("exec", "run") else []
    if command == "render":
        args = ["--dir", str(tmp_path), *args]
    result = run_shim([command, *args, *tail], cwd=tmp_path)
    assert result.returncode == 64, result.stderr
    assert f"{command} does not take {flag}" in result.stderr
    assert not probe.ran


def test_the_refusals_issue_19_names(run_shim, tmp_path):
    assert "--user" not in run_shim(["run", "--help"]).stdout
    for args in (["render", "--dir", str(tmp_path), "--user", "nobody"],
                 ["render", "--dir", str(tmp_path), "--init"],
                 ["check", "--dir", str(tmp_path)], ["check", "--mode", "0400"]):
        result = run_shim(args)
        assert result.returncode == 64, args
        assert f"{args[0]} does not take" in result.stderr


@pytest.mark.parametrize("mode", ["-1", "77777", "1777", "4755", "0o400", "8"])
def test_render_refuses_a_mode_outside_0000_0777(run_shim, tmp_path, canaries, mode):
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    out = tmp_path / "out"
    out.mkdir()
    result = run_shim(["render", "--dir", str(out), "--mode", mode], {"A": f"file:{secret}"})
    assert result.returncode == 64
    assert "--mode" in result.stderr
    assert list(out.iterdir()) == []


def test_render_accepts_0777_and_0000(run_shim, tmp_path, canaries):
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    for mode in ("0777", "0000"):
        out = tmp_path / f"out{mode}"
        out.mkdir()
        result = run_shim(["render", "--dir", str(out), "--mode", mode], {"A": f"file:{secret}"})
        assert result.returncode == 0, result.stderr
        assert (out / "A").stat().st_mode & 0o7777 == int(mode, 8)


def test_render_dir_missing_says_how_to_create_it(run_shim, tmp_path):
    result = run_shim(["render", "--dir", str(tmp_path / "missing")])
    assert result.returncode == 64
    assert "does not exist" in result.stderr and "install -d -m 0700" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_env_file_variable_takes_commas(run_shim, tmp_path, probe):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("FIRST=one\n")
    second.write_text("SECOND=two\n")
    result = run_shim(["exec", "--", *probe.argv], {"SHIM_ENV_FILE": f"{first},{second}"})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert (env["FIRST"], env["SECOND"]) == ("one", "two")


def test_exec_as_root_without_user_warns_once(run_shim, probe):
    result = run_shim(["exec", "--", *probe.argv])
    assert result.returncode == 0
    assert [line for line in result.stderr.splitlines() if "as root" in line] == [
        "shim: warning: running the program as root: no --user given "
        "(set --user, or --allow-root to silence this)"]


@pytest.mark.parametrize("args, env", [(["--allow-root"], {}), ([], {"SHIM_ALLOW_ROOT": "1"}),
                                       (["--user", "nobody"], {})])
def test_no_root_warning_when_asked_or_when_dropping(run_shim, probe, args, env):
    result = run_shim(["exec", *args, "--", *probe.argv], env)
    assert result.returncode == 0, result.stderr
    assert "as root" not in result.stderr


def test_user_without_passwd_entry_and_gid_0_warns_under_require_non_root(run_shim, probe):
    result = run_shim(["exec", "--user", "10001", "--require-non-root", "--", *probe.argv])
    assert result.returncode == 0, result.stderr
    assert probe.read()["gid"] == 0
    assert "runs with gid 0" in result.stderr


def test_file_var_outside_secrets_dirs_is_reported(run_shim, tmp_path, probe, canaries):
    outside = tmp_path / "outside"
    outside.write_text(canaries.new())
    env = {"DB_PASSWORD_FILE": str(outside), "SHIM_SECRETS_DIR": str(tmp_path / "secrets")}
    quiet = run_shim(["exec", "--allow-root", "--", *probe.argv], env)
    assert quiet.stderr == ""
    verbose = run_shim(["exec", "--allow-root", "-v", "--", *probe.argv], env)
    assert "DB_PASSWORD_FILE: its path is outside every secrets dir; left as is" in verbose.stderr
    assert str(outside) not in verbose.stderr
    assert probe.read()["env"]["DB_PASSWORD_FILE"] == str(outside)
    check = run_shim(["check", "-v"], env)     # without -v: one summary line (issue 25)
    assert check.returncode == 0
    assert re.search(r"^DB_PASSWORD_FILE\s+file-var\s+-\s+left as is", check.stdout, re.M)


def test_check_takes_every_exec_flag_and_names_the_ignored_ones_once(run_shim, tmp_path,
                                                                      canaries):
    """Issue 25: people copy the ENTRYPOINT's flags into `check`; none of exec's is refused."""
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    ignored = ignored_flags("check")
    assert {"--no-new-privs", "--init", "--watch", "--allow-root", "--passthrough"} <= set(ignored)
    args = []
    for flag, option in sorted(ignored.items()):
        args += [flag] if option.kind in ("flag", "count") else [flag, _a_value(flag)]
    result = run_shim(["check", *args], {"A": f"file:{secret}"})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "ignores" in line]
    assert warnings == [f"shim: warning: check ignores {', '.join(sorted(ignored))}: only a "
                        f"running program is affected (exec)"], result.stderr
    assert result.stdout.splitlines()[1].split()[:4] == ["A", "reference",
                                                          f"ref+file://{secret}", "ok"]


def _a_value(flag: str) -> str:
    return {"--on-change": "exit", "--forward-to": "child", "--stop-signal": "TERM",
            "--passthrough": "VAULT_TOKEN"}.get(flag, "5s")
