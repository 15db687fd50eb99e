"""`shim scan`: real git repositories in tmp_path, real detect-secrets, findings by line.

Every secret written into a scanned file is a canary made at test time (AWS
keys and private keys included), so run_shim fails a test whose output shows
one; this file itself holds nothing a scanner would flag.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import string
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import BASE_ENV, ROOT

GITIGNORE = ".secrets/\n**/dev.env\n"


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=shim-test", "-c", "user.email=shim-test@example.invalid",
                    "-c", "init.defaultBranch=main", *args],
                   cwd=repo, check=True, capture_output=True)


def write(directory, files: dict) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))


def make_repo(tmp_path, files: dict, *, gitignore: str | None = GITIGNORE, force=()):
    """A repository with `files` committed (`force`: committed although ignored)."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    if gitignore is not None:
        files = {".gitignore": gitignore, **files}
    write(repo, files)
    git(repo, "add", "-A")
    for name in force:
        git(repo, "add", "-f", name)
    git(repo, "commit", "-q", "-m", "files")
    return repo


def line_of(text: str, marker: str) -> int:
    lines = textwrap.dedent(text).splitlines()
    matches = [number for number, line in enumerate(lines, start=1) if marker in line]
    assert len(matches) == 1, f"{marker!r} should be on exactly one line"
    return matches[0]


def aws_key(canaries, alphabet=string.ascii_uppercase + "234567") -> str:
    """An access key id in the shape detect-secrets knows, random each run."""
    key = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    canaries.values.append(key)
    return key


def private_key(canaries) -> str:
    """A PEM block with random base64: the shape of an RSA key, no key at all."""
    body = base64.b64encode(secrets.token_bytes(600)).decode()
    canaries.values.extend(body[i:i + 64] for i in range(0, len(body), 64))
    marker = "RSA " + "PRIVATE KEY"
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {marker}-----", *lines, f"-----END {marker}-----"]) + "\n"


def findings(result) -> list[str]:
    return result.stdout.splitlines()


# --- compose and env files ------------------------------------------------------

def test_compose_literal_password_is_reported_at_its_line(tmp_path, run_shim, canaries):
    compose = f"""\
        services:
          db:
            image: postgres:16
            environment:
              POSTGRES_USER: app
              POSTGRES_PASSWORD: {canaries.new("pg")}
              POSTGRES_DB: app
    """
    repo = make_repo(tmp_path, {"docker-compose.yml": compose})
    result = run_shim(["scan"], cwd=repo)
    assert result.returncode == 1, result.stderr
    assert findings(result) == [f"docker-compose.yml:{line_of(compose, 'POSTGRES_PASSWORD')}: literal-secret-in-env"]
    assert result.stderr == "shim: scan: 1 finding in 2 files\n"


def test_placeholders_references_interpolations_and_paths_are_not_findings(tmp_path, run_shim):
    compose = """\
        x-common: &common
          REDIS_PASSWORD: CHANGEME_REDIS_PASSWORD
        services:
          api:
            image: my-api
            environment:
              <<: *common
              POSTGRES_PASSWORD_FILE: /run/secrets/pg_password
              GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana
              DATABASE_URL: postgresql://app:CHANGEME_PG_PASSWORD@db/app
              CACHE_URL: redis://:${REDIS_PASSWORD}@cache:6379/0
              OPENAI_API_KEY: vault:secret/data/api#openai_key
              JWT_SECRET: ref+file:///run/secrets/app.json#/jwt
              AWS_SECRET_ACCESS_KEY: arn:aws:secretsmanager:us-east-1:123456789012:secret:aws-creds
              AZURE_OPENAI_KEY: "@Microsoft.KeyVault(VaultName=kv;SecretName=openai)"
              SESSION_SECRET: ${SESSION_SECRET}
              API_TOKEN: $API_TOKEN
              ADMIN_PASSWORD: ${ADMIN_PASSWORD:?set ADMIN_PASSWORD first}
              MAIL_PASSWORD: "prefix-${ref+vault://secret/mail#/password}"
              ALLOW_EMPTY_PASSWORD: "yes"
              EMPTY_PASSWORD: ""
              UNSET_TOKEN:
              AWS_ACCESS_KEY_ID: example-key-id
              STRIPE_PUBLISHABLE_KEY: pk_example
              TOKEN_TTL: 3600
          worker:
            image: my-worker
            environment:
              - DB_PASSWORD=CHANGEME
              - REDIS_PASSWORD
              - SECRET_KEY=${SECRET_KEY}
    """
    env_file = """\
        # placeholders and references only
        POSTGRES_PASSWORD=CHANGEME_PG_PASSWORD
        OPENAI_API_KEY=ref+awssecrets://prod/openai#/key
        export GITHUB_TOKEN=${GITHUB_TOKEN}
        PGPASSFILE=/home/app/.pgpass
        SECRETS_DIR=/run/secrets
    """
    repo = make_repo(tmp_path, {"compose.yaml": compose, ".env.example": env_file, "deploy/app.env": env_file})
    result = run_shim(["scan"], cwd=repo)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr
    assert result.stderr == "shim: scan: no findings in 4 files\n"


def test_literals_in_list_form_env_files_defaults_and_urls(tmp_path, run_shim, canaries):
    compose = f"""\
        services:
          worker:
            environment:
              - LOG_LEVEL=info
              - RABBITMQ_PASS={canaries.new("rabbit")}
              - BROKER_URL=amqp://worker:{canaries.new("amqp")}@rabbit:5672/
          db:
            environment:
              POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:-{canaries.new("default")}}}
    """
    env_file = f"""\
        LOG_LEVEL=debug
        export OPENAI_API_KEY='{canaries.new("openai")}'
        DATABASE_URL=postgres://app:{canaries.new("url")}@db/app
        JWT_SECRET_FILE=/run/secrets/jwt
    """
    repo = make_repo(tmp_path, {"docker-compose.override.yml": compose, ".env": env_file})
    result = run_shim(["scan", "."], cwd=repo)
    assert result.returncode == 1
    expected = [f".env:{line_of(env_file, marker)}: literal-secret-in-env"
                for marker in ("OPENAI_API_KEY", "DATABASE_URL")]
    expected += [f"docker-compose.override.yml:{line_of(compose, marker)}: literal-secret-in-env"
                 for marker in ("RABBITMQ_PASS", "BROKER_URL", "POSTGRES_PASSWORD")]
    assert findings(result) == sorted(expected)


# --- what git tracks -------------------------------------------------------------

def test_tracked_dev_env_under_secrets_dir(tmp_path, run_shim, canaries):
    dev_env = f"POSTGRES_PASSWORD={canaries.new('dev')}\n"
    repo = make_repo(tmp_path, {".secrets/dev.env": dev_env, "config/dev.env": "LOG_LEVEL=debug\n"},
                     force=(".secrets/dev.env", "config/dev.env"))
    result = run_shim(["scan"], cwd=repo)
    assert result.returncode == 1
    assert findings(result) == [
        ".secrets/dev.env:0: tracked-dev-env",
        ".secrets/dev.env:0: tracked-secrets-dir",
        ".secrets/dev.env:1: literal-secret-in-env",
        "config/dev.env:0: tracked-dev-env",
    ]


def test_untracked_secrets_dir_and_dev_env_are_fine(tmp_path, run_shim, canaries):
    repo = make_repo(tmp_path, {"app.py": "print('hello')\n"})
    write(repo, {".secrets/dev.env": f"POSTGRES_PASSWORD={canaries.new('dev')}\n",
                 ".secrets/pg_password": canaries.new("pg")})
    for args in (["scan"], ["scan", "--untracked"]):
        result = run_shim(args, cwd=repo)
        assert (result.returncode, result.stdout) == (0, ""), result.stdout


def test_gitignore_without_secrets_dir(tmp_path, run_shim):
    repo = make_repo(tmp_path, {"app.py": "print('hello')\n"}, gitignore="*.pyc\n")
    result = run_shim(["scan"], cwd=repo)
    assert result.returncode == 1
    assert findings(result) == [".gitignore:0: gitignore-missing-secrets"]


def test_no_gitignore_or_only_a_local_exclude_is_a_finding(tmp_path, run_shim):
    repo = make_repo(tmp_path, {"app.py": "print('hello')\n"}, gitignore=None)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text(".secrets/\n")   # not shared with the team
    result = run_shim(["scan"], cwd=repo)
    assert findings(result) == [".gitignore:0: gitignore-missing-secrets"]


def test_gitignore_that_reincludes_a_secret_file_is_a_finding(tmp_path, run_shim):
    repo = make_repo(tmp_path, {"app.py": "x = 1\n"}, gitignore=".secrets/*\n!.secrets/dev.env\n")
    result = run_shim(["scan"], cwd=repo)
    assert findings(result) == [".gitignore:0: gitignore-missing-secrets"]


def test_gitignore_spellings_that_cover_the_directory(tmp_path, run_shim):
    for spelling in (".secrets", "/.secrets/", "**/.secrets/", ".secrets/*"):
        repo = make_repo(tmp_path / spelling.replace("/", "_").replace("*", "x"), {"app.py": "x = 1\n"},
                         gitignore=f"{spelling}\n")
        result = run_shim(["scan"], cwd=repo)
        assert (result.returncode, result.stdout) == (0, ""), spelling


def test_untracked_files_are_skipped_unless_asked_and_ignored_ones_always(tmp_path, run_shim, canaries):
    repo = make_repo(tmp_path, {"app.py": "print('hello')\n"}, gitignore=GITIGNORE + "build/\n")
    key = aws_key(canaries)
    write(repo, {"notes.py": f"KEY_ID = '{key}'\n", "build/out.py": f"KEY_ID = '{key}'\n"})
    result = run_shim(["scan"], cwd=repo)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout
    result = run_shim(["scan", "--untracked"], cwd=repo)
    assert result.returncode == 1
    assert findings(result) == ["notes.py:1: plaintext-secret:aws-access-key"]


def test_staged_but_uncommitted_file_counts_as_tracked(tmp_path, run_shim, canaries):
    repo = make_repo(tmp_path, {"app.py": "print('hello')\n"})
    write(repo, {".secrets/token": canaries.new("token")})
    git(repo, "add", "-f", ".secrets/token")
    result = run_shim(["scan", ".secrets/token"], cwd=repo)
    assert findings(result) == [".secrets/token:0: tracked-secrets-dir"]


# --- detect-secrets ----------------------------------------------------------------

def test_aws_key_and_private_key_in_source(tmp_path, run_shim, canaries):
    # An all-letter key looks like an upper-case name; a specific detector's hit still counts.
    source = f"""\
        import boto3

        ACCESS_KEY_ID = "{aws_key(canaries, string.ascii_uppercase)}"
        client = boto3.client("s3")
    """
    repo = make_repo(tmp_path, {"app/settings.py": source, "deploy/id_rsa": private_key(canaries)})
    result = run_shim(["scan"], cwd=repo)
    assert result.returncode == 1
    assert findings(result) == [
        f"app/settings.py:{line_of(source, 'ACCESS_KEY_ID')}: plaintext-secret:aws-access-key",
        "deploy/id_rsa:1: plaintext-secret:private-key",
    ]


def test_keyword_hits_on_stand_ins_and_non_secret_names_are_dropped(tmp_path, run_shim):
    config = """\
        database:
          password: CHANGEME_DB_PASSWORD
          token: "vault:secret/data/app#token"
          api_key: ref+awsssm://prod/api-key
          secret: "{{ .Values.secret }}"
          url: "postgres://app:PASSWORD@db/app"
    """
    source = """\
        client.get_secret_value(SecretId="prod-db")
        settings = {"password_file": "/run/secrets/db", "token_url": "https://auth.example/token"}
        ERRORS = {"ref+vault://secret/app#/password": "version 1 was destroyed"}
    """
    repo = make_repo(tmp_path, {"config.yaml": config, "client.py": source})
    result = run_shim(["scan"], cwd=repo)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout


def test_allowlist_pragma_silences_every_kind(tmp_path, run_shim, canaries):
    pragma = "pragma: allowlist secret"
    source = f'ACCESS_KEY_ID = "{aws_key(canaries)}"  # {pragma}\n'
    compose = f"""\
        services:
          db:
            environment:
              POSTGRES_PASSWORD: {canaries.new("pg")}  # {pragma}
              # pragma: allowlist nextline secret
              REDIS_PASSWORD: {canaries.new("redis")}
    """
    env_file = f"TEST_PASSWORD={canaries.new('test')}  # {pragma}\n"
    repo = make_repo(tmp_path, {"settings.py": source, "docker-compose.yml": compose, ".env.test": env_file})
    result = run_shim(["scan"], cwd=repo)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout


def test_binary_files_are_not_read_but_tracking_them_counts(tmp_path, run_shim, canaries):
    blob = b"\x89PNG\r\n\x1a\n\0\0" + f"ACCESS_KEY_ID = '{aws_key(canaries)}'\n".encode()
    repo = make_repo(tmp_path, {"data.bin": blob, ".secrets/cert.p12": blob}, force=(".secrets/cert.p12",))
    result = run_shim(["scan"], cwd=repo)
    assert findings(result) == [".secrets/cert.p12:0: tracked-secrets-dir"]


# --- output and exit codes ------------------------------------------------------------

def test_json_output(tmp_path, run_shim, canaries):
    password = canaries.new("pg")
    repo = make_repo(tmp_path, {"compose.yml": f"services:\n  db:\n    environment:\n      DB_PASSWORD: {password}\n"},
                     gitignore="")
    result = run_shim(["scan", "--json"], cwd=repo)
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"count": 2, "findings": [
        {"file": ".gitignore", "line": 0, "kind": "gitignore-missing-secrets"},
        {"file": "compose.yml", "line": 4, "kind": "literal-secret-in-env"},
    ]}
    assert result.stderr == ""


def test_clean_json_and_paths_outside_the_working_directory(tmp_path, run_shim):
    repo = make_repo(tmp_path, {"app.py": "print('hello')\n"})
    result = run_shim(["scan", "--json", str(repo)], cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"count": 0, "findings": []}
    elsewhere = make_repo(tmp_path / "other", {".secrets/x": "x\n"}, force=(".secrets/x",))
    result = run_shim(["scan", str(elsewhere / ".secrets")], cwd=repo)
    assert findings(result) == [f"{os.path.realpath(elsewhere)}/.secrets/x:0: tracked-secrets-dir"]


def test_only_the_named_paths_are_scanned(tmp_path, run_shim, canaries):
    # The pre-commit hook passes the staged file names.
    key = aws_key(canaries)
    repo = make_repo(tmp_path, {"a/one.py": f"K = '{key}'\n", "b/two.py": f"K = '{key}'\n", "c.py": "x = 1\n"})
    result = run_shim(["scan", "c.py", "b"], cwd=repo)
    assert findings(result) == ["b/two.py:1: plaintext-secret:aws-access-key"]


def test_outside_git_every_file_is_read_but_secret_and_tool_dirs(tmp_path, run_shim, canaries):
    key = aws_key(canaries)
    write(tmp_path, {"project/app.py": f"K = '{key}'\n",
                     "project/.secrets/dev.env": f"POSTGRES_PASSWORD={canaries.new('dev')}\n",
                     "project/node_modules/lib/x.js": f"var k = '{key}';\n",
                     "project/.venv/lib/y.py": f"K = '{key}'\n"})
    result = run_shim(["scan", "project"], cwd=tmp_path)
    assert result.returncode == 1
    assert findings(result) == ["project/app.py:1: plaintext-secret:aws-access-key"]
    result = run_shim(["scan", "project/.secrets/dev.env"], cwd=tmp_path)   # named: read
    assert findings(result) == ["project/.secrets/dev.env:1: literal-secret-in-env"]


def test_missing_path_is_66_and_bad_option_64(tmp_path, run_shim):
    result = run_shim(["scan", str(tmp_path / "nope")])
    assert result.returncode == 66
    assert result.stderr.startswith("shim: error: ") and result.stderr.count("\n") == 1
    assert run_shim(["scan", "--no-such-option"]).returncode == 64


def test_missing_detect_secrets_is_78(tmp_path, run_shim):
    (tmp_path / "blocker" / "detect_secrets").mkdir(parents=True)
    (tmp_path / "blocker" / "detect_secrets" / "__init__.py").write_text("raise ImportError('blocked')\n")
    result = run_shim(["scan", str(tmp_path)], {"PYTHONPATH": str(tmp_path / "blocker")})
    assert result.returncode == 78
    assert "install shim-secrets[scan]" in result.stderr


def test_importing_the_command_does_not_import_detect_secrets():
    code = ("import sys, shim.commands.scan; "
            "print(sorted(m for m in sys.modules if m.startswith(('detect_secrets', 'yaml'))))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(BASE_ENV)).stdout
    assert output == "[]\n"


def test_this_repository_is_clean(run_shim):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = run_shim(["scan"], cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout
