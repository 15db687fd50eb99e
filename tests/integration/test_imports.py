"""A local-only run (NAME_FILE variables and placeholders from a secrets dir) imports nothing it
does not use: no provider SDK, no tenacity, no scanner, none of the stdlib modules that only
other paths need. Start-up time is mostly import time (docs/performance.md), so an import that
creeps into this path is a performance regression; these tests catch it without a clock.

Modules are compared with what the same interpreter imports for `python -c pass`, so the
checkout's editable install (whose .pth finder imports pathlib and urllib.parse at start-up)
does not hide or fake anything.

Lazy imports have one hazard, tested last: a module first imported after the drop to --user
cannot be loaded when the interpreter is not readable by that user.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import unavailable

# Remote stores and what they bring; the scanner; shim's modules for other paths.
NEVER_ON_THE_LOCAL_PATH = (
    "hvac", "requests", "urllib3", "certifi", "charset_normalizer", "idna",
    "boto3", "botocore", "s3transfer", "jmespath", "dateutil",
    "azure", "msal", "msal_extensions", "cryptography", "jwt", "google",
    "tenacity", "concurrent",
    "detect_secrets", "yaml",
    "shim.providers.vault", "shim.providers.aws", "shim.providers.azure", "shim.providers.gcp",
    "shim.providers.rest", "shim.providers.doppler", "shim.providers.infisical",
    "shim.providers.onepassword", "shim.providers.bitwarden", "shim.providers.bwscrypto",
    "shim.commands.scan", "shim.commands.devenv", "shim.commands.render", "shim.delivery.render", "shim.delivery.watch",
    "shim.delivery.asfiles", "shim.delivery.ciexport", "shim.pipeline.decoding", "shim.delivery.supervise", "shim.providers.mechanism",
    "shim.tools.compose", "shim.pipeline.helper", "shim.pipeline.imports", "select", "shim.delivery.repeated_failures", "shim.delivery.metrics",
    "shim.pipeline.probes", "shim.providers.sops.decrypt", "shim.providers.sops", "pyrage", "gnupg", "re2", "shim.pipeline.fallback",
    "shim.delivery.templates", "jinja2", "markupsafe", "shim.delivery.atomic", "shim.delivery.redact", "shim.delivery.redactor",
    "shim.delivery.redactengines", "termios", "tty", "ahocorasick_rs", "hyperscan",
    "ssl", "socket", "http", "email", "logging", "asyncio", "subprocess", "tempfile",
)
# Imported lazily by the code that needs them (each ~1-2 ms at every start otherwise):
# python-dotenv only with --env-file, ctypes only for --no-new-privs or a non-PID-1 --init,
# json only for JSON logs, an audit file or a #key selector, urllib.parse only for options in
# a reference or a secret inside a URL's user-info, shlex only for --on-change run:CMD,
# difflib only to name the nearest option of a mistyped `?option`.
LAZY = ("dotenv", "ctypes", "json", "urllib.parse", "shlex", "difflib",
        "datetime")   # datetime: a secret's dates only when something reads them
# click and shim's click side: `shim exec`'s usual command line is read by shim.commands.fastpath from
# the option table; click is imported only when the fast path hands over (--help, an error,
# another command).
CLICK_SIDE = ("click", "shim.commands.cli", "shim.commands.check", "gettext")
# typing: shim's records on this path are built by shim.tools.records, its annotations are strings.
NOT_ON_THE_FAST_PATH = CLICK_SIDE + ("typing",)
# Only with a rotation policy (--max-age, ?max_age=); `check` reports ages, so it loads it.
ROTATION = ("shim.pipeline.rotation",)
# The rule for a local-only `shim exec` (bench/startup.py reports the same list).
NOT_ON_THE_EXEC_PATH = NEVER_ON_THE_LOCAL_PATH + LAZY + NOT_ON_THE_FAST_PATH + ROTATION
FILE_VARIABLES, PLACEHOLDERS = 20, 5


def _matches(module: str, names) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


def _importtime_modules(stderr: str) -> set[str]:
    return {match.group(1) for match in re.finditer(r"^import time:.*\| +(\S+)$", stderr, re.M)}


@pytest.fixture(scope="module")
def interpreter_modules() -> set[str]:
    """What this interpreter imports for `python -c pass` (site, .pth files)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                            capture_output=True, text=True, check=True)
    return _importtime_modules(result.stderr)


@pytest.fixture
def local_env(tmp_path, canaries) -> tuple[dict, str]:
    """20 NAME_FILE variables and 5 placeholders, all served by one secrets dir."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    env = {}
    for n in range(FILE_VARIABLES):
        path = secrets_dir / f"file_{n:02d}"
        path.write_text(canaries.new(f"file{n}") + "\n")
        env[f"LOCAL_{n:02d}_FILE"] = str(path)
    for n in range(PLACEHOLDERS):
        (secrets_dir / f"KEY_{n}").write_text(canaries.new(f"placeholder{n}"))
        env[f"PLACEHOLDER_{n}"] = f"CHANGEME_KEY_{n}"
    env["DATABASE_URL"] = "postgresql://app:CHANGEME_KEY_0@db/app"
    return env, str(secrets_dir)


def _reserved_signals_at_default():
    """In the child before exec: signals 32/33 at SIG_DFL, as in a container.

    Some CI harnesses start us with them ignored; shim then (rightly) loads ctypes to reset
    them, which is not the path this test measures.
    """
    import ctypes
    import os

    class Action(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                    ("restorer", ctypes.c_void_p), ("mask", ctypes.c_uint64)]

    number = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)
    if number is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        for signum in (32, 33):
            libc.syscall(number, signum, ctypes.byref(Action(None, 0, None, 0)), None, 8)


def test_exec_of_files_and_placeholders_imports_only_what_it_uses(
        run_shim, local_env, interpreter_modules):
    env, secrets_dir = local_env
    result = run_shim(["exec", "--secrets-dir", secrets_dir, "--", "/bin/true"],
                      {**env, "PYTHONPROFILEIMPORTTIME": "1"},
                      preexec_fn=_reserved_signals_at_default)
    assert result.returncode == 0, result.stderr
    imported = _importtime_modules(result.stderr) - interpreter_modules
    # The measurement works. (Modules loaded through importlib.import_module, as providers are,
    # are not reported by -X importtime; the SDKs they import are.)
    assert {"shim.commands.fastpath", "shim.pipeline.plan", "shim.pipeline.resolve"} <= imported
    unwanted = sorted(m for m in imported if _matches(m, NOT_ON_THE_EXEC_PATH))
    assert unwanted == []


def test_a_line_the_fast_path_hands_over_runs_through_click(run_shim, local_env,
                                                            interpreter_modules):
    """The control: the same measurement sees click when the line is click's (-v is read by the
    fast path, --log-format=JSON is not: click refuses it with its own message and 64)."""
    env, secrets_dir = local_env
    result = run_shim(["exec", "-v", "--log-format=JSON", "--secrets-dir", secrets_dir, "--",
                       "/bin/true"], {**env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 64, result.stderr
    assert "'JSON' is not one of 'text', 'json'" in result.stderr
    assert {"click", "shim.commands.cli"} <= _importtime_modules(result.stderr) - interpreter_modules


def test_check_leaves_no_sdk_in_sys_modules(local_env, tmp_path, interpreter_modules, canaries):
    """In-process: run `shim check` (it returns, unlike exec) and look at sys.modules."""
    env, secrets_dir = local_env
    dump = tmp_path / "modules.json"
    code = (
        "import sys\n"
        "from shim.commands.cli import main\n"
        "try:\n"
        f"    main(['check', '--secrets-dir', {secrets_dir!r}])\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "modules = sorted(sys.modules)\n"
        "import json\n"
        f"open({str(dump)!r}, 'w').write(json.dumps({{'code': code, 'modules': modules}}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", **env},
                            capture_output=True, text=True, timeout=60)
    canaries.assert_absent(result.stdout, result.stderr, where="shim's output")
    assert result.returncode == 0, result.stderr
    report = json.loads(dump.read_text())
    assert report["code"] == 0
    modules = set(report["modules"]) - interpreter_modules
    assert "shim.providers.files" in modules
    # `check` prints its table through shim.commands.check, which uses json, and shows each
    # secret's age (datetime); the rest is as for exec.
    unwanted = sorted(m for m in modules
                      if _matches(m, NEVER_ON_THE_LOCAL_PATH
                                  + tuple(n for n in LAZY if n not in ("json", "datetime"))))
    assert unwanted == []


def test_a_remote_reference_does_load_its_sdk(run_shim, local_env, interpreter_modules):
    """The control: the same measurement sees hvac and tenacity once a Vault reference is there."""
    env, secrets_dir = local_env
    env = {**env, "VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "s.not-a-real-token",
           "REMOTE": "vault:secret/data/app#password", "PYTHONPROFILEIMPORTTIME": "1"}
    result = run_shim(["exec", "--deadline", "1s", "--secrets-dir", secrets_dir, "--", "/bin/true"],
                      env)
    assert result.returncode == 69, result.stderr      # nothing listens on port 9
    imported = _importtime_modules(result.stderr) - interpreter_modules
    assert {"hvac", "tenacity", "requests"} <= imported


@pytest.fixture(scope="module")
def python_nobody_cannot_read(tmp_path_factory):
    """This interpreter reached through a directory only root may enter, and the proof that
    nobody cannot read the lazily imported modules there: without it a module imported after
    the drop would load anyway, and the test below would pass whatever shim does."""
    import os
    from pathlib import Path

    hidden = tmp_path_factory.mktemp("root-only")
    os.chmod(hidden, 0o700)
    prefix = Path(sys.prefix)
    (hidden / "python").symlink_to(prefix)
    python = str(hidden / "python" / Path(sys.executable).relative_to(prefix))
    origins = subprocess.run(
        [python, "-c", "import sys; from importlib.util import find_spec; "
                       "print('\\n'.join(find_spec(m).origin for m in sys.argv[1:]))", *LAZY],
        capture_output=True, text=True, check=True).stdout.split()
    for origin in origins:
        if subprocess.run(["/bin/cat", origin], user=65534, group=65534, extra_groups=[],
                          capture_output=True).returncode == 0:
            unavailable(f"{origin} is readable by nobody, so a module imported after the drop "
                        "would load anyway; use a Python installed where nobody cannot read it")
    return python


@pytest.mark.parametrize("options", [
    ["--no-new-privs"],                                    # ctypes, for prctl after the drop
    ["--init", "--no-new-privs"],                          # ctypes in Supervisor.install()
    ["--audit-file", "{audit}"],                           # json for events after the drop
    ["--log-format", "json", "--init"],
], ids=["no-new-privs", "init", "audit-file", "json-log-init"])
def test_lazy_imports_happen_before_the_privilege_drop(run_shim, probe, tmp_path, options,
                                                       python_nobody_cannot_read):
    """Run by an interpreter nobody cannot read (the fixture proves it): a module first
    imported after the drop to --user fails there (exit 70), as it would in any image whose
    Python is not readable by the target user."""
    audit = tmp_path / "audit.jsonl"
    options = [option.format(audit=audit) for option in options]
    result = run_shim(["exec", "--user", "nobody", *options, "--", *probe.argv], {},
                      python=python_nobody_cannot_read)
    assert result.returncode == 0, result.stderr
    assert probe.read()["uid"] == 65534
