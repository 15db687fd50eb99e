"""`shim exec --user`: the real privilege drop, seen from the child (ids, HOME, /proc)."""

import os

import pytest


def test_drop_to_nobody(run_shim, probe, canaries, tmp_path):
    secret = tmp_path / "s"
    secret.write_text(canaries.new())
    result = run_shim(["exec", "--user", "nobody", "--", *probe.argv], {"S": f"file:{secret}"})
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert (record["uid"], record["euid"], record["gid"], record["egid"]) == (65534,) * 4
    assert record["groups"] == []  # nobody is in no /etc/group list; gid 65534 is its group
    assert record["env"]["HOME"] == "/nonexistent"  # nobody's home in Debian's passwd


def test_numeric_uid_without_passwd_entry(run_shim, probe):
    result = run_shim(["exec", "--user", "4321", "--", *probe.argv], {})
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert record["uid"] == 4321 and record["gid"] == 0 and record["groups"] == []
    assert record["env"]["HOME"] == "/"


def test_explicit_group(run_shim, probe):
    result = run_shim(["exec", "--user", "nobody:daemon", "--", *probe.argv], {})
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert record["uid"] == 65534 and record["gid"] == 1 and record["groups"] == []


def test_user_from_environment(run_shim, probe):
    result = run_shim(["exec", "--", *probe.argv], {"SHIM_USER": "65534:65534"})
    assert result.returncode == 0, result.stderr
    assert probe.read()["uid"] == 65534


@pytest.mark.parametrize("spec,message", [
    ("bogus", 'unknown user "bogus"'),
    ("0day", 'unknown user "0day"'),
    ("0:bogus", 'unknown group "bogus"'),
])
def test_unknown_user_or_group_is_78_and_nothing_runs(run_shim, probe, spec, message):
    result = run_shim(["exec", "--user", spec, "--", *probe.argv], {})
    assert result.returncode == 78
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not probe.ran


def test_require_non_root(run_shim, probe):
    refused = run_shim(["exec", "--require-non-root", "--user", "root", "--", *probe.argv], {})
    assert refused.returncode == 78 and not probe.ran
    implicit = run_shim(["exec", "--", *probe.argv], {"SHIM_REQUIRE_NON_ROOT": "1"})
    assert implicit.returncode == 78 and not probe.ran
    allowed = run_shim(["exec", "--require-non-root", "--user", "nobody", "--", *probe.argv], {})
    assert allowed.returncode == 0 and probe.read()["uid"] == 65534


def test_no_new_privs(run_shim, probe):
    result = run_shim(["exec", "--no-new-privs", "--user", "nobody", "--", *probe.argv], {})
    assert result.returncode == 0, result.stderr
    assert probe.read()["no_new_privs"] == "1"
    run_shim(["exec", "--user", "nobody", "--", *probe.argv], {})
    assert probe.read()["no_new_privs"] == "0"


# The venv's interpreter lives under /root, which nobody cannot enter: load
# everything as root, then become nobody, then run the CLI (as a container
# started with `docker run --user 65534` would).
AS_NOBODY = (
    "import os, sys, pkgutil, importlib, shim\n"
    "for m in pkgutil.walk_packages(shim.__path__, 'shim.'):\n"
    "    if m.name not in ('shim.__main__',) and not m.name.startswith(('shim.providers.vault', 'shim.providers.aws', 'shim.providers.azure')):\n"
    "        importlib.import_module(m.name)\n"
    "import dotenv.parser, concurrent.futures, json, ctypes, shlex, random, threading, tempfile, datetime\n"
    "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
    "from shim.commands.cli import main\n"
    "main(sys.argv[1:])\n"
)


def test_non_root_caller_asking_for_another_user_is_77(probe, shared_dir, canaries):
    import subprocess
    import sys
    from tests.conftest import BASE_ENV

    def as_nobody(*args):
        return subprocess.run([sys.executable, "-c", AS_NOBODY, *args], env=dict(BASE_ENV),
                              capture_output=True, text=True, cwd=str(shared_dir), timeout=30)

    result = as_nobody("exec", "--user", "daemon", "--", *probe.argv)
    assert result.returncode == 77, result.stderr
    assert "only root can change users" in result.stderr
    assert not probe.ran
    same = as_nobody("exec", "--user", "nobody", "--", *probe.argv)
    assert same.returncode == 0, same.stderr
    assert probe.read()["uid"] == 65534


def test_reserved_signals_ignored_and_user_drop(probe, shared_dir):
    """Signals 32/33 ignored by the parent and a drop to nobody: reset as root, before the drop."""
    import subprocess
    import sys
    from tests.conftest import BASE_ENV
    from tests.integration.test_exec import IGNORE_RESERVED

    code = IGNORE_RESERVED.replace("'exec', '--'", "'exec', '--user', 'nobody', '--'")
    result = subprocess.run([sys.executable, "-c", code, *probe.argv], env=dict(BASE_ENV),
                            capture_output=True, text=True, timeout=30, cwd=str(shared_dir))
    assert result.returncode == 0, result.stderr
    record = probe.read()
    assert record["uid"] == 65534 and record["sig_ign"] == "0000000000000000"
