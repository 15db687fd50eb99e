"""The faults every plain-REST store must survive the same way (shim/providers/rest.py): the
same rows against the Doppler, Infisical, 1Password Connect and Bitwarden doubles.

Each store is set up with one readable secret in variable X; each test then breaks one thing.
What only one store does (its own errors, logins, imports) stays in its own test file.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass

import pytest

from tests.doubles.bitwarden import BitwardenDouble
from tests.doubles.doppler import DOWNLOAD, DopplerDouble
from tests.doubles.https import Reply
from tests.doubles.infisical import LOGIN, InfisicalDouble
from tests.doubles.onepassword import ConnectDouble


@dataclass
class Store:
    """One store's double with X readable, and what its tests need to know of it."""
    double: object
    env: dict
    value: str
    address_variable: str   # where shim finds the double
    label: str              # how shim's messages name the store
    requests: int           # the requests one clean read of X makes
    redirect: tuple         # (status, path): a redirect of the first request, to the same path


def doppler_store(tmp_path, value):
    double = DopplerDouble(tmp_path).start()
    double.add_config("billing", "prd", {"X": value})
    return Store(double, {**double.env(double.service_token("billing", "prd")),
                          "X": "ref+doppler:////X"}, value, "SHIM_DOPPLER_ENDPOINT", "Doppler",
                 1, (307, f"{DOWNLOAD}?format=json"))


def infisical_store(tmp_path, value):
    double = InfisicalDouble(tmp_path).start()
    double.add_secret(double.project, "prod", "/", "X", value)
    client_id, client_secret = double.machine_identity((double.project, "prod"))
    return Store(double, {**double.env(client_id, client_secret),
                          "X": f"ref+infisical://{double.project}/prod#/X"}, value,
                 "SHIM_INFISICAL_ENDPOINT", "Infisical", 2, (307, LOGIN))


def onepassword_store(tmp_path, value):
    double = ConnectDouble(tmp_path).start()
    double.add_item("prod", "app", {"password": value})
    return Store(double, {**double.env(double.token("prod")), "X": "op://prod/app/password"},
                 value, "OP_CONNECT_HOST", "1Password Connect", 3, (302, "/v1/vaults"))


def bitwarden_store(tmp_path, value):
    double = BitwardenDouble(tmp_path).start()
    project = str(uuid.uuid4())
    secret = double.add_secret("X", value, project=project)
    return Store(double, {**double.env(double.access_token(project)), "X": f"ref+bws://{secret}"},
                 value, "BWS_SERVER_URL", "Bitwarden Secrets Manager", 2,
                 (307, "/identity/connect/token"))


STORES = {"doppler": doppler_store, "infisical": infisical_store,
          "onepassword": onepassword_store, "bitwarden": bitwarden_store}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path, canaries):
    store = STORES[request.param](tmp_path, canaries.new(request.param))
    yield store
    store.double.stop()


def run_bounded(run_shim, probe, env, deadline="2s"):
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", deadline, "--", *probe.argv], env, timeout=30)
    return result, time.monotonic() - started


def test_the_store_answers(store, run_shim, probe):
    """The control: without a fault, X is the value."""
    result, _ = run_bounded(run_shim, probe, store.env, "10s")
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["X"] == store.value
    assert store.double.count() == store.requests
    store.double.assert_no_credentials(result.stdout, result.stderr)


def test_throttling_server_errors_and_garbage_are_retried(store, run_shim, probe):
    store.double.inject_failure(429, retry_after=0.1)
    store.double.inject_failure(503)
    store.double.inject_garbage()   # after the failures: a 200 whose body is not JSON

    result, _ = run_bounded(run_shim, probe, store.env, "10s")

    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["X"] == store.value
    # Whichever request comes first (a lookup, a login) is retried until it is answered.
    assert [entry.status for entry in store.double.requests()] == \
        [429, 503, 200] + [200] * store.requests


@pytest.mark.parametrize("store,status", [("doppler", 429), ("doppler", 500), ("doppler", 503),
                                          ("infisical", 503), ("onepassword", 500),
                                          ("bitwarden", 500)], indirect=["store"])
def test_a_storm_outlasting_the_deadline_is_69(store, run_shim, probe, status):
    store.double.inject_failure(status, count=10_000)

    result, _ = run_bounded(run_shim, probe, store.env)

    assert result.returncode == 69, result.stderr
    assert not probe.ran
    assert f"{store.label}: HTTP {status} on every attempt" in result.stderr
    assert store.double.count() > 2   # retried, not given up at once


def test_a_redirect_does_not_carry_the_credentials_on(store, tmp_path, run_shim, probe):
    status, path = store.redirect
    with type(store.double)(tmp_path / "elsewhere") as elsewhere:
        store.double.inject_reply(Reply(status, "", "text/plain",
                                        {"Location": elsewhere.endpoint + path}))

        result, _ = run_bounded(run_shim, probe, store.env, "10s")

        assert result.returncode == 78, result.stderr
        assert "redirect" in result.stderr
        assert elsewhere.count() == 0
    store.double.assert_no_credentials(result.stdout, result.stderr)


def test_a_body_slower_than_the_deadline_is_69_soon_after_it(store, run_shim, probe):
    store.double.slow_body = 0.05

    result, elapsed = run_bounded(run_shim, probe, store.env)

    assert result.returncode == 69, result.stderr
    assert not probe.ran
    assert elapsed < 2 + 6   # an upper bound only: the read is abandoned about 1 s past it


def test_a_closed_port_is_69(store, run_shim, probe):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {**store.env, store.address_variable: f"https://127.0.0.1:{port}"}

    result, _ = run_bounded(run_shim, probe, env)

    assert result.returncode == 69, result.stderr
    assert "Connection refused" in result.stderr


def test_an_untrusted_certificate_is_78_and_no_request_completes(store, run_shim, probe):
    env = {key: value for key, value in store.env.items() if key != "REQUESTS_CA_BUNDLE"}

    result, _ = run_bounded(run_shim, probe, env, "10s")

    assert result.returncode == 78, result.stderr
    assert "not trusted" in result.stderr and "REQUESTS_CA_BUNDLE" in result.stderr
    assert store.double.count() == 0


def test_an_endless_answer_stops_at_the_cap(store, run_shim, probe):
    for _ in range(3):   # whichever request comes first (a lookup, a login) gets it
        store.double.inject_reply(Reply(200, "[" + "0," * (3 * 1024 * 1024) + "0]"))

    result, _ = run_bounded(run_shim, probe, store.env, "10s")

    assert result.returncode == 65, result.stderr
    assert "more than 4 MiB" in result.stderr
    assert not probe.ran
