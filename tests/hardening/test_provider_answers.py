"""Issue 12 item 13: answers and values that ended in exit 70 (an internal error) although the
fault is in the data or the store.

- JSON nested deeper than Python's recursion limit, in a file, in Vault's answer, in an AWS
  answer, and inside a Secrets Manager secret asked for a key: 65 (the data cannot be a usable secret).
- SSM and Secrets Manager answers missing what every answer holds (no Parameter, no Value, a
  Value that is not text): 69 when the answer is unreadable, 65 when it says something
  impossible (a parameter without a text value).
- A non-UTF-8 environment value that holds a reference, under `exec` and `render`: 65.
Each: one line, the documented code, no traceback (run_shim checks), nothing executed.
"""

from __future__ import annotations

import json

import pytest

from tests.doubles.vault import VaultDouble
from tests.hardening.conftest import AWS_TEST_ENV, one_line
from tests.helpers.aws_moto import AwsProxy, MotoServer

DEEP = 20_000   # far past Python's recursion limit, and under Secrets Manager's 64 KiB
NESTED = "[" * DEEP + "]" * DEEP


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def aws():
    server = MotoServer()
    proxy = AwsProxy(server.host, server.port)
    yield server, proxy
    proxy.stop()
    server.stop()


def _exec(run_shim, probe, env):
    return run_shim(["exec", "--deadline", "10s", "--", *probe.argv], env, timeout=60)


# --- deeply nested JSON ------------------------------------------------------------------

def test_nested_json_file_asked_for_a_key(run_shim, probe, tmp_path):
    path = tmp_path / "app.json"
    path.write_text(NESTED)
    result = _exec(run_shim, probe, {"P": f"ref+file://{path}#/db/password"})
    one_line(result, 65, "nested")
    assert not probe.ran


def test_nested_json_inside_an_aws_secret_asked_for_a_key(run_shim, probe, aws):
    server, proxy = aws
    proxy.reset()
    import boto3
    client = boto3.client("secretsmanager", endpoint_url=proxy.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # pragma: allowlist secret
    client.create_secret(Name="nested/app", SecretString=NESTED)
    result = _exec(run_shim, probe, {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": proxy.url,
                                     "P": "ref+awssecrets://nested/app#/db/password"})
    one_line(result, 65, "nested")
    assert not probe.ran


def test_nested_json_as_vaults_answer(run_shim, probe, home):
    with VaultDouble() as vault:
        vault.kv2_put("secret", "app", {"password": "x"})
        vault.fail_next(20, 200, body='{"data": ' + NESTED + "}")
        result = _exec(run_shim, probe, {
            "VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token, "HOME": str(home),
            "P": "vault:secret/data/app#password"})
    one_line(result, 65, "nested")
    assert not probe.ran


@pytest.mark.parametrize("reference", ["ref+awssecrets://app/db", "ref+awsssm:///app/db"])
def test_nested_json_as_an_aws_answer(run_shim, probe, aws, reference):
    server, proxy = aws
    proxy.reset()
    proxy.answer_with(NESTED.encode())
    try:
        result = _exec(run_shim, probe, {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": proxy.url, "P": reference})
    finally:
        proxy.reset()
    one_line(result, 65, "nested")
    assert not probe.ran


# --- odd AWS answers ---------------------------------------------------------------------

@pytest.mark.parametrize("payload, code", [
    ({}, 69),                                           # GetParameter without Parameter
    ({"Parameter": "text"}, 69),                        # the wrong shape
    ({"Parameter": {"Name": "/app/db"}}, 65),           # a parameter without a value
    ({"Parameter": {"Name": "/app/db", "Value": 7}}, 65),
    ([1, 2], 69),
    ("text", 69),
], ids=["empty", "wrong-shape", "no-value", "number-value", "list", "string"])
def test_odd_ssm_answer(run_shim, probe, aws, payload, code):
    server, proxy = aws
    proxy.reset()
    proxy.answer_with(json.dumps(payload).encode())
    try:
        result = _exec(run_shim, probe, {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": proxy.url,
                                         "P": "ref+awsssm:///app/db"})
    finally:
        proxy.reset()
    one_line(result, code, "Parameter Store")
    assert not probe.ran


# --- non-UTF-8 environment values --------------------------------------------------------

@pytest.mark.parametrize("command", ["exec", "render"])
@pytest.mark.parametrize("value", ["file:/run/secrets/\udcff", "pre\udcff ${file:/run/x} post",
                                   "vault:secret/data/app\udcff#password"],
                         ids=["file-path", "inline", "vault-path"])
def test_non_utf8_value_holding_a_reference(run_shim, probe, tmp_path, command, value):
    args = (["exec", "--", *probe.argv] if command == "exec"
            else ["render", "--format", "dotenv", "--env-file", str(tmp_path / "out.env")])
    result = run_shim(args, {"P": value, "VAULT_ADDR": "http://127.0.0.1:9",
                             "VAULT_TOKEN": "hvs.x"}, timeout=60)
    one_line(result, 65, "P")
    assert not probe.ran
    assert not (tmp_path / "out.env").exists()
