"""Property tests (hypothesis) of the parsers and writers that see untrusted text.

CI runs the `ci` profile (fast); `HYPOTHESIS_PROFILE=long` runs 50x more
examples (see docs/security.md). Each property says: no input makes the code
fail with anything but our own error type, and what is written reads back.
"""

from __future__ import annotations

import json
import subprocess

from hypothesis import HealthCheck, given, settings, strategies as st

from shim.pipeline.envfiles import load_env_files
from shim.tools.errors import ShimError
from shim.syntax.placeholders import PLACEHOLDER, find_placeholders
from shim.pipeline.plan import Settings, build_plan
from shim.delivery.render import format_env_file

NAMES = st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True)
# Values an environment can hold: any text without NUL.
VALUES = st.text(alphabet=st.characters(blacklist_characters="\0", codec="utf-8"), max_size=40)
TRICKY = st.lists(st.sampled_from(list("ab $'\"\\\n\r=#{}`!&|;") + ["CHANGEME", "CHANGEME_K", "${", "$${",
                                                                      "ref+file://", "vault:"]),
                  max_size=12).map("".join)


@given(st.lists(st.one_of(VALUES, st.sampled_from(["CHANGEME", "CHANGEME_DB_PW", "xCHANGEME", "CHANGEME_"])),
                max_size=6).map("".join))
def test_placeholder_scanner_finds_exact_tokens(text):
    for found in find_placeholders("VAR", text):
        assert text[found.start:found.end] == found.token
        assert PLACEHOLDER.fullmatch(found.token)
        assert found.key == "VAR" if found.token == "CHANGEME" else found.token == "CHANGEME_" + found.key


TOKENS = st.sampled_from(["CHANGEME", "CHANGEME_DB_PW", "CHANGEME_k9", "CHANGEME__"])
# Text that cannot extend a token: no letter, digit or underscore.
FILLER = st.text(alphabet=st.characters(blacklist_categories=("L", "N", "Cs"), blacklist_characters="_\0"),
                 max_size=8)


@given(st.lists(st.tuples(FILLER, TOKENS), min_size=1, max_size=5), FILLER)
def test_placeholder_scanner_finds_every_token_it_is_given(pieces, tail):
    """The other half of the property: a scanner that found nothing would pass the test above."""
    text = "".join(filler + " " + token + " " for filler, token in pieces) + tail
    found = find_placeholders("VAR", text)
    assert [placeholder.token for placeholder in found] == [token for _, token in pieces]
    assert [text[p.start:p.end] for p in found] == [p.token for p in found]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, st.one_of(VALUES, TRICKY), max_size=6))
def test_planning_any_environment_fails_only_with_our_errors(environ):
    plan = build_plan(environ, Settings(secrets_dirs=("/nonexistent-shim-fuzz",), allow_placeholders=True))
    for error in plan.errors:
        assert isinstance(error, ShimError)
        assert error.exit_code in (64, 65, 66, 77, 78)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_env_file_loader_accepts_or_refuses_cleanly(tmp_path, content):
    path = tmp_path / "fuzz.env"
    path.write_text(content)
    try:
        load_env_files([str(path)])
    except ShimError as error:
        assert error.exit_code == 64


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.dictionaries(NAMES, VALUES, max_size=5))
def test_dotenv_render_reads_back_through_our_own_loader(tmp_path, values):
    path = tmp_path / "round.env"
    path.write_text(format_env_file(values, "dotenv"))
    read = {name: entry.value for name, entry in load_env_files([str(path)]).items()}
    for name, value in values.items():
        if "'" in value or "\\" in value:
            # Double-quoted: python-dotenv keeps the backslash of \$ and \` (docs/long-running.md).
            value = value.replace("$", "\\$").replace("`", "\\`")
        assert read[name] == value


@given(st.dictionaries(NAMES, VALUES, max_size=5))
def test_json_render_round_trip(values):
    assert json.loads(format_env_file(values, "json")) == values


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(st.dictionaries(NAMES, VALUES, min_size=1, max_size=4))
def test_shell_render_round_trip_through_sh(tmp_path, values):
    path = tmp_path / "round.sh"
    path.write_text(format_env_file(values, "shell"))
    names = " ".join(values)
    script = f". '{path}'; for n in {names}; do eval \"v=\\${{$n}}\"; printf '%s\\0' \"$v\"; done"
    output = subprocess.run(["sh", "-c", script], capture_output=True, check=True, env={}).stdout
    assert output.decode("utf-8", "surrogateescape").split("\0")[:-1] == list(values.values())
