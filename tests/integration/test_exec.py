"""`shim exec` as a real process: _FILE semantics, placeholders, references, exec itself.

The child is tests/helpers/probe.py, which records its environment, ids, PID,
signal masks and open descriptors into a file; shim's own stdout and stderr
must never contain a canary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import BASE_ENV


def secret_file(directory, name, content, mode=0o400):
    path = directory / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chmod(path, mode)
    return path


@pytest.fixture
def secrets_dir(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


# --- NAME_FILE: docker-library file_env semantics --------------------------

def test_file_var_becomes_the_variable_and_file_var_is_removed(run_shim, probe, canaries, secrets_dir):
    value = canaries.new("pg")
    path = secret_file(secrets_dir, "pg_password", value + "\n")
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"POSTGRES_PASSWORD_FILE": str(path)})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["POSTGRES_PASSWORD"] == value
    assert "POSTGRES_PASSWORD_FILE" not in env


def test_grafana_double_underscore_file_var(run_shim, probe, canaries, secrets_dir):
    value = canaries.new("grafana")
    path = secret_file(secrets_dir, "grafana", value)
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"GF_SECURITY_ADMIN_PASSWORD__FILE": str(path)})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == value
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" not in env


def test_keep_file_vars(run_shim, probe, canaries, secrets_dir):
    path = secret_file(secrets_dir, "x", canaries.new())
    result = run_shim(["exec", "--keep-file-vars", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"X_FILE": str(path)})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["X_FILE"] == str(path)


def test_both_set_is_a_configuration_error_and_nothing_runs(run_shim, probe, canaries, secrets_dir):
    explicit = canaries.new("explicit")
    path = secret_file(secrets_dir, "pw", canaries.new("file"))
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"DB_PASSWORD": explicit, "DB_PASSWORD_FILE": str(path)})
    assert result.returncode == 78
    assert "both DB_PASSWORD and DB_PASSWORD_FILE are set (but are exclusive)" in result.stderr
    assert not probe.ran


def test_empty_variable_with_file_var_takes_the_file(run_shim, probe, canaries, secrets_dir):
    value = canaries.new()
    path = secret_file(secrets_dir, "pw", value)
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"DB_PASSWORD": "", "DB_PASSWORD_FILE": str(path)})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["DB_PASSWORD"] == value


@pytest.mark.parametrize("content,expected", [
    ("VALUE\n", "VALUE"),
    ("VALUE\n\n\n", "VALUE"),
    ("VALUE\r\n", "VALUE"),
    ("VALUE\r\n\r\n", "VALUE"),
    ("  VALUE  \n", "  VALUE  "),       # leading (and inner trailing) spaces kept
    ("line1\nline2\n", "line1\nline2"),
    ("", ""),                              # an empty file is an empty value
])
def test_file_content_rules(run_shim, probe, canaries, secrets_dir, content, expected):
    token = canaries.new()
    path = secret_file(secrets_dir, "v", content.replace("VALUE", token))
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"V_FILE": str(path)})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["V"] == expected.replace("VALUE", token)


def test_missing_file_is_66_and_names_the_variable(run_shim, probe, secrets_dir):
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"DB_PASSWORD_FILE": str(secrets_dir / "absent")})
    assert result.returncode == 66
    assert "DB_PASSWORD" in result.stderr and "does not exist" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not probe.ran


def test_nul_byte_is_65(run_shim, probe, canaries, secrets_dir):
    path = secret_file(secrets_dir, "nul", canaries.new().encode() + b"\0tail")
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"X_FILE": str(path)})
    assert result.returncode == 65
    assert "NUL" in result.stderr
    assert not probe.ran


def test_invalid_utf8_is_65(run_shim, probe, secrets_dir):
    path = secret_file(secrets_dir, "bin", b"\xff\xfe\x00binary")
    path.write_bytes(b"\xff\xfebinary")
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"X_FILE": str(path)})
    assert result.returncode == 65
    assert "UTF-8" in result.stderr


def test_symlinked_file_as_kubernetes_lays_it_out(run_shim, probe, canaries, secrets_dir):
    value = canaries.new()
    timestamped = secrets_dir / "..2026_11_28_10_00_00.123"
    timestamped.mkdir()
    secret_file(timestamped, "db-password", value)
    os.symlink(timestamped.name, secrets_dir / "..data")
    os.symlink("..data/db-password", secrets_dir / "db-password")
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"DB_PASSWORD_FILE": str(secrets_dir / "db-password")})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["DB_PASSWORD"] == value


def test_file_unreadable_after_drop_is_read_before(run_shim, probe, canaries, secrets_dir):
    value = canaries.new()
    path = secret_file(secrets_dir, "rootonly", value, mode=0o400)  # root-owned, 0400
    os.chmod(secrets_dir, 0o700)
    result = run_shim(["exec", "--user", "nobody", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"DB_PASSWORD_FILE": str(path)})
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert record["uid"] == 65534
    assert record["env"]["DB_PASSWORD"] == value


def test_file_var_outside_secrets_dirs_is_left_alone(run_shim, probe, canaries, tmp_path):
    path = secret_file(tmp_path, "elsewhere", canaries.new())
    result = run_shim(["exec", "--", *probe.argv], {"APP_CONFIG_FILE": str(path)})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["APP_CONFIG_FILE"] == str(path)
    assert "APP_CONFIG" not in env


def test_file_vars_option_resolves_anywhere(run_shim, probe, canaries, tmp_path):
    value = canaries.new()
    path = secret_file(tmp_path, "elsewhere", value)
    result = run_shim(["exec", "--file-vars", "APP_TOKEN", "--", *probe.argv],
                      {"APP_TOKEN_FILE": str(path)})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["APP_TOKEN"] == value
    star = run_shim(["exec", "--", *probe.argv],
                    {"SHIM_FILE_VARS": "*", "APP_TOKEN_FILE": str(path),
                     "AWS_WEB_IDENTITY_TOKEN_FILE": str(path)})
    assert star.returncode == 0, star.stderr
    env = probe.read()["env"]
    assert env["APP_TOKEN"] == value
    # never-touch: a path that a program (the AWS SDK) reads itself
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == str(path)
    assert "AWS_WEB_IDENTITY_TOKEN" not in env


@pytest.mark.parametrize("name", ["SSL_CERT_FILE", "AWS_CONFIG_FILE", "PGPASSFILE", "VAULT_TOKEN_FILE",
                                  "AZURE_FEDERATED_TOKEN_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_never_touch_list_even_under_secrets_dir(run_shim, probe, canaries, secrets_dir, name):
    path = secret_file(secrets_dir, "f", canaries.new())
    result = run_shim(["exec", "--passthrough", name, "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {name: str(path)})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"][name] == str(path)


# --- placeholders ------------------------------------------------------------

def test_placeholder_lookup_order(run_shim, probe, canaries, secrets_dir, tmp_path):
    """env file (by variable, then by key) before secrets dir (KEY, key, variable)."""
    from_env_by_var = canaries.new("envvar")
    from_env_by_key = canaries.new("envkey")
    from_dir_upper = canaries.new("upper")
    from_dir_lower = canaries.new("lower")
    from_dir_var = canaries.new("var")
    env_file = tmp_path / "dev.env"
    env_file.write_text(f"A={from_env_by_var}\nKEY_B={from_env_by_key}\n")
    secret_file(secrets_dir, "KEY_C", from_dir_upper)
    secret_file(secrets_dir, "key_d", from_dir_lower)
    secret_file(secrets_dir, "e", from_dir_var)
    secret_file(secrets_dir, "KEY_A", canaries.new("loses"))
    result = run_shim(["exec", "--env-file", str(env_file), "--secrets-dir", str(secrets_dir),
                       "--", *probe.argv],
                      {"A": "CHANGEME_KEY_A", "B": "CHANGEME_KEY_B", "C": "CHANGEME_KEY_C",
                       "D": "CHANGEME_KEY_D", "E": "CHANGEME"})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["A"] == from_env_by_var
    assert env["B"] == from_env_by_key
    assert env["C"] == from_dir_upper
    assert env["D"] == from_dir_lower
    assert env["E"] == from_dir_var


def test_embedded_placeholder_in_url_is_percent_encoded(run_shim, probe, canaries, secrets_dir):
    token = canaries.new()
    secret_file(secrets_dir, "pg_password", f"{token}@:/%")
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"DATABASE_URL": "postgres://app:CHANGEME_PG_PASSWORD@db:5432/app",
                       "NOT_A_URL": "pw=CHANGEME_PG_PASSWORD;"})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["DATABASE_URL"] == f"postgres://app:{token}%40%3A%2F%25@db:5432/app"
    assert env["NOT_A_URL"] == f"pw={token}@:/%;"


def test_unresolved_placeholders_are_78_naming_every_variable(run_shim, probe, secrets_dir):
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"ZETA": "CHANGEME_Z", "ALPHA": "x-CHANGEME_A-y", "OK": "plain"})
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("shim: error: ALPHA") and "CHANGEME_A" in lines[0]
    assert lines[1].startswith("shim: error: ZETA") and "CHANGEME_Z" in lines[1]
    assert not probe.ran


def test_allow_placeholders_keeps_them_with_a_warning(run_shim, probe, secrets_dir):
    result = run_shim(["exec", "--allow-placeholders", "--secrets-dir", str(secrets_dir), "--", *probe.argv],
                      {"TOKEN": "CHANGEME_TOKEN"})
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "CHANGEME_TOKEN" in result.stderr
    assert probe.read()["env"]["TOKEN"] == "CHANGEME_TOKEN"


def test_placeholder_source_uses_the_key_as_selector(run_shim, probe, canaries, tmp_path):
    value = canaries.new()
    source = tmp_path / "all.json"
    source.write_text(json.dumps({"JWT_SECRET": value}))
    result = run_shim(["exec", "--placeholder-source", f"ref+file://{source}", "--", *probe.argv],
                      {"JWT": "CHANGEME_JWT_SECRET"})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["JWT"] == value
    missing = run_shim(["exec", "--placeholder-source", f"ref+file://{source}", "--", *probe.argv],
                       {"OTHER": "CHANGEME_NOPE"})
    assert missing.returncode == 78
    assert "OTHER" in missing.stderr and "CHANGEME_NOPE" in missing.stderr


# --- env files ---------------------------------------------------------------

def test_env_file_fills_unset_empty_and_placeholder_but_explicit_wins(run_shim, probe, canaries, tmp_path):
    explicit = canaries.new("explicit")
    filled = {name: canaries.new(name.lower()) for name in ("UNSET", "EMPTY", "HOLDER", "EXPLICIT")}
    env_file = tmp_path / "dev.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in filled.items()) + "# comment\n\nQUOTED=\"a b\"\n")
    result = run_shim(["exec", "--env-file", str(env_file), "--", *probe.argv],
                      {"EMPTY": "", "HOLDER": "CHANGEME", "EXPLICIT": explicit})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["UNSET"] == filled["UNSET"]
    assert env["EMPTY"] == filled["EMPTY"]
    assert env["HOLDER"] == filled["HOLDER"]
    assert env["EXPLICIT"] == explicit
    assert env["QUOTED"] == "a b"


def test_env_file_syntax_error_names_file_and_line_not_content(run_shim, probe, canaries, tmp_path):
    env_file = tmp_path / "bad.env"
    env_file.write_text(f"GOOD=1\nBAD LINE {canaries.new()} '\n")
    result = run_shim(["exec", "--env-file", str(env_file), "--", *probe.argv], {})
    assert result.returncode == 64
    assert f"{env_file} line 2" in result.stderr
    assert not probe.ran


def test_env_file_values_are_not_interpolated(run_shim, probe, canaries, tmp_path):
    value = canaries.new()
    secret = tmp_path / "s"
    secret.write_text(value)
    env_file = tmp_path / "dev.env"
    env_file.write_text(f"URL=x://${{file:{secret}}}/\nLITERAL=$HOME\n")
    result = run_shim(["exec", "--env-file", str(env_file), "--", *probe.argv], {})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["URL"] == f"x://{value}/"
    assert env["LITERAL"] == "$HOME"


# --- references --------------------------------------------------------------

def test_file_references_with_json_pointer(run_shim, probe, canaries, tmp_path):
    password, user = canaries.new("pw"), canaries.new("user")
    document = tmp_path / "db.json"
    document.write_text(json.dumps({"db": {"password": password, "user": user, "port": 5432}}))
    result = run_shim(["exec", "--", *probe.argv],
                      {"PW": f"ref+file://{document}#/db/password",
                       "PORT": f"ref+file://{document}#/db/port",
                       "DSN": f"postgres://${{ref+file://{document}#/db/user}}:"
                              f"${{ref+file://{document}#/db/password}}@h/d",
                       "ESCAPED": "keep $${ref+file:///nope} literal"})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["PW"] == password
    assert env["PORT"] == "5432"
    assert env["DSN"] == f"postgres://{user}:{password}@h/d"
    assert env["ESCAPED"] == "keep ${ref+file:///nope} literal"


def test_missing_key_and_not_json(run_shim, probe, canaries, tmp_path):
    document = tmp_path / "db.json"
    document.write_text(json.dumps({"password": canaries.new()}))
    plain = tmp_path / "plain"
    plain.write_text(canaries.new())
    result = run_shim(["exec", "--", *probe.argv],
                      {"A": f"ref+file://{document}#/nope", "B": f"ref+file://{plain}#/k"})
    assert result.returncode == 66  # the first reported error (A, sorted by name) decides
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("shim: error: A (ref+file://") and "key 1 of the #... selector does not exist" in lines[0]
    assert "/nope" not in lines[0]   # the selector is not quoted (docs/references.md)
    assert lines[1].startswith("shim: error: B") and "not JSON" in lines[1]


def test_optional_reference_leaves_variable_unset(run_shim, probe, tmp_path):
    result = run_shim(["exec", "--", *probe.argv],
                      {"MAYBE": f"ref+file://{tmp_path}/absent?optional=true",
                       "MUST": f"file:{tmp_path}/absent"})
    assert result.returncode == 66
    assert "MUST" in result.stderr and "MAYBE" not in result.stderr
    ok = run_shim(["exec", "--", *probe.argv],
                  {"MAYBE": f"ref+file://{tmp_path}/absent?optional=true"})
    assert ok.returncode == 0, ok.stderr
    assert "MAYBE" not in probe.read()["env"]


def test_shim_skip_exempts_lookalikes(run_shim, probe):
    result = run_shim(["exec", "--", *probe.argv],
                      {"SHIM_SKIP": "NOTE,LINK", "NOTE": "vault:not-a-ref", "LINK": "file:///x"})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert env["NOTE"] == "vault:not-a-ref" and env["LINK"] == "file:///x"


@pytest.mark.parametrize("value,provider,extra", [
    ("vault:secret/data/app#password", "vault", "vault"),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:db", "awssecrets", "aws"),
    ("@Microsoft.KeyVault(VaultName=v;SecretName=db)", "azurekeyvault", "azure"),
    ("sm://my-project/db", "gcpsecrets", "gcp"),
    ("ref+doppler://billing/prd#/DB", "doppler", "doppler"),
    ("ref+infisical://p1/prod#/DB", "infisical", "infisical"),
    ("op://prod/postgres/password", "onepassword", "onepassword"),
    ("ref+bws://3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6", "bws", "bitwarden"),
])
def test_provider_without_sdk_fails_cleanly(run_shim, probe, tmp_path, value, provider, extra):
    """An image without the SDK installed: simulated by a sitecustomize that blocks the import."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('hvac', 'boto3', 'botocore', 'azure', 'google',\n"
        "                                  'requests', 'cryptography'):\n"
        "            raise ImportError(name=name)\n"
        "sys.meta_path.insert(0, Block())\n")
    result = run_shim(["exec", "--", *probe.argv], {"X": value, "PYTHONPATH": str(blocker)})
    assert result.returncode == 78, result.stderr
    assert f"provider {provider} is not available: install shim-secrets[{extra}]" in result.stderr
    assert not probe.ran


def test_oversized_value_is_65_before_exec(run_shim, probe, tmp_path):
    big = tmp_path / "big"
    big.write_text("x" * (128 * 1024))
    result = run_shim(["exec", "--", *probe.argv], {"BIG": f"file:{big}"})
    assert result.returncode == 65
    assert "BIG" in result.stderr and "128 KiB" in result.stderr
    assert not probe.ran


# --- the child's environment ------------------------------------------------

def test_scrubbing_and_passthrough(run_shim, probe, canaries):
    token = canaries.new("token")
    result = run_shim(["exec", "--", *probe.argv],
                      {"VAULT_TOKEN": token, "VAULT_ADDR": "http://127.0.0.1:1",
                       "SHIM_LOG_FORMAT": "text", "AWS_REGION": "eu-west-1", "KEEP": "1"})
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    assert not [k for k in env if k.startswith(("VAULT_", "SHIM_"))]
    assert env["AWS_REGION"] == "eu-west-1" and env["KEEP"] == "1"
    passed = run_shim(["exec", "--passthrough", "VAULT_ADDR", "--", *probe.argv],
                      {"VAULT_TOKEN": token, "VAULT_ADDR": "http://127.0.0.1:1"})
    assert passed.returncode == 0
    env = probe.read()["env"]
    assert env["VAULT_ADDR"] == "http://127.0.0.1:1" and "VAULT_TOKEN" not in env
    via_env = run_shim(["exec", "--", *probe.argv],
                       {"SHIM_PASSTHROUGH": "VAULT_ADDR,VAULT_NAMESPACE", "VAULT_ADDR": "a",
                        "VAULT_NAMESPACE": "ns", "VAULT_TOKEN": token})
    assert via_env.returncode == 0
    env = probe.read()["env"]
    assert env["VAULT_ADDR"] == "a" and env["VAULT_NAMESPACE"] == "ns" and "VAULT_TOKEN" not in env


def test_child_environment_is_exactly_what_was_given(run_shim, probe):
    """Nothing of the interpreter's own (PEP 538's LC_CTYPE) leaks into the child."""
    result = run_shim(["exec", "--", *probe.argv], {"ONLY": "1"}, base_env=False)
    assert result.returncode == 0, result.stderr
    env = probe.read()["env"]
    env.pop("PWD", None)  # probe.sh's /bin/sh exports PWD itself
    assert env == {"ONLY": "1"}


# --- exec semantics ----------------------------------------------------------

def test_exec_keeps_pid_and_resets_signals_and_descriptors(probe):
    """Started with SIGPIPE/SIGUSR1 ignored, signals blocked and an extra inherited fd."""
    code = (
        "import os, signal, subprocess, sys\n"
        "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGHUP})\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execvp(sys.executable, [sys.executable, '-m', 'shim', 'exec', '--', *sys.argv[1:]])\n"
        "print(pid)\n"
        "os.waitpid(pid, 0)\n"
    )
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        result = subprocess.run([sys.executable, "-c", code, *probe.argv], env=dict(BASE_ENV),
                                capture_output=True, text=True, pass_fds=(write_end,), timeout=30)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert record["pid"] == int(result.stdout.strip())
    assert record["sig_ign"] == "0000000000000000"
    assert record["sig_blk"] == "0000000000000000"
    # stdio, the inherited descriptor, and the probe's own listdir handle: nothing the shim opened
    assert write_end in record["fds"]
    assert len(record["fds"]) == 5, record["fds"]


def test_command_not_found_127_and_not_executable_126(run_shim, tmp_path):
    missing = run_shim(["exec", "--", "no-such-command-xyz"], {})
    assert missing.returncode == 127
    assert "no-such-command-xyz" in missing.stderr
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o644)
    not_exec = run_shim(["exec", "--", str(script)], {})
    assert not_exec.returncode == 126
    assert str(script) in not_exec.stderr


def test_path_search_uses_the_childs_path(run_shim, tmp_path, probe):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "mytool"
    tool.write_text(f"#!/bin/sh\nexec {' '.join(probe.argv)}\n")
    os.chmod(tool, 0o755)
    result = run_shim(["exec", "--", "mytool"], {"PATH": f"{bindir}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert probe.ran


def test_exit_status_of_the_command_is_its_own(run_shim):
    result = run_shim(["exec", "--", "sh", "-c", "exit 42"], {})
    assert result.returncode == 42


def test_usage_errors_exit_64(run_shim):
    assert run_shim(["exec", "--bogus", "--", "true"], {}).returncode == 64
    assert run_shim(["exec"], {}).returncode == 64
    assert run_shim(["exec", "--deadline", "soon", "--", "true"], {}).returncode == 64
    assert run_shim(["nosuchcommand"], {}).returncode == 64
    assert run_shim(["exec", "--log-format", "xml", "--", "true"], {}).returncode == 64
    bad_ref = run_shim(["exec", "--", "true"], {"X": "vault:secret/data/app"})
    assert bad_ref.returncode == 64
    assert "X" in bad_ref.stderr and "key is required" in bad_ref.stderr


def test_options_after_the_command_belong_to_the_command(run_shim, probe):
    result = run_shim(["exec", *probe.argv, "--user", "x"], {})
    assert result.returncode == 0, result.stderr
    assert probe.read()["argv"][-2:] == ["--user", "x"]


def test_json_log_format_one_object_per_line(run_shim, probe, secrets_dir):
    result = run_shim(["exec", "--log-format", "json", "--secrets-dir", str(secrets_dir),
                       "--", *probe.argv], {"A": "CHANGEME_A", "B": "CHANGEME_B"})
    assert result.returncode == 78
    records = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert [r["variable"] for r in records] == ["A", "B"]
    assert all(r["event"] == "secret.failed" and r["exit_code"] == 78 for r in records)


IGNORE_RESERVED = (
    "import ctypes, os, sys\n"
    "class Action(ctypes.Structure):\n"
    "    _fields_ = [('handler', ctypes.c_void_p), ('flags', ctypes.c_ulong),\n"
    "                ('restorer', ctypes.c_void_p), ('mask', ctypes.c_uint64)]\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "number = {'x86_64': 13, 'aarch64': 134}[os.uname().machine]\n"
    "for signum in (32, 33):\n"
    "    assert libc.syscall(number, signum, ctypes.byref(Action(1, 0, None, 0)), None, 8) == 0\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'shim', 'exec', '--', *sys.argv[1:]])\n"
)


def test_signals_reserved_by_glibc_are_reset_too(probe):
    """A parent that ignores 32/33 (some CI harnesses do): glibc refuses to touch them, shim still must."""
    result = subprocess.run([sys.executable, "-c", IGNORE_RESERVED, *probe.argv], env=dict(BASE_ENV),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert probe.read()["sig_ign"] == "0000000000000000"


def test_option_errors_follow_the_asked_log_format(run_shim):
    """An error found before the log exists still comes out as JSON when JSON was asked for."""
    for args in (["--log-format=json"], ["--log-format", "json"]):
        result = run_shim(["exec", *args, "--deadline", "soon", "--", "true"], {})
        assert result.returncode == 64
        record = json.loads(result.stderr)
        assert record["exit_code"] == 64 and "--deadline" in record["message"]
    # a --log-format among the command's own arguments is the command's business
    text = run_shim(["exec", "--deadline", "soon", "--", "x", "--log-format", "json"], {})
    assert text.stderr.startswith("shim: error: --deadline")
