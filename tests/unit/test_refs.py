"""The reference grammar: every syntax of docs/references.md, canonical forms, malformed input."""

import pytest
from hypothesis import given, settings, strategies as st

from shim.tools.errors import ShimError, UsageError
from shim.syntax.refs import looks_like_reference, parse_reference

CANONICAL = [
    # bank-vaults
    ("vault:secret/data/app#password", "vault:secret/data/app#password"),
    ("vault:/secret/data/app#password#2", "vault:secret/data/app#password#2"),
    ("vault:database/creds/app#username", "vault:database/creds/app#username"),
    # vals vault
    ("ref+vault://secret/app#/password", "ref+vault://secret/app#/password"),
    ("ref+vault://secret/app?version=3#/password", "ref+vault://secret/app?version=3#/password"),
    ("ref+vault://secret/app#password", "ref+vault://secret/app#/password"),
    ("ref+vault://secret/app", "ref+vault://secret/app"),
    # Secrets Manager, as ECS writes it
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
     "ref+awssecrets://arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:db:password::",
     "ref+awssecrets://arn:aws:secretsmanager:us-east-1:123456789012:secret:db#/password"),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:db:password:AWSPREVIOUS:",
     "ref+awssecrets://arn:aws:secretsmanager:us-east-1:123456789012:secret:db"
     "?version_stage=AWSPREVIOUS#/password"),
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:db:::0123-abcd",
     "ref+awssecrets://arn:aws:secretsmanager:eu-west-1:123456789012:secret:db?version_id=0123-abcd"),
    ("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db",
     "ref+awssecrets://arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db"),
    ("ref+awssecrets://myapp/db?version_stage=AWSPREVIOUS#/password",
     "ref+awssecrets://myapp/db?version_stage=AWSPREVIOUS#/password"),
    ("ref+awssecrets://myapp/db?region=eu-west-1", "ref+awssecrets://myapp/db?region=eu-west-1"),
    # SSM
    ("arn:aws:ssm:eu-west-1:123456789012:parameter/app/db/password",
     "ref+awsssm://app/db/password?region=eu-west-1"),
    ("arn:aws:ssm:eu-west-1:123456789012:parameter/plain", "ref+awsssm://plain?region=eu-west-1"),
    ("ref+awsssm://app/db/password?version=3", "ref+awsssm://app/db/password?version=3"),
    ("ref+awsssm://app/db/password:3", "ref+awsssm://app/db/password?version=3"),
    ("ref+awsssm://app/db/password:prod", "ref+awsssm://app/db/password?label=prod"),
    ("ref+awsssm:///aws/reference/secretsmanager/db", "ref+awsssm://aws/reference/secretsmanager/db"),
    # Azure
    ("@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/db/)",
     "ref+azurekeyvault://myvault/db"),
    ("@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/db/0123abcd)",
     "ref+azurekeyvault://myvault/db/0123abcd"),
    ("@Microsoft.KeyVault(VaultName=myvault;SecretName=db)", "ref+azurekeyvault://myvault/db"),
    ("@Microsoft.KeyVault(VaultName=myvault;SecretName=db;SecretVersion=0123abcd)",
     "ref+azurekeyvault://myvault/db/0123abcd"),
    ("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.cn/secrets/db)",
     "ref+azurekeyvault://kv.vault.azure.cn/db"),
    ("ref+azurekeyvault://myvault/db#/password", "ref+azurekeyvault://myvault/db#/password"),
    ("ref+azurekeyvault://10.0.0.5:8443/db/v1", "ref+azurekeyvault://10.0.0.5:8443/db/v1"),
    # files
    ("file:/run/secrets/db", "ref+file:///run/secrets/db"),
    ("file:///run/secrets/db", "ref+file:///run/secrets/db"),
    ("ref+file:///run/secrets/app.json#/db/password", "ref+file:///run/secrets/app.json#/db/password"),
    ("ref+file:///run/secrets/a.json#/x~1y", "ref+file:///run/secrets/a.json#/x~1y"),
    ("ref+file:///run/secrets/db?optional=true", "ref+file:///run/secrets/db?optional=true"),
]


@pytest.mark.parametrize("text,canonical", CANONICAL)
def test_every_syntax_parses_to_its_canonical_form(text, canonical):
    assert looks_like_reference(text)
    reference = parse_reference(text)
    assert reference.canonical == canonical
    # The canonical form is itself accepted and stable.
    assert parse_reference(canonical).canonical == canonical


def test_equivalent_spellings_share_one_fetch():
    a = parse_reference("@Microsoft.KeyVault(VaultName=myvault;SecretName=db)")
    b = parse_reference("ref+azurekeyvault://myvault/db#/password")
    assert a.fetch_key == b.fetch_key
    c = parse_reference("vault:secret/data/app#user")
    d = parse_reference("vault:secret/data/app#password")
    assert c.fetch_key == d.fetch_key


def test_selectors_and_options():
    reference = parse_reference("ref+file:///s/a.json?optional=true#/a~1b/c~0d")
    assert reference.selector == ("a/b", "c~d")
    assert reference.optional
    ecs = parse_reference("arn:aws:secretsmanager:us-east-1:1:secret:db:password:AWSPREVIOUS:")
    assert ecs.selector == ("password",)
    assert ecs.option("version_stage") == "AWSPREVIOUS"
    assert ecs.option("region") == "us-east-1"


MALFORMED = [
    ("vault:", "path is empty"),
    ("vault:secret/data/app", "key is required"),
    ("vault:secret/data/app#", "key is required"),
    ("vault:secret/data/app#k#v2", "not a whole number"),
    ("vault:secret/data/app#k#1#2", "too many"),
    ("ref+vault://", "path is empty"),
    ("ref+vault://secret/app?version=x#/k", "not a whole number"),
    ("ref+vault://secret/app?bogus=1", "unknown option"),
    ("ref+vault://secret/app?optional=maybe", "true or false"),
    ("ref+vault://secret/app?version=1&version=2", "given twice"),
    ("ref+vault://secret/app#", "empty selector"),
    ("ref+vault://secret/app#/a//b", "empty key"),
    ("ref+nosuch://x", "unknown provider"),
    ("ref+vault:secret", "needs a scheme"),
    ("ref+file://x?max_age=soon", "not a duration"),
    ("arn:aws:secretsmanager:us-east-1:123:secret:", "needs"),
    ("arn:aws:secretsmanager::123:secret:db", "no region"),
    ("arn:aws:secretsmanager:us-east-1:123:secret:db:key", "all three"),
    ("arn:aws:secretsmanager:us-east-1:123:secret:db:key:AWSCURRENT:abc", "exclusive"),
    ("arn:aws:ssm:eu-west-1:123:param/x", "parameter/"),
    ("ref+awssecrets://db?version_stage=A&version_id=B", "exclusive"),
    ("ref+awsssm://app/x:3?label=prod", "exclusive"),
    ("ref+awsssm://:3", "empty"),
    ("@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/db", "closing parenthesis"),
    ("@Microsoft.KeyVault(SecretUri=http://v.vault.azure.net/secrets/db)", "SecretUri must be"),
    ("@Microsoft.KeyVault(VaultName=v)", "both required"),
    ("@Microsoft.KeyVault(VaultName=v;SecretName=a_b)", "not valid"),
    ("@Microsoft.KeyVault(Vault=v;SecretName=a)", "unknown setting"),
    ("@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/db;SecretName=x)", "cannot be combined"),
    ("ref+azurekeyvault://onlyvault", "expected"),
    ("file:", "path is empty"),
]


@pytest.mark.parametrize("text,fragment", MALFORMED)
def test_malformed_references_are_usage_errors(text, fragment):
    with pytest.raises(UsageError) as caught:
        parse_reference(text)
    assert caught.value.exit_code == 64
    assert fragment in caught.value.line()
    assert caught.value.hint  # every message says what to do


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_no_input_crashes_the_parser(text):
    try:
        parse_reference(text)
    except ShimError:
        pass


PREFIXES = ["ref+vault://", "ref+file://", "ref+awssecrets://", "ref+awsssm://",
            "ref+azurekeyvault://", "vault:", "file:", "@Microsoft.KeyVault(",
            "arn:aws:secretsmanager:", "arn:aws:ssm:", "sm://", "gcp:secretmanager:projects/",
            "ref+gcpsecrets://", "ref+doppler://", "ref+infisical://", "op://", "ref+onepassword://", "ref+bws://"]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PREFIXES), st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_no_reference_shaped_input_crashes_the_parser(prefix, rest):
    try:
        reference = parse_reference(prefix + rest)
    except ShimError:
        return
    # Whatever parses has a canonical form that parses back to the same reference.
    assert parse_reference(reference.canonical).fetch_key == reference.fetch_key
