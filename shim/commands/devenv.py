"""`shim run` and `shim dev-init`: the same pipeline, on a developer's laptop.

`dev-init` writes `.secrets/dev.env`: a strong random value for every
CHANGEME placeholder the compose files and `.env*` examples use, never
replacing one that is there, and makes `.gitignore` cover it.

`run` is `exec` without the privilege drop and with that file loaded first.
Two guards sit around it. A dev env file that git tracks is refused before
anything is read (its values are on their way into history). And when CMD is
`docker compose up` (or create, run, watch), compose's own effective
configuration, `docker compose config`, computed with the resolved
environment, must hold no placeholder any more: otherwise containers would
start with `CHANGEME_...` as their password, which is exactly what shim is
there to prevent. Only names are ever printed; the configuration, which holds
the values, is read from a pipe and dropped.

Longer than our other modules on purpose: `run`'s guards and `dev-init` share the
dev env file's path, its git checks and the placeholder rules, and each guard is
the reason for the other (what dev-init writes is what run refuses to see tracked).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
from typing import NamedTuple

import click

from shim.delivery import privileges
from shim.commands.cli import command_options
from shim.tools.compose import COMPOSE_FILE, text_lines
from shim.tools.errors import CommandNotExecutable, CommandNotFound, ConfigError, UsageError
from shim.delivery.launch import execve_program
from shim.pipeline.options import parse_options
from shim.commands.execute import run_redacted
from shim.pipeline.run import Pipeline, secret_values
from shim.syntax.placeholders import PLACEHOLDER, find_placeholders, secrets_dir_candidates
from shim.delivery.atomic import write_atomically
from shim.tools.safe_read import read_capped
from shim.tools.deadline import Deadline

DEV_ENV = os.path.join(".secrets", "dev.env")
# dev-init --encrypt: the same values as a sops dotenv file, encrypted to the team's age keys.
DEV_ENC_ENV = os.path.join(".secrets", "dev.enc.env")
GITIGNORE_LINES = (".secrets/", "**/dev.env")
# Patterns that already cover the same paths (a pattern without a slash matches at any depth).
_GITIGNORE_EQUIVALENTS = {
    ".secrets/": {".secrets/", ".secrets", "/.secrets/", "/.secrets", "**/.secrets/", "**/.secrets"},
    "**/dev.env": {"**/dev.env", "dev.env"},
}
_MAX_TEXT_BYTES = 1024 * 1024  # compose files, .env examples, dev.env, .gitignore
_VALUE_BYTES = 32   # token_urlsafe(32): 256 bits, 43 characters of [A-Za-z0-9_-], safe in URLs and dotenv


# --- shim run ------------------------------------------------------------------

@click.command("run", context_settings={"allow_interspersed_args": False})
@command_options("run")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(command, **raw):
    """Local development: run CMD with .secrets/dev.env and resolved secrets.

    Loads .secrets/dev.env first (any --env-file wins over it), refuses a dev env file
    git tracks, resolves as exec does, checks `docker compose up` for placeholders
    left in compose's configuration, then execve's CMD. Never drops privileges.
    """
    options = parse_options("run", raw)
    run = Pipeline(options.replace(env_files=_with_dev_env(options.env_files)))
    _guard_dev_env_files(run.log, run.settings.env_files)
    privileges.target_identity(run.options, run.log)   # refuses a setuid install, and uid 0 under --require-non-root
    resolved = run.resolve()
    if resolved.errors:
        run.fail(resolved.errors)
    env = run.child_environment(resolved)
    call = compose_call(command)
    if call is not None and call.subcommand in COMPOSE_STARTS:
        findings = check_compose(call, env)
        if findings and not options.allow_placeholders:
            run.fail([ConfigError(finding.message) for finding in findings])
        for finding in findings:
            run.log.warning(f"{finding.message} (--allow-placeholders)", event="placeholder.kept")
    if options.no_new_privs:
        privileges.set_no_new_privs()
    run.log.event("exec", "debug", command=command[0])
    if not options.no_redact:   # the default here: a laptop's terminal is where values show
        sys.exit(run_redacted(run, command, env, secret_values(resolved)))
    execve_program(command, env)


def _with_dev_env(explicit: tuple[str, ...]) -> tuple[str, ...]:
    """`.secrets/dev.enc.env`, then `.secrets/dev.env` of the current directory first, so a
    local dev.env wins over the team's encrypted file and any --env-file given wins over both."""
    for dev_file in (DEV_ENV, DEV_ENC_ENV):
        if not os.path.isfile(dev_file):
            continue
        if any(os.path.realpath(path) == os.path.realpath(dev_file) for path in explicit):
            continue
        explicit = (dev_file,) + explicit
    return explicit


def _is_dev_env_file(path: str) -> bool:
    """What dev-init's .gitignore lines cover: anything under .secrets/, any dev.env."""
    parts = os.path.abspath(path).split(os.sep)
    if parts[-1].endswith(".enc.env"):
        return False    # sops-encrypted (dev-init --encrypt): made to be committed
    return parts[-1] == "dev.env" or ".secrets" in parts[:-1]


def _guard_dev_env_files(log, env_files) -> None:
    """Refuse a dev env file that git tracks; warn about one git would pick up.

    The link and the file it points at are both checked: `.secrets/dev.env -> ../app.env`
    must not smuggle a tracked file in.
    """
    for path in env_files:
        real = os.path.realpath(path)
        if not (_is_dev_env_file(path) or _is_dev_env_file(real)) or not os.path.isfile(path):
            continue
        if git_tracks(path) or git_tracks(real):
            raise tracked_error(path if git_tracks(path) else f"{path} (really {real})")
        if git_ignores(path) is False:
            log.warning(f"{path} is not ignored by git: add {' and '.join(GITIGNORE_LINES)} to "
                        f".gitignore (shim dev-init does)", event="devenv.not_ignored")


def tracked_error(path: str) -> ConfigError:
    return ConfigError(f"{path} is tracked by git",
                       hint=f"remove it from the index with git rm --cached {path}, add .secrets/ "
                            f"to .gitignore, and replace every value it held if it was ever pushed")


def _git(path: str, *args: str) -> int | None:
    """Exit status of a read-only git command about PATH, or None without git."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        return subprocess.run(["git", "-C", directory, *args, "--", name], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    except OSError:
        return None


def git_tracks(path: str) -> bool:
    # 0 tracked (committed or staged), 1 not, 128 not in a work tree (or git refuses it).
    return _git(path, "ls-files", "--error-unmatch") == 0


def git_ignores(path: str) -> bool | None:
    """True or False inside a git work tree; None outside one (or without git)."""
    status = _git(path, "check-ignore", "-q")
    return {0: True, 1: False}.get(status)


# --- docker compose ------------------------------------------------------------

# The subcommands that create containers from the configuration. start and
# restart reuse containers as they were created (by an up/create that was checked).
COMPOSE_STARTS = frozenset({"up", "create", "run", "watch"})

_DOCKER_OPTIONS_WITH_VALUE = frozenset({
    "--config", "-c", "--context", "-H", "--host", "-l", "--log-level",
    "--tlscacert", "--tlscert", "--tlskey"})
_COMPOSE_OPTIONS_WITH_VALUE = frozenset({
    "-f", "--file", "-p", "--project-name", "--project-directory", "--profile", "--env-file",
    "--ansi", "--parallel", "--progress"})


class ComposeCall(NamedTuple):
    base: tuple[str, ...]          # the program and its global options, up to the subcommand
    subcommand: str | None


class PlaceholderFinding(NamedTuple):
    service: str
    variable: str
    token: str
    message: str


def compose_call(argv) -> ComposeCall | None:
    """`docker [opts] compose [opts] SUB ...` or `docker-compose [opts] SUB ...`, else None."""
    program = os.path.basename(argv[0])
    if program == "docker-compose":
        index = 1
    elif program == "docker":
        index = _skip_options(argv, 1, _DOCKER_OPTIONS_WITH_VALUE)
        if index >= len(argv) or argv[index] != "compose":
            return None
        index += 1
    else:
        return None
    end = _skip_options(argv, index, _COMPOSE_OPTIONS_WITH_VALUE)
    return ComposeCall(tuple(argv[:end]), argv[end] if end < len(argv) else None)


def _skip_options(argv, index: int, with_value) -> int:
    while index < len(argv):
        token = argv[index]
        if token == "--" or token == "-" or not token.startswith("-"):
            break
        index += 1
        if "=" not in token and token in with_value:
            index += 1
    return index


def check_compose(call: ComposeCall, env: dict) -> list[PlaceholderFinding]:
    """Placeholders left in compose's effective configuration, sorted by service and variable."""
    config = _compose_config(call, env)
    findings = []
    for service_name, service in (config.get("services") or {}).items():
        findings.extend(_service_findings(service_name, service or {}, env))
    return sorted(findings)


def _compose_config(call: ComposeCall, env: dict) -> dict:
    argv = [*call.base, "config", "--format", "json"]
    try:
        # stdout holds every resolved value: it stays in this process. stderr is
        # compose's own message, the one `up` would have printed itself.
        result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    except FileNotFoundError:
        raise CommandNotFound(f"command {argv[0]!r} not found in PATH",
                              hint="install Docker Compose or give its absolute path") from None
    except PermissionError:
        raise CommandNotExecutable(f"cannot execute {argv[0]}",
                                   hint="check that it is a program and executable") from None
    if result.returncode != 0:
        name = "docker-compose" if os.path.basename(argv[0]) == "docker-compose" else "docker compose"
        raise ConfigError(f"{name} config failed (exit {result.returncode}), so "
                          f"the configuration was not checked and nothing was started",
                          hint="compose's own message is above")
    try:
        config = json.loads(result.stdout)
    except ValueError:
        raise ConfigError("docker compose config did not print JSON, so the configuration was not "
                          "checked and nothing was started",
                          hint="use Docker Compose v2 (docker compose version)") from None
    return config if isinstance(config, dict) else {}


def _service_findings(service_name: str, service: dict, env: dict) -> list[PlaceholderFinding]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):   # compose prints a mapping; be lenient anyway
        environment = dict(item.partition("=")[::2] for item in environment)
    if environment.get("SHIM_PLACEHOLDER_SOURCE"):
        return []   # the container's shim looks every placeholder up there at start
    mounted = _mounted_secret_paths(service)
    secrets_dirs = [d for d in (environment.get("SHIM_SECRETS_DIR") or "/run/secrets").split(":") if d]
    findings = []
    for variable, value in environment.items():
        if not isinstance(value, str):
            continue
        for placeholder in find_placeholders(variable, value):
            whole = placeholder.token == value
            if _mounted_for(mounted, secrets_dirs, variable, placeholder.key, whole):
                continue
            findings.append(PlaceholderFinding(service_name, variable, placeholder.token,
                                    _finding_message(service_name, variable, placeholder, env)))
    return findings


def _mounted_secret_paths(service: dict) -> set[str]:
    paths = set()
    for secret in service.get("secrets") or []:
        if isinstance(secret, str):
            secret = {"source": secret}
        target = secret.get("target") or secret.get("source") or ""
        paths.add(os.path.normpath(os.path.join("/run/secrets", target)))
    return paths


def _mounted_for(mounted: set[str], secrets_dirs, variable: str, key: str, whole: bool) -> bool:
    """Would the container's shim find this placeholder in a secret the service mounts?"""

    return any(os.path.normpath(path) in mounted
               for path in secrets_dir_candidates(secrets_dirs, variable, key, whole))


def _finding_message(service: str, variable: str, placeholder, env: dict) -> str:
    text = f"service {service}: variable {variable} still holds a placeholder {placeholder.token}"
    key = placeholder.key
    if env.get(key):
        return (text + f"; {key} is set but the compose file does not use it: write "
                       f"${{{key}:-{placeholder.token}}} where {placeholder.token} stands")
    return text + f"; add {key} to {DEV_ENV} (shim dev-init) and write ${{{key}:-{placeholder.token}}}"


# --- shim dev-init -------------------------------------------------------------

_ENV_EXAMPLE = re.compile(r"[^/]*\.env\.(example|sample|template|dist)")
# ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+alt}, ${NAME+alt}
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?[-?+]([^}]*)\}")


class FoundKey(NamedTuple):
    key: str
    path: str
    line: int


@click.command("dev-init")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False, exists=True),
              help="Project directory: where the compose files and .env examples are.")
@click.option("--encrypt", "recipients", metavar="AGE1...[,AGE1...]", default=None,
              help="Write .secrets/dev.enc.env instead: sops' dotenv format, encrypted to these "
                   "age recipients, for the team to commit.")
def dev_init_command(directory, recipients):
    """Create .secrets/dev.env with values for every placeholder.

    A strong random value for every CHANGEME placeholder in the compose files and .env
    examples, never replacing an existing one; .gitignore made to cover .secrets/.
    With --encrypt, .secrets/dev.enc.env: the same, sops-encrypted to age keys.
    """

    if recipients is not None:
        return _dev_init_encrypted(directory, recipients)
    sources = _placeholder_sources(directory)
    dev_env = os.path.join(directory, DEV_ENV)
    shown = os.path.normpath(dev_env)
    secrets_dir = os.path.dirname(dev_env)
    for path in (secrets_dir, dev_env, os.path.join(directory, ".gitignore")):
        _refuse_symlink(path)
    if os.path.isfile(dev_env) and git_tracks(dev_env):
        raise tracked_error(shown)
    found, unnamed = _found_keys(sources)
    for path, line in unnamed:
        _warn(f"{_display(path)}:{line}: a bare CHANGEME with no variable name to use as its key; "
              f"write CHANGEME_<KEY>")
    if not os.path.isdir(secrets_dir):
        os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
        os.chmod(secrets_dir, 0o700)
    elif os.stat(secrets_dir).st_mode & 0o077:
        _warn(f"{os.path.normpath(secrets_dir)} is open to other users; chmod 700 it")
    existing = _read_project_text(dev_env)
    content, added, kept = _fill_dev_env(existing, found)
    if existing is None or content != existing:
        write_atomically(os.path.realpath(dev_env), content.encode(), mode=0o600)
    elif os.stat(dev_env).st_mode & 0o077:
        os.chmod(os.path.realpath(dev_env), 0o600)
    if sources:
        click.echo("scanned " + ", ".join(_display(path) for path in sources))
    else:
        _warn(f"no compose files or .env examples in {os.path.normpath(directory)}")
    summary = f"added {len(added)} key{'' if len(added) == 1 else 's'} to {shown}"
    if added:
        summary += ": " + ", ".join(added)
    click.echo(summary + f"; kept {len(kept)}")
    _cover_and_report(directory)
    if git_ignores(dev_env) is False:
        _warn(f"{shown} is still not ignored by git (a ! rule in a .gitignore?); check with "
              f"git check-ignore -v {shown}")


def _refuse_symlink(path: str) -> None:
    """dev-init writes only where it was pointed: a link could aim it at a tracked file
    (generated passwords committed) or outside the project."""
    if os.path.islink(path):
        raise ConfigError(f"{_display(path)} is a symbolic link; dev-init writes only a regular "
                          f"file there", hint=f"remove the link (rm {_display(path)}) and run "
                                              f"shim dev-init again")


def _dev_init_encrypted(directory: str, recipients: str) -> None:
    """dev-init --encrypt: values for every placeholder key, sops-encrypted to age recipients.

    An existing file is decrypted with the age key this machine has (SOPS_AGE_KEY_FILE,
    ...) and its values kept; the file is re-encrypted to the recipients given.
    """
    from shim.providers.sops.decrypt import decrypt_file  # lazy: only with a sops file
    try:
        import pyrage  # lazy: the sops extra, only for an age key  # noqa: F401 - the age encryption
        from shim.providers.sops.writer import encrypt_dotenv  # lazy: only for dev-init --encrypt
    except ImportError as error:
        raise ConfigError("dev-init --encrypt needs shim-secrets[sops]",
                          hint=f"install shim-secrets[sops] ({error.name} cannot be imported)") from None

    wanted = [r.strip() for r in recipients.split(",") if r.strip()]
    if not wanted or not all(r.startswith("age1") for r in wanted):
        raise UsageError("--encrypt takes age recipients (age1...), separated by commas",
                         hint="age-keygen -y keys.txt prints yours")
    sources = _placeholder_sources(directory)
    found, _unnamed = _found_keys(sources)
    path = os.path.join(directory, DEV_ENC_ENV)
    shown = os.path.normpath(path)
    for link_candidate in (os.path.dirname(path), path, os.path.join(directory, ".gitignore")):
        _refuse_symlink(link_candidate)
    values: dict = {}
    if os.path.lexists(path):
        values = dict(decrypt_file(path, os.environ, Deadline(30), "dotenv").value)
    added = [f.key for f in found if f.key not in values]
    for key in dict.fromkeys(added):
        values[key] = secrets.token_urlsafe(_VALUE_BYTES)
    try:
        content = encrypt_dotenv(list(values.items()), wanted)
    except ValueError:
        raise UsageError("--encrypt: a recipient is not a valid age public key",
                         hint="age-keygen -y keys.txt prints yours") from None
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_atomically(os.path.realpath(path), content, mode=0o644)
    added = list(dict.fromkeys(added))
    click.echo(f"added {len(added)} key{'' if len(added) == 1 else 's'} to {shown}"
               + (": " + ", ".join(added) if added else "") + f"; kept {len(values) - len(added)}")
    click.echo(f"encrypted to {len(wanted)} age key{'' if len(wanted) == 1 else 's'}; commit it "
               f"with git add -f {shown} (shim run reads it with your age key)")
    # .secrets/ stays ignored: a local dev.env beside the encrypted file must never be committed.
    _cover_and_report(directory)


def _warn(message: str) -> None:
    click.echo(f"shim: warning: {message}", err=True)


def _display(path: str) -> str:
    return os.path.normpath(path)


def _placeholder_sources(directory: str) -> list[str]:
    """Compose files first, then .env examples, each sorted by name."""
    names = sorted(os.listdir(directory))
    compose = [n for n in names if COMPOSE_FILE.fullmatch(n)]
    examples = [n for n in names if _ENV_EXAMPLE.fullmatch(n)]
    return [os.path.join(directory, n) for n in compose + examples
            if os.path.isfile(os.path.join(directory, n))]


def _found_keys(sources) -> tuple[list[FoundKey], list[tuple[str, int]]]:
    """Every placeholder key in first-seen order, and bare CHANGEMEs that have no name."""
    found: dict[str, FoundKey] = {}
    unnamed = []
    for path in sources:
        text = _read_project_text(path) or ""
        lines = text_lines(text) if COMPOSE_FILE.fullmatch(os.path.basename(path)) \
            else _dotenv_lines(text)
        for number, name, value in lines:
            for key in _placeholder_keys(name, value):
                if key is None:
                    unnamed.append((path, number))
                else:
                    found.setdefault(key, FoundKey(key, path, number))
    return list(found.values()), unnamed


def _dotenv_lines(text: str):
    from dotenv.parser import parse_stream  # lazy: python-dotenv only where a dotenv file is read

    for binding in parse_stream(io.StringIO(text)):
        if binding.key is not None and binding.value:
            yield binding.original.line, binding.key, binding.value


def _placeholder_keys(name: str | None, value: str):
    """Keys of the placeholders in one value: CHANGEME_<KEY> → KEY; a bare CHANGEME → the
    variable compose interpolates around it (${NAME:-CHANGEME}), else the one the line sets."""

    spans = [(m.start(2), m.end(2), m.group(1)) for m in _INTERPOLATION.finditer(value)]
    for match in PLACEHOLDER.finditer(value):
        if match.group(1):
            yield match.group(1)
            continue
        around = [variable for start, end, variable in spans if start <= match.start() < end]
        yield around[0] if around else name


def _fill_dev_env(existing: str | None, found: list[FoundKey]) -> tuple[str, list[str], list[str]]:
    """The new dev.env text: existing lines untouched, a value for each key without one.

    A line that sets a key to nothing, or to nothing but its own placeholder
    (`KEY=`, `KEY=CHANGEME`, `KEY=CHANGEME_KEY`, as in a copied .env.example),
    holds no value yet: it is filled where it stands (shim's env files treat
    such entries as gaps too). Every other existing line is kept byte for byte.
    """
    from dotenv.parser import parse_stream  # lazy: python-dotenv only where a dotenv file is read

    text = existing if existing is not None else (
        "# Local development secrets, written by shim dev-init. Never commit this file.\n")
    bindings = list(parse_stream(io.StringIO(text)))
    values = {b.key: b.value for b in bindings if b.key is not None and b.value is not None}
    # The file's own placeholders need keys too (DATABASE_URL=...CHANGEME_PG_PASSWORD...).
    own = [FoundKey(key, DEV_ENV, b.original.line) for b in bindings
           if b.key is not None and b.value for key in _placeholder_keys(b.key, b.value) if key]
    wanted = list(dict.fromkeys(f.key for f in found + own))

    def unfilled(key):
        value = values.get(key)
        if not value:
            return True
        placeholders = find_placeholders(key, value)
        return len(placeholders) == 1 and placeholders[0].token == value and placeholders[0].key == key

    generated = {key: secrets.token_urlsafe(_VALUE_BYTES) for key in wanted if unfilled(key)}
    kept = [key for key in wanted if key not in generated]
    pieces = []
    for binding in bindings:
        original = binding.original.string
        if binding.key in generated and binding.key in values:
            stripped = original.lstrip()
            prefix = original[: len(original) - len(stripped)]
            export = "export " if stripped.startswith("export ") else ""
            newline = "\n" if original.endswith("\n") else ""
            original = f"{prefix}{export}{binding.key}={generated[binding.key]}{newline}"
        pieces.append(original)
    content = "".join(pieces)
    appended = [key for key in generated if key not in values]
    if appended and content and not content.endswith("\n"):
        content += "\n"
    content += "".join(f"{key}={generated[key]}\n" for key in appended)
    return content, list(generated), kept


def _read_project_text(path: str) -> str | None:
    if not os.path.lexists(path):
        return None
    content = read_capped(path, cap=_MAX_TEXT_BYTES, what="file", size_text="1 MiB")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{_display(path)} is not UTF-8 text", hint="save it as UTF-8") from None


def _cover_and_report(directory: str) -> None:
    added = _cover_in_gitignore(directory)
    if added:
        click.echo(f"added {' and '.join(added)} to "
                   f"{os.path.normpath(os.path.join(directory, '.gitignore'))}")


def _cover_in_gitignore(directory: str) -> list[str]:
    """Append the lines .gitignore lacks; returns them (none when it already covers both)."""

    path = os.path.join(directory, ".gitignore")
    text = _read_project_text(path) or ""
    present = {line.strip() for line in text.splitlines()}
    missing = [line for line in GITIGNORE_LINES if not present & _GITIGNORE_EQUIVALENTS[line]]
    if not missing:
        return []
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(line + "\n" for line in missing)
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    write_atomically(os.path.realpath(path), text.encode(), mode=mode)
    return missing
