"""--watch on Azure Key Vault reads a value only when the secret's versions list (properties,
never a value) changes; an identity that may get but not list falls back to reading, logged
once; `check -v` names the kind. The real SDK against the Key Vault double, whose request log
counts what shim asked."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_azure import host, kv, managed_identity_env  # noqa: F401 - fixture
from tests.integration.test_probes import events, stop, watch, watch_one_change
from tests.integration.test_supervise import wait_for


def reads(kv, name: str) -> int:
    return kv.count(method="GET", path=f"/secrets/{name}/", status=200)


def lists(kv, name: str) -> int:
    return kv.count(method="GET", path=f"/secrets/{name}/versions", status=200)


@pytest.mark.parametrize("denied", [False, True], ids=["probe", "list-denied"])
def test_key_vault_values_are_read_only_when_the_versions_change(start_shim, canaries, kv,
                                                                 tmp_path, denied):
    if denied:
        kv.forbid(kv.managed_identity_client_id, "app", action="readMetadata")
    every_tick = reads if denied else lists
    env = managed_identity_env(kv, APP_PASSWORD=f"ref+azurekeyvault://{host(kv)}/app")
    stderr = watch_one_change(start_shim, canaries, tmp_path, env, lambda: every_tick(kv, "app"),
                              lambda value: kv.add_secret("app", value))
    denials = [event["reference"] for event in events(stderr, "watch.probe_denied")]
    if denied:
        assert kv.count(method="GET", path="/secrets/app/versions", status=403) == 1
        assert denials == [f"ref+azurekeyvault://{host(kv)}/app"]
    else:
        assert reads(kv, "app") == 2        # the start, and the change
        assert denials == []


def test_a_disabled_latest_version_is_seen_by_the_probe(start_shim, canaries, kv, tmp_path):
    """Disabling the version in use changes its properties, so the tick reads (and the read is
    refused: the running program keeps its value, the tick fails as before probes)."""
    value = canaries.new("v1")
    version = kv.add_secret("app", value)
    seen = tmp_path / "seen"
    env = managed_identity_env(kv, APP_PASSWORD=f"ref+azurekeyvault://{host(kv)}/app")
    process = watch(start_shim, env, seen)
    assert wait_for(lambda: lists(kv, "app") >= 3, timeout=30)
    kv.set_enabled("app", version, False)
    # Every tick reads now (the probe keeps answering "changed"); the second refusal comes a
    # tick after the first was logged.
    assert wait_for(lambda: kv.count(method="GET", path="/secrets/app/", status=403) >= 2,
                    timeout=30)
    stderr = stop(process, canaries)
    assert seen.read_text().split() == [value]
    assert any("is disabled" in event.get("message", "")
               for event in events(stderr, "watch.failed"))


def test_check_v_names_the_key_vault_watch_kind(run_shim, canaries, kv):
    version = kv.add_secret("app", canaries.new())
    env = managed_identity_env(kv, LATEST=f"ref+azurekeyvault://{host(kv)}/app",
                               PINNED=f"ref+azurekeyvault://{host(kv)}/app/{version}")
    result = run_shim(["check", "-v", "--json"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {row["variable"]: row["watch"] for row in json.loads(result.stdout)["variables"]}
    assert rows == {"LATEST": ["probe: Key Vault versions list"],
                    "PINNED": ["probe: Key Vault versions list"]}


def test_a_secret_with_more_versions_than_four_pages_is_read_instead(start_shim, canaries, kv,
                                                                      tmp_path):
    """Listing 101 versions takes 5 requests, more than the read: after the 4th page the
    probe gives up for good (logged once), and the value is read on each tick."""
    for _ in range(100):
        kv.add_secret("busy", canaries.new("old"))
    value = canaries.new("current")
    kv.add_secret("busy", value)
    seen = tmp_path / "seen"
    env = managed_identity_env(kv, APP_PASSWORD=f"ref+azurekeyvault://{host(kv)}/busy")
    process = watch(start_shim, env, seen)
    assert wait_for(lambda: reads(kv, "busy") >= 4, timeout=30)
    stderr = stop(process, canaries)
    assert seen.read_text().split() == [value]
    assert lists(kv, "busy") == 4
    assert len(events(stderr, "watch.probe_denied")) == 1
