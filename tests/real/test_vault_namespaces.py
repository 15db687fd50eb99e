"""Namespaces on the real OpenBao (2.7 has them): a parent and a child namespace of the test's own,
reached through VAULT_NAMESPACE, OpenBao's BAO_NAMESPACE, or the namespace path written in the
reference, in every combination a user may write.

OpenBao answers a mount lookup for a mount in a child namespace with the mount's path from the
root namespace (`parent/child/secret/` for a request that names `parent`), not relative to the
namespace the request names.
"""

from __future__ import annotations

import re

import pytest

from tests.real.conftest import unique_path
from tests.real.vault_tier import (
    create_namespace, credential, doc_table, enable_kv, exec_probe, put, shim_env,
)


@pytest.fixture
def namespaces(openbao, canaries):
    """parent/child, each with KV v2 at secret/ and KV v1 at kv1/, one canary per secret."""
    parent = unique_path("ns")
    child = f"{parent}/child"
    create_namespace(openbao, parent)
    create_namespace(openbao, child)
    values = {}
    for namespace in (parent, child):
        enable_kv(openbao, "secret", 2, namespace=namespace)
        enable_kv(openbao, "kv1", 1, namespace=namespace)
        values[namespace, 2] = canaries.new("v2")
        values[namespace, 1] = canaries.new("v1")
        put(openbao, "secret", "app", {"password": values[namespace, 2]}, 2, namespace=namespace)
        put(openbao, "kv1", "app", {"password": values[namespace, 1]}, 1, namespace=namespace)
    return parent, child, values


# (the variable naming the namespace, its value, the path written before the mount)
FORMS = {
    "VAULT_NAMESPACE=child, relative path": ("VAULT_NAMESPACE", "{child}", ""),
    "BAO_NAMESPACE=child, relative path": ("BAO_NAMESPACE", "{child}", ""),
    "VAULT_NAMESPACE=parent, child/ in the path": ("VAULT_NAMESPACE", "{parent}", "child/"),
    "BAO_NAMESPACE=parent, child/ in the path": ("BAO_NAMESPACE", "{parent}", "child/"),
    "no namespace, the whole path written": (None, None, "{child}/"),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_spelling_of_a_child_namespace_reads_the_child(
        openbao, namespaces, run_shim, probe, canaries, tmp_path, form):
    parent, child, values = namespaces
    variable, namespace, prefix = (None if text is None else text.format(parent=parent, child=child)
                                   for text in FORMS[form])
    env = shim_env(openbao, canaries, tmp_path,
                   VALS_V2=f"ref+vault://{prefix}secret/app#/password",
                   BANK_V2=f"vault:{prefix}secret/data/app#password",
                   VALS_V1=f"ref+vault://{prefix}kv1/app#/password",
                   BANK_V1=f"vault:{prefix}kv1/app#password")
    if namespace:
        env[variable] = namespace

    result = exec_probe(run_shim, probe, env)

    assert result.returncode == 0, result.stderr
    child_env = probe.read()["env"]
    assert (child_env["VALS_V2"], child_env["BANK_V2"]) == (values[child, 2],) * 2
    assert (child_env["VALS_V1"], child_env["BANK_V1"]) == (values[child, 1],) * 2
    assert not [name for name in child_env if name.startswith(("VAULT_", "BAO_"))]


def test_docs_namespaces_table_reads_the_child_in_every_row(
        openbao, namespaces, run_shim, probe, canaries, tmp_path):
    # docs/vault.md's table, with its namespace `team` swapped for this test's parent.
    parent, child, values = namespaces
    rows = doc_table("Namespaces")
    assert len(rows) == 3
    for setting, written in rows:
        env = shim_env(openbao, canaries, tmp_path)
        if setting.startswith("`"):
            name, _, namespace = setting.strip("`").partition("=")
            env[name] = re.sub(r"^team\b", parent, namespace)
        references = [re.sub(r"(//|:)team/", rf"\g<1>{parent}/", code.strip("`"))
                      for code in written.split(", ")]
        env.update({f"R{n}": reference for n, reference in enumerate(references)})

        result = exec_probe(run_shim, probe, env)

        assert result.returncode == 0, (setting, result.stderr)
        child_env = probe.read()["env"]
        assert [child_env[f"R{n}"] for n in range(len(references))] == \
            [values[child, 2]] * len(references), setting


def test_the_parent_namespace_reads_its_own_secrets(
        openbao, namespaces, run_shim, probe, canaries, tmp_path):
    parent, child, values = namespaces
    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, VAULT_NAMESPACE=parent,
        OWN="ref+vault://secret/app#/password", CHILD="ref+vault://child/secret/app#/password"))
    assert result.returncode == 0, result.stderr
    child_env = probe.read()["env"]
    assert (child_env["OWN"], child_env["CHILD"]) == (values[parent, 2], values[child, 2])


def test_a_namespace_that_does_not_exist_is_66(openbao, run_shim, probe, canaries, tmp_path):
    result = exec_probe(run_shim, probe, shim_env(
        openbao, canaries, tmp_path, VAULT_NAMESPACE=unique_path("nowhere"),
        P="ref+vault://secret/app#/password"))
    assert result.returncode == 66, result.stderr
    assert not probe.ran


def test_approle_login_and_policy_inside_the_child_namespace(
        openbao, namespaces, run_shim, probe, canaries, tmp_path):
    # A team that owns a namespace logs in there: the auth mount, the role and the policy all
    # live in the child namespace, reached with VAULT_NAMESPACE alone.
    parent, child, values = namespaces
    openbao.ok("PUT", "sys/policies/acl/reader",
               {"policy": 'path "secret/data/app" { capabilities = ["read"] }'}, namespace=child)
    openbao.ok("POST", "sys/auth/approle", {"type": "approle"}, namespace=child)
    openbao.ok("POST", "auth/approle/role/app", {"token_policies": ["reader"]}, namespace=child)
    role_id = openbao.ok("GET", "auth/approle/role/app/role-id", namespace=child)["data"]["role_id"]
    secret_id = openbao.ok("POST", "auth/approle/role/app/secret-id", {},
                           namespace=child)["data"]["secret_id"]
    env = {"VAULT_ADDR": openbao.address, "VAULT_NAMESPACE": child, "HOME": str(tmp_path),
           "VAULT_ROLE_ID": credential(canaries, role_id),
           "VAULT_SECRET_ID": credential(canaries, secret_id),
           "P": "ref+vault://secret/app#/password", "DENIED": "vault:kv1/app#password"}

    result = exec_probe(run_shim, probe, env)

    # The policy reads secret/app and nothing else in the namespace.
    assert result.returncode == 77, result.stderr
    assert [line.split(" ")[2] for line in result.stderr.splitlines()
            if line.startswith("shim: error:")] == ["DENIED"], result.stderr

    del env["DENIED"]
    result = exec_probe(run_shim, probe, env)
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["P"] == values[child, 2]
