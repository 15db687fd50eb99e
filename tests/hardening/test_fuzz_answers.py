"""Issue 12 item 13: fuzz what the stores answer, not only the reference grammar.

Generated bodies (JSON of any shape, store-shaped JSON with fields of the wrong type, deep
nesting, bytes that are not JSON or not UTF-8), with canaries inside, under several HTTP
statuses, reach shim through the Vault double, the moto proxy (an injected answer) and a Key
Vault address (with the Azure double's managed identity). Whatever comes back: shim never
ends in an internal error (70, or 1 with a traceback), and no canary from an answer reaches
its output (run_shim checks every run).

Each example starts a shim process, so the budget is small (MAX_EXAMPLES per store); run
more with HYPOTHESIS_PROFILE=long and SHIM_FUZZ_ANSWERS=200.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.doubles.azure import AzureKeyVaultDouble
from tests.doubles.vault import VaultDouble
from tests.hardening.conftest import AWS_TEST_ENV
from tests.helpers.aws_moto import AwsProxy, MotoServer
from tests.helpers.flood import FloodServer

MAX_EXAMPLES = int(os.environ.get("SHIM_FUZZ_ANSWERS", "25"))
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
CANARY = "<canary>"   # replaced in each example by a fresh generated canary

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=20), st.just(CANARY))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["data", "value", "Value", "SecretString", "Parameter",
                                     "Parameters", "errors", "metadata", "password", "auth",
                                     "id", "attributes", CANARY, "x"]), inner, max_size=4)),
    max_leaves=12)


def _shaped(store: str):
    """JSON in the store's own envelope, with generated contents."""
    if store == "vault":
        return json_values.map(lambda v: {"data": {"data": {"password": v}, "metadata": v}})
    if store == "aws":
        return json_values.map(lambda v: {"Parameter": {"Name": "/app/db", "Value": v},
                                          "SecretString": v, "SecretValues": [v]})
    return json_values.map(lambda v: {"value": v, "id": v, "attributes": v})


def bodies(store: str):
    deep = st.integers(1_000, 50_000).map(lambda n: ("[" * n + "]" * n).encode())
    as_json = st.one_of(json_values, _shaped(store)).map(lambda v: json.dumps(v).encode())
    return st.one_of(as_json, as_json, deep, st.binary(max_size=200))


statuses = st.sampled_from([200, 200, 200, 400, 401, 403, 404])


def _with_canary(body: bytes, canaries) -> bytes:
    return body.replace(CANARY.encode(), canaries.new("answer").encode())


def _assert_handled(result):
    assert result.returncode not in (1, 70), result.stderr
    assert "internal error" not in result.stderr, result.stderr


def _exec(run_shim, probe, env):
    return run_shim(["exec", "--deadline", "4s", "--", *probe.argv], env, timeout=60)


@FUZZ
@given(body=bodies("vault"), status=statuses, selector=st.sampled_from(["#password", ""]))
def test_vault_answers(run_shim, probe, canaries, tmp_path, body, status, selector):
    with VaultDouble() as vault:
        vault.fail_next(20, status, body=_with_canary(body, canaries))
        result = _exec(run_shim, probe, {
            "VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token, "HOME": str(tmp_path),
            "P": f"vault:secret/data/app{selector}"})
    _assert_handled(result)


@pytest.fixture(scope="module")
def aws():
    server = MotoServer()
    proxy = AwsProxy(server.host, server.port)
    yield proxy
    proxy.stop()
    server.stop()


@FUZZ
@given(body=bodies("aws"), status=statuses,
       reference=st.sampled_from(["ref+awsssm:///app/db", "ref+awssecrets://app/db",
                                  "ref+awssecrets://app/db#/password",
                                  "ref+awssecrets://app/db?version_stage=AWSPREVIOUS"]))
def test_aws_answers(run_shim, probe, canaries, aws, body, status, reference):
    aws.reset()
    aws.answer_with(_with_canary(body, canaries), status=status)
    try:
        result = _exec(run_shim, probe, {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": aws.url, "P": reference})
    finally:
        aws.reset()
    _assert_handled(result)


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    directory = tmp_path_factory.mktemp("azure-fuzz")
    with AzureKeyVaultDouble(directory) as kv:
        yield kv, kv.pki.server_context()   # the double's certificate, which shim trusts


@FUZZ
@given(body=bodies("azure"), status=statuses, selector=st.sampled_from(["", "#/password"]))
def test_azure_answers(run_shim, probe, canaries, azure, body, status, selector):
    kv, context = azure
    with FloodServer(body=_with_canary(body, canaries), status=status, context=context) as server:
        host = server.url[len("https://"):]
        result = _exec(run_shim, probe, {
            **kv.app_service_env(), "SHIM_AZURE_CA_BUNDLE": str(kv.ca_path),
            "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
            "P": f"ref+azurekeyvault://{host}/app{selector}"})
    _assert_handled(result)
