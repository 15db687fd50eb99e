"""The GCP access token a `--watch` helper carries from the one before (TokenSource.carried):
used only while it lasts, and once expired, replaced by a fresh token that is handed on.

In-process, against the Secret Manager double's OAuth endpoint on loopback: the carried token's
expiry is a monotonic time a subprocess test could only reach by waiting out a real token's
lifetime (google-auth refuses tokens with less than 3 min 45 s left).
"""

from __future__ import annotations

import time

import pytest
import requests

from shim.delivery.audit import Log
from shim.providers.base import ProviderContext
from shim.providers.gcp import SecretManagerProvider, TokenSource
from tests.doubles.gcp import SecretManagerDouble

CARRIED = "ya29.carried-from-the-previous-helper"


@pytest.fixture
def gcp(tmp_path, monkeypatch):
    with SecretManagerDouble(tmp_path) as double:
        # requests reads the CA bundle from the process environment.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(double.ca_path))
        yield double


def key_environ(gcp, tmp_path) -> dict:
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(gcp.service_account_key(tmp_path / "key.json"))}


def context(gcp, tmp_path) -> ProviderContext:
    return ProviderContext(key_environ(gcp, tmp_path), Log(level="error"))


def test_a_carried_token_is_used_while_it_lasts(gcp, tmp_path):
    tokens = TokenSource(key_environ(gcp, tmp_path), requests.Session)
    tokens.carried = (CARRIED, time.monotonic() + 600)
    assert tokens.token() == CARRIED
    assert gcp.count("oauth2") == 0


def test_an_expired_carried_token_is_replaced_by_a_fresh_one(gcp, tmp_path):
    tokens = TokenSource(key_environ(gcp, tmp_path), requests.Session)
    tokens.carried = (CARRIED, time.monotonic() - 1)
    fresh = tokens.token()
    assert fresh != CARRIED and fresh in gcp.issued_tokens()
    assert gcp.count("oauth2") == 1


def test_once_expired_the_carried_token_is_not_handed_to_the_next_helper(gcp, tmp_path):
    """Otherwise every helper after the first hour receives the dead token (with negative time
    left) and asks for a new one: one token request per --watch tick."""
    provider = SecretManagerProvider(context(gcp, tmp_path))
    provider.resume_session({"token": CARRIED, "expires": time.monotonic() + 0.2})
    time.sleep(0.3)
    fresh = provider._tokens.token()
    handed_on = provider.export_session()
    assert handed_on["token"] == fresh != CARRIED
    assert handed_on["expires"] > time.monotonic()
    # The next helper uses what it was given: no second token request.
    following = SecretManagerProvider(context(gcp, tmp_path))
    following.resume_session(handed_on)
    assert following._tokens.token() == fresh
    assert gcp.count("oauth2") == 1

