"""README.md's examples, run: the compose snippet's environment through `shim check`, whose
table must be the one the README prints (paths under /run/secrets are a temporary dir here)."""

from __future__ import annotations

import os
import re
import time

from tests.conftest import ROOT
from tests.doubles.vault import VaultDouble


def readme_block(after: str, fence: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(fence, text.index(after)) + len(fence)
    return text[start:text.index("```", start)]


def cells(table: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in table.strip().splitlines()]


def readme_check_flags() -> list[str]:
    """The flags of the README's `shim check` line, which copies the Dockerfile's ENTRYPOINT."""
    text = (ROOT / "README.md").read_text()
    line = re.search(r"^\s+api check (.+)$", text, re.M).group(1).split()
    entrypoint = re.search(r'ENTRYPOINT \["shim", "exec", (.*), "--"\]', text).group(1)
    assert line == re.findall(r'"([^"]+)"', entrypoint)   # copied as they are
    assert "VAULT_TOKEN=" not in text[:text.index("api check")].rsplit("```", 1)[-1]
    line[line.index("--user") + 1] = "nobody"
    return line


def test_readme_compose_example_and_its_check_table(run_shim, canaries, tmp_path):
    compose = readme_block("## …and in a compose file", "```yaml")
    environment = dict(re.findall(r"^      ([A-Z_]+): (\S+)", compose, re.M))
    assert set(environment) == {"POSTGRES_PASSWORD_FILE", "DATABASE_URL", "OPENAI_API_KEY", "JWT_SECRET"}
    mounted = re.findall(r"^  ([\w.]+):\n    file:", compose, re.M)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "pg_password").write_text(canaries.new("pg"))
    (secrets_dir / "app.json").write_text('{"jwt": "%s"}' % canaries.new("jwt"))
    assert sorted(mounted) == ["app.json", "pg_password"]  # what the references need is mounted
    three_days_ago = time.time() - 3 * 86400 - 60
    for name in mounted:
        os.utime(secrets_dir / name, (three_days_ago, three_days_ago))
    env = {name: value.replace("/run/secrets", str(secrets_dir)) for name, value in environment.items()}
    with VaultDouble() as vault:
        for _ in range(4):
            vault.kv2_put("secret", "api", {"openai_key": canaries.new("openai")})
        canaries.values.append(vault.root_token)
        env.update(VAULT_ADDR=vault.url, VAULT_TOKEN=vault.root_token, HOME=str(tmp_path))
        # The README's own `check` line: the ENTRYPOINT's flags (its `app` user is `nobody`
        # here), the token given at run time.
        flags = readme_check_flags()
        result = run_shim(["check", "--secrets-dir", str(secrets_dir), *flags], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("shim: warning: check ignores --no-new-privs: only a running "
                             "program is affected (exec)\n")
    shown = cells(result.stdout.replace(str(secrets_dir), "/run/secrets"))
    documented = cells(readme_block("api check --user app", "```"))
    vault_row = [row[0] for row in documented].index("OPENAI_API_KEY")
    shown[vault_row][-1] = documented[vault_row][-1]  # the double's secret is seconds old
    assert shown == documented


def test_scan_md_example(run_shim, tmp_path):
    """docs/scan.md's `shim scan` output, from a repository with exactly those three files."""
    import subprocess

    text = (ROOT / "docs" / "scan.md").read_text()
    start = text.index("$ shim scan\n") + len("$ shim scan\n")
    documented = text[start:text.index("```", start)].strip().splitlines()
    (tmp_path / ".secrets").mkdir()
    (tmp_path / ".secrets" / "dev.env").write_text("A=b\n")
    (tmp_path / "deploy").mkdir()
    # An AWS access key id of the documented shape, made here so this file holds none.
    key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    (tmp_path / "deploy" / "settings.py").write_text("x = 1\n" * 11 + f'AWS_KEY = "{key}"\n')
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  app:\n    image: x\n    environment:\n      A: b\n      B: c\n      C: d\n"
        "      E: f\n      DB_PASSWORD: " + "hunter2" * 2 + "\n")
    for command in (["init", "-q"], ["add", "-f", "."],
                    ["-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=tmp_path, check=True, capture_output=True)
    result = run_shim(["scan"], {"HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() + result.stderr.splitlines() == documented
