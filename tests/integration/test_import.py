"""--import REF: every key of a map becomes a variable, against the real components.

Vault (the double, KV v1 and v2, bank-vaults and vals spellings), AWS (moto behind the counting
proxy: Secrets Manager JSON, an SSM path with more parameters than one page holds), Azure (the
HTTPS double, a JSON secret) and files (JSON and dotenv). Every value is a canary; the child's
real environment is read back through the probe; reads are counted on the wire.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.test_aws import Aws, json_events
from tests.integration.test_aws import aws, moto_server, proxy  # noqa: F401 - fixtures
from tests.integration.test_azure import host, kv, managed_identity_env  # noqa: F401 - kv
from tests.integration.test_ciexport import parse_github_env
from tests.integration.test_vault import home, token_env, vault  # noqa: F401 - fixtures


def run_probe(run_shim, probe, env, *imports, options=()):
    args = [arg for ref in imports for arg in ("--import", ref)]
    return run_shim(["exec", "--deadline", "20s", "--log-format", "json", *args, *options, "--",
                     *probe.argv], env)


# --- Vault --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kv2_ref, kv1_ref", [
    ("vault:secret/data/app", "ref+vault://kv1/legacy?prefix=OLD_"),
    ("ref+vault://secret/app", "vault:kv1/legacy"),
])
def test_vault_kv2_and_kv1_every_key_in_one_read_each(
        vault, run_shim, probe, canaries, home, kv2_ref, kv1_ref):
    password, api, code, old = (canaries.new(n) for n in ("pw", "api", "code", "old"))
    vault.kv2_put("secret", "app", {"db-password": password, "api.key": api, "2fa": code})
    vault.kv1_put("kv1", "legacy", {"token": old})
    result = run_probe(run_shim, probe, token_env(vault, canaries, home), kv2_ref, kv1_ref)
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["DB_PASSWORD"] == password and env["API_KEY"] == api and env["_2FA"] == code
    old_name = "OLD_TOKEN" if "prefix" in kv1_ref else "TOKEN"
    assert env[old_name] == old
    assert vault.count("secret/data/app", "GET") == 1
    assert vault.count("kv1/legacy", "GET") == 1
    applied = {event["reference"]: event for event in json_events(result.stderr, "import.applied")}
    assert applied[kv2_ref]["names"] == sorted(["DB_PASSWORD", "_2FA", "API_KEY"])
    assert applied[kv2_ref]["count"] == 3


def test_an_import_and_an_explicit_reference_share_one_read(vault, run_shim, probe, canaries, home):
    password, user = canaries.new("pw"), canaries.new("user")
    vault.kv2_put("secret", "app", {"password": password, "user": user})
    env = token_env(vault, canaries, home, DATABASE_URL="postgresql://${ref+vault://secret/app#/user}@db")
    result = run_probe(run_shim, probe, env, "ref+vault://secret/app?prefix=APP_")
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["APP_PASSWORD"] == password and child["APP_USER"] == user
    assert child["DATABASE_URL"] == f"postgresql://{user}@db"
    assert vault.count("secret/data/app", "GET") == 1


def test_a_dynamic_secret_is_refused_as_an_import(vault, run_shim, probe, canaries, home):
    vault.add_database_role("app")
    result = run_probe(run_shim, probe, token_env(vault, canaries, home), "vault:database/creds/app")
    assert result.returncode == 65, result.stderr
    assert "dynamic secret" in result.stderr
    assert not probe.ran
    for issued in vault.issued_credentials("app"):
        assert issued.password not in result.stderr


# --- AWS ----------------------------------------------------------------------------------------

def test_secrets_manager_json_object(run_shim, probe, canaries, aws: Aws):
    password, user = canaries.new("pw"), canaries.new("user")
    aws.secret("prod/app", {"password": password, "user-name": user, "port": 5432})
    env = {**aws.env, "PASSWORD_AGAIN": "ref+awssecrets://prod/app#/password"}
    result = run_probe(run_shim, probe, env, "ref+awssecrets://prod/app?prefix=DB_")
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["DB_PASSWORD"] == child["PASSWORD_AGAIN"] == password
    assert child["DB_USER_NAME"] == user and child["DB_PORT"] == "5432"
    # The import and the explicit reference are one fetch key: one secret, one batch call.
    assert aws.proxy.count("BatchGetSecretValue") + aws.proxy.count("GetSecretValue") == 1


def test_ssm_path_every_parameter_recursively_across_pages(run_shim, probe, canaries, aws: Aws):
    values = {f"/app/prod/k{i:02d}": canaries.new(f"k{i}") for i in range(11)}
    values["/app/prod/db/password"] = canaries.new("nested")
    for name, value in values.items():
        aws.parameter(name, value)
    aws.parameter("/app/other/elsewhere", canaries.new("other"))
    result = run_probe(run_shim, probe, aws.env, "ref+awsssm:///app/prod/")
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    for name, value in values.items():
        assert child[name[len("/app/prod/"):].upper().replace("/", "_")] == value
    assert "ELSEWHERE" not in child
    # Twelve parameters are more than one page (at most 10): the second page was asked for.
    assert aws.proxy.count("GetParametersByPath") == 2
    assert aws.proxy.count("GetParameters") == aws.proxy.count("GetParameter") == 0


def test_ssm_path_with_nothing_under_it_is_not_found(run_shim, probe, canaries, aws: Aws):
    result = run_probe(run_shim, probe, aws.env, "ref+awsssm:///app/none/")
    assert result.returncode == 66, result.stderr
    assert "no parameter under this path" in result.stderr
    assert not probe.ran


# --- Azure --------------------------------------------------------------------------------------

def test_azure_secret_holding_a_json_object(kv, run_shim, probe, canaries):
    password, key = canaries.new("pw"), canaries.new("key")
    kv.add_secret("app-config", json.dumps({"db-password": password, "apiKey": key}))
    env = managed_identity_env(kv, AGAIN=f"ref+azurekeyvault://{host(kv)}/app-config#/apiKey")
    result = run_probe(run_shim, probe, env, f"ref+azurekeyvault://{host(kv)}/app-config?prefix=APP_")
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["APP_DB_PASSWORD"] == password and child["APP_APIKEY"] == child["AGAIN"] == key
    # The import and the explicit reference (?prefix= is not part of the read) share one GET.
    assert [r.path for r in kv.requests(authorized=True)] == ["/secrets/app-config/"]


# --- files and precedence -----------------------------------------------------------------------

def write(path, content: str):
    path.write_text(content)
    return f"ref+file://{path}"


def test_files_json_and_dotenv(run_shim, probe, canaries, tmp_path):
    a, b, c = canaries.new("a"), canaries.new("b"), canaries.new("c")
    json_ref = write(tmp_path / "app.json", json.dumps({"first.key": a, "n": 7, "flag": True}))
    env_ref = write(tmp_path / "app.env", f"# comment\nexport SECOND={b}\nthird-key='{c}'\n")
    result = run_probe(run_shim, probe, {}, json_ref, env_ref)
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert (child["FIRST_KEY"], child["N"], child["FLAG"]) == (a, "7", "true")
    assert child["SECOND"] == b and child["THIRD_KEY"] == c


def test_precedence(run_shim, probe, canaries, tmp_path):
    real, explicit, early, late, fill = (canaries.new(n) for n in
                                         ("real", "explicit", "early", "late", "fill"))
    (tmp_path / "explicit").write_text(explicit)
    first = write(tmp_path / "first.json", json.dumps({
        "REAL": canaries.new("x"), "EMPTY": early, "BOTH": early, "EXPLICIT": canaries.new("y"),
        "SHIM_USER": "root"}))
    second = write(tmp_path / "second.json", json.dumps({"BOTH": late, "PLACE": fill,
                                                        "FROM_FILE": canaries.new("z")}))
    env = {"REAL": real, "EMPTY": "", "PLACE": "CHANGEME_NOWHERE_TO_BE_FOUND",
           "EXPLICIT": f"file:{tmp_path}/explicit", "FROM_FILE_FILE": f"{tmp_path}/explicit"}
    result = run_probe(run_shim, probe, env, first, second,
                       options=("--secrets-dir", str(tmp_path)))
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["REAL"] == real                 # the environment's real value wins
    assert child["EMPTY"] == early               # an empty variable is filled
    assert child["PLACE"] == fill                # a placeholder is filled (no 78 for it)
    assert child["BOTH"] == late                 # a later import wins over an earlier one
    assert child["EXPLICIT"] == explicit         # an explicit reference wins over an import
    assert child["FROM_FILE"] == explicit        # so does NAME_FILE
    assert "SHIM_USER" not in child              # shim's own names are never imported
    kept = {event["reference"]: event["kept"] for event in json_events(result.stderr, "import.applied")}
    assert kept[first] == ["EXPLICIT", "REAL", "SHIM_USER"]
    assert kept[second] == ["FROM_FILE"]


def test_env_file_values_win_over_imports(run_shim, probe, canaries, tmp_path):
    from_env_file = canaries.new("envfile")
    (tmp_path / "local.env").write_text(f"TOKEN={from_env_file}\n")
    ref = write(tmp_path / "store.json", json.dumps({"TOKEN": canaries.new("store")}))
    result = run_probe(run_shim, probe, {}, ref, options=("--env-file", str(tmp_path / "local.env")))
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["TOKEN"] == from_env_file


def test_shim_import_variable_is_a_comma_list(run_shim, probe, canaries, tmp_path):
    a, b = canaries.new("a"), canaries.new("b")
    refs = [write(tmp_path / "a.json", json.dumps({"A": a})), write(tmp_path / "b.env", f"B={b}\n")]
    result = run_probe(run_shim, probe, {"SHIM_IMPORT": ",".join(refs)})
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["A"] == a and child["B"] == b and "SHIM_IMPORT" not in child


def test_optional_import_that_is_missing_imports_nothing(run_shim, probe, tmp_path):
    result = run_probe(run_shim, probe, {}, f"ref+file://{tmp_path}/absent.json?optional=true")
    assert result.returncode == 0, result.stderr
    assert probe.ran


# --- check, render, --as-files, CI export -------------------------------------------------------

def test_check_lists_imported_variables_with_their_reference(run_shim, canaries, tmp_path):
    ref = write(tmp_path / "app.json", json.dumps({"db-password": canaries.new("pw")}))
    table = run_shim(["check", "--import", ref], {})
    assert table.returncode == 0, table.stderr
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith("DB_PASSWORD"))
    assert row[1:4] == ["import", f"{ref}#/db-password", "ok"]
    document = json.loads(run_shim(["check", "--json", "--import", ref], {}).stdout)
    row = next(r for r in document["variables"] if r["variable"] == "DB_PASSWORD")
    assert row["source"] == "import" and row["origin"] == ref
    assert row["references"] == [f"{ref}#/db-password"] and row["status"] == "ok"


def test_render_writes_imported_variables(run_shim, canaries, tmp_path):
    value = canaries.new("pw")
    ref = write(tmp_path / "app.json", json.dumps({"password": value}))
    out = tmp_path / "out"
    out.mkdir()
    result = run_shim(["render", "--dir", str(out), "--import", ref], {})
    assert result.returncode == 0, result.stderr
    assert (out / "PASSWORD").read_text() == value


def test_as_files_delivers_imported_variables(run_shim, probe, canaries, tmp_path, shared_dir):
    value = canaries.new("pw")
    ref = write(tmp_path / "app.json", json.dumps({"password": value}))
    files = tmp_path / "files"
    files.mkdir()
    result = run_probe(run_shim, probe, {}, ref,
                       options=("--as-files", str(files), "--as-files-allow-disk"))
    assert result.returncode == 0, result.stderr
    child = probe.read()["env"]
    assert child["PASSWORD_FILE"] == f"{files}/PASSWORD" and "PASSWORD" not in child
    assert (files / "PASSWORD").read_text() == value


def test_github_actions_export_includes_imported_variables(run_shim, canaries, tmp_path):
    value = canaries.new("pw")
    ref = write(tmp_path / "app.json", json.dumps({"password": value}))
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_ENV": str(github_env)}
    result = run_shim(["render", "--format", "github-actions", "--import", ref], env,
                      check_leaks=False)
    assert result.returncode == 0, result.stderr
    canaries.assert_absent(result.stderr, where="stderr")
    assert parse_github_env(github_env.read_text()) == {"PASSWORD": value}
    assert result.stdout.splitlines() == [f"::add-mask::{value}"]
