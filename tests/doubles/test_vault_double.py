"""The Vault double answers the way hvac expects: every test drives it with real hvac calls
(or plain requests, where the wire format itself is the point) over a real socket."""

from __future__ import annotations

import base64
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import hvac
import hvac.exceptions
import pytest
import requests

from tests.doubles.tls import make_test_pki
from tests.doubles.vault import VaultDouble, go_duration, parse_duration

# OpenBao 2.7's envelope and auth block (tests/real/test_vault_conformance.py checks them).
ENVELOPE_KEYS = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
                 "warnings", "auth"}
AUTH_KEYS = {"client_token", "accessor", "policies", "token_policies", "metadata",
             "lease_duration", "renewable", "entity_id", "token_type", "orphan",
             "mfa_requirement", "num_uses"}


def canary() -> str:
    return "canary-" + secrets.token_hex(8)


@pytest.fixture
def vault():
    with VaultDouble() as double:
        yield double


def read_v2(client: hvac.Client, path: str, version: int | None = None, **kwargs):
    return client.secrets.kv.v2.read_secret_version(
        path=path, version=version, raise_on_deleted_version=True, **kwargs)


# -- KV version 2 ----------------------------------------------------------------------------


def test_kv2_versions_written_by_helper_and_by_hvac(vault):
    first, second = canary(), canary()
    assert vault.kv2_put("secret", "app", {"password": first}) == 1
    client = vault.client()
    written = client.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": second})
    assert written["data"]["version"] == 2

    latest = read_v2(client, "app")
    assert set(latest) == ENVELOPE_KEYS
    assert latest["data"]["data"] == {"password": second}
    assert latest["data"]["metadata"]["version"] == 2
    assert latest["lease_duration"] == 0
    assert read_v2(client, "app", version=1)["data"]["data"] == {"password": first}
    assert read_v2(client, "app", version=0)["data"]["metadata"]["version"] == 2


def test_kv2_metadata_lists_versions_and_custom_metadata(vault):
    vault.kv2_put("secret", "app", {"password": canary()}, custom_metadata={"owner": "team-a"})
    vault.kv2_put("secret", "app", {"password": canary()}, custom_metadata={"owner": "team-a"})
    client = vault.client()

    metadata = client.secrets.kv.v2.read_secret_metadata(path="app")["data"]
    assert metadata["current_version"] == 2
    assert metadata["oldest_version"] == 0
    assert set(metadata["versions"]) == {"1", "2"}
    assert metadata["custom_metadata"] == {"owner": "team-a"}
    assert {"created_time", "updated_time", "max_versions", "cas_required",
            "delete_version_after"} <= set(metadata)
    assert read_v2(client, "app")["data"]["metadata"]["custom_metadata"] == {"owner": "team-a"}


def test_kv2_deleted_version_is_404_with_the_full_envelope(vault):
    kept = canary()
    vault.kv2_put("secret", "app", {"password": canary()})
    vault.kv2_put("secret", "app", {"password": kept})
    vault.kv2_delete("secret", "app", versions=[1])
    client = vault.client()

    with pytest.raises(hvac.exceptions.InvalidPath) as caught:
        read_v2(client, "app", version=1)
    body = caught.value.json
    assert set(body) == ENVELOPE_KEYS
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["deletion_time"] != ""
    assert body["data"]["metadata"]["version"] == 1
    # hvac hands the envelope back when asked not to raise on a deleted version ...
    soft = client.secrets.kv.v2.read_secret_version(path="app", version=1,
                                                    raise_on_deleted_version=False)
    assert soft["data"]["data"] is None
    # ... and the other version is untouched.
    assert read_v2(client, "app")["data"]["data"] == {"password": kept}

    raw = requests.get(f"{vault.url}/v1/secret/data/app?version=1",
                       headers={"X-Vault-Token": vault.root_token})
    assert raw.status_code == 404
    assert raw.headers["Content-Type"] == "application/json"


def test_kv2_destroyed_version_raises_even_when_deleted_versions_do_not(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    vault.kv2_destroy("secret", "app", versions=[1])
    client = vault.client()

    with pytest.raises(hvac.exceptions.InvalidPath) as caught:
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=False)
    assert caught.value.json["data"]["metadata"]["destroyed"] is True
    assert caught.value.json["data"]["metadata"]["deletion_time"] == ""
    metadata = client.secrets.kv.v2.read_secret_metadata(path="app")["data"]
    assert metadata["versions"]["1"]["destroyed"] is True


def test_kv2_delete_undelete_destroy_through_hvac(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value})
    client = vault.client()

    client.secrets.kv.v2.delete_latest_version_of_secret(path="app")
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_v2(client, "app")
    client.secrets.kv.v2.undelete_secret_versions(path="app", versions=[1])
    assert read_v2(client, "app")["data"]["data"] == {"password": value}
    client.secrets.kv.v2.destroy_secret_versions(path="app", versions=[1])
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_v2(client, "app")
    assert vault.kv2_read("secret", "app") is None


def test_kv2_unknown_path_or_version_is_404_with_empty_errors(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    client = vault.client()

    for path, version in (("missing", None), ("app", 7)):
        with pytest.raises(hvac.exceptions.InvalidPath) as caught:
            read_v2(client, path, version=version)
        assert caught.value.json == {"errors": []}


def test_kv2_path_without_data_segment_warns_like_vault(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    raw = requests.get(f"{vault.url}/v1/secret/app", headers={"X-Vault-Token": vault.root_token})
    assert raw.status_code == 404
    body = raw.json()
    assert set(body) == ENVELOPE_KEYS and body["data"] is None
    assert body["warnings"][0].startswith("Invalid path for a versioned K/V secrets engine")


# hvac's patch() calls read_secret_version without raise_on_deleted_version and so warns itself.
@pytest.mark.filterwarnings("ignore:The raise_on_deleted_version parameter:DeprecationWarning")
def test_kv2_patch_uses_check_and_set(vault):
    vault.kv2_put("secret", "app", {"user": "app", "password": canary()})
    client = vault.client()
    rotated = canary()

    client.secrets.kv.v2.patch(path="app", secret={"password": rotated})
    assert read_v2(client, "app")["data"]["data"] == {"user": "app", "password": rotated}
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"x": canary()}, cas=1)
    assert "check-and-set" in caught.value.errors[0]


def test_kv2_keeps_ten_versions_by_default(vault):
    for _ in range(12):
        vault.kv2_put("secret", "app", {"password": canary()})
    metadata = vault.client().secrets.kv.v2.read_secret_metadata(path="app")["data"]
    assert metadata["current_version"] == 12
    assert metadata["oldest_version"] == 3
    assert sorted(map(int, metadata["versions"])) == list(range(3, 13))


def test_values_with_html_characters_survive_go_style_escaping(vault):
    value = canary() + "<&>é"
    vault.kv2_put("secret", "app", {"password": value})
    raw = requests.get(f"{vault.url}/v1/secret/data/app", headers={"X-Vault-Token": vault.root_token})
    assert "\\u003c" in raw.text and "<" not in raw.text
    assert read_v2(vault.client(), "app")["data"]["data"]["password"] == value


# -- KV version 1 ----------------------------------------------------------------------------


def test_kv1_write_and_read_through_hvac(vault):
    value = canary()
    client = vault.client()

    response = client.secrets.kv.v1.create_or_update_secret(
        path="app", secret={"password": value}, mount_point="kv1")
    assert response.status_code == 204
    # hvac reads first to choose between POST (absent) and PUT (present).
    assert vault.count("kv1/app", "GET") == 1 and vault.count("kv1/app", "POST") == 1

    read = client.secrets.kv.v1.read_secret(path="app", mount_point="kv1")
    assert set(read) == ENVELOPE_KEYS
    assert read["data"] == {"password": value}
    assert read["lease_duration"] == 2764800 and read["lease_id"] == "" and not read["renewable"]


def test_kv1_secret_ttl_key_sets_lease_duration(vault):
    vault.kv1_put("kv1", "app", {"password": canary(), "ttl": "1h"})
    read = vault.client().secrets.kv.v1.read_secret(path="app", mount_point="kv1")
    assert read["lease_duration"] == 3600


def test_kv1_missing_secret_is_invalid_path(vault):
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.client().secrets.kv.v1.read_secret(path="missing", mount_point="kv1")


def test_path_outside_every_mount_has_no_handler(vault):
    with pytest.raises(hvac.exceptions.InvalidPath) as caught:
        vault.client().adapter.get("/v1/nomount/x")
    assert "no handler for route" in caught.value.errors[0]


# -- preflight -------------------------------------------------------------------------------


def preflight(client: hvac.Client, path: str) -> dict:
    return client.adapter.get(f"/v1/sys/internal/ui/mounts/{path}")


def test_preflight_reports_mount_path_type_and_version(vault):
    client = vault.client()
    v2 = preflight(client, "secret/app")["data"]
    assert (v2["path"], v2["type"], v2["options"]) == ("secret/", "kv", {"version": "2"})
    v1 = preflight(client, "kv1/app")["data"]
    assert (v1["path"], v1["options"]["version"]) == ("kv1/", "1")


def test_preflight_follows_the_token_policy(vault):
    reader = vault.create_token(allowed=["secret/data/app"])
    proxied = vault.create_token(allowed=["secret/data/app"], preflight=False)

    assert preflight(vault.client(reader), "secret/app")["data"]["path"] == "secret/"
    assert preflight(vault.client(reader), "secret/other")["data"]["path"] == "secret/"
    with pytest.raises(hvac.exceptions.Forbidden) as no_access:
        preflight(vault.client(reader), "kv1/app")
    assert no_access.value.errors == [
        "preflight capability check returned 403, please ensure client's policies grant "
        'access to path "kv1/app/"']
    with pytest.raises(hvac.exceptions.Forbidden) as no_mount:
        preflight(vault.client(), "nomount/app")  # unknown mounts are hidden, even from root
    assert no_mount.value.errors == [
        "preflight capability check returned 403, please ensure client's policies grant "
        'access to path "nomount/app/"']
    # Not a policy: a proxy (or a server without the endpoint) refusing the lookup.
    with pytest.raises(hvac.exceptions.Forbidden) as refused:
        preflight(vault.client(proxied), "secret/app")
    assert refused.value.errors == ["permission denied"]


def test_preflight_into_a_child_namespace_names_the_mount_from_the_root(vault):
    """OpenBao: 200 with the full path (ns1/ns2/secret/), never a 403."""
    vault.add_namespace("ns1/ns2")
    client = vault.client(namespace="ns1")
    assert preflight(client, "ns2/secret/app")["data"]["path"] == "ns1/ns2/secret/"
    assert preflight(vault.client(), "ns1/ns2/secret/app")["data"]["path"] == "ns1/ns2/secret/"
    assert preflight(vault.client(namespace="ns1/ns2"), "secret/app")["data"]["path"] == "secret/"


def test_a_namespace_that_does_not_exist_is_404_namespace_not_found(vault):
    answer = requests.get(f"{vault.url}/v1/secret/data/app", timeout=10,
                          headers={"X-Vault-Token": vault.root_token, "X-Vault-Namespace": "none"})
    assert (answer.status_code, answer.json()) == (404, {"errors": ["namespace not found"]})


# -- tokens and policies ---------------------------------------------------------------------


def test_token_lookup_self_describes_the_token(vault):
    token = vault.create_token(allowed=["secret/data/app"], ttl=600, meta={"team": "a"})
    data = vault.client(token).auth.token.lookup_self()["data"]
    assert data["id"] == token
    assert data["creation_ttl"] == 600 and 0 < data["ttl"] <= 600
    assert data["renewable"] is True and data["expire_time"].endswith("Z")
    assert "default" in data["policies"] and data["meta"] == {"team": "a"}
    assert {"accessor", "creation_time", "display_name", "entity_id", "explicit_max_ttl",
            "issue_time", "num_uses", "orphan", "path"} <= set(data)
    assert "identity_policies" not in data   # OpenBao leaves it out


def test_tokens_look_like_openbao_tokens(vault):
    """OpenBao issues s. + 24 characters, with .<namespace id> in a child namespace."""
    assert re.fullmatch(r"s\.[A-Za-z0-9]{24}", vault.root_token)
    assert re.fullmatch(r"s\.[A-Za-z0-9]{24}", vault.create_token())
    child = vault.create_token(namespace="ns1")
    assert re.fullmatch(r"s\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{6}", child)
    with VaultDouble(token_style="vault") as hashicorp:
        assert hashicorp.create_token().startswith("hvs.")


def test_renewal_in_a_tokens_last_fraction_of_a_second_is_500_past_the_max_ttl(vault):
    """OpenBao counts the max TTL from the creation second: renewal is refused (500, not a
    transient error) once the clock passes it, though the token is still alive."""
    while time.time() % 1 < 0.5:          # created at x.5 or later: floor(x) + 3 < x.5 + 3
        time.sleep(0.01)
    token = vault.create_token(ttl=3, max_ttl=3)
    client = vault.client(token)
    vault.advance_clock(2.6)
    assert client.auth.token.lookup_self()["data"]["ttl"] == 0   # alive, under a second left
    with pytest.raises(hvac.exceptions.InternalServerError) as caught:
        client.auth.token.renew_self(increment="1h")
    assert caught.value.errors == ["1 error occurred:\n\t* past the max TTL, cannot renew\n\n"]


def test_token_renew_self_is_capped_at_max_ttl_with_a_warning(vault):
    token = vault.create_token(ttl=600, max_ttl=900)
    client = vault.client(token)

    renewed = client.auth.token.renew_self(increment="1h")
    assert renewed["auth"]["client_token"] == token
    assert 890 <= renewed["auth"]["lease_duration"] <= 900
    assert "exceeded the effective max_ttl" in renewed["warnings"][0]
    assert set(renewed["auth"]) == AUTH_KEYS
    plain = client.auth.token.renew_self(increment=60)
    assert plain["auth"]["lease_duration"] == 60 and plain["warnings"] is None


def test_root_and_non_renewable_tokens_cannot_renew(vault):
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.client().auth.token.renew_self()
    fixed = vault.create_token(renewable=False)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.client(fixed).auth.token.renew_self()


def test_revoked_and_expired_tokens_are_forbidden(vault):
    token = vault.create_token()
    client = vault.client(token)
    assert client.is_authenticated()
    client.auth.token.revoke_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup_self()

    short = vault.create_token(ttl=60)
    vault.advance_clock(61)
    assert not vault.client(short).is_authenticated()


def test_policy_allows_only_its_paths(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value})
    vault.kv2_put("secret", "other", {"password": canary()})
    client = vault.client(vault.create_token(allowed=["secret/data/app"]))

    assert read_v2(client, "app")["data"]["data"] == {"password": value}
    with pytest.raises(hvac.exceptions.Forbidden) as caught:
        read_v2(client, "other")
    assert caught.value.errors == ["1 error occurred:\n\t* permission denied\n\n"]   # OpenBao


def test_glob_patterns_and_named_policies(vault):
    vault.kv2_put("secret", "team/a", {"password": canary()})
    vault.kv2_put("secret", "team/b", {"password": canary()})
    vault.add_policy("team", ["secret/data/team/*"])
    client = vault.client(vault.create_token(policies=["team"]))
    assert read_v2(client, "team/a") and read_v2(client, "team/b")
    assert "team" in client.auth.token.lookup_self()["data"]["policies"]


def test_policy_edits_apply_to_existing_tokens(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    vault.add_policy("reader", [])
    client = vault.client(vault.create_token(policies=["reader"]))
    with pytest.raises(hvac.exceptions.Forbidden):
        read_v2(client, "app")
    vault.add_policy("reader", ["secret/data/app"])
    assert read_v2(client, "app")


@pytest.mark.parametrize("token", ["", "hvs.not-a-real-token", "s.aaaaaaaaaaaaaaaaaaaaaaaa"])
def test_missing_or_unknown_token_is_forbidden(vault, token):
    vault.kv2_put("secret", "app", {"password": canary()})
    with pytest.raises(hvac.exceptions.Forbidden) as caught:
        read_v2(vault.client(token), "app")
    assert caught.value.errors == ["permission denied"]


def test_multierror_style_matches_current_vault_bodies():
    with VaultDouble(forbidden_style="multierror") as vault:
        vault.kv2_put("secret", "app", {"password": canary()})
        with pytest.raises(hvac.exceptions.Forbidden) as invalid:
            read_v2(vault.client("hvs.unknown"), "app")
        assert "invalid token" in invalid.value.errors[0]
        with pytest.raises(hvac.exceptions.Forbidden) as denied:
            read_v2(vault.client(vault.create_token(allowed=["kv1/x"])), "app")
        assert denied.value.errors == ["1 error occurred:\n\t* permission denied\n\n"]


def test_bearer_authorization_header_is_accepted(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value})
    raw = requests.get(f"{vault.url}/v1/secret/data/app",
                       headers={"Authorization": f"Bearer {vault.root_token}"})
    assert raw.status_code == 200
    assert raw.json()["data"]["data"] == {"password": value}


# -- auth methods ----------------------------------------------------------------------------


def test_approle_login_good_and_bad(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value})
    role_id = vault.add_approle("app", allowed=["secret/data/app"], token_ttl=1200)
    secret_id = vault.new_secret_id("app")
    client = vault.client("")

    login = client.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert set(login) == ENVELOPE_KEYS and set(login["auth"]) == AUTH_KEYS
    assert login["auth"]["lease_duration"] == 1200 and login["auth"]["renewable"] is True
    assert login["auth"]["metadata"] == {"role_name": "app"}
    assert client.token == login["auth"]["client_token"]
    assert read_v2(client, "app")["data"]["data"] == {"password": value}

    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        vault.client("").auth.approle.login(role_id=role_id, secret_id="wrong-" + canary())
    assert caught.value.errors == ["invalid role or secret ID"]


def test_wrapped_secret_id_unwraps_once(vault):
    role_id = vault.add_approle("app", allowed=["secret/data/app"])
    wrapping_token = vault.wrapped_secret_id("app", ttl=60)

    unwrapper = vault.client(wrapping_token)
    secret_id = unwrapper.sys.unwrap()["data"]["secret_id"]
    assert vault.client("").auth.approle.login(role_id=role_id, secret_id=secret_id)
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        unwrapper.sys.unwrap()
    assert caught.value.errors == ["wrapping token is not valid or does not exist"]


def test_expired_wrapping_token_cannot_be_unwrapped(vault):
    vault.add_approle("app")
    wrapping_token = vault.wrapped_secret_id("app", ttl=60)
    vault.advance_clock(61)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.client(wrapping_token).sys.unwrap()


def test_generate_secret_id_with_wrap_ttl(vault):
    role_id = vault.add_approle("app")
    wrapped = vault.client().auth.approle.generate_secret_id(role_name="app", wrap_ttl="60s")
    info = wrapped["wrap_info"]
    assert wrapped["data"] is None
    assert info["ttl"] == 60 and info["creation_path"] == "auth/approle/role/app/secret-id"
    assert {"token", "accessor", "creation_time"} <= set(info)
    assert wrapped["request_id"] == ""   # OpenBao's wrapped answer has none
    # Unwrap with the token in the body, authenticated by another token.
    unwrapped = vault.client().sys.unwrap(info["token"])["data"]
    assert unwrapped["secret_id_accessor"] == info["wrapped_accessor"]   # as OpenBao names it
    assert vault.client("").auth.approle.login(role_id=role_id, secret_id=unwrapped["secret_id"])


def test_transit_takes_base64_once_and_refuses_other_text_as_openbao_does(vault):
    """sops sends base64(data key): transit decodes it once, and decrypt gives it back."""
    vault.add_transit_key("sops")
    client = vault.client()
    data_key = secrets.token_bytes(32)
    sent = base64.b64encode(data_key).decode()
    ciphertext = client.write("transit/encrypt/sops", plaintext=sent)["data"]["ciphertext"]
    answer = client.write("transit/decrypt/sops", ciphertext=ciphertext)["data"]["plaintext"]
    assert base64.b64decode(answer) == data_key
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        client.write("transit/encrypt/sops", plaintext="not base64!")
    assert caught.value.errors == ["illegal base64 data at input byte 3"]


def test_wrap_ttl_header_wraps_any_read(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value})
    client = vault.client()

    wrapped = client.read("secret/data/app", wrap_ttl="5m")
    assert wrapped["data"] is None and wrapped["wrap_info"]["ttl"] == 300
    original = client.sys.unwrap(wrapped["wrap_info"]["token"])
    assert original["data"]["data"] == {"password": value}


def test_kubernetes_login(vault):
    jwt = "eyJ" + canary()
    vault.add_kubernetes_role("web", jwt, allowed=["secret/data/web"], service_account="web-sa")
    client = vault.client("")

    login = client.auth.kubernetes.login(role="web", jwt=jwt)
    assert login["auth"]["metadata"]["service_account_name"] == "web-sa"
    assert set(login["auth"]) == AUTH_KEYS
    with pytest.raises(hvac.exceptions.Forbidden):
        vault.client("").auth.kubernetes.login(role="web", jwt="eyJ" + canary())
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.client("").auth.kubernetes.login(role="nobody", jwt=jwt)


def test_jwt_login(vault):
    jwt = "eyJ" + canary()
    vault.add_jwt_role("ci", jwt, allowed=["secret/data/ci"], token_ttl=300)
    client = vault.client("")

    login = client.auth.jwt.jwt_login(role="ci", jwt=jwt)
    assert login["auth"]["lease_duration"] == 300 and login["auth"]["metadata"] == {"role": "ci"}
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.client("").auth.jwt.jwt_login(role="ci", jwt="eyJ" + canary())


# -- dynamic database credentials ------------------------------------------------------------


def test_database_creds_are_new_per_read_and_paired(vault):
    vault.add_database_role("readonly")
    client = vault.client()

    first = client.read("database/creds/readonly")
    second = client.read("database/creds/readonly")
    assert first["lease_id"].startswith("database/creds/readonly/")
    assert first["lease_duration"] == 3600 and first["renewable"] is True
    assert first["data"]["username"] != second["data"]["username"]
    assert first["data"]["password"] != second["data"]["password"]
    issued = vault.issued_credentials("readonly")
    assert [(c.username, c.password) for c in issued] == [
        (first["data"]["username"], first["data"]["password"]),
        (second["data"]["username"], second["data"]["password"])]
    assert {lease.lease_id for lease in vault.live_leases()} == {first["lease_id"], second["lease_id"]}

    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.read("database/creds/unknown")


def test_lease_renew_is_capped_and_revoke_ends_it(vault):
    vault.add_database_role("app", default_ttl=60, max_ttl=120)
    client = vault.client()
    lease_id = client.read("database/creds/app")["lease_id"]

    renewed = client.sys.renew_lease(lease_id=lease_id, increment=30)
    assert renewed["lease_duration"] == 30 and renewed["warnings"] is None
    capped = client.sys.renew_lease(lease_id=lease_id, increment=3600)
    assert 110 <= capped["lease_duration"] <= 120
    assert "exceeded the effective max_ttl" in capped["warnings"][0]
    assert vault.count("sys/leases/renew", "PUT") == 2

    assert client.sys.revoke_lease(lease_id=lease_id).status_code == 204
    assert [lease.lease_id for lease in vault.revoked_leases()] == [lease_id]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.renew_lease(lease_id=lease_id)


def test_revoking_a_token_revokes_its_leases(vault):
    vault.add_database_role("app")
    token = vault.create_token(allowed=["database/creds/app"])
    client = vault.client(token)
    lease_id = client.read("database/creds/app")["lease_id"]
    client.auth.token.revoke_self()
    assert [lease.lease_id for lease in vault.revoked_leases()] == [lease_id]


def test_expired_lease_cannot_be_renewed(vault):
    vault.add_database_role("app", default_ttl=60)
    client = vault.client()
    lease_id = client.read("database/creds/app")["lease_id"]
    vault.advance_clock(61)
    assert vault.live_leases() == []
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        client.sys.renew_lease(lease_id=lease_id)
    assert caught.value.errors == ["lease not found"]


def test_lease_revoke_needs_a_policy(vault):
    vault.add_database_role("app")
    client = vault.client(vault.create_token(allowed=["database/creds/app"]))
    lease_id = client.read("database/creds/app")["lease_id"]
    assert client.sys.renew_lease(lease_id=lease_id)["lease_id"] == lease_id
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.revoke_lease(lease_id=lease_id)


# -- namespaces ------------------------------------------------------------------------------


def test_namespaces_have_separate_storage(vault):
    in_root, in_ns1 = canary(), canary()
    vault.kv2_put("secret", "app", {"password": in_root})
    vault.kv2_put("secret", "app", {"password": in_ns1}, namespace="ns1")

    assert read_v2(vault.client(), "app")["data"]["data"] == {"password": in_root}
    assert read_v2(vault.client(namespace="ns1/"), "app")["data"]["data"] == {"password": in_ns1}
    assert vault.requests[-1].namespace == "ns1"


def test_namespace_tokens_stay_in_their_namespace(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value}, namespace="ns1")
    vault.kv2_put("secret", "app", {"password": canary()}, namespace="ns2")
    token = vault.create_token(allowed=["secret/data/app"], namespace="ns1")

    assert read_v2(vault.client(token, namespace="ns1"), "app")["data"]["data"] == {"password": value}
    with pytest.raises(hvac.exceptions.Forbidden):
        read_v2(vault.client(token, namespace="ns2"), "app")
    with pytest.raises(hvac.exceptions.Forbidden):
        read_v2(vault.client(token), "app")


def test_namespace_may_continue_in_the_path(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value}, namespace="ns1/team")
    read = vault.client(namespace="ns1").adapter.get("/v1/team/secret/data/app")
    assert read["data"]["data"] == {"password": value}


def test_unknown_namespace_has_no_handler(vault):
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_v2(vault.client(namespace="nope"), "app")


def test_approle_login_inside_a_namespace(vault):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value}, namespace="ns1")
    role_id = vault.add_approle("app", allowed=["secret/data/app"], namespace="ns1")
    secret_id = vault.new_secret_id("app", namespace="ns1")
    client = vault.client("", namespace="ns1")
    client.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert read_v2(client, "app")["data"]["data"] == {"password": value}


# -- seal, health, failures, latency, log ----------------------------------------------------


def test_sealed_vault_is_down_but_reports_status(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    client = vault.client()
    vault.seal()

    with pytest.raises(hvac.exceptions.VaultDown) as caught:
        read_v2(client, "app")
    assert caught.value.errors == ["Vault is sealed"]
    assert client.sys.read_seal_status()["sealed"] is True
    assert client.sys.is_sealed() is True
    health = client.sys.read_health_status(method="GET")
    assert health.status_code == 503 and health.json()["sealed"] is True
    assert client.sys.read_health_status().status_code == 503  # hvac's default HEAD

    vault.unseal()
    assert client.sys.read_health_status(method="GET")["sealed"] is False
    assert read_v2(client, "app")


def test_unseal_after_a_delay(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    vault.seal()
    vault.unseal_after(0.2)
    deadline = time.monotonic() + 5
    while vault.sealed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_v2(vault.client(), "app")


@pytest.mark.parametrize("status, exception", [
    (429, hvac.exceptions.RateLimitExceeded),
    (500, hvac.exceptions.InternalServerError),
    (502, hvac.exceptions.BadGateway),
    (503, hvac.exceptions.VaultDown),
])
def test_injected_failures_come_first_then_service_resumes(vault, status, exception):
    value = canary()
    vault.kv2_put("secret", "app", {"password": value})
    vault.fail_next(1, status=status, path="secret/data/")
    client = vault.client()

    with pytest.raises(exception):
        read_v2(client, "app")
    assert read_v2(client, "app")["data"]["data"] == {"password": value}


def test_injected_failure_only_hits_its_path(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    vault.fail_next(2, status=429, path="secret/data/app")
    client = vault.client()
    assert client.auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.RateLimitExceeded) as caught:
        read_v2(client, "app")
    assert "rate limit quota exceeded" in caught.value.errors[0]


def test_injected_non_json_body_reaches_hvac_as_text(vault):
    vault.fail_next(1, status=502, body="<html>bad gateway</html>", content_type="text/html")
    with pytest.raises(hvac.exceptions.BadGateway) as caught:
        read_v2(vault.client(), "app")
    assert caught.value.errors is None and "bad gateway" in caught.value.text


def test_latency_is_added_to_every_request(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    client = vault.client()
    read_v2(client, "app")  # warm the connection
    vault.latency = 0.3
    started = time.monotonic()
    read_v2(client, "app")
    assert time.monotonic() - started >= 0.3


def test_request_log_counts_and_hides_tokens(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    client = vault.client()
    for _ in range(3):
        read_v2(client, "app")
    client.sys.read_seal_status()

    assert vault.count("secret/data/app") == 3
    assert vault.count("/v1/secret/data/app", "GET") == 3
    assert vault.count("secret/", prefix=True) == 3
    entry = vault.requests[0]
    assert entry.method == "GET" and entry.status == 200 and entry.query == {}
    assert entry.headers["x-vault-token"] == "<redacted>"
    assert entry.headers["x-vault-request"] == "true"
    assert vault.root_token not in repr(vault.requests)

    vault.reset_log()
    assert vault.requests == [] and vault.count() == 0


def test_version_query_is_logged(vault):
    vault.kv2_put("secret", "app", {"password": canary()})
    read_v2(vault.client(), "app", version=1)
    assert vault.requests[-1].query == {"version": "1"}


# -- wire format ---------------------------------------------------------------------------


def test_errors_have_exact_json_content_type_and_errors_key(vault):
    cases = [
        ("GET", "/v1/secret/data/missing", {"X-Vault-Token": vault.root_token}, 404),
        ("GET", "/v1/secret/data/app", {}, 403),
        ("DELETE", "/v1/database/creds/x", {"X-Vault-Token": vault.root_token}, 405),
        ("POST", "/v1/auth/token/lookup-self", {"X-Vault-Token": vault.root_token}, 405),
        ("GET", "/v1/nomount/x", {"X-Vault-Token": vault.root_token}, 404),
    ]
    for method, path, headers, status in cases:
        raw = requests.request(method, vault.url + path, headers=headers)
        assert raw.status_code == status, path
        assert raw.headers["Content-Type"] == "application/json"
        assert isinstance(raw.json()["errors"], list)


def test_wrong_method_is_unexpected_error_in_hvac(vault):
    with pytest.raises(hvac.exceptions.UnexpectedError):
        vault.client().adapter.delete("/v1/database/creds/x")


def test_seal_status_and_health_need_no_token(vault):
    assert requests.get(vault.url + "/v1/sys/seal-status").json()["sealed"] is False
    assert requests.get(vault.url + "/v1/sys/health").status_code == 200
    assert requests.get(vault.url + "/v1/sys/health?activecode=299").status_code == 299


def test_duration_helpers_match_go():
    assert parse_duration("1h30m") == 5400 and parse_duration("90") == 90 and parse_duration(5) == 5
    # As OpenBao's capped-TTL warnings write durations: zero units left out.
    assert go_duration(3600) == "1h" and go_duration(5400) == "1h30m" and go_duration(90) == "1m30s"
    assert go_duration(0) == "0s" and go_duration(3601) == "1h1s"
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_concurrent_clients_each_get_their_own_credentials(vault):
    vault.add_database_role("app")

    def read_creds(_: int) -> tuple[str, str]:
        data = vault.client().read("database/creds/app")["data"]
        return data["username"], data["password"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        pairs = list(pool.map(read_creds, range(24)))
    assert len(set(pairs)) == 24
    assert sorted(pairs) == sorted((c.username, c.password) for c in vault.issued_credentials())
    assert vault.count("database/creds/app") == 24


def test_serves_https_with_a_test_ca(tmp_path):
    pki = make_test_pki(tmp_path)
    with VaultDouble(ssl_context=pki.server_context()) as vault:
        value = canary()
        vault.kv2_put("secret", "app", {"password": value})
        assert vault.url.startswith("https://")
        client = vault.client(verify=str(pki.ca_path))
        assert read_v2(client, "app")["data"]["data"] == {"password": value}
