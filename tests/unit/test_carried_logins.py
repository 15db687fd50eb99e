"""The login a --watch helper hands to the next one (Infisical's universal-auth token,
Bitwarden's bearer): used while it lasts, and replaced by one new login once it is within the
reserve of its expiry, however long the supervisor held it between ticks.

In-process, against the stores' doubles on loopback: a token whose expiry passes within the
test stands for one that passes after hours of ticks; each "tick" is a new provider resumed
from the state the last one exported, as shim/pipeline/helper.py does.
"""

from __future__ import annotations

import time
import uuid

import pytest

from shim.delivery.audit import Log
from shim.providers.base import ProviderContext
from shim.providers.bitwarden import TOKEN_RESERVE_SECONDS, SecretsManagerProvider
from shim.providers.gcp import SecretManagerProvider
from shim.providers.infisical import InfisicalProvider
from shim.syntax.refs import parse_reference
from shim.tools.deadline import Deadline
from tests.doubles.bitwarden import BitwardenDouble
from tests.doubles.infisical import LOGIN, InfisicalDouble

BETWEEN_TICKS = 0.3      # seconds the supervisor holds the session between two helpers
USABLE = 1               # seconds each login is usable past the reserve


def infisical_store(tmp_path, canaries):
    double = InfisicalDouble(tmp_path).start()
    double.expires_in = TOKEN_RESERVE_SECONDS + USABLE
    double.add_secret(double.project, "prod", "/", "KEY", canaries.new())
    client_id, client_secret = double.machine_identity((double.project, "prod"))
    return (double, InfisicalProvider, double.env(client_id, client_secret),
            f"ref+infisical://{double.project}/prod#/KEY", lambda: double.count(path=LOGIN))


def bitwarden_store(tmp_path, canaries):
    double = BitwardenDouble(tmp_path).start()
    double.expires_in = TOKEN_RESERVE_SECONDS + USABLE
    project = str(uuid.uuid4())
    secret_id = double.add_secret("KEY", canaries.new(), project=project)
    return (double, SecretsManagerProvider, double.env(double.access_token(project)),
            f"ref+bws://{secret_id}", double.logins)


@pytest.mark.parametrize("store", [infisical_store, bitwarden_store],
                         ids=["infisical", "bitwarden"])
def test_a_carried_login_is_replaced_once_it_nears_its_expiry(store, tmp_path, canaries,
                                                              monkeypatch):
    double, provider_class, env, text, logins = store(tmp_path, canaries)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(double.ca_path))
    reference = parse_reference(text)
    try:
        state: dict = {}
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 3 * USABLE + 1:
            provider = provider_class(ProviderContext(env, Log(level="error")))
            provider.resume_session(state)
            outcome = provider.fetch_all([reference], Deadline(10))[reference.fetch_key]
            assert not isinstance(outcome, Exception), outcome
            state = provider.export_session()
            ticks += 1
            time.sleep(BETWEEN_TICKS)
        # A login per token lifetime (USABLE s), not one a tick, and not one for the whole run.
        assert 2 <= logins() <= 1 + (3 * USABLE + 1) // USABLE
        assert logins() < ticks
    finally:
        double.stop()


def test_a_carried_google_token_keeps_its_expiry_however_long_the_supervisor_held_it():
    # Handed on as "seconds left", each hand-over restarted the count: a token held for a tick
    # between helpers came back a tick younger, and was used past its real expiry.
    expires = time.monotonic() + 120
    state = {"token": "carried-google-token", "expires": expires}
    for _ in range(3):
        provider = SecretManagerProvider(ProviderContext({}, Log(level="error")))
        provider.resume_session(state)
        time.sleep(BETWEEN_TICKS)
        state = provider.export_session()
        assert state["token"] == "carried-google-token"
        assert state["expires"] == pytest.approx(expires, abs=0.05)
