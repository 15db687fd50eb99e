"""resolve.resolve_plan (file provider only) and environment.child_environment in-process,
from real files in a tmp dir."""

from __future__ import annotations

import pytest

from shim.delivery.audit import Log
from shim.tools.deadline import Deadline
from shim.pipeline.environment import child_environment
from shim.pipeline.plan import Settings, build_plan
from shim.providers.base import ProviderContext
from shim.pipeline.resolve import MAX_ENV_STRING, ProviderPool, resolve_plan


@pytest.fixture
def resolve(tmp_path):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    log = Log(stream=open("/dev/null", "w"))

    def run(environ, **settings):
        settings.setdefault("secrets_dirs", (str(secrets_dir),))
        plan = build_plan(environ, Settings(**settings))
        pool = ProviderPool(ProviderContext(environ, log))
        return plan, resolve_plan(plan, pool, Deadline(10))
    run.dir = secrets_dir
    return run


def test_file_var_trailing_newline_stripped_leading_space_kept(resolve, canaries):
    secret = canaries.new()
    (resolve.dir / "db").write_text(f"  {secret}\r\n")
    plan, resolution = resolve({"DB_FILE": str(resolve.dir / "db")})
    assert resolution.errors == []
    assert resolution.variables["DB"].value == f"  {secret}"


def test_selector_takes_a_key_and_userinfo_is_percent_encoded(resolve, canaries):
    secret = canaries.new() + "@:/"
    (resolve.dir / "j").write_text('{"pw": "%s"}' % secret)
    plan, resolution = resolve({"URL": f"pg://u:${{ref+file://{resolve.dir}/j#/pw}}@h/db"})
    assert resolution.variables["URL"].value == f"pg://u:{secret[:-3]}%40%3A%2F@h/db"


@pytest.mark.parametrize("content, code", [(b"a\0b", 65), (b"\xff\xfe", 65)])
def test_unusable_values(resolve, content, code):
    (resolve.dir / "bad").write_bytes(content)
    _, resolution = resolve({"B_FILE": str(resolve.dir / "bad")})
    assert [(e.variable, e.exit_code) for e in resolution.errors] == [("B", code)]
    assert resolution.variables["B"].value is None


def test_missing_file_is_66_and_optional_leaves_it_unset(resolve):
    _, resolution = resolve({"A": f"file:{resolve.dir}/absent",
                             "B": f"ref+file://{resolve.dir}/absent?optional=true"})
    assert [(e.variable, e.exit_code) for e in resolution.errors] == [("A", 66)]
    assert resolution.variables["B"].value is None and resolution.variables["B"].error is None


def test_a_key_the_secret_lacks_is_66_and_non_json_is_65(resolve):
    (resolve.dir / "j").write_text('{"a": 1}')
    (resolve.dir / "t").write_text("plain")
    _, resolution = resolve({"K": f"ref+file://{resolve.dir}/j#/b",
                             "T": f"ref+file://{resolve.dir}/t#/b"})
    assert {e.variable: e.exit_code for e in resolution.errors} == {"K": 66, "T": 65}


def test_a_value_over_one_environment_string_is_65(resolve):
    name = "BIG"
    (resolve.dir / "big").write_text("x" * (MAX_ENV_STRING - len(name) - 1))   # + "=" + NUL
    _, resolution = resolve({"BIG_FILE": str(resolve.dir / "big")})
    assert [e.exit_code for e in resolution.errors] == [65]
    (resolve.dir / "big").write_text("x" * (MAX_ENV_STRING - len(name) - 2))
    _, resolution = resolve({"BIG_FILE": str(resolve.dir / "big")})
    assert resolution.errors == []


def test_one_read_per_distinct_file(resolve, canaries):
    (resolve.dir / "s").write_text(canaries.new())
    _, resolution = resolve({"A": f"file:{resolve.dir}/s", "B": f"file:{resolve.dir}/s"})
    assert len(resolution.fetched) == 1
    assert resolution.variables["A"].value == resolution.variables["B"].value


def test_child_environment_sets_values_and_scrubs(resolve, canaries):
    secret = canaries.new()
    (resolve.dir / "db").write_text(secret)
    environ = {"DB_FILE": str(resolve.dir / "db"), "PLAIN": "p", "SHIM_USER": "app",
               "VAULT_TOKEN": "t", "OPT": f"ref+file://{resolve.dir}/absent?optional=true"}
    plan, resolution = resolve(environ)
    assert child_environment(plan, resolution) == {"DB": secret, "PLAIN": "p"}
    kept = child_environment(plan, resolution, keep_file_vars=True, passthrough=["VAULT_TOKEN"])
    assert kept == {"DB": secret, "DB_FILE": str(resolve.dir / "db"), "PLAIN": "p",
                    "VAULT_TOKEN": "t"}
