"""The fast path for `shim exec` (shim.commands.fastpath) and click agree on every command line.

Two parsers are acceptable only if they cannot drift: hypothesis draws command lines and SHIM_*
environments from the option table (valid and invalid, every option, every spelling) and checks
that whenever the fast path reads a line, click reads it into the very same raw values, CMD and
Options; otherwise the fast path hands over to click. A second property draws only the usual
lines and requires the fast path to read every one of them, so a fast path that hands over
everything (or drops an option) fails too.
"""

from __future__ import annotations

import os
from unittest import mock

import click
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from shim.commands import cli
from shim.tools.errors import ShimError
from shim.commands.fastpath import parse_exec
from shim.pipeline.options import BY_NAME, OPTIONS, options_of, parse_options, refused_flags

EXEC = options_of("exec")
FLAGGED = [option for option in EXEC if option.flags]
LONG = [(flag, option) for option in FLAGGED for flag in option.flags_of("exec")
        if flag.startswith("--")]
SHORT_LETTERS = [flag[1] for option in FLAGGED for flag in option.flags_of("exec")
                 if len(flag) == 2]
REFUSED = sorted(refused_flags("exec").items())
ENV_OPTIONS = [option for option in OPTIONS if option.env]
A_FILE = "/etc/passwd"            # exists, regular, readable
A_DIRECTORY = "/etc"
MISSING = "/nonexistent-shim-test/audit.jsonl"


def click_exec(args, env):
    """What click hands exec_command for `shim ARGS` in `env`: (raw, command), or None when
    it would not run exec (another command, --help, --version, a usage error)."""
    with mock.patch.dict(os.environ, env, clear=True):
        try:
            with cli.cli.make_context("shim", list(args)) as group:
                rest = [*getattr(group, "_protected_args", []), *group.args]
                if not rest:
                    return None                  # click: "Missing command"
                name, command, rest = cli.cli.resolve_command(group, rest)
                if command is not cli.exec_command:
                    return None
                with command.make_context(name, rest, parent=group) as context:
                    raw = dict(context.params)
        except (click.exceptions.ClickException, click.exceptions.Exit):
            return None
    return raw, tuple(raw.pop("command"))


def options_from(raw, env):
    """Every attribute of the Options parse_options makes of `raw`, or the error it raises."""
    try:
        options = parse_options("exec", raw, env)
    except ShimError as error:
        return ("error", type(error).__name__, error.line())
    return {name: getattr(options, name) for name in BY_NAME}


def assert_agree(args, env, *, must_be_fast=False):
    fast = parse_exec(args, env)
    slow = click_exec(args, env)
    if fast is None:
        assert not must_be_fast, f"the fast path handed over a usual line: {args} {env}"
        return
    assert slow is not None, f"the fast path read what click refuses: {args} {env}"
    assert fast == slow
    assert options_from(fast[0], env) == options_from(slow[0], env)


# --- what lines are made of, from the table ------------------------------------------------

def usual_values(option):
    """Values click takes as they are, per kind (some still fail parse_options, on both paths)."""
    kind = option.kind
    if kind == "choice":
        return st.sampled_from(option.choices)
    return st.sampled_from({
        "user": ["app", "1000:1000", "nobody", "root:0"],
        "duration": ["30s", "5m", "500ms", "1h", "90d", "0s", "soon"],
        "signal": ["TERM", "SIGHUP", "15", "USR1", "NOPE"],
        "action": ["restart", "exit", "signal:HUP", "signal:NOPE", "run:x", "exit:1"],
        "text": ["file:/run/secrets", "vault:secret/data/app", "file:/run/secrets#k", "x"],
        "path": [A_FILE, MISSING, ""],
        "paths": ["/run/secrets", "/srv/a", "", "a,b", "c:d"],
        "list": ["A", "A,B", "*", " A , B ", "", "SECRET_TOKEN"],
        "mode": ["0400", "0777", "999"],
    }.get(kind, ["value", "x y", "é", ""]))


def odd_values(option):
    """Values click may refuse or read differently: the fast path must hand over or agree."""
    return st.one_of(
        usual_values(option),
        st.sampled_from(["-", "--", "-v", "--help", "=", A_DIRECTORY, "JSON", "Group", ","]),
        st.text(alphabet="-=,: aAvq1/", max_size=6))


def usual_env_values(option):
    if option.kind == "flag":
        return st.sampled_from(["1", "true", "yes", "on", "0", "false", "no", "off", "TRUE",
                                " On ", "No"])
    if option.multiple:
        return st.sampled_from(["/srv/a", "/srv/a:/srv/b", "/srv/a,/srv/b", "A", "A,B", " A , B "])
    return usual_values(option).filter(bool)


def odd_env_values(option):
    return st.one_of(usual_env_values(option),
                     st.sampled_from(["", "t", "y", "n", "f", "maybe", ",", ":", " ", "JSON",
                                      A_DIRECTORY]),
                     st.text(alphabet=",: aA1tY", max_size=5))


@st.composite
def usual_token(draw):
    flag, option = draw(st.sampled_from(LONG))
    if option.kind == "count":
        return [draw(st.sampled_from([flag, "-" + "".join(draw(
            st.lists(st.sampled_from(SHORT_LETTERS), min_size=1, max_size=3)))]))]
    if option.kind == "flag":
        return [flag]
    value = draw(usual_values(option))
    if value.startswith("-"):
        return [f"{flag}={value}"]
    return draw(st.sampled_from([[flag, value], [f"{flag}={value}"]]))


@st.composite
def any_token(draw):
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(usual_token())
    if choice == 1:
        flag, option = draw(st.sampled_from(LONG))
        value = draw(odd_values(option))
        return draw(st.sampled_from([[flag], [flag, value], [f"{flag}={value}"]]))
    if choice == 2:
        flag, _ = draw(st.sampled_from(REFUSED))
        return draw(st.sampled_from([[flag], [flag, "x"], [f"{flag}=x"]]))
    if choice == 3:
        return [draw(st.sampled_from(["--help", "-h", "--version", "-vh", "-x", "-v=1", "--nope",
                                      "--verb", "--user", "-"]))]
    if choice == 4:
        return ["-" + draw(st.text(alphabet="vqhx-=", min_size=1, max_size=4))]
    return [draw(st.sampled_from(LONG))[0]]


COMMAND_WORDS = st.sampled_from(["/bin/true", "prog", "-", "--", "--user", "-v", "x=y", ""])


@st.composite
def environments(draw, values):
    chosen = draw(st.lists(st.sampled_from(ENV_OPTIONS), max_size=6, unique=True))
    env = {option.env: draw(values(option)) for option in chosen}
    env.update(draw(st.dictionaries(st.sampled_from(["PATH", "HOME", "SHIM_UNKNOWN", "X_FILE"]),
                                    st.sampled_from(["/bin", "x", ""]), max_size=2)))
    return env


@st.composite
def usual_lines(draw):
    tokens = [part for token in draw(st.lists(usual_token(), max_size=6)) for part in token]
    command = draw(st.lists(COMMAND_WORDS, min_size=1, max_size=3))
    if draw(st.booleans()) or command[0].startswith("-"):
        tokens.append("--")
    return ["exec", *tokens, *command]


@st.composite
def any_lines(draw):
    first = draw(st.sampled_from(["exec"] * 6 + ["check", "render", "run", "--help", "ex", ""]))
    tokens = [part for token in draw(st.lists(any_token(), max_size=6)) for part in token]
    command = draw(st.lists(COMMAND_WORDS, max_size=3))
    separator = draw(st.sampled_from([[], ["--"]]))
    return ([first] if first else []) + tokens + separator + command


PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(usual_lines(), environments(usual_env_values))
@example(["exec", "--secrets-dir", "/srv/secrets", "--", "/bin/true"], {})
@example(["exec", "-vv", "--user", "app", "prog", "--user", "x"], {"SHIM_INIT": "1"})
def test_the_fast_path_reads_every_usual_line_as_click_does(args, env):
    assert_agree(args, env, must_be_fast=True)


@PROPERTY
@given(any_lines(), environments(odd_env_values))
@example(["exec", "--user", "--help", "prog"], {})
@example(["exec", "--allow-root=1", "prog"], {})
@example(["exec", "--log-format", "JSON", "prog"], {})
@example(["exec", "prog"], {"SHIM_ALLOW_ROOT": "maybe"})
@example(["exec", "prog"], {"SHIM_SECRETS_DIR": ","})
@example(["exec", "--audit-file", A_DIRECTORY, "prog"], {})
@example(["exec", "--"], {})
def test_the_fast_path_agrees_with_click_or_hands_over(args, env):
    assert_agree(args, env)


# --- hand-over, checked by name --------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--help"], ["--version"], ["exec", "--help"], ["exec", "-h"], ["exec", "-vh", "x"],
    ["exec", "--version", "x"], ["check"], ["render", "--dir", "/tmp"], ["exec"],
    ["exec", "--user"], ["exec", "--json", "x"], ["exec", "--nope", "x"], ["exec", "--verb", "x"],
    ["exec", "--forward-to", "nobody", "x"], ["exec", "--init=yes", "x"], [],
])
def test_these_go_to_click(args):
    assert parse_exec(args, {}) is None


SAMPLE = {"duration": "7s", "signal": "HUP", "action": "exit", "text": "file:/srv",
          "path": MISSING, "user": "app", "paths": "/srv/a", "list": "A", "mode": "0440"}


@pytest.mark.parametrize("option", FLAGGED, ids=lambda option: option.name)
def test_every_option_exec_honours_is_on_the_fast_path(option):
    """Each option `exec` takes, given on the command line and by its SHIM_* variable, is read
    by the fast path as click reads it, and changes the value."""
    flag = option.flags_of("exec")[0]
    value = option.choices[-1] if option.choices else SAMPLE.get(option.kind)
    line = ["exec", flag] + ([value] if value is not None else []) + ["prog"]
    assert_agree(line, {}, must_be_fast=True)
    assert parse_exec(line, {})[0][option.name] not in (None, False, (), 0, option.default)
    if option.env:
        env = {option.env: "yes" if option.kind == "flag" else value}
        assert_agree(["exec", "prog"], env, must_be_fast=True)
        assert parse_exec(["exec", "prog"], env)[0][option.name] not in (
            None, False, (), 0, option.default)
