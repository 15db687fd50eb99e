"""The faults every plain-REST store must survive the same way (shim/providers/rest.py): the
same rows against the Doppler, Infisical, 1Password Connect and Bitwarden doubles.

Each store is set up with one readable secret in variable X; each test then breaks one thing.
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from tests.doubles.bitwarden import BitwardenDouble
from tests.doubles.doppler import DopplerDouble
from tests.doubles.https import Reply
from tests.doubles.infisical import InfisicalDouble
from tests.doubles.onepassword import ConnectDouble


def doppler_store(tmp_path, value):
    double = DopplerDouble(tmp_path).start()
    double.add_config("billing", "prd", {"X": value})
    return double, {**double.env(double.service_token("billing", "prd")),
                    "X": "ref+doppler:////X"}, "SHIM_DOPPLER_ENDPOINT"


def infisical_store(tmp_path, value):
    double = InfisicalDouble(tmp_path).start()
    double.add_secret(double.project, "prod", "/", "X", value)
    client_id, client_secret = double.machine_identity((double.project, "prod"))
    return double, {**double.env(client_id, client_secret),
                    "X": f"ref+infisical://{double.project}/prod#/X"}, "SHIM_INFISICAL_ENDPOINT"


def onepassword_store(tmp_path, value):
    double = ConnectDouble(tmp_path).start()
    double.add_item("prod", "app", {"password": value})
    return double, {**double.env(double.token("prod")), "X": "op://prod/app/password"}, \
        "OP_CONNECT_HOST"


def bitwarden_store(tmp_path, value):
    double = BitwardenDouble(tmp_path).start()
    project = str(uuid.uuid4())
    secret = double.add_secret("X", value, project=project)
    return double, {**double.env(double.access_token(project)), "X": f"ref+bws://{secret}"}, \
        "BWS_SERVER_URL"


STORES = {"doppler": doppler_store, "infisical": infisical_store,
          "onepassword": onepassword_store, "bitwarden": bitwarden_store}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path, canaries):
    value = canaries.new(request.param)
    double, env, address_variable = STORES[request.param](tmp_path, value)
    yield double, env, address_variable, value
    double.stop()


def run_bounded(run_shim, probe, env, deadline="2s"):
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", deadline, "--", *probe.argv], env, timeout=30)
    return result, time.monotonic() - started


def test_the_store_answers(store, run_shim, probe):
    """The control: without a fault, X is the value."""
    double, env, _, value = store
    result, _ = run_bounded(run_shim, probe, env, "10s")
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["X"] == value
    double.assert_no_credentials(result.stdout, result.stderr)


def test_a_body_slower_than_the_deadline_is_69_soon_after_it(store, run_shim, probe):
    double, env, _, _ = store
    double.slow_body = 0.05

    result, elapsed = run_bounded(run_shim, probe, env)

    assert result.returncode == 69, result.stderr
    assert not probe.ran
    assert elapsed < 2 + 6   # an upper bound only: the read is abandoned about 1 s past it


def test_a_closed_port_is_69(store, run_shim, probe):
    double, env, variable, _ = store
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {**env, variable: f"https://127.0.0.1:{port}"}

    result, _ = run_bounded(run_shim, probe, env)

    assert result.returncode == 69, result.stderr
    assert "Connection refused" in result.stderr


def test_an_untrusted_certificate_is_78_and_no_request_completes(store, run_shim, probe):
    double, env, _, _ = store
    env = {key: value for key, value in env.items() if key != "REQUESTS_CA_BUNDLE"}

    result, _ = run_bounded(run_shim, probe, env, "10s")

    assert result.returncode == 78, result.stderr
    assert "not trusted" in result.stderr and "REQUESTS_CA_BUNDLE" in result.stderr
    assert double.count() == 0


def test_an_endless_answer_stops_at_the_cap(store, run_shim, probe):
    double, env, _, _ = store
    for _ in range(3):   # whichever request comes first (a lookup, a login) gets it
        double.inject_reply(Reply(200, "[" + "0," * (3 * 1024 * 1024) + "0]"))

    result, _ = run_bounded(run_shim, probe, env, "10s")

    assert result.returncode == 65, result.stderr
    assert "more than 4 MiB" in result.stderr
    assert not probe.ran
