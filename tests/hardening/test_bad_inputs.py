"""A table of bad inputs: each gets its exit code, one clear line, no traceback, no canary, nothing run.

Every row runs the real CLI. The canary fixture makes a secret that is put
somewhere near the bad input (a neighbouring variable, the file content), so
a message that echoes too much is caught.
"""

from __future__ import annotations

import os

import pytest

# (id, args before "--", env (with {canary}, {tmp}), files {name: content}, exit code, fragment)
ROWS = [
    # malformed references, every syntax
    ("vault-no-key", [], {"X": "vault:secret/data/app"}, {}, 64, "a key is required"),
    ("vault-empty-path", [], {"X": "vault:#key"}, {}, 64, "path is empty"),
    ("vault-bad-version", [], {"X": "vault:secret/data/app#k#latest"}, {}, 64, "not a whole number"),
    ("vault-too-many-hashes", [], {"X": "vault:a/b#k#1#2"}, {}, 64, "too many"),
    ("vals-unknown-provider", [], {"X": "ref+keepassxc://p/s"}, {}, 64, "unknown provider"),
    ("vals-no-scheme", [], {"X": "ref+vault:secret/app"}, {}, 64, "needs a scheme"),
    ("vals-unknown-option", [], {"X": "ref+vault://secret/app?verison=2#/k"}, {}, 64, "unknown option name"),
    ("vals-duplicate-option", [], {"X": "ref+vault://s/a?version=1&version=2"}, {}, 64, "given twice"),
    ("vals-empty-selector", [], {"X": "ref+vault://secret/app#"}, {}, 64, "empty selector"),
    ("vals-bad-optional", [], {"X": "ref+file:///x?optional=yes"}, {}, 64, "true or false"),
    ("vals-bad-max-age", [], {"X": "ref+file:///x?max_age=3months"}, {}, 64, "not a duration"),
    ("arn-secretsmanager-no-name", [], {"X": "arn:aws:secretsmanager:us-east-1:1:secret:"}, {}, 64, "secret:<name>"),
    ("arn-secretsmanager-partial-suffix", [], {"X": "arn:aws:secretsmanager:us-east-1:1:secret:db:key"}, {}, 64, "all three"),
    ("arn-secretsmanager-stage-and-id", [], {"X": "arn:aws:secretsmanager:us-east-1:1:secret:db::AWSCURRENT:abc"}, {}, 64, "exclusive"),
    ("arn-secretsmanager-no-region", [], {"X": "arn:aws:secretsmanager::1:secret:db"}, {}, 64, "no region"),
    ("arn-ssm-not-parameter", [], {"X": "arn:aws:ssm:us-east-1:1:document/x"}, {}, 64, "parameter/"),
    ("awssecrets-stage-and-id", [], {"X": "ref+awssecrets://db?version_stage=A&version_id=B"}, {}, 64, "exclusive"),
    ("awsssm-bad-chars", [], {"X": "ref+awsssm://app/db pass"}, {}, 64, "does not allow"),
    ("azure-unclosed", [], {"X": "@Microsoft.KeyVault(VaultName=v;SecretName=s"}, {}, 64, "closing parenthesis"),
    ("azure-http-uri", [], {"X": "@Microsoft.KeyVault(SecretUri=http://v.vault.azure.net/secrets/s)"}, {}, 64, "SecretUri must be"),
    ("azure-missing-name", [], {"X": "@Microsoft.KeyVault(VaultName=v)"}, {}, 64, "both required"),
    ("azure-bad-name", [], {"X": "@Microsoft.KeyVault(VaultName=v;SecretName=db_password)"}, {}, 64, "not valid"),
    ("azure-vals-short", [], {"X": "ref+azurekeyvault://onlyvault"}, {}, 64, "expected"),
    ("file-empty", [], {"X": "file:"}, {}, 64, "path is empty"),
    # a password that merely looks like a reference: refused, and never echoed
    ("lookalike-password", [], {"X": "vault:{canary}"}, {}, 64, "malformed vault: reference"),
    ("lookalike-password-vals", [], {"X": "ref+vault://{canary}?x#"}, {}, 64, "malformed ref+vault reference"),
    # the same with the secret's random part right after the prefix: even a truncated quote leaks
    ("lookalike-password-short", [], {"X": "vault:{random}"}, {}, 64, "malformed vault: reference"),
    ("lookalike-password-vals-short", [], {"X": "ref+vault://{random}?x#"}, {}, 64,
     "malformed ref+vault reference"),
    ("inline-unclosed", [], {"X": "postgres://u:${ref+file:///x@h/d"}, {}, 64, "no closing }"),
    # bad user specs
    ("user-unknown", ["--user", "bogus"], {}, {}, 78, 'unknown user "bogus"'),
    ("user-0day", ["--user", "0day"], {}, {}, 78, 'unknown user "0day"'),
    ("group-unknown", ["--user", "0:bogus"], {}, {}, 78, 'unknown group "bogus"'),
    ("uid-out-of-range", ["--user", "4294967296"], {}, {}, 64, "out of range"),
    ("require-non-root", ["--require-non-root", "--user", "root"], {}, {}, 78, "would run as root"),
    # bad durations and options
    ("deadline-no-unit", ["--deadline", "30"], {}, {}, 64, "is not a duration"),
    ("deadline-words", ["--deadline", "soon"], {}, {}, 64, "is not a duration"),
    ("watch-bad", ["--watch", "5 minutes"], {}, {}, 64, "is not a duration"),
    ("max-age-bad", ["--max-age", "90days"], {}, {}, 64, "is not a duration"),
    ("stop-signal-bad", ["--stop-signal", "SIGNOPE"], {}, {}, 64, "is not a signal"),
    ("on-change-bad", ["--watch", "1s", "--on-change", "reload"], {}, {}, 64, "is not an action"),
    ("log-format-bad", ["--log-format", "xml"], {}, {}, 64, "xml"),
    ("unknown-option", ["--frobnicate"], {}, {}, 64, "No such option"),
    ("placeholder-source-with-key", ["--placeholder-source", "ref+file:///x#/k"], {}, {}, 64, "must not select a key"),
    ("placeholder-source-malformed", ["--placeholder-source", "vault:"], {}, {}, 64, "path is empty"),
    # unreadable / oversized / binary files
    ("file-missing", [], {"X_FILE": "{tmp}/secrets/absent"}, {}, 66, "does not exist"),
    ("file-directory", [], {"X": "file:{tmp}/secrets"}, {}, 66, "directory"),
    ("file-nul", [], {"X_FILE": "{tmp}/secrets/nul"}, {"nul": b"{canary}\0x"}, 65, "NUL byte"),
    ("file-not-utf8", [], {"X_FILE": "{tmp}/secrets/bin"}, {"bin": b"\xff\xfe{canary}"}, 65, "UTF-8"),
    ("file-too-large-for-env", [], {"X": "file:{tmp}/secrets/big"}, {"big": b"x" * 140000}, 65, "128 KiB"),
    ("file-over-1mib", [], {"X": "file:{tmp}/secrets/huge"}, {"huge": b"x" * (1024 * 1024 + 10)}, 65, "larger than 1 MiB"),
    ("file-unreadable", ["--file-vars", "X"], {"X_FILE": "/proc/1/mem"}, {}, 77, "not readable"),
    ("file-not-regular", ["--file-vars", "X"], {"X_FILE": "/dev/null"}, {}, 66, "not a regular file"),
    ("json-key-on-text", [], {"X": "ref+file://{tmp}/secrets/plain#/k"}, {"plain": b"{canary}"}, 65, "not JSON"),
    ("json-key-missing", [], {"X": "ref+file://{tmp}/secrets/doc#/nope"}, {"doc": b'{"k": "{canary}"}'}, 66, "key 1 of the #... selector does not exist"),
    ("both-set", [], {"X": "{canary}", "X_FILE": "{tmp}/secrets/x"}, {"x": b"{canary}"}, 78, "both X and X_FILE are set"),
    ("placeholder-unresolved", [], {"X": "CHANGEME_NOWHERE"}, {}, 78, "unresolved placeholder CHANGEME_NOWHERE"),
    ("placeholder-embedded-unresolved", [], {"URL": "redis://:CHANGEME_RP@cache:6379"}, {}, 78, "CHANGEME_RP"),
    ("provider-missing-json-source", ["--placeholder-source", "ref+file://{tmp}/secrets/doc"], {"X": "CHANGEME_ABSENT"},
     {"doc": b'{"OTHER": "{canary}"}'}, 78, "unresolved placeholder CHANGEME_ABSENT"),
    # env files with syntax errors, invalid variable names
    ("env-file-syntax", ["--env-file", "{tmp}/secrets/bad.env"], {}, {"bad.env": b"OK=1\nNOT VALID {canary} '\n"}, 64, "line 2"),
    ("env-file-bad-name", ["--env-file", "{tmp}/secrets/name.env"], {}, {"name.env": b"1ABC={canary}\n"}, 64, "line 1"),
    ("env-file-missing", ["--env-file", "{tmp}/secrets/none.env"], {}, {}, 66, "does not exist"),
    ("env-file-not-utf8", ["--env-file", "{tmp}/secrets/latin.env"], {}, {"latin.env": b"A=\xe9{canary}\n"}, 64, "not UTF-8"),
    # ?encoding= (shim/pipeline/decoding.py)
    ("encoding-unknown", [], {"X": "ref+file:///x?encoding=rot13"}, {}, 64, "unknown encoding"),
    ("encoding-lookalike", [], {"X": "ref+file:///x?encoding={canary}"}, {}, 64, "unknown encoding"),
    ("encoding-bad-base64", [], {"X": "ref+file://{tmp}/secrets/b64?encoding=base64"}, {"b64": b"{canary}*"}, 65,
     "X (ref+file://{tmp}/secrets/b64?...): the value is not valid base64"),
    ("encoding-bad-base64url", [], {"X": "ref+file://{tmp}/secrets/b64?encoding=base64url"}, {"b64": b"ab+/"}, 65, "not valid base64url"),
    ("encoding-bad-hex", [], {"X": "ref+file://{tmp}/secrets/hex?encoding=hex"}, {"hex": b"{canary}"}, 65, "not valid hex"),
    ("encoding-not-utf8", [], {"X": "ref+file://{tmp}/secrets/b?encoding=base64"}, {"b": b"//79"}, 65, "not valid UTF-8"),
    ("encoding-nul", [], {"X": "ref+file://{tmp}/secrets/b?encoding=base64"}, {"b": b"YQBi"}, 65, "NUL byte"),
    ("encoding-on-object", [], {"X": "ref+file://{tmp}/secrets/doc?encoding=hex#/k"}, {"doc": b'{"k": {"n": "{canary}"}}'}, 65, "JSON object"),
    # --as-files (shim/delivery/asfiles.py)
    ("as-files-missing-dir", ["--as-files", "{tmp}/nowhere"], {}, {}, 78, "No such file or directory"),
    ("as-files-not-a-directory", ["--as-files", "{tmp}/secrets/plain"], {}, {"plain": b"{canary}"}, 78, "is not a directory"),
    ("as-files-symlink-dir", ["--as-files", "/proc/self/cwd"], {}, {}, 78, "a symlink is refused"),
    ("as-files-on-disk", ["--as-files", "{tmp}/secrets"], {"X_FILE": "{tmp}/secrets/x"}, {"x": b"{canary}"}, 78, "not tmpfs or ramfs"),
    ("as-files-only-without-dir", ["--as-files-only", "X"], {}, {}, 78, "--as-files-only needs --as-files"),
    ("as-files-bad-name", ["--as-files", "{tmp}/secrets", "--as-files-allow-disk"], {"A:B": "file:{tmp}/secrets/x"},
     {"x": b"{canary}"}, 65, "A:B (ref+file://{tmp}/secrets/x): the name cannot be a file name"),
    ("as-files-only-other-nul", ["--as-files", "{tmp}/secrets", "--as-files-allow-disk", "--as-files-only", "Y"],
     {"X_FILE": "{tmp}/secrets/nul"}, {"nul": b"{canary}\0x"}, 65, "NUL byte"),
    ("as-files-binary-inside-larger", ["--as-files", "{tmp}/secrets", "--as-files-allow-disk"],
     {"X": "pre-${ref+file://{tmp}/secrets/nul}"}, {"nul": b"{canary}\0x"}, 65, "NUL byte"),
    # --import (shim/pipeline/imports.py)
    ("import-not-an-object", ["--import", "ref+file://{tmp}/secrets/list.json"], {}, {"list.json": b'["{canary}"]'}, 65,
     "shim: error: --import ref+file://{tmp}/secrets/list.json: the secret is not a JSON object"),
    ("import-plain-text", ["--import", "ref+file://{tmp}/secrets/plain"], {}, {"plain": b"{canary}"}, 65,
     "neither a JSON object nor a NAME=value line"),
    ("import-dotenv-bad-line", ["--import", "ref+file://{tmp}/secrets/bad.env"], {}, {"bad.env": b"OK=1\nNOT VALID {canary} '\n"},
     65, "line 2 of the dotenv file cannot be parsed"),
    ("import-collision", ["--import", "ref+file://{tmp}/secrets/c.json"], {}, {"c.json": b'{"db-url": "{canary}", "DB_URL": "x"}'},
     65, "DB_URL: --import ref+file://{tmp}/secrets/c.json: keys 'DB_URL' and 'db-url' both become DB_URL"),
    ("import-empty-key", ["--import", "ref+file://{tmp}/secrets/e.json"], {}, {"e.json": b'{"": "{canary}"}'}, 65, "empty key"),
    ("import-bad-prefix", ["--import", "ref+file:///x?prefix=1A"], {}, {}, 64, "--import: malformed ref+file reference: the prefix"),
    ("import-prefix-lookalike", ["--import", "ref+file:///x?prefix={canary}"], {}, {}, 64, "the prefix is not"),
    ("import-one-key", ["--import", "ref+file://{tmp}/secrets/doc#/k"], {}, {"doc": b'{"k": "{canary}"}'}, 64, "not one key"),
    ("import-vault-one-key", ["--import", "vault:secret/data/app#password"], {}, {}, 64, "not one key"),
    ("import-ssm-path-version", ["--import", "ref+awsssm:///app/prod/?version=2"], {}, {}, 64, "no version or label"),
    ("import-missing", ["--import", "ref+file://{tmp}/secrets/absent.json"], {}, {}, 66, "does not exist"),
    ("prefix-on-a-variable", [], {"X": "ref+file:///x?prefix=A_"}, {}, 64, "unknown option name"),
    # command problems
    ("command-not-found", [], {}, {}, 127, "not found", ["no-such-program-anywhere"]),
    ("command-not-executable", [], {}, {"script": b"#!/bin/sh\n"}, 126, "cannot execute", ["{tmp}/secrets/script"]),
]


def _expand_template(text, tmp, canary):
    random_part = canary.rsplit("-", 1)[1]
    if isinstance(text, bytes):
        return (text.replace(b"{canary}", canary.encode()).replace(b"{random}", random_part.encode())
                .replace(b"{tmp}", str(tmp).encode()))
    return text.replace("{canary}", canary).replace("{random}", random_part).replace("{tmp}", str(tmp))


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input(row, run_shim, canaries, tmp_path, probe):
    name, args, env, files, code, fragment = row[:6]
    command = row[6] if len(row) > 6 else None
    canary = canaries.new(name)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for file_name, content in files.items():
        path = secrets_dir / file_name
        path.write_bytes(_expand_template(content, tmp_path, canary))
        if file_name == "script":
            os.chmod(path, 0o644)
    # A neighbouring variable holds a real secret: it must not show up either.
    environment = {"NEIGHBOUR_PASSWORD": canary}
    environment.update({k: _expand_template(v, tmp_path, canary) for k, v in env.items()})
    argv = [_expand_template(a, tmp_path, canary) for a in args]
    target = [_expand_template(a, tmp_path, canary) for a in command] if command else probe.argv
    result = run_shim(["exec", "--secrets-dir", str(secrets_dir), *argv, "--", *target], environment)
    assert result.returncode == code, result.stderr
    assert _expand_template(fragment, tmp_path, canary) in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, result.stderr
    assert result.stdout == ""
    assert not probe.ran


def test_the_table_is_large_enough():
    assert len(ROWS) >= 40


# `shim render --format github-actions|azure-pipelines` (shim/delivery/ciexport.py): the same promises.
# (id, args, env (with {canary}, {tmp}), exit code, fragment)
CI_ROWS = [
    ("gha-outside-actions", ["--format", "github-actions"], {}, 78, "only runs in a GitHub Actions job"),
    ("gha-no-github-env", ["--format", "github-actions"], {"GITHUB_ACTIONS": "true"}, 78, "GITHUB_ENV set"),
    ("gha-github-env-missing", ["--format", "github-actions"],
     {"GITHUB_ACTIONS": "true", "GITHUB_ENV": "{tmp}/absent"}, 78, "cannot open it for appending"),
    ("gha-github-env-directory", ["--format", "github-actions"],
     {"GITHUB_ACTIONS": "true", "GITHUB_ENV": "{tmp}"}, 78, "GITHUB_ENV {tmp}"),
    ("gha-with-dir", ["--format", "github-actions", "--dir", "{tmp}"],
     {"GITHUB_ACTIONS": "true", "GITHUB_ENV": "{tmp}/github_env"}, 64, "not to --dir/--env-file"),
    ("gha-with-watch", ["--format", "github-actions", "--watch", "1m"],
     {"GITHUB_ACTIONS": "true", "GITHUB_ENV": "{tmp}/github_env"}, 64, "--watch does not apply"),
    ("gha-bad-name", ["--format", "github-actions"],
     {"GITHUB_ACTIONS": "true", "GITHUB_ENV": "{tmp}/github_env", "BAD-NAME": "file:{tmp}/secret"},
     65, "BAD-NAME: the name is not a valid identifier"),
    ("azp-outside-azure", ["--format", "azure-pipelines"], {"TF_BUILD": "yes"}, 78, "only runs in an Azure Pipelines job"),
    ("azp-bad-name", ["--format", "azure-pipelines"], {"TF_BUILD": "True", "A;B": "file:{tmp}/secret"},
     65, "A;B: the name is not a valid identifier"),
    ("format-unknown", ["--format", "gitlab"], {}, 64, "gitlab"),
]


@pytest.mark.parametrize("row", CI_ROWS, ids=[row[0] for row in CI_ROWS])
def test_bad_ci_export(row, run_shim, canaries, tmp_path):
    name, args, env, code, fragment = row
    canary = canaries.new(name)
    (tmp_path / "secret").write_text(canary)
    (tmp_path / "github_env").write_text("")
    environment = {"NEIGHBOUR_PASSWORD": f"file:{tmp_path}/secret"}
    environment.update({k: _expand_template(v, tmp_path, canary) for k, v in env.items()})
    result = run_shim(["render", *[_expand_template(a, tmp_path, canary) for a in args]], environment)
    assert result.returncode == code, result.stderr
    assert _expand_template(fragment, tmp_path, canary) in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1, result.stderr
    assert result.stdout == ""
    assert (tmp_path / "github_env").read_text() == ""


def test_dynamic_secret_import_is_refused(run_shim, canaries, probe, tmp_path):
    """A Vault dynamic secret (a lease) is 65 as an import: nothing run, no credential shown."""
    from tests.doubles.vault import VaultDouble

    with VaultDouble() as vault:
        vault.add_database_role("app")
        env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token, "HOME": str(tmp_path)}
        canaries.values.append(vault.root_token)
        result = run_shim(["exec", "--import", "vault:database/creds/app", "--", *probe.argv], env)
        issued = vault.issued_credentials("app")
    assert result.returncode == 65, result.stderr
    assert "shim: error: --import vault:database/creds/app: a dynamic secret" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1
    for credential in issued:
        assert credential.password not in result.stderr
    assert not probe.ran
