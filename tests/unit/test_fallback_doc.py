"""docs/fallback.md's compose and Kubernetes examples: valid YAML whose shim flags exist."""

import re

import yaml

from shim.pipeline.options import options_of
from tests.conftest import ROOT

DOC = ROOT / "docs" / "fallback.md"


def blocks() -> list:
    return [yaml.safe_load(text) for text in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)]


def test_each_example_parses_and_uses_only_exec_s_flags():
    exec_flags = {flag for option in options_of("exec") for flag in option.flags}
    found = blocks()
    assert len(found) == 2
    for block in found:
        flags = set(re.findall(r"--[a-z-]+", str(block)))
        assert {"--fallback-cache", "--fallback-key-file"} <= flags
        assert flags <= exec_flags | {"--"}


def test_the_key_is_mounted_as_a_secret_readable_by_its_owner_only():
    compose, kubernetes = blocks()
    [secret] = compose["services"]["api"]["secrets"]
    assert secret["mode"] == 0o400
    key_volume = next(v for v in kubernetes["volumes"] if "secret" in v)
    assert key_volume["secret"]["defaultMode"] == 0o400
