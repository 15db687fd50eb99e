"""The plan and the child's environment, in-process: which variables shim takes over, which it
removes, and which never reach the program. Real files, no stores (mutation testing runs these)."""

from __future__ import annotations

import io

import pytest

from shim.audit import Log
from shim.deadline import Deadline
from shim.environment import child_environment
from shim.plan import Settings, build_plan
from shim.providers.base import ProviderContext
from shim.resolve import ProviderPool, resolve_plan


@pytest.fixture
def secrets_dir(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


def resolve(environ, settings):
    plan = build_plan(environ, settings)
    pool = ProviderPool(ProviderContext(environ, Log("json", stream=io.StringIO())))
    return plan, resolve_plan(plan, pool, Deadline(10))


def test_child_environment_swaps_file_vars_and_scrubs_shim_and_vault(secrets_dir, canaries):
    value = canaries.new()
    (secrets_dir / "pg").write_text(value + "\n")
    environ = {"PG_PASSWORD_FILE": str(secrets_dir / "pg"), "VAULT_TOKEN": "t", "VAULT_ADDR": "a",
               "SHIM_USER": "app", "PLAIN": "x"}
    plan, resolution = resolve(environ, Settings(secrets_dirs=(str(secrets_dir),)))
    assert plan.errors == [] and resolution.errors == []
    assert child_environment(plan, resolution) == {"PG_PASSWORD": value, "PLAIN": "x"}
    kept = child_environment(plan, resolution, keep_file_vars=True, passthrough=["VAULT_ADDR"])
    assert kept == {"PG_PASSWORD": value, "PG_PASSWORD_FILE": str(secrets_dir / "pg"),
                    "VAULT_ADDR": "a", "PLAIN": "x"}


def test_an_optional_missing_secret_leaves_the_variable_unset(tmp_path):
    environ = {"MAYBE": f"ref+file://{tmp_path}/absent?optional=true", "OTHER": "y"}
    plan, resolution = resolve(environ, Settings())
    assert resolution.errors == []
    assert child_environment(plan, resolution) == {"OTHER": "y"}


@pytest.mark.parametrize("path, inside", [
    ("{dir}/pg", True),
    ("{dir}/sub/pg", True),
    ("{dir}X/pg", False),           # a sibling sharing the prefix
    ("{dir}/../pg", False),         # out through ..
    ("relative/pg", False),
    ("{dir}", False),               # the directory itself
])
def test_only_paths_under_a_secrets_dir_are_taken_over(secrets_dir, path, inside):
    path = path.format(dir=secrets_dir)
    plan = build_plan({"PG_FILE": path}, Settings(secrets_dirs=(str(secrets_dir) + "/",)))
    assert ("PG" in plan.entries) is inside


def test_file_vars_option_takes_over_a_path_anywhere(tmp_path):
    plan = build_plan({"PG_FILE": str(tmp_path / "pg"), "OTHER_FILE": str(tmp_path / "o")},
                      Settings(file_vars=frozenset({"PG"})))
    assert set(plan.entries) == {"PG"}
    assert set(build_plan({"A_FILE": "/x", "B_FILE": "/y"},
                          Settings(file_vars=frozenset({"*"}))).entries) == {"A", "B"}


def test_both_a_variable_and_its_file_var_is_a_configuration_error(secrets_dir):
    plan = build_plan({"PG": "set", "PG_FILE": str(secrets_dir / "pg")},
                      Settings(secrets_dirs=(str(secrets_dir),)))
    assert [(error.variable, error.exit_code) for error in plan.errors] == [("PG", 78)]
