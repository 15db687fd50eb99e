"""--watch on AWS reads values only when a probe says they changed: Secrets Manager's
DescribeSecret (the version id holding the stage), Parameter Store's DescribeParameters
(Version, 50 names a call); pinned versions need no probe; a policy without the describe
permission falls back to reading, logged once. Against moto behind the counting proxy
(tests/helpers/aws_moto.py), so the counts are real HTTP requests shim made."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_aws import aws, exec_env, moto_server, proxy  # noqa: F401 - fixtures
from tests.integration.test_probes import events, stop, watch, watch_one_change
from tests.integration.test_supervise import wait_for


def grows(aws, operation: str, by: int) -> bool:
    """Wait until the proxy has seen `by` more `operation` requests than now (ticks going by)."""
    target = aws.proxy.count(operation) + by
    return wait_for(lambda: aws.proxy.count(operation) >= target, timeout=30)


def seen_value(seen, value) -> bool:
    return wait_for(lambda: value in (seen.read_text() if seen.exists() else ""), timeout=30)


@pytest.mark.parametrize("denied", [False, True], ids=["probe", "describe-denied"])
def test_secrets_manager_values_are_read_only_when_awscurrent_moves(start_shim, canaries, aws,
                                                                    tmp_path, denied):
    if denied:
        aws.proxy.inject("AccessDeniedException", target="DescribeSecret", message=(
            "User: arn:aws:sts::123456789012:assumed-role/app is not authorized to perform: "
            "secretsmanager:DescribeSecret"))
    every_tick = "GetSecretValue" if denied else "DescribeSecret"
    aws.secrets.create_secret(Name="app")       # no version yet: put() writes them

    def put(value):
        aws.secrets.put_secret_value(SecretId="app", SecretString=value)

    stderr = watch_one_change(
        start_shim, canaries, tmp_path, exec_env(aws, {"APP_PASSWORD": "ref+awssecrets://app"}),
        lambda: aws.proxy.count(every_tick), put)
    if denied:
        assert aws.proxy.count("DescribeSecret") == 1          # refused once, never asked again
        assert [e["reference"] for e in events(stderr, "watch.probe_denied")] == \
            ["ref+awssecrets://app"]
    else:
        assert aws.proxy.count("GetSecretValue") == 2          # the start, and the change
        assert not events(stderr, "watch.probe_denied")


@pytest.mark.parametrize("denied", [False, True], ids=["probe", "describe-denied"])
def test_parameters_are_probed_in_one_describe_call_per_tick(start_shim, canaries, aws, tmp_path,
                                                             denied):
    for name in ("a", "c"):
        aws.parameter(f"/svc/{name}", canaries.new(name))
    if denied:
        aws.proxy.inject("AccessDeniedException", target="DescribeParameters")
    every_tick = "GetParameters" if denied else "DescribeParameters"
    env = exec_env(aws, {"A": "ref+awsssm:///svc/a", "APP_PASSWORD": "ref+awsssm:///svc/b",
                         "C": "ref+awsssm:///svc/c"})
    stderr = watch_one_change(start_shim, canaries, tmp_path, env,
                              lambda: aws.proxy.count(every_tick),
                              lambda value: aws.parameter("/svc/b", value))
    assert aws.proxy.count("GetParameter") == 0
    if denied:
        assert aws.proxy.count("DescribeParameters") == 1
        assert len(events(stderr, "watch.probe_denied")) == 3   # each reference, once
    else:
        assert aws.proxy.count("GetParameters") == 2           # three names: one call, twice


def test_pinned_versions_are_never_read_again(start_shim, canaries, aws, tmp_path):
    """A Secrets Manager version id and a parameter's `:1` cannot change: no request for them
    on any tick, while the unpinned parameter next to them is probed."""
    pinned = aws.secret("pinned", canaries.new("pinned"))["VersionId"]
    aws.secrets.put_secret_value(SecretId="pinned", SecretString=canaries.new("newer"))
    aws.parameter("/svc/p", canaries.new("p1"))
    aws.parameter("/svc/p", canaries.new("p2"))
    aws.parameter("/svc/free", canaries.new("free"))
    seen = tmp_path / "seen"
    env = exec_env(aws, {"APP_PASSWORD": f"ref+awssecrets://pinned?version_id={pinned}",
                         "P": "ref+awsssm:///svc/p?version=1",
                         "FREE": "ref+awsssm:///svc/free"})
    process = watch(start_shim, env, seen)
    assert grows(aws, "DescribeParameters", 5)
    stop(process, canaries)
    assert aws.proxy.count("GetSecretValue") == 1
    assert aws.proxy.count("DescribeSecret") == 0
    assert aws.proxy.count("GetParameters") == 1


def test_check_v_names_each_aws_watch_kind(run_shim, canaries, aws):
    version = aws.secret("app", canaries.new())["VersionId"]
    aws.parameter("/svc/a", canaries.new())
    aws.ssm.label_parameter_version(Name="/svc/a", ParameterVersion=1, Labels=["live"])
    env = exec_env(aws, {"STAGE": "ref+awssecrets://app",
                         "VERSION_ID": f"ref+awssecrets://app?version_id={version}",
                         "NAME": "ref+awsssm:///svc/a",
                         "NUMBER": "ref+awsssm:///svc/a?version=1",
                         "LABEL": "ref+awsssm:///svc/a?label=live"})
    result = run_shim(["check", "-v", "--json"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {row["variable"]: row["watch"] for row in json.loads(result.stdout)["variables"]}
    assert rows == {"STAGE": ["probe: DescribeSecret version stages"],
                    "VERSION_ID": ["none needed: pinned version"],
                    "NAME": ["probe: DescribeParameters version"],
                    "NUMBER": ["none needed: pinned version"],
                    "LABEL": ["read every tick"]}


@pytest.mark.parametrize("operation, body", [
    ("DescribeSecret", b'{"VersionIdsToStages": {"v1": "AWSCURRENT"}}'),    # not a list
    ("DescribeSecret", b'{"VersionIdsToStages": {"a": ["AWSCURRENT"], "b": ["AWSCURRENT"]}}'),
    ("DescribeSecret", b'{"Name": "app"}'),
    ("DescribeSecret", b'[1, 2]'),
    ("DescribeSecret", b'not json at all'),
    ("DescribeParameters", b'{"Parameters": [{"Name": "/svc/b", "Version": "1"}]}'),
    ("DescribeParameters", b'{"Parameters": [], "NextToken": "again"}'),        # never ends
    ("DescribeParameters", b'{"Parameters": 7}'),
], ids=["stages-not-a-list", "two-current", "no-stages", "array", "not-json",
        "version-a-string", "endless-pages", "parameters-a-number"])
def test_a_describe_answer_shim_cannot_read_falls_back_to_reading(start_shim, canaries, aws,
                                                                  tmp_path, operation, body):
    """A proxy or a lying endpoint answering the probe: no answer, so the value is read on
    every tick, and a change is still seen."""
    first, second = canaries.new("v1"), canaries.new("v2")
    if operation == "DescribeSecret":
        aws.secret("app", first)
        reference, read = "ref+awssecrets://app", "GetSecretValue"

        def change():
            aws.secrets.put_secret_value(SecretId="app", SecretString=second)
    else:
        aws.parameter("/svc/b", first)
        reference, read = "ref+awsssm:///svc/b", "GetParameter"

        def change():
            aws.parameter("/svc/b", second)
    aws.proxy.answer_with(body, target=operation)
    seen = tmp_path / "seen"
    process = watch(start_shim, exec_env(aws, {"APP_PASSWORD": reference}), seen)
    assert grows(aws, read, 3)
    change()
    assert seen_value(seen, second)
    stop(process, canaries)
    assert seen.read_text().split()[:2] == [first, second]


def test_a_secret_scheduled_for_deletion_is_read_and_refused_each_tick(start_shim, canaries,
                                                                        aws, tmp_path):
    """DescribeSecret still answers for it, with the same version ids; the read refuses it.
    So the probe says "read", and each tick fails as it did before probes (values kept)."""
    value = canaries.new("v1")
    aws.secret("app", value)
    seen = tmp_path / "seen"
    process = watch(start_shim, exec_env(aws, {"APP_PASSWORD": "ref+awssecrets://app"}), seen)
    assert grows(aws, "DescribeSecret", 2)
    aws.secrets.delete_secret(SecretId="app", RecoveryWindowInDays=7)
    assert grows(aws, "GetSecretValue", 3)
    stderr = stop(process, canaries)
    assert seen.read_text().split() == [value]
    assert any("scheduled for deletion" in event["message"]
               for event in events(stderr, "watch.failed"))


def test_more_than_50_names_are_probed_in_filters_of_at_most_50(start_shim, canaries, aws,
                                                                 tmp_path):
    """DescribeParameters refuses a Name filter of more than 50 values (ValidationException,
    which moto enforces as AWS does): 55 parameters are probed in two filters, every tick
    answers, and nothing is read after the start."""
    from tests.integration.test_metrics import free_port, scrape

    variables = {}
    for index in range(55):
        aws.parameter(f"/many/p{index}", canaries.new(f"p{index}"))
        variables[f"P{index}"] = f"ref+awsssm:///many/p{index}"
    port = free_port()
    process = watch(start_shim, exec_env(aws, variables), tmp_path / "seen",
                    "--metrics", f"127.0.0.1:{port}")
    probes = ("shim_store_probes_total", (("store", "awsssm"),))
    assert wait_for(lambda: scrape(port).get(probes, 0) >= 30, timeout=60)
    stop(process, canaries)
    assert aws.proxy.count("GetParameters") == 6       # the start only: 10 names a call
