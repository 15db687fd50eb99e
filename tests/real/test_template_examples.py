"""docs/templates.md's example templates, rendered against the real OpenBao and read back.

Each ```jinja block of the page starts with `{# template: NAME #}`; the blocks are written out
as they are, rendered by one `shim render` with the secret `secret/web` holding every key they
name, and each output is checked by its format's reader (PyYAML, java.util.Properties) or
line by line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, unavailable
from tests.real.conftest import unique_path

DOC = ROOT / "docs" / "templates.md"
PEM_ARMOUR = "-----{} " + "PRIVATE" + " KEY-----"


def examples() -> dict[str, str]:
    found = {}
    for block in re.findall(r"```jinja\n(.*?)```", DOC.read_text(), re.S):
        name = re.match(r"\{# template: (\S+) #\}\n", block).group(1)
        found[name] = block
    return found


def java_properties(path: Path, key: str, workdir: Path) -> str:
    """The value java.util.Properties.load() reads for `key`, as UTF-8."""
    return java_properties_all(path, [key], workdir)[key]


def java_properties_all(path: Path, keys: list[str], workdir: Path) -> dict[str, str]:
    """What java.util.Properties.load() reads for each of `keys` (one JVM for all)."""
    java = shutil.which("java")
    if java is None:
        unavailable("java is missing: the properties filter is read back by java.util.Properties")
    source = workdir / "Read.java"
    source.write_text(
        "import java.io.*; import java.util.*;\n"
        "public class Read { public static void main(String[] a) throws Exception {\n"
        "  Properties p = new Properties(); try (InputStream in = new FileInputStream(a[0])) { p.load(in); }\n"
        "  for (int i = 1; i < a.length; i++) { System.out.write(p.getProperty(a[i]).getBytes(\"UTF-8\"));\n"
        "    System.out.write(0); } System.out.flush(); } }\n")
    result = subprocess.run([java, str(source), str(path), *keys], capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return dict(zip(keys, result.stdout.decode().split("\0")[:-1]))


def test_the_page_has_the_examples_the_issue_asks_for():
    assert set(examples()) == {"nginx-tls-key", "nginx-htpasswd", "nginx-conf",
                               "pgbouncer-userlist", "java-properties", "prometheus-remote-write"}


def test_every_example_renders_against_openbao(openbao, run_shim, canaries, tmp_path):
    mount = unique_path("web")
    openbao.mount_kv(mount, 2)
    values = {
        # A PEM-shaped canary (the armour lines assembled here, so no key-looking line is
        # committed): the template writes it `raw`, newlines included.
        "tls_key": PEM_ARMOUR.format("BEGIN") + "\n" + canaries.new("tls") + "\n"
                   + PEM_ARMOUR.format("END"),
        "admin_htpasswd": "$2y$05$" + canaries.new("bcrypt"),
        "upstream_key": canaries.new("upstream"),
        "pg_scram": "SCRAM-SHA-256$4096:" + canaries.new("scram"),
        "db_password": canaries.new("db") + ' p=a:ss#wö!rd\\ "end"\n2nd',
        "remote_user": "metrics",
        "remote_password": canaries.new("remote") + ": 'quoted' #x\n- y",
    }
    openbao.put_kv2("web", values, mount=mount)
    sources = tmp_path / "templates"
    sources.mkdir()
    out = Path(tempfile.mkdtemp(prefix="shim-examples-", dir="/dev/shm"))
    os.chmod(out, 0o755)
    try:
        arguments = []
        for name, block in examples().items():
            source = sources / f"{name}.tmpl"
            source.write_text(block.replace("secret/web", f"{mount}/web"))
            arguments += ["--template", f"{source}:{out / name}"]
        result = run_shim(["render", *arguments], openbao.vault_env())
        assert result.returncode == 0, result.stderr
        rendered = {path.name: path.read_text() for path in out.iterdir()}
        assert rendered["nginx-tls-key"].strip() == values["tls_key"]
        assert rendered["nginx-htpasswd"].strip() == "admin:" + values["admin_htpasswd"]
        assert f'proxy_set_header X-Api-Key "{values["upstream_key"]}";' in rendered["nginx-conf"]
        assert rendered["pgbouncer-userlist"].strip() == f'"app" "{values["pg_scram"]}"'
        assert java_properties(out / "java-properties", "spring.datasource.password",
                               tmp_path) == values["db_password"]
        config = yaml.safe_load(rendered["prometheus-remote-write"])
        assert config["remote_write"][0]["basic_auth"] == {
            "username": "metrics", "password": values["remote_password"]}
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=False)
