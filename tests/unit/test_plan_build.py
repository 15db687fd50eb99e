"""plan.build_plan in-process: what each variable needs, from real files in a tmp dir."""

from __future__ import annotations

import pytest

from shim.tools.errors import ConfigError
from shim.pipeline.plan import SecretPart, Settings, build_plan


@pytest.fixture
def secrets_dir(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


def test_name_file_under_a_secrets_dir_becomes_name(secrets_dir):
    (secrets_dir / "db").write_text("x")
    plan = build_plan({"DB_PASSWORD_FILE": str(secrets_dir / "db")},
                      Settings(secrets_dirs=(str(secrets_dir),)))
    entry = plan.entries["DB_PASSWORD"]
    assert (entry.source, entry.origin, entry.remove, entry.whole) == \
        ("file-var", "DB_PASSWORD_FILE", ("DB_PASSWORD_FILE",), True)
    assert entry.secret_parts[0].reference.provider == "file"
    assert plan.errors == [] and plan.left_as_is == []


def test_name_file_outside_every_secrets_dir_is_left_as_is(tmp_path, secrets_dir):
    plan = build_plan({"DB_PASSWORD_FILE": str(tmp_path / "elsewhere")},
                      Settings(secrets_dirs=(str(secrets_dir),)))
    assert plan.entries == {}
    assert plan.left_as_is == ["DB_PASSWORD_FILE"]


def test_secrets_dir_prefix_needs_the_separator(tmp_path, secrets_dir):
    sibling = tmp_path / "secretsX"
    plan = build_plan({"A_FILE": str(sibling / "a")}, Settings(secrets_dirs=(str(secrets_dir),)))
    assert plan.entries == {} and plan.left_as_is == ["A_FILE"]


def test_file_vars_wants_a_name_file_anywhere(tmp_path):
    plan = build_plan({"TOKEN_FILE": str(tmp_path / "t")},
                      Settings(secrets_dirs=(), file_vars=frozenset({"TOKEN"})))
    assert plan.entries["TOKEN"].source == "file-var"


def test_name_and_name_file_both_set_is_78(secrets_dir):
    plan = build_plan({"A": "set", "A_FILE": str(secrets_dir / "a")},
                      Settings(secrets_dirs=(str(secrets_dir),)))
    assert [type(e) for e in plan.errors] == [ConfigError]
    assert plan.errors[0].exit_code == 78 and plan.errors[0].variable == "A"


def test_never_touched_file_vars_and_skip_and_shim_variables(secrets_dir):
    environ = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(secrets_dir / "t"),
               "LOOKS": "vault:secret/data/x#y", "SHIM_SOMETHING": "file:/x"}
    plan = build_plan(environ, Settings(secrets_dirs=(str(secrets_dir),), skip=frozenset({"LOOKS"})))
    assert plan.entries == {} and plan.errors == []


def test_inline_reference_keeps_the_literal_text(tmp_path):
    plan = build_plan({"URL": f"postgres://app:${{file:{tmp_path}/pw}}@db/app"}, Settings())
    entry = plan.entries["URL"]
    assert entry.source == "inline"
    assert entry.parts[0] == "postgres://app:" and entry.parts[-1] == "@db/app"
    secret = entry.parts[1]
    assert isinstance(secret, SecretPart) and secret.in_userinfo


def test_placeholder_found_in_a_secrets_dir(secrets_dir):
    (secrets_dir / "PG").write_text("x")
    plan = build_plan({"PGPASS": "CHANGEME_PG"}, Settings(secrets_dirs=(str(secrets_dir),)))
    part = plan.entries["PGPASS"].secret_parts[0]
    assert part.placeholder == "CHANGEME_PG" and str(secrets_dir / "PG") in part.reference.canonical


def test_unresolved_placeholder_is_78_unless_allowed(secrets_dir):
    settings = Settings(secrets_dirs=(str(secrets_dir),))
    plan = build_plan({"X": "CHANGEME_NOPE"}, settings)
    assert [e.exit_code for e in plan.errors] == [78]
    kept = build_plan({"X": "CHANGEME_NOPE"}, settings._replace(allow_placeholders=True))
    assert kept.errors == [] and kept.entries["X"].kept_placeholders == ("CHANGEME_NOPE",)


def test_env_file_fills_gaps_but_a_real_value_wins(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("A=from-file\nB=from-file\n")
    plan = build_plan({"A": "given"}, Settings(env_files=(str(env_file),)))
    assert plan.environ["A"] == "given"
    assert plan.entries["B"].origin == f"{env_file}:2"
    assert "A" not in plan.entries
