"""--watch change probes of the REST stores (Doppler, 1Password Connect, Bitwarden Secrets
Manager), counted on their doubles: over ticks with one change in the middle, values are read
at the start and for the change only, and every tick asks the store's cheapest question; a
probe the store refuses falls back to reading, logged once; Bitwarden logs in once, not once a
tick; `check -v` says which kind of watch each reference gets. Infisical has no probe (its
page says why): it is read on every tick, with one login for the token's lifetime.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid

import pytest

from tests.conftest import finish_process
from tests.doubles.bitwarden import BitwardenDouble
from tests.doubles.doppler import DOWNLOAD, DopplerDouble
from tests.doubles.https import Reply
from tests.doubles.onepassword import ConnectDouble
from tests.integration.test_supervise import wait_for

TICK_TIMEOUT = 30      # seconds for a handful of 200 ms ticks, on a loaded machine


def watch(start_shim, env, seen, *extra):
    """exec --watch every 200 ms; the program appends $APP_PASSWORD to `seen` at each start."""
    return start_shim(["exec", "--watch", "200ms", "--deadline", "10s", "--log-format", "json",
                       *extra, "--", "sh", "-c",
                       f'echo "$APP_PASSWORD" >> {seen}; exec sleep 60'], env)


@pytest.fixture
def start_watch(start_shim):
    """`watch`, and a supervisor still running when the test ends (it failed) stopped at once
    with its program (SIGTERM: a SIGKILL would leave the program holding shim's output open),
    rather than waited for with its double gone."""
    started = []

    def start(env, seen, *extra):
        started.append(watch(start_shim, env, seen, *extra))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass        # start_shim's teardown kills it


def stop(process, canaries) -> str:
    """SIGTERM, as docker stop: the supervisor exits 143; its stderr."""
    process.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish_process(process, canaries)
    assert returncode == 143, stderr
    return stderr


def grows(count, by: int) -> bool:
    """Wait until `count()` has grown by `by` (ticks going by)."""
    target = count() + by
    return wait_for(lambda: count() >= target, timeout=TICK_TIMEOUT)


def shows(seen, value) -> bool:
    """Wait until the program has been (re)started with `value`."""
    return wait_for(lambda: value in (seen.read_text() if seen.exists() else ""),
                    timeout=TICK_TIMEOUT)


def events(stderr: str, name: str) -> list[dict]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == name]


# -- Doppler: the download made conditional --------------------------------------------------------

def test_doppler_downloads_a_config_only_when_its_etag_changes(tmp_path, start_watch, canaries):
    """Each tick sends the download with If-None-Match and gets a 304 without a body; the
    values cross the wire at the start (no ETag yet) and for the change: the 200 to the probe
    is that resolution's read (no second request)."""
    first, second = canaries.new("v1"), canaries.new("v2")
    with DopplerDouble(tmp_path) as doppler:
        doppler.add_config("billing", "prd", {"DB_PASSWORD": first})
        token = doppler.service_token("billing", "prd")
        seen = tmp_path / "seen"
        process = start_watch({**doppler.env(token),
                               "APP_PASSWORD": "ref+doppler://billing/prd#/DB_PASSWORD"}, seen)

        def count(status: int) -> int:
            return doppler.count(path=DOWNLOAD, status=status)

        assert grows(lambda: count(304), 5)
        assert count(200) == 1
        doppler.add_config("billing", "prd", {"DB_PASSWORD": second})
        assert shows(seen, second)
        assert grows(lambda: count(304), 3)
        assert count(200) == 2
        assert doppler.count() == count(200) + count(304)
        stderr = stop(process, canaries)
        doppler.assert_no_credentials(stderr)
    assert seen.read_text().split() == [first, second]


# -- Bitwarden: one login, one organization list a tick --------------------------------------------

def watch_bws(start_watch, bws, canaries, tmp_path):
    """exec --watch on one secret by id; returns the process, the secret's id, both values, the
    listing's path and the file the program writes its value into at each start."""
    project = str(uuid.uuid4())
    first, second = canaries.new("v1"), canaries.new("v2")
    secret_id = bws.add_secret("DB_PASSWORD", first, project=project)
    seen = tmp_path / "seen"
    process = start_watch({**bws.env(bws.access_token(project)),
                           "APP_PASSWORD": f"ref+bws://{secret_id}"}, seen)
    return process, secret_id, first, second, seen


@pytest.mark.parametrize("list_denied", [False, True], ids=["probe", "list-denied"])
def test_bitwarden_logs_in_once_and_reads_only_a_revised_secret(tmp_path, start_watch, canaries,
                                                                 list_denied):
    """With the list: every tick one GET of the organization's secrets (no values), the
    secret's GET at the start and for the change. Refused (404, no access to the organization
    list): asked once, logged once, and each tick reads the secret instead. Either way one
    login for the whole run, not one a tick."""
    with BitwardenDouble(tmp_path) as bws:
        bws.list_denied = list_denied
        process, secret_id, first, second, seen = watch_bws(start_watch, bws, canaries, tmp_path)
        listing = f"/api/organizations/{bws.organization}/secrets"

        def reads() -> int:
            return bws.count(path=f"/api/secrets/{secret_id}")

        every_tick = reads if list_denied else (lambda: bws.count(path=listing))
        assert grows(every_tick, 5)
        assert bws.count(path=listing) == 1 if list_denied else reads() == 1
        bws.update_secret(secret_id, second)
        assert shows(seen, second)
        assert grows(every_tick, 3)
        if not list_denied:
            assert reads() == 2
        assert bws.logins() == 1
        stderr = stop(process, canaries)
        bws.assert_no_credentials(stderr)
    assert seen.read_text().split() == [first, second]
    denied = events(stderr, "watch.probe_denied")
    assert [event["reference"] for event in denied] == ([f"ref+bws://{secret_id}"] if list_denied
                                                       else [])


def test_bitwarden_logs_in_again_when_the_carried_bearer_is_refused(tmp_path, start_watch,
                                                                     canaries):
    """A bearer the API stops accepting (expired early, revoked) is replaced by one new login,
    within the tick: the program keeps running with its value, and the next ticks use the new
    bearer."""
    with BitwardenDouble(tmp_path) as bws:
        process, secret_id, first, _, seen = watch_bws(start_watch, bws, canaries, tmp_path)
        listing = f"/api/organizations/{bws.organization}/secrets"
        assert grows(lambda: bws.count(path=listing, status=200), 3)
        bws.expire_bearers()
        assert grows(lambda: bws.count(path=listing, status=200), 3)
        assert bws.logins() == 2
        assert bws.count(path=listing, status=401) == 1
        assert bws.count(path=f"/api/secrets/{secret_id}") == 1
        stderr = stop(process, canaries)
        bws.assert_no_credentials(stderr)
    assert seen.read_text().split() == [first]
    assert not events(stderr, "watch.failed")


# -- 1Password Connect: the item's version from the vault's item summaries ------------------------

@pytest.mark.parametrize("by_id", [False, True], ids=["by-title", "by-id"])
def test_onepassword_reads_an_item_only_when_its_version_changes(tmp_path, start_watch, canaries,
                                                                by_id):
    """Every tick lists the vault's items once (summaries with `version`, no fields); the item
    itself, which holds the values, is read at the start and for its own change only."""
    first, second = canaries.new("v1"), canaries.new("v2")
    with ConnectDouble(tmp_path) as connect:
        item_id = connect.add_item("prod", "postgres", {"password": first})
        other = connect.add_item("prod", "redis", {"password": canaries.new("other")})
        vault_id = connect.vault_id("prod")
        reference = (f"op://{vault_id}/{item_id}/password" if by_id
                     else "op://prod/postgres/password")
        seen = tmp_path / "seen"
        process = start_watch({**connect.env(connect.token("prod")),
                               "APP_PASSWORD": reference}, seen)

        def reads() -> int:
            return connect.count(path=f"/v1/vaults/{vault_id}/items/{item_id}")

        assert grows(lambda: connect.count(path=f"/v1/vaults/{vault_id}/items"), 5)
        assert reads() == 1
        connect.update_item("prod", other, {"password": canaries.new("other-v2")})
        assert grows(lambda: connect.count(path=f"/v1/vaults/{vault_id}/items"), 3)
        assert reads() == 1       # another item's edit is not this item's change
        connect.update_item("prod", item_id, {"password": second})
        assert shows(seen, second)
        assert grows(lambda: connect.count(path=f"/v1/vaults/{vault_id}/items"), 3)
        assert reads() == 2
        assert connect.count(path=f"/v1/vaults/{vault_id}/items/{other}") == 0
        stderr = stop(process, canaries)
        connect.assert_no_credentials(stderr)
    assert seen.read_text().split() == [first, second]


# -- Infisical: no probe; read every tick, one login per token lifetime ----------------------------

def test_infisical_is_read_every_tick_with_one_login(tmp_path, start_watch, canaries):
    """No probe (docs/infisical.md says why): every tick lists the folder with its values,
    using the universal-auth token carried from tick to tick (tests/unit/test_carried_logins.py
    checks its expiry)."""
    from tests.doubles.infisical import LOGIN, InfisicalDouble

    with InfisicalDouble(tmp_path) as infisical:
        value = canaries.new()
        infisical.add_secret(infisical.project, "prod", "/", "ROTATING", value)
        client_id, client_secret = infisical.machine_identity((infisical.project, "prod"))
        seen = tmp_path / "seen"
        process = start_watch({**infisical.env(client_id, client_secret),
                               "APP_PASSWORD": f"ref+infisical://{infisical.project}/prod"
                                               "#/ROTATING"}, seen)
        assert grows(lambda: len(infisical.lists()), 5)
        assert infisical.count(path=LOGIN) == 1
        stderr = stop(process, canaries)
        infisical.assert_no_credentials(stderr)
    assert seen.read_text().split() == [value]


# -- check -v ------------------------------------------------------------------------------------

def test_check_v_says_which_watch_each_store_gets(tmp_path, run_shim, canaries):
    """The WATCH column: the probe each store offers, and "read every tick" for Infisical.
    `check` itself sends no probe."""
    from tests.doubles.infisical import InfisicalDouble

    project = str(uuid.uuid4())
    with DopplerDouble(tmp_path / "d") as doppler, ConnectDouble(tmp_path / "o") as connect, \
            BitwardenDouble(tmp_path / "b") as bws, InfisicalDouble(tmp_path / "i") as infisical:
        doppler.add_config("billing", "prd", {"DB_PASSWORD": canaries.new()})
        connect.add_item("prod", "postgres", {"password": canaries.new()})
        secret_id = bws.add_secret("KEY", canaries.new(), project=project)
        infisical.add_secret(infisical.project, "prod", "/", "KEY", canaries.new())
        client_id, client_secret = infisical.machine_identity((infisical.project, "prod"))
        env = {**doppler.env(doppler.service_token("billing", "prd")),
               **connect.env(connect.token("prod")), **bws.env(bws.access_token(project)),
               **infisical.env(client_id, client_secret)}
        # One CA per double: trust them all through one bundle.
        bundle = tmp_path / "ca.pem"
        bundle.write_text("".join(double.ca_path.read_text()
                                  for double in (doppler, connect, bws, infisical)))
        env.update({"REQUESTS_CA_BUNDLE": str(bundle),
                    "DOPPLER_VALUE": "ref+doppler://billing/prd#/DB_PASSWORD",
                    "OP_VALUE": "op://prod/postgres/password",
                    "BWS_VALUE": f"ref+bws://{secret_id}",
                    "INFISICAL_VALUE": f"ref+infisical://{infisical.project}/prod#/KEY"})

        result = run_shim(["check", "-v", "--json"], env, timeout=60)
        table = run_shim(["check", "-v"], env, timeout=60)

        assert result.returncode == 0, result.stderr
        rows = {row["variable"]: row["watch"] for row in json.loads(result.stdout)["variables"]}
        assert rows["DOPPLER_VALUE"] == ["probe: ETag (If-None-Match)"]
        assert rows["OP_VALUE"] == ["probe: item version"]
        assert rows["BWS_VALUE"] == ["probe: revision dates"]
        assert rows["INFISICAL_VALUE"] == ["read every tick"]
        assert table.returncode == 0 and table.stdout.splitlines()[0].split()[-1] == "WATCH"
        assert bws.count(path=f"/api/organizations/{bws.organization}/secrets") == 0
        assert doppler.count(path=DOWNLOAD) == 2      # one per check run: no probe


@pytest.mark.parametrize("reply", [
    Reply(200, {"secrets": {"not": "a list"}}),
    Reply(200, {"secrets": [{"id": 7, "revisionDate": ["x"]}, "junk"]}),
    Reply(200, [1, 2]),
], ids=["not-a-list", "junk-entries", "a-list"])
def test_a_bitwarden_list_shim_cannot_read_falls_back_to_reading(tmp_path, start_watch, canaries,
                                                                 reply):
    """A proxy or a lying server answering the organization list: no probe answer, so the
    secret is read on every tick, and a change is still seen; no tick fails."""
    with BitwardenDouble(tmp_path) as bws:
        bws.list_reply = reply
        process, secret_id, first, second, seen = watch_bws(start_watch, bws, canaries, tmp_path)
        assert grows(lambda: bws.count(path=f"/api/secrets/{secret_id}"), 3)
        bws.update_secret(secret_id, second)
        assert shows(seen, second)
        stderr = stop(process, canaries)
    assert seen.read_text().split() == [first, second]
    assert not events(stderr, "watch.failed")


def test_a_bitwarden_project_is_read_when_one_of_its_secrets_is_revised(tmp_path, start_watch,
                                                                      canaries):
    """A project reference's probe answer is its secrets' ids and revision dates (from the same
    organization list): revising, adding or removing one of them reads the project again;
    ticks without a change read nothing."""
    with BitwardenDouble(tmp_path) as bws:
        project = str(uuid.uuid4())
        first, second = canaries.new("v1"), canaries.new("v2")
        secret_id = bws.add_secret("DB_PASSWORD", first, project=project)
        bws.add_secret("UNRELATED", canaries.new("other"), project=str(uuid.uuid4()))
        seen = tmp_path / "seen"
        process = start_watch({**bws.env(bws.access_token(project)),
                               "APP_PASSWORD": f"ref+bws://project/{project}#/DB_PASSWORD"},
                              seen)
        listing = f"/api/organizations/{bws.organization}/secrets"

        def reads() -> int:
            return bws.count(path="/api/secrets/get-by-ids")

        assert grows(lambda: bws.count(path=listing), 4)
        assert reads() == 1
        bws.add_secret("ADDED", canaries.new("added"), project=project)
        assert wait_for(lambda: reads() == 2, timeout=TICK_TIMEOUT)
        bws.update_secret(secret_id, second)
        assert shows(seen, second)
        assert grows(lambda: bws.count(path=listing), 3)
        assert reads() == 3
        stderr = stop(process, canaries)
        bws.assert_no_credentials(stderr)
    assert seen.read_text().split() == [first, second]
