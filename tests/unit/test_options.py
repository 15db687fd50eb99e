"""shim.pipeline.options: the table's shape and parse_options' typed values."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from shim.tools.errors import UsageError
from shim.pipeline.options import KINDS, OPTIONS, PIPELINE_COMMANDS, parse_mode, parse_options, refused_flags, split_paths


def test_the_table_is_consistent():
    names = [option.name for option in OPTIONS]
    assert len(names) == len(set(names))
    for option in OPTIONS:
        assert option.kind in KINDS, option.name
        assert option.commands <= set(PIPELINE_COMMANDS), option.name
        assert option.env is None or option.env.startswith("SHIM_"), option.name
    for command in PIPELINE_COMMANDS:
        flags = [f for o in OPTIONS if command in o.commands for f in o.flags_of(command)]
        assert len(flags) == len(set(flags)), command


def test_the_table_imports_without_click():
    code = ("import sys; import shim.pipeline.options; "
            "assert 'click' not in sys.modules, 'shim.pipeline.options imported click'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parsed_values_only():
    options = parse_options("exec", {"watch": "5m", "stop_signal": "HUP", "deadline": "500ms",
                                     "stop_timeout": None, "on_change": "signal:USR1",
                                     "passthrough": ("VAULT_ADDR,VAULT_TOKEN", "X"),
                                     "file_vars": "A, B", "verbose": 2}, environ={})
    assert (options.watch, options.deadline, options.stop_timeout) == (300.0, 0.5, 10.0)
    assert options.stop_signal == signal.SIGHUP
    assert options.on_change == ("signal", signal.SIGUSR1)
    assert options.passthrough == ("VAULT_ADDR", "VAULT_TOKEN", "X")
    assert options.file_vars == frozenset({"A", "B"})
    assert options.log_level == "debug"
    with pytest.raises(AttributeError):
        options.watch = 1.0


def test_defaults_per_command():
    assert parse_options("exec", {}, environ={}).on_change == ("restart", None)
    assert parse_options("render", {}, environ={}).on_change is None
    assert parse_options("check", {}, environ={}).secrets_dirs == ("/run/secrets",)


def test_environment_only_settings():
    options = parse_options("check", {}, environ={"SHIM_SKIP": "A,B", "SHIM_LOG_LEVEL": "INFO"})
    assert options.skip == frozenset({"A", "B"}) and options.log_level == "info"
    assert parse_options("check", {}, environ={"SHIM_LOG_LEVEL": "loud"}).log_level is None
    assert parse_options("check", {"quiet": 1}, environ={"SHIM_LOG_LEVEL": "debug"}).log_level == "error"


@pytest.mark.parametrize("text", ["-1", "77777", "1000", "4755", "rw", "", "0o7", "8"])
def test_mode_outside_0000_0777_is_refused(text):
    with pytest.raises(UsageError):
        parse_mode(text)


def test_mode_range_edges():
    assert (parse_mode("0"), parse_mode("0777"), parse_mode("400")) == (0, 0o777, 0o400)


@pytest.mark.parametrize("command, action", [("exec", "run:x"), ("render", "restart"),
                                             ("render", "exit"), ("exec", "exit:1")])
def test_on_change_is_checked_per_command(command, action):
    with pytest.raises(UsageError):
        parse_options(command, {"on_change": action}, environ={})


def test_refused_flags_follow_the_commands_column():
    assert "--user" in refused_flags("run") and "--user" in refused_flags("render")
    assert "--watch" in refused_flags("check") and "--json" in refused_flags("exec")
    assert "--env-file" not in refused_flags("render")      # render's own output option
    assert "--from-env-file" in refused_flags("exec")
    assert not set(refused_flags("exec")) & {"--user", "--init", "--watch"}


def test_path_lists_split_on_colon_and_comma():
    assert split_paths("a.env,b.env:c.env, d.env") == ["a.env", "b.env", "c.env", "d.env"]


def test_commands_taking_a_flag_as_spelled():
    from shim.pipeline.options import commands_taking
    assert commands_taking("--from-env-file") == ("render",)
    assert commands_taking("--env-file") == ("exec", "check", "render", "run")
    assert commands_taking("--user") == ("exec", "check")
