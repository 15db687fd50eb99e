"""environment.py in-process: what the child inherits and what is scrubbed from it."""

from __future__ import annotations

import os

import pytest

from shim.pipeline import environment
from shim.pipeline.environment import SCRUBBED_PREFIXES, child_environment, starting_environment
from shim.pipeline.plan import Settings, build_plan
from shim.pipeline.resolve import Resolution, VariableResult


def _resolution(plan, values) -> Resolution:
    """A resolution giving each name its value (None: left unset)."""
    resolution = Resolution()
    for name, value in values.items():
        resolution.variables[name] = VariableResult(name, value, plan.entries[name])
    return resolution


def _resolved(environ, values, secrets_dirs=()):
    plan = build_plan(environ, Settings(secrets_dirs=tuple(secrets_dirs)))
    return plan, _resolution(plan, values)


@pytest.mark.parametrize("name", [
    "SHIM_USER", "SHIM_", "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_",
    "BAO_TOKEN", "BAO_ADDR", "BAO_",
    "SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD", "SOPS_AGE_KEYS"])
def test_every_scrubbed_prefix_is_removed_from_the_child(name, canaries):
    secret = canaries.new()
    plan, resolution = _resolved({name: secret, "PLAIN": "p"}, {})
    env = child_environment(plan, resolution)
    assert env == {"PLAIN": "p"}
    assert not any(canaries.leaked(f"{key}={value}") for key, value in env.items())


@pytest.mark.parametrize("name", ["MY_SHIM_USER", "shim_user", "VAULT", "XVAULT_TOKEN", "BAO",
                                  "XBAO_TOKEN", "bao_token",
                                  "vault_token", "SOPS_AGE", "SOPS_AGE_KE", "SOPS_KEY"])
def test_names_that_only_resemble_a_scrubbed_prefix_are_kept(name):
    plan, resolution = _resolved({name: "v"}, {})
    assert child_environment(plan, resolution) == {name: "v"}


def test_the_scrubbed_prefixes_are_exactly_shims_vaults_the_age_key_and_store_tokens():
    assert SCRUBBED_PREFIXES == ("SHIM_", "VAULT_", "BAO_", "SOPS_AGE_KEY",
                                 "DOPPLER_TOKEN", "INFISICAL_TOKEN", "INFISICAL_UNIVERSAL_AUTH_",
                                 "OP_CONNECT_TOKEN", "BWS_ACCESS_TOKEN")


def test_passthrough_keeps_only_the_names_it_lists(canaries):
    token, key = canaries.new(), canaries.new()
    plan, resolution = _resolved({"VAULT_TOKEN": token, "VAULT_ADDR": "http://v",
                                  "SOPS_AGE_KEY": key}, {})
    assert child_environment(plan, resolution, passthrough=["VAULT_ADDR"]) == {
        "VAULT_ADDR": "http://v"}
    assert child_environment(plan, resolution, passthrough=iter(["VAULT_ADDR", "SOPS_AGE_KEY"])
                             ) == {"VAULT_ADDR": "http://v", "SOPS_AGE_KEY": key}


def test_a_resolved_value_replaces_the_reference_and_none_unsets_it(canaries):
    secret = canaries.new()
    environ = {"DB": "ref+file:///run/secrets/db", "OPT": "ref+file:///absent?optional=true",
               "PLAIN": "p"}
    plan, resolution = _resolved(environ, {"DB": secret, "OPT": None})
    assert child_environment(plan, resolution) == {"DB": secret, "PLAIN": "p"}


def test_a_name_without_a_result_keeps_its_planned_value():
    environ = {"DB": "ref+file:///run/secrets/db", "PLAIN": "p"}
    plan, resolution = _resolved(environ, {})
    assert child_environment(plan, resolution) == environ


def test_name_file_is_removed_unless_kept_and_still_scrubbed_when_kept(tmp_path, canaries):
    secret = canaries.new()
    (tmp_path / "db").write_text(secret)
    environ = {"DB_FILE": str(tmp_path / "db"), "SHIM_DB_FILE": "x"}
    plan, resolution = _resolved(environ, {"DB": secret}, [str(tmp_path)])
    assert child_environment(plan, resolution) == {"DB": secret}
    assert child_environment(plan, resolution, keep_file_vars=True) == {
        "DB": secret, "DB_FILE": str(tmp_path / "db")}


def test_an_unresolved_name_keeps_its_file_variable(tmp_path):
    environ = {"DB_FILE": str(tmp_path / "db")}
    plan, resolution = _resolved(environ, {}, [str(tmp_path)])
    assert child_environment(plan, resolution) == environ


def _block(tmp_path, data: bytes) -> str:
    path = tmp_path / "environ"
    path.write_bytes(data)
    return str(path)


def test_starting_environment_parses_a_block_as_the_kernel_keeps_it(tmp_path):
    block = (b"A=1\0URL=a=b==c\0EMPTY=\0NOEQUALS\0=value-without-name\0\0"  # pragma: allowlist secret
             b"RAW=\xff\xfe\0LAST=x")
    assert starting_environment(_block(tmp_path, block)) == {
        "A": "1", "URL": "a=b==c", "EMPTY": "", "RAW": os.fsdecode(b"\xff\xfe"), "LAST": "x"}


def test_starting_environment_of_an_empty_block_is_empty(tmp_path):
    assert starting_environment(_block(tmp_path, b"")) == {}


def test_starting_environment_falls_back_to_os_environ_when_the_block_is_unreadable(tmp_path):
    assert starting_environment(str(tmp_path / "absent")) == dict(os.environ)


def test_starting_environment_goes_through_restore_as_started(tmp_path, monkeypatch):
    seen = []

    def restore(environ):
        seen.append(dict(environ))
        return {name: value for name, value in environ.items() if name != "LD_LIBRARY_PATH"}

    monkeypatch.setattr(environment, "restore_as_started", restore)
    block = _block(tmp_path, b"LD_LIBRARY_PATH=/tmp/_MEI\0A=1\0")
    assert starting_environment(block) == {"A": "1"}
    assert seen == [{"LD_LIBRARY_PATH": "/tmp/_MEI", "A": "1"}]
