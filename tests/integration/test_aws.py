"""AWS Secrets Manager and SSM Parameter Store against moto's real HTTP server.

shim runs as a real process (`run_shim`) with boto3 pointed at a counting
proxy in front of moto (tests/helpers/aws_moto.py) through AWS_ENDPOINT_URL;
the tests set secrets up by talking to moto directly, so the proxy counts
shim's own HTTP requests only. The proxy also injects ThrottlingException,
5xx and AccessDenied answers where a test needs them.

Every secret value is a canary; run_shim fails a test whose shim output
(including the JSON log) holds one. The fake AWS secret key is a canary too.
"""

from __future__ import annotations

import json
import os
import sys
import time

import boto3
import pytest

from tests.helpers.aws_moto import TEST_ACCOUNT, AwsProxy, MotoServer

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(moto_server):
    proxy = AwsProxy(moto_server.host, moto_server.port)
    yield proxy
    proxy.stop()


class Aws:
    """Set-up clients that talk to moto directly, and the environment shim gets."""

    def __init__(self, server: MotoServer, proxy: AwsProxy, secret_key: str):
        self.server = server
        self.proxy = proxy
        self.env = {
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": REGION,
            # Nothing of this machine's own AWS set-up may take part.
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str, region: str = REGION):
        return boto3.client(service, endpoint_url=self.server.url, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    @property
    def secrets(self):
        return self.client("secretsmanager")

    @property
    def ssm(self):
        return self.client("ssm")

    def secret(self, name: str, value, region: str = REGION) -> dict:
        field = "SecretBinary" if isinstance(value, bytes) else "SecretString"
        if isinstance(value, dict):
            value = json.dumps(value)
        return self.client("secretsmanager", region).create_secret(Name=name, **{field: value})

    def parameter(self, name: str, value: str, kind: str = "SecureString", region: str = REGION):
        return self.client("ssm", region).put_parameter(Name=name, Value=value, Type=kind,
                                                        Overwrite=True)


@pytest.fixture
def aws(moto_server, proxy, canaries):
    moto_server.reset()
    proxy.reset()
    return Aws(moto_server, proxy, canaries.new("aws-secret-key"))


def exec_env(aws, variables):
    return {**aws.env, **variables}


def arn(name: str, region: str = REGION) -> str:
    """A partial ARN, as people write it (no random suffix)."""
    return f"arn:aws:secretsmanager:{region}:{TEST_ACCOUNT}:secret:{name}"


def json_events(stderr: str, event: str) -> list[dict]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


# --- Secrets Manager: every syntax ----------------------------------------

def test_ecs_value_from_strings_copied_verbatim(run_shim, probe, canaries, aws):
    """The `valueFrom` forms of an ECS task definition, pasted into env vars."""
    password, user, token = canaries.new("pw"), canaries.new("user"), canaries.new("token")
    created = aws.secret("prod/db", {"password": password, "username": user})
    aws.secret("api-token", token)
    full = created["ARN"]
    assert full != arn("prod/db")  # moto appends the 6-character suffix, like AWS
    variables = {
        "WHOLE": full,                                    # full ARN
        "PASSWORD": f"{full}:password::",                 # full ARN + json key
        "USERNAME": f"{arn('prod/db')}:username::",       # partial ARN + json key
        "CURRENT": f"{full}:password:AWSCURRENT:",        # explicit AWSCURRENT stage
        "TOKEN": arn("api-token"),                        # partial ARN, plain string
    }
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert json.loads(env["WHOLE"]) == {"password": password, "username": user}
    assert env["PASSWORD"] == password and env["CURRENT"] == password
    assert env["USERNAME"] == user and env["TOKEN"] == token
    # Two secrets, five spellings: one batch call, nothing read twice.
    assert aws.proxy.count("BatchGetSecretValue") == 1
    assert aws.proxy.count("GetSecretValue") == 0
    # shim never scrubs the app's own AWS variables.
    for name, value in aws.env.items():
        assert env[name] == value


def test_vals_forms(run_shim, probe, canaries, aws):
    value, nested = canaries.new("plain"), canaries.new("nested")
    created = aws.secret("app/plain", value)
    aws.secret("app/json", {"db": {"password": nested}, "port": 5432})
    variables = {
        "BY_NAME": "ref+awssecrets://app/plain",
        "BY_ARN": f"ref+awssecrets://{created['ARN']}",
        "BY_PARTIAL_ARN": f"ref+awssecrets://{arn('app/plain')}",
        "POINTER": "ref+awssecrets://app/json#/db/password",
        "NUMBER": "ref+awssecrets://app/json#/port",
        "PLAIN_KEY": "ref+awssecrets://app/json#db",
        "IN_REGION": f"ref+awssecrets://app/plain?region={REGION}",
    }
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["BY_NAME"] == env["BY_ARN"] == env["BY_PARTIAL_ARN"] == env["IN_REGION"] == value
    assert env["POINTER"] == nested
    assert env["NUMBER"] == "5432"
    assert json.loads(env["PLAIN_KEY"]) == {"password": nested}


def test_batch_answers_map_back_to_names_that_look_like_suffixes(run_shim, probe, canaries, aws):
    """`app` and `app-config` (6 characters after a dash, like AWS's ARN suffix) in one batch."""
    short, long_ = canaries.new("app"), canaries.new("app-config")
    short_arn = aws.secret("app", short)["ARN"]
    aws.secret("app-config", long_)
    variables = {"SHORT_PARTIAL": arn("app"), "LONG_PARTIAL": arn("app-config"),
                 "SHORT_FULL": short_arn, "LONG_NAME": "ref+awssecrets://app-config",
                 "SHORT_NAME": "ref+awssecrets://app"}
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["SHORT_PARTIAL"] == env["SHORT_FULL"] == env["SHORT_NAME"] == short
    assert env["LONG_PARTIAL"] == env["LONG_NAME"] == long_
    assert aws.proxy.count("BatchGetSecretValue") == 1
    assert aws.proxy.count("GetSecretValue") == 0


def test_ecs_suffix_inside_a_vals_arn_is_refused(run_shim, probe, aws):
    """`ref+awssecrets://<arn>:key::` would otherwise lose the key and deliver the whole secret."""
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"X": f"ref+awssecrets://{arn('db')}:password::"}))
    assert result.returncode == 64
    assert "a ref+awssecrets ARN ends at the secret name" in result.stderr
    assert not probe.ran


def test_stages_and_version_ids_after_rotation(run_shim, probe, canaries, aws):
    first, second, third = (canaries.new(f"v{n}") for n in (1, 2, 3))
    v1 = aws.secret("rotated", {"password": first})["VersionId"]
    aws.secrets.put_secret_value(SecretId="rotated", SecretString=json.dumps({"password": second}))
    v3 = aws.secrets.put_secret_value(SecretId="rotated",
                                      SecretString=json.dumps({"password": third}))["VersionId"]
    variables = {
        "CURRENT": f"{arn('rotated')}:password::",
        "PREVIOUS_ECS": f"{arn('rotated')}:password:AWSPREVIOUS:",
        "PREVIOUS_VALS": "ref+awssecrets://rotated?version_stage=AWSPREVIOUS#/password",
        "FIRST_ECS": f"{arn('rotated')}:password::{v1}",
        "FIRST_VALS": f"ref+awssecrets://rotated?version_id={v1}#/password",
    }
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["CURRENT"] == third
    assert env["PREVIOUS_ECS"] == env["PREVIOUS_VALS"] == second
    assert env["FIRST_ECS"] == env["FIRST_VALS"] == first
    # A lone AWSCURRENT id is one GetSecretValue (no batch of one). Pinned
    # stage / id: one GetSecretValue per distinct (secret id, version); the
    # ARN and the name spelling are two ids, as they are to AWS.
    assert aws.proxy.count("GetSecretValue") == 1 + 2 + 2
    assert aws.proxy.count("BatchGetSecretValue") == 0

    check = run_shim(["check", "--json"], exec_env(aws, variables))
    assert check.returncode == 0, check.stderr
    rows = {row["variable"]: row for row in json.loads(check.stdout)["variables"]}
    assert rows["CURRENT"]["version"] == v3
    assert rows["FIRST_VALS"]["version"] == v1
    assert rows["PREVIOUS_VALS"]["references"] == [
        "ref+awssecrets://rotated?version_stage=AWSPREVIOUS#/password"]


def test_custom_stage_label(run_shim, probe, canaries, aws):
    current, staged = canaries.new("current"), canaries.new("staged")
    aws.secret("staged", current)
    aws.secrets.put_secret_value(SecretId="staged", SecretString=staged, VersionStages=["STAGING"])
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"NOW": "ref+awssecrets://staged",
                                     "NEXT": f"{arn('staged')}::STAGING:"}))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["NOW"] == current and env["NEXT"] == staged


def test_secret_binary(run_shim, probe, canaries, aws):
    text = canaries.new("binary")
    aws.secret("binary-text", text.encode())
    aws.secret("binary-raw", b"\xff\xfe" + text.encode())
    ok = run_shim(["exec", "--", *probe.argv],
                  exec_env(aws, {"BIN": "ref+awssecrets://binary-text"}))
    assert ok.returncode == 0, ok.stderr
    assert probe.read()["env"]["BIN"] == text

    bad = run_shim(["exec", "--", *probe.argv],
                   exec_env(aws, {"BIN": "ref+awssecrets://binary-raw",
                                  "OTHER": "ref+awssecrets://binary-text"}))
    assert bad.returncode == 65
    assert "BIN (ref+awssecrets://binary-raw)" in bad.stderr
    assert "SecretBinary that is not UTF-8" in bad.stderr and "SecretString" in bad.stderr
    assert "OTHER" not in bad.stderr


def test_inline_reference_inside_a_url(run_shim, probe, canaries, aws):
    password = canaries.new("pw") + "@/:"
    aws.secret("db", {"password": password})
    url = f"postgresql://app:${{{arn('db')}:password::}}@db:5432/app"
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, {"DATABASE_URL": url}))
    assert result.returncode == 0, result.stderr
    from urllib.parse import quote
    assert probe.read()["env"]["DATABASE_URL"] == \
        f"postgresql://app:{quote(password, safe='')}@db:5432/app"


# --- SSM Parameter Store ----------------------------------------------------

def test_ssm_forms(run_shim, probe, canaries, aws):
    v1, v2, plain = canaries.new("p1"), canaries.new("p2"), canaries.new("plain")
    aws.parameter("/app/db/password", v1)
    aws.parameter("/app/db/password", v2)
    aws.ssm.label_parameter_version(Name="/app/db/password", ParameterVersion=1, Labels=["old"])
    aws.parameter("plain-name", plain, kind="String")
    aws.parameter("/app/hosts", "a.example,b.example", kind="StringList")
    variables = {
        "ECS_HIER": f"arn:aws:ssm:{REGION}:{TEST_ACCOUNT}:parameter/app/db/password",
        "ECS_PLAIN": f"arn:aws:ssm:{REGION}:{TEST_ACCOUNT}:parameter/plain-name",
        "VALS": "ref+awsssm:///app/db/password",
        "VALS_NO_SLASH": "ref+awsssm://app/db/password",
        "VERSION_OPT": "ref+awsssm:///app/db/password?version=1",
        "VERSION_SUFFIX": "ref+awsssm:///app/db/password:1",
        "LABEL": "ref+awsssm:///app/db/password:old",
        "LIST": "ref+awsssm:///app/hosts",
    }
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["ECS_HIER"] == env["VALS"] == env["VALS_NO_SLASH"] == v2   # decrypted SecureString
    assert env["ECS_PLAIN"] == plain
    assert env["VERSION_OPT"] == env["VERSION_SUFFIX"] == env["LABEL"] == v1
    assert env["LIST"] == "a.example,b.example"

    check = run_shim(["check", "--json"], exec_env(aws, variables))
    assert check.returncode == 0, check.stderr
    rows = {row["variable"]: row for row in json.loads(check.stdout)["variables"]}
    assert rows["VALS"]["version"] == "2" and rows["LABEL"]["version"] == "1"
    assert rows["LABEL"]["references"] == ["ref+awsssm://app/db/password?label=old"]


def test_ssm_secretsmanager_pass_through(run_shim, probe, canaries, aws):
    password = canaries.new("pw")
    aws.secret("shared/db", {"password": password})
    variables = {"WHOLE": "ref+awsssm:///aws/reference/secretsmanager/shared/db",
                 "KEY": "ref+awsssm:///aws/reference/secretsmanager/shared/db#/password",
                 "ECS": f"arn:aws:ssm:{REGION}:{TEST_ACCOUNT}:parameter"
                        "/aws/reference/secretsmanager/shared/db"}
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert json.loads(env["WHOLE"]) == json.loads(env["ECS"]) == {"password": password}
    assert env["KEY"] == password
    assert aws.proxy.count("GetParameter") >= 1


# --- regions ----------------------------------------------------------------

def test_region_comes_from_the_arn_or_the_environment(run_shim, probe, canaries, aws):
    here, there, param = canaries.new("here"), canaries.new("there"), canaries.new("param")
    aws.secret("regional", here)
    aws.secret("regional", there, region=OTHER_REGION)
    aws.parameter("/regional/p", param, region=OTHER_REGION)
    variables = {
        "HERE": "ref+awssecrets://regional",
        "THERE_ARN": f"{arn('regional', OTHER_REGION)}",
        "THERE_OPTION": f"ref+awssecrets://regional?region={OTHER_REGION}",
        "PARAM_ARN": f"arn:aws:ssm:{OTHER_REGION}:{TEST_ACCOUNT}:parameter/regional/p",
    }
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["HERE"] == here
    assert env["THERE_ARN"] == env["THERE_OPTION"] == there
    assert env["PARAM_ARN"] == param

    # AWS_REGION (what ECS, Lambda and SDKs set) wins over AWS_DEFAULT_REGION.
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"AWS_REGION": OTHER_REGION,
                                     "X": "ref+awssecrets://regional"}))
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["X"] == there


def test_no_region_anywhere_is_78(run_shim, probe, aws):
    env = exec_env(aws, {"X": "ref+awssecrets://db"})
    del env["AWS_DEFAULT_REGION"]
    result = run_shim(["exec", "--", *probe.argv], env)
    assert result.returncode == 78, result.stderr
    assert "X (ref+awssecrets://db): Secrets Manager: no AWS region" in result.stderr
    assert "AWS_REGION" in result.stderr
    assert not probe.ran


# --- failures ---------------------------------------------------------------

def _setup_missing_cases(aws, canaries):
    aws.secret("exists", {"k": canaries.new()})
    aws.secret("other", canaries.new())
    aws.parameter("/exists/p", canaries.new())
    aws.secret("doomed", canaries.new())
    aws.secrets.delete_secret(SecretId="doomed", RecoveryWindowInDays=7)


@pytest.mark.parametrize("reference,expected", [
    # Missing among others: reported from BatchGetSecretValue's Errors list.
    ("ref+awssecrets://absent", "ResourceNotFoundException (secret not found)"),
    # Marked for deletion.
    ("ref+awssecrets://doomed", "InvalidRequestException (the secret is scheduled for deletion"),
    (f"{arn('exists')}::AWSPREVIOUS:", "ResourceNotFoundException (secret or version not found)"),
    ("ref+awssecrets://exists?version_id=00000000-0000-0000-0000-000000000000",
     "ResourceNotFoundException (secret or version not found)"),
    ("ref+awssecrets://exists#/nokey", "key 1 of the #... selector does not exist"),
    ("ref+awsssm:///absent/p", "InvalidParameters (parameter not found)"),
    ("ref+awsssm:///exists/p:7", "(parameter, version or label not found)"),
    ("ref+awsssm:///exists/p:nolabel", "(parameter, version or label not found)"),
    ("ref+awsssm:///aws/reference/secretsmanager/absent", "ParameterNotFound (parameter not found)"),
])
def test_missing_is_66_and_nothing_runs(run_shim, probe, canaries, aws, reference, expected):
    _setup_missing_cases(aws, canaries)
    from shim.syntax.refs import parse_reference
    shown = parse_reference(reference).shown      # errors quote a reference up to its path
    variables = {"GOOD_A": "ref+awssecrets://exists", "GOOD_B": "ref+awssecrets://other",
                 "GOOD_C": "ref+awsssm:///exists/p", "MISSING": reference}
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 66, result.stderr
    assert f"MISSING ({shown}): " in result.stderr
    assert expected in result.stderr
    assert "GOOD_" not in result.stderr
    assert not probe.ran


def test_lone_missing_secret_via_get_secret_value(run_shim, probe, aws):
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"ONLY": arn("nothing-here")}))
    assert result.returncode == 66
    assert "ResourceNotFoundException (secret not found)" in result.stderr
    assert "describe-secret" in result.stderr          # the hint
    assert aws.proxy.count("GetSecretValue") == 1
    assert not probe.ran


def test_optional_missing_leaves_the_variable_unset(run_shim, probe, canaries, aws):
    value = canaries.new()
    aws.secret("present", value)
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"HAVE": "ref+awssecrets://present",
                                     "MAYBE": "ref+awssecrets://absent?optional=true",
                                     "MAYBE_P": "ref+awsssm:///absent?optional=true"}))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["HAVE"] == value and "MAYBE" not in env and "MAYBE_P" not in env


def test_not_json_when_a_key_is_asked_is_65(run_shim, probe, canaries, aws):
    aws.secret("text", canaries.new())
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"K": f"{arn('text')}:password::"}))
    assert result.returncode == 65
    assert "not JSON" in result.stderr
    assert not probe.ran


def test_access_denied_is_77(run_shim, probe, canaries, aws):
    aws.secret("a", canaries.new())
    aws.secret("b", canaries.new())
    aws.proxy.inject("AccessDeniedException", target="BatchGetSecretValue")
    aws.proxy.inject("AccessDeniedException", target="GetSecretValue")
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"A": "ref+awssecrets://a", "B": "ref+awssecrets://b"}))
    assert result.returncode == 77
    assert "A (ref+awssecrets://a): Secrets Manager: AccessDeniedException (access denied)" \
        in result.stderr
    assert "secretsmanager:GetSecretValue" in result.stderr   # the hint
    assert not probe.ran


def test_batch_call_denied_falls_back_to_single_reads(run_shim, probe, canaries, aws):
    values = {f"S{n}": canaries.new(f"s{n}") for n in range(3)}
    for name, value in values.items():
        aws.secret(name.lower(), value)
    aws.proxy.inject("AccessDeniedException", target="BatchGetSecretValue",
                     message="User is not authorized to perform: secretsmanager:BatchGetSecretValue")
    result = run_shim(["exec", "--log-format", "json", "--", *probe.argv],
                      exec_env(aws, {n: f"ref+awssecrets://{n.lower()}" for n in values}))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert {n: env[n] for n in values} == values
    assert aws.proxy.count("BatchGetSecretValue") == 1
    assert aws.proxy.count("GetSecretValue") == 3
    assert json_events(result.stderr, "provider.fallback")


def test_ssm_one_denied_parameter_is_attributed_to_its_variable(run_shim, probe, canaries, aws):
    for name in ("a", "b", "c"):
        aws.parameter(f"/svc/{name}", canaries.new(name))
    # AWS fails the whole GetParameters call when one name is not readable.
    aws.proxy.inject("AccessDeniedException", target="GetParameters")
    aws.proxy.inject("AccessDeniedException", target="GetParameter", body_contains="/svc/b")
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {n.upper(): f"ref+awsssm:///svc/{n}" for n in "abc"}))
    assert result.returncode == 77
    assert "B (ref+awsssm://svc/b): SSM Parameter Store: AccessDeniedException (access denied)" \
        in result.stderr
    assert "\nA " not in "\n" + result.stderr and "\nC " not in "\n" + result.stderr
    assert not probe.ran


def test_kms_decryption_denied_is_77(run_shim, probe, canaries, aws):
    aws.parameter("/enc/a", canaries.new())
    aws.parameter("/enc/b", canaries.new())
    kms_denied = ("User: arn:aws:sts::123456789012:assumed-role/app is not authorized to "
                  "perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:123456789012:key/1")
    aws.proxy.inject("AccessDeniedException", target="GetParameters", message=kms_denied)
    aws.proxy.inject("AccessDeniedException", target="GetParameter", message=kms_denied)
    result = run_shim(["exec", "--", *probe.argv],
                      exec_env(aws, {"A": "ref+awsssm:///enc/a", "B": "ref+awsssm:///enc/b"}))
    assert result.returncode == 77
    assert "A (ref+awsssm://enc/a): SSM Parameter Store: AccessDeniedException " \
           "(KMS decryption denied)" in result.stderr
    assert "kms:Decrypt" in result.stderr
    assert "assumed-role" not in result.stderr     # the service's own text is not echoed
    assert not probe.ran


def test_rejected_credentials_are_77(run_shim, probe, aws):
    aws.proxy.inject("UnrecognizedClientException",
                     message="The security token included in the request is invalid.")
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, {"X": arn("db")}))
    assert result.returncode == 77
    assert "UnrecognizedClientException (the AWS credentials were rejected)" in result.stderr
    assert not probe.ran


# --- throttling, 5xx, deadline ----------------------------------------------

@pytest.mark.parametrize("error_type,status", [
    ("ThrottlingException", 400),
    ("InternalServiceError", 500),
])
def test_throttling_and_5xx_are_retried_within_the_deadline(run_shim, probe, canaries, aws,
                                                            error_type, status):
    values = {f"V{n}": canaries.new(f"v{n}") for n in range(3)}
    for name, value in values.items():
        aws.secret(name.lower(), value)
    aws.parameter("/throttled", values["V0"])
    aws.proxy.inject(error_type, status=status, times=3, message="Rate exceeded")
    variables = {n: f"ref+awssecrets://{n.lower()}" for n in values}
    variables["P"] = "ref+awsssm:///throttled"
    result = run_shim(["exec", "--log-format", "json", "--deadline", "20s", "--", *probe.argv],
                      exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert {n: env[n] for n in values} == values and env["P"] == values["V0"]
    assert sum(aws.proxy.injected.values()) == 3
    retries = json_events(result.stderr, "provider.retry")
    assert len(retries) == 3
    assert {event["reason"] for event in retries} == {error_type}
    assert all(event["reference"].startswith(("ref+awssecrets://", "ref+awsssm://"))
               for event in retries)


def test_throttling_that_outlasts_the_deadline_is_69(run_shim, probe, canaries, aws):
    aws.secret("busy", canaries.new())
    aws.proxy.inject("ThrottlingException", message="Rate exceeded")
    started = time.monotonic()
    result = run_shim(["exec", "--deadline", "2s", "--", *probe.argv],
                      exec_env(aws, {"BUSY": arn("busy")}))
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    assert (f"BUSY (ref+awssecrets://{arn('busy')}): Secrets Manager: ThrottlingException "
            "on every attempt") in result.stderr
    assert aws.proxy.count("GetSecretValue") > 2          # it did retry
    assert elapsed < 2 + 5                                # an upper bound, not a benchmark
    assert not probe.ran


def test_unreachable_endpoint_is_69(run_shim, probe, aws):
    env = exec_env(aws, {"X": "ref+awsssm:///x", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    result = run_shim(["exec", "--deadline", "1s", "--", *probe.argv], env)
    assert result.returncode == 69, result.stderr
    assert "X (ref+awsssm://x): SSM Parameter Store: EndpointConnectionError" in result.stderr
    assert not probe.ran


# --- batching: the count of real HTTP requests ------------------------------

def test_100_secrets_take_at_most_5_batch_calls(run_shim, probe, canaries, aws):
    values = {}
    for n in range(100):
        user, password = canaries.new(f"u{n}"), canaries.new(f"p{n}")
        aws.secret(f"svc/secret-{n:03d}", {"username": user, "password": password})
        values[n] = (user, password)
    variables = {}
    for n in range(100):
        # Two variables per secret (two JSON keys): still one read of the secret.
        # Half written as ECS ARNs, half in the vals form.
        name = f"svc/secret-{n:03d}"
        if n < 50:
            variables[f"USER_{n:03d}"] = f"{arn(name)}:username::"
            variables[f"PASS_{n:03d}"] = f"{arn(name)}:password:AWSCURRENT:"
        else:
            variables[f"USER_{n:03d}"] = f"ref+awssecrets://{name}#/username"
            variables[f"PASS_{n:03d}"] = f"ref+awssecrets://{name}#/password"
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    for n, (user, password) in values.items():
        assert env[f"USER_{n:03d}"] == user and env[f"PASS_{n:03d}"] == password
    assert aws.proxy.count("BatchGetSecretValue") == 5     # measured; the limit is "at most 5"
    assert aws.proxy.count("GetSecretValue") == 0


def test_100_parameters_take_at_most_10_get_parameters_calls(run_shim, probe, canaries, aws):
    values = {}
    for n in range(100):
        values[n] = canaries.new(f"param{n}")
        aws.parameter(f"/svc/param-{n:03d}", values[n])
    variables = {f"P_{n:03d}": f"ref+awsssm:///svc/param-{n:03d}" for n in range(50)}
    variables.update({f"P_{n:03d}": f"arn:aws:ssm:{REGION}:{TEST_ACCOUNT}:parameter/svc/param-{n:03d}"
                      for n in range(50, 100)})
    result = run_shim(["exec", "--", *probe.argv], exec_env(aws, variables))
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    for n, value in values.items():
        assert env[f"P_{n:03d}"] == value
    assert aws.proxy.count("GetParameters") == 10          # measured; the limit is "at most 10"
    assert aws.proxy.count("GetParameter") == 0


# --- import cost ------------------------------------------------------------

def test_file_only_run_never_imports_boto3(run_shim, probe, tmp_path, canaries, aws):
    secret = tmp_path / "pw"
    secret.write_text(canaries.new())
    quiet = run_shim(["exec", "--", *probe.argv],
                     {"PW": f"file:{secret}", "PYTHONPROFILEIMPORTTIME": "1"})
    assert quiet.returncode == 0, quiet.stderr
    assert "import time:" in quiet.stderr
    assert "boto3" not in quiet.stderr and "botocore" not in quiet.stderr
    assert "shim.providers.aws" not in quiet.stderr

    aws.secret("x", canaries.new())
    loud = run_shim(["exec", "--", *probe.argv],
                    exec_env(aws, {"X": "ref+awssecrets://x", "PYTHONPROFILEIMPORTTIME": "1"}))
    assert loud.returncode == 0, loud.stderr
    assert "boto3" in loud.stderr           # the control: the measurement does see it
