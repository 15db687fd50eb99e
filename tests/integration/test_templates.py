"""--template SRC:DEST: rendered before the program starts, escaped per format, all or nothing.

Every escaping filter is checked by the format's own reader (json, PyYAML, sh, urllib, an XML
parser) on values made to break it: quotes, newlines, `$`, backslashes, non-ASCII.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from tests.integration.test_render import tricky_env
from tests.real.test_template_examples import java_properties_all

FILTERS = ("tojson", "shquote", "urlencode", "b64encode", "yaml", "xml", "properties")


@pytest.fixture
def on_tmpfs():
    """A directory on tmpfs (/dev/shm), 0755 root's: where DEST files go."""
    directory = Path(tempfile.mkdtemp(prefix="shim-tmpl-", dir="/dev/shm"))
    os.chmod(directory, 0o755)
    yield directory
    subprocess.run(["rm", "-rf", str(directory)], check=False)


def read_back(text: str, name: str) -> str:
    """Each filter's output, read by the reader of its format."""
    if name == "tojson":
        return json.loads(text)
    if name == "yaml":
        return yaml.safe_load(f"key: {text}\n")["key"]
    if name == "shquote":
        return subprocess.run(["sh", "-c", f"printf '%s' {text}"], capture_output=True,
                              check=True, env={}).stdout.decode()
    if name == "urlencode":
        return unquote(text)
    if name == "b64encode":
        return base64.b64decode(text).decode()
    if name == "xml":
        return ElementTree.fromstring(f'<a v="{text}">{text}</a>').attrib["v"]
    raise AssertionError(name)


@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_round_trips_hostile_values_through_its_format_s_reader(
        run_shim, canaries, tmp_path, on_tmpfs, probe, name):
    values, env = tricky_env(tmp_path, canaries)
    # One line per variable, between markers that no escaped value can contain.
    template = tmp_path / "t.tmpl"
    template.write_text("".join(f"<<{variable}>>{{{{ env.{variable} | {name} }}}}<</{variable}>>\n"
                                for variable in values))
    destination = on_tmpfs / "out"
    result = run_shim(["exec", "--allow-root", "--template", f"{template}:{destination}", "--",
                       *probe.argv], env)
    assert result.returncode == 0, result.stderr
    text = destination.read_text()
    if name == "properties":   # one JVM reads every line: NAME=escaped value
        lines = [f"{variable}={text.split(f'<<{variable}>>', 1)[1].split(f'<</{variable}>>', 1)[0]}"
                 for variable in values]
        (tmp_path / "p.properties").write_text("\n".join(lines) + "\n")
        assert java_properties_all(tmp_path / "p.properties", list(values), tmp_path) == values
        return
    for variable, value in values.items():
        written = text.split(f"<<{variable}>>", 1)[1].split(f"<</{variable}>>", 1)[0]
        if name == "xml":
            # In an element's text every character survives; in an attribute a newline is
            # normalised to a space by every XML parser, escaped or not.
            assert (ElementTree.fromstring(f"<a>{written}</a>").text or "") == value, variable
            if "\n" in value:
                continue
        assert read_back(written, name) == value, (variable, name)


def test_secret_and_env_reach_the_file_owned_by_the_program_s_user(run_shim, canaries, tmp_path,
                                                                    on_tmpfs, probe):
    password = canaries.new("db")
    (tmp_path / "pw").write_text(password)
    template = tmp_path / "pgbouncer-userlist.tmpl"
    template.write_text('"app" {{ secret("ref+file://' + str(tmp_path / "pw") + '") | tojson }}\n'
                        "url={{ env.DATABASE_URL | raw }}\n")
    destination = on_tmpfs / "userlist.txt"
    env = {"DATABASE_URL": f"postgresql://app:{password}@db/app"}
    result = run_shim(["exec", "--user", "nobody", "--template", f"{template}:{destination}",
                       "--", *probe.argv], env)
    assert result.returncode == 0, result.stderr
    assert destination.read_text() == f'"app" "{password}"\nurl=postgresql://app:{password}@db/app\n'
    info = destination.stat()
    assert info.st_uid == pwd.getpwnam("nobody").pw_uid and info.st_mode & 0o777 == 0o400
    assert probe.read()["uid"] == pwd.getpwnam("nobody").pw_uid


@pytest.mark.parametrize("body, words", [
    ("{{ secret('ref+file:///nowhere/x') | raw }}\n", "does not exist"),
    ("{{ env.NOT_THERE | tojson }}\n", "has no attribute 'NOT_THERE'"),
    ("{{ ''.__class__.__mro__ }}\n", "unsafe"),
    ("{{ env.A.__class__ }}\n", "unsafe"),
    ("{{ secret('ref+file://SECRET') }}\n", "without an escaping filter"),
    ("ok\n{% for %}\n", "line 2"),
    ("{{ secret(name) | raw }}\n", "one literal reference"),
])
def test_a_failing_template_writes_nothing_and_runs_nothing(run_shim, canaries, tmp_path,
                                                            on_tmpfs, probe, body, words):
    secret = tmp_path / "s"
    secret.write_text(canaries.new("s"))
    good = tmp_path / "good.tmpl"
    good.write_text("{{ env.A | tojson }}\n")
    bad = tmp_path / "bad.tmpl"
    bad.write_text(body.replace("SECRET", str(secret)))
    result = run_shim(["exec", "--allow-root", "--template", f"{good}:{on_tmpfs / 'good'}",
                       "--template", f"{bad}:{on_tmpfs / 'bad'}", "--", *probe.argv],
                      {"A": canaries.new("a")})
    assert result.returncode in (65, 66), result.stderr
    assert words in result.stderr and str(bad) in result.stderr
    assert list(on_tmpfs.iterdir()) == [] and not probe.ran


def test_a_destination_off_tmpfs_or_in_a_shared_directory_is_refused(run_shim, tmp_path, probe,
                                                                     on_tmpfs):
    template = tmp_path / "t.tmpl"
    template.write_text("x\n")
    disk = Path(tempfile.mkdtemp(prefix="shim-tmpl-disk-", dir="/var/tmp"))
    try:
        result = run_shim(["exec", "--allow-root", "--template", f"{template}:{disk / 'out'}",
                           "--", *probe.argv])
        assert result.returncode == 78 and "tmpfs" in result.stderr and not probe.ran
        allowed = run_shim(["exec", "--allow-root", "--template-allow-disk", "--template",
                            f"{template}:{disk / 'out'}", "--", *probe.argv])
        assert allowed.returncode == 0 and (disk / "out").read_text() == "x\n"
    finally:
        subprocess.run(["rm", "-rf", str(disk)], check=False)
    os.chmod(on_tmpfs, 0o777)
    shared = run_shim(["exec", "--allow-root", "--template", f"{template}:{on_tmpfs / 'out'}",
                       "--", *probe.argv])
    assert shared.returncode == 78 and "writable by other users" in shared.stderr


def test_render_writes_templates_as_the_owner_and_check_lists_their_references(
        run_shim, canaries, tmp_path, on_tmpfs):
    secret = tmp_path / "key"
    secret.write_text(canaries.new("key"))
    template = tmp_path / "app.properties.tmpl"
    template.write_text('db.password={{ secret("ref+file://' + str(secret) + '") | raw }}\n')
    destination = on_tmpfs / "app.properties"
    rendered = run_shim(["render", "--owner", "nobody", "--template",
                         f"{template}:{destination}"])
    assert rendered.returncode == 0, rendered.stderr
    assert destination.read_text() == f"db.password={secret.read_text()}\n"
    assert destination.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    checked = run_shim(["check", "--json", "--template", f"{template}:{on_tmpfs / 'other'}"])
    assert checked.returncode == 0, checked.stderr
    rows = [row for row in json.loads(checked.stdout)["variables"] if row["source"] == "template"]
    assert rows == [{"variable": "app.properties.tmpl", "source": "template",
                     "references": [f"ref+file://{secret}"], "origin": str(template),
                     "version": None, "age_seconds": rows[0]["age_seconds"], "status": "ok"}]
    assert not (on_tmpfs / "other").exists()   # check writes nothing


def test_one_read_per_secret_for_the_environment_and_every_template(run_shim, canaries,
                                                                    tmp_path, on_tmpfs, probe):
    from tests.doubles.vault import VaultDouble

    with VaultDouble() as vault:
        vault.kv2_put("secret", "app", {"password": canaries.new("pw"), "user": "app"})
        token = vault.create_token(["secret/*"], ttl=3600)
        canaries.values.append(token)
        template = tmp_path / "t.tmpl"
        template.write_text('{{ secret("ref+vault://secret/app#/password") | tojson }}\n'
                            '{{ secret("vault:secret/data/app#user") | raw }}\n')
        env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
               "DB_PASSWORD": "ref+vault://secret/app#/password"}
        result = run_shim(["exec", "--allow-root", "--template",
                           f"{template}:{on_tmpfs / 'out'}", "--", *probe.argv], env)
        assert result.returncode == 0, result.stderr
        assert vault.count("/v1/secret/data/app") == 1
    password = probe.read()["env"]["DB_PASSWORD"]
    assert (on_tmpfs / "out").read_text() == f'"{password}"\napp\n'
