"""shim scan: what should not be committed, reported as `file:line: kind`.

Which files: inside a git work tree, the files git tracks under each PATH
(`--untracked` adds untracked files that are not ignored); outside git, every
file under PATH except in .git, .secrets, .venv, venv, node_modules and
__pycache__ directories. A file named explicitly is always read. Symlinks and
binary files are skipped.

Kinds (stable names; docs/scan.md has the table):

    plaintext-secret:<type>     detect-secrets found something (type slugged,
                                e.g. aws-access-key, private-key, secret-keyword)
    literal-secret-in-env       a compose `environment:` entry or an env file
                                variable with a secret-looking name and a literal
                                value, or a URL with a literal password in it
    tracked-secrets-dir         git tracks a file under a .secrets/ directory
    tracked-dev-env             git tracks a file named dev.env
    sops-unencrypted-value      a sops file (it has sops metadata) holds a value its
                                rules say is encrypted in plain text (a sops file is
                                never a finding for being tracked; the values it leaves
                                in clear are scanned like any file, its ciphertexts and
                                metadata are not)
    gitignore-missing-secrets   the repository's top-level .gitignore does not
                                ignore .secrets/ (reported as .gitignore:0)

Line 0 means the file as a whole. Placeholders (CHANGEME...), references,
`${VAR}` interpolations, templates and upper-case names standing in for a
value are not literal secrets, and detect-secrets' generic hits on them are
dropped; a line carrying detect-secrets' `pragma: allowlist secret` comment is
skipped by every check. Nothing here ever prints a value or a line's content:
a finding is a path, a number and a kind.

detect-secrets (the `scan` extra) and PyYAML are imported only when the
command runs, so importing this module costs nothing at shim's start-up.

Longer than our other modules on purpose: most of it is the judgement of what is a
secret (names, stand-ins, literal values), one set of rules that every kind of file
and detect-secrets' own hits are held to, which reads best in one place.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from typing import NamedTuple

import click

from shim.tools.compose import COMPOSE_LIKE_FILE, environment_entries
from shim.tools.errors import ConfigError, NotFound, PermissionDenied
from shim.syntax.placeholders import has_placeholder
from shim.syntax.refs import looks_like_reference

EXIT_FINDINGS = 1

# Directories never entered when walking outside git: tooling, dependencies,
# and .secrets/, where shim's development workflow keeps secrets on purpose.
SKIPPED_DIRECTORIES = frozenset({".git", ".secrets", ".venv", "venv", "node_modules", "__pycache__"})

# Public IP addresses are not secrets: the one default plugin left out.
DISABLED_PLUGINS = ("IPPublicDetector",)
# detect-secrets types that fire on any keyword or random-looking string: their
# hits on stand-ins are dropped, and on a line with a more telling finding they
# add nothing.
GENERIC_TYPES = frozenset({"secret-keyword", "basic-auth-credentials",
                           "base64-high-entropy-string", "hex-high-entropy-string"})
# Probed with `git check-ignore`: the dev env file and any other secret file.
SECRETS_DIR_PROBES = (".secrets/dev.env", ".secrets/shim-scan-probe")


class Finding(NamedTuple):
    file: str   # as shown: relative to the working directory when inside it
    line: int   # 1-based; 0 = the file as a whole
    kind: str


class Target(NamedTuple):
    path: str                   # absolute, real path
    tracked: bool               # git tracks it (always False outside git)
    repo_path: str | None       # path inside its repository, '/'-separated (None outside git)


@click.command("scan")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option("--untracked", is_flag=True,
              help="Inside git, also scan untracked files that are not ignored.")
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
def scan_command(paths, untracked, as_json):
    """Find plaintext secrets, committed env files and an unignored .secrets/.

    Prints `file:line: kind` per finding (never a value) and exits 1 when
    there is any, 0 when there is none.
    """
    findings, scanned = scan(paths or (".",), untracked=untracked)
    if as_json:
        import json  # lazy: only for --json
        document = {"findings": [finding._asdict() for finding in findings], "count": len(findings)}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        for finding in findings:
            sys.stdout.write(f"{finding.file}:{finding.line}: {finding.kind}\n")
        files = f"{scanned} file{'s' if scanned != 1 else ''}"
        summary = (f"{len(findings)} finding{'s' if len(findings) != 1 else ''} in {files}"
                   if findings else f"no findings in {files}")
        sys.stderr.write(f"shim: scan: {summary}\n")
    sys.stdout.flush()
    if findings:
        sys.exit(EXIT_FINDINGS)


def scan(paths, *, untracked: bool = False) -> tuple[list[Finding], int]:
    """Every finding under `paths`, sorted and one per (file, line, kind); and the file count."""
    try:
        from detect_secrets.core import scan as detect  # lazy: the scan extra
        from detect_secrets.settings import default_settings, get_settings  # lazy: the scan extra
        import yaml  # lazy: the scan extra (a detect-secrets dependency)  # noqa: F401
    except ImportError:
        raise ConfigError("scan is not available: install shim-secrets[scan]",
                          hint="install it with the [scan] extra (it adds detect-secrets)") from None

    targets, repositories = collect_targets(paths, untracked=untracked)
    findings: set[Finding] = set()
    for top in repositories:
        if not _gitignore_covers_secrets_dir(top):
            findings.add(Finding(_shown(os.path.join(top, ".gitignore")), 0, "gitignore-missing-secrets"))
    with default_settings():
        get_settings().disable_plugins(*DISABLED_PLUGINS)
        for target in targets:
            findings.update(_scan_file(target, detect.scan_file))
    return sorted(findings), len(targets)


def _scan_file(target: Target, detect_secrets_in) -> set[Finding]:
    shown = _shown(target.path)
    text = _text_unless_binary(target.path)
    layout = _sops_layout(target.path, text)
    if layout is None:
        findings = {Finding(shown, 0, kind) for kind in _tracked_kinds(target)}
    else:
        # A sops file is made to be committed, under .secrets/ too; what it left in clear is not.
        findings = {Finding(shown, 0, "sops-unencrypted-value")} if layout.unencrypted else set()
    if text is None:
        return findings   # binary: only whether git tracks it counts
    lines = _split_lines(text)
    line_kinds: dict[int, set[str]] = {}
    for secret in _detected(target.path, text, detect_secrets_in):
        number = secret.line_number
        line = lines[number - 1] if 0 < number <= len(lines) else ""
        secret_type = _slug(secret.type)
        if layout is not None and _sealed(secret.secret_value, layout):
            continue    # ciphertext or sops metadata: high-entropy by design
        if not dismissed(secret_type, secret.secret_value or "", line) \
                and not _allowlisted(target.path, lines, number):
            line_kinds.setdefault(number, set()).add("plaintext-secret:" + secret_type)
    if layout is None:  # a sops dotenv file's literal values are its ciphertexts
        for number in literal_env_secret_lines(target.path, text, lines):
            line_kinds.setdefault(number, set()).add("literal-secret-in-env")
    for number, kinds in line_kinds.items():
        findings.update(Finding(shown, number, kind) for kind in _most_telling(kinds))
    return findings


# detect-secrets' YAML reader expands aliases: a 433-byte "billion laughs" file held `shim scan`
# for minutes. Past this many nodes once expanded, a YAML file is read line by line instead.
MAX_EXPANDED_YAML_NODES = 100_000


def _detected(path: str, text: str, detect_secrets_in) -> list:
    """detect-secrets' hits; a YAML file whose aliases expand without bound is handed over as a
    copy without the .yaml name (same lines, same numbers), which it reads line by line."""
    if not _yaml_alias_bomb(path, text):
        return list(detect_secrets_in(path))
    import tempfile  # lazy: only for an alias bomb
    with tempfile.TemporaryDirectory(prefix="shim-scan-") as directory:
        copy = os.path.join(directory, "lines.txt")
        with open(copy, "w", encoding="utf-8") as stream:
            stream.write(text)
        return list(detect_secrets_in(copy))


def _yaml_alias_bomb(path: str, text: str) -> bool:
    if not path.endswith((".yaml", ".yml")) or "*" not in text:
        return False
    import yaml  # lazy: the scan extra (a detect-secrets dependency)
    try:
        # Composing never expands an alias (it shares the node): linear in the file.
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return False    # detect-secrets reads an invalid YAML file line by line itself
    sizes: dict[int, int] = {}

    def expanded(node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 1     # a recursive alias counts once
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            else:
                children = []
            sizes[id(node)] = 1 + sum(expanded(child) for child in children)
        return sizes[id(node)]

    try:
        return sum(expanded(document) for document in documents if document is not None) \
            > MAX_EXPANDED_YAML_NODES
    except RecursionError:
        return True


def _sops_layout(path: str, text: str | None):
    """The sops layout of a file with sops metadata (shim.providers.sops.decrypt.inspect); None for any other."""
    if text is None or "sops" not in text or "mac" not in text:
        return None
    try:
        from shim.providers.sops.decrypt import inspect  # lazy: only with a sops file
    except ImportError:     # without the sops extra, the file is scanned like any other
        return None
    return inspect(text.encode("utf-8"), path)


def _sealed(found: str | None, layout) -> bool:
    """detect-secrets' hit lies inside a ciphertext or a metadata text (as written in the file:
    dotenv and INI write a newline as \\n), and in no value the file leaves in clear."""
    if not found or any(found in text for text in layout.plain):
        return False
    return any(found in text or found in text.replace("\n", "\\n") for text in layout.sealed)


# --- which files --------------------------------------------------------------

def collect_targets(paths, *, untracked: bool) -> tuple[list[Target], list[str]]:
    """The files to read (no repeats) and the git repositories they belong to."""
    targets: dict[str, Target] = {}
    repositories: dict[str, dict[str, str]] = {}   # top -> {real path: repo path} of git's files
    tracked_sets: dict[str, set[str]] = {}
    for given in paths:
        if not os.path.lexists(given):
            raise NotFound(f"{given}: no such file or directory", hint="name a file or directory to scan")
        path = os.path.realpath(given)
        top = _git_toplevel(path if os.path.isdir(path) else os.path.dirname(path))
        if top is not None and top not in repositories:
            tracked = _git_files(top, "--cached")
            tracked_sets[top] = set(tracked)
            listed = dict(tracked)
            if untracked:
                listed.update(_git_files(top, "--others", "--exclude-standard"))
            repositories[top] = listed
        if top is None:
            for file in ([path] if not os.path.isdir(path) else _walk(path)):
                targets.setdefault(file, Target(file, False, None))
        elif not os.path.isdir(path):
            repo_path = os.path.relpath(path, top).replace(os.sep, "/")
            targets.setdefault(path, Target(path, path in tracked_sets[top], repo_path))
        else:
            prefix = path.rstrip(os.sep) + os.sep
            for file, repo_path in repositories[top].items():
                if (path == top or file.startswith(prefix)) and _is_regular_file(file):
                    targets.setdefault(file, Target(file, file in tracked_sets[top], repo_path))
    return sorted(targets.values()), sorted(repositories)


def _walk(directory: str):
    for root, directories, files in os.walk(directory):
        directories[:] = sorted(d for d in directories if d not in SKIPPED_DIRECTORIES)
        for name in sorted(files):
            file = os.path.join(root, name)
            if _is_regular_file(file):
                yield file


def _is_regular_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)


def _git(args, cwd: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=False)


def _git_toplevel(directory: str) -> str | None:
    try:
        result = _git(["rev-parse", "--show-toplevel"], directory)
    except FileNotFoundError:
        return None   # no git on this machine: scan as a plain directory
    if result.returncode != 0:
        if b"dubious ownership" in result.stderr:
            raise ConfigError(f"git refuses to read the repository at {directory} (dubious ownership)",
                              hint="run as the repository's owner or add it to git's safe.directory")
        return None
    return os.path.realpath(os.fsdecode(result.stdout.rstrip(b"\n")))


def _git_files(top: str, *selection: str) -> dict[str, str]:
    """{real path: repo path} of the files `git ls-files SELECTION` lists."""
    result = _git(["ls-files", "-z", *selection], top)
    if result.returncode != 0:
        raise ConfigError(f"git ls-files failed in {top}", hint="check that git can read the repository")
    names = [os.fsdecode(name) for name in result.stdout.split(b"\0") if name]
    return {os.path.join(top, name.replace("/", os.sep)): name for name in names}


def _gitignore_covers_secrets_dir(top: str) -> bool:
    """The top-level .gitignore (not info/exclude, not a global file) ignores .secrets/."""
    probes = "".join(probe + "\0" for probe in SECRETS_DIR_PROBES).encode()
    result = _git(["check-ignore", "--verbose", "--no-index", "--stdin", "-z"], top, input=probes)
    fields = result.stdout.split(b"\0")
    matched = {}
    for index in range(0, len(fields) - 3, 4):   # source, line, pattern, path
        source, _line, pattern, path = fields[index:index + 4]
        matched[os.fsdecode(path)] = source == b".gitignore" and not pattern.startswith(b"!")
    return all(matched.get(probe, False) for probe in SECRETS_DIR_PROBES)


def _tracked_kinds(target: Target) -> list[str]:
    if not target.tracked:
        return []
    parts = target.repo_path.split("/")
    kinds = []
    if ".secrets" in parts[:-1]:
        kinds.append("tracked-secrets-dir")
    if parts[-1] == "dev.env":
        kinds.append("tracked-dev-env")
    return kinds


def _text_unless_binary(path: str) -> str | None:
    """The file as text; None for a binary file (a NUL byte, or not UTF-8)."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except PermissionError:
        raise PermissionDenied(f"{_shown(path)} is not readable",
                               hint="run the scan as a user that can read every file") from None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _split_lines(text: str) -> list[str]:
    """Lines numbered as detect-secrets numbers them (universal newlines, nothing else)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _shown(path: str) -> str:
    relative = os.path.relpath(path, os.path.realpath(os.getcwd()))
    return path if relative == ".." or relative.startswith(".." + os.sep) else relative


# --- what counts as a secret ---------------------------------------------------

# An upper-case name written where a value goes (`scheme://user:PASSWORD@host`,
# `token: YOUR_TOKEN`) names the value instead of holding it.
_NAME_STAND_IN = re.compile(r"[A-Z][A-Z_]*[A-Z]")
# Templates: <your-token>, {{ .Values.token }}, and a format field such as {password}
# (f-strings in tests and scripts build values out of generated secrets).
_TEMPLATE = re.compile(r"<[^<>]*>|.*\{\{.*\}\}.*|.*\{[A-Za-z_][A-Za-z0-9_.]*\}.*", re.DOTALL)
_INTERPOLATION = re.compile(r"\$\{(?P<braced>[^}]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
_EXPANSION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?P<operator>:?[-+?=])(?P<word>.*)", re.DOTALL)
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:(?P<password>[^\s/@]*)@")
_ASSIGNMENT = re.compile(r"""(?:["'](?P<quoted>[^"']+)["']|(?P<bare>[A-Za-z_][\w.-]*))"""
                         r"""\s*(?::=|=>|==|=|:)\s*[rbuf]{0,2}["']?$""")
_WORD = re.compile(r"[^\s'\"`]+")
_BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "0", "1"})


def is_stand_in(value: str) -> bool:
    """A placeholder, a reference, an interpolation or a name: never a secret itself."""
    value = value.strip().strip("'\"").strip()
    return (not value or has_placeholder(value) or looks_like_reference(value)
            or bool(_NAME_STAND_IN.fullmatch(value)) or bool(_TEMPLATE.fullmatch(value))
            or _INTERPOLATION.search(value.replace("$$", "")) is not None)


def dismissed(secret_type: str, value: str, line: str) -> bool:
    """A generic detect-secrets hit that is a stand-in, a flag, or a piece of a stand-in.

    A specific detector's hit (an AWS key, a private key, a GitHub token) is
    never dismissed: its pattern is the evidence. The keyword detector may
    take part of a value (`openai)` out of
    `@Microsoft.KeyVault(VaultName=kv;SecretName=openai)`), so the word around
    each occurrence on the line is judged too, with and without a `NAME=` head;
    and its hit is dismissed when the name it is assigned to says it is not
    the secret (`SecretId="db"`, `password_file: x`) or is a reference.
    """
    if secret_type not in GENERIC_TYPES:
        return False
    if is_stand_in(value) or value.strip().strip("'\"").lower() in _BOOLEAN_WORDS:
        return True
    for match in _WORD.finditer(line):
        word = match.group(0)
        _, equals, tail = word.partition("=")
        candidates = (word, tail) if equals and tail else (word,)
        if value and value in word and any(is_stand_in(candidate) for candidate in candidates):
            return True
    if secret_type == "secret-keyword" and value and value in line:
        name = _assigned_name(line[:line.index(value)])
        return name is not None and (looks_like_reference(name) or not secret_name(name))
    return False


def _assigned_name(before: str) -> str | None:
    """The name in `name = "`, `"name": "`, `name: ` or `name=` just before a value."""
    match = _ASSIGNMENT.search(before)
    if not match:
        return None
    return match.group("quoted") if match.group("quoted") is not None else match.group("bare")


def is_literal_secret(value: str) -> bool:
    """A value that would be used as written: not empty, not a flag, not a stand-in.

    An interpolation makes a value come from elsewhere, except for a literal
    default or alternative in it (`${DB_PASSWORD:-hunter2}`).
    """
    value = value.strip()
    if not value or value.lower() in _BOOLEAN_WORDS:
        return False
    text = value.replace("$$", "")
    interpolations = list(_INTERPOLATION.finditer(text))
    if interpolations:
        return any(_literal_default(match.group("braced")) for match in interpolations
                   if match.group("braced") is not None)
    return not is_stand_in(value)


def _literal_default(expression: str) -> bool:
    if looks_like_reference(expression):
        return False   # shim's inline ${REFERENCE}
    match = _EXPANSION.fullmatch(expression)
    if not match or match.group("operator").endswith("?"):
        return False   # ${VAR}, or ${VAR:?message}
    return is_literal_secret(match.group("word"))


def secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (and not where to find one)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)   # SecretId -> Secret_Id
    words = [word for word in re.split(r"[^A-Z0-9]+", spaced.upper()) if word]
    if not words or words[-1] in _NOT_SECRET_TAILS:
        return False
    if any(fragment in word for word in words for fragment in _SECRET_FRAGMENTS):
        return True
    if any(word in _SECRET_WORDS for word in words):
        return True
    return words[-1] in ("KEY", "KEYS") and (len(words) == 1 or words[-2] not in _NOT_SECRET_KEYS)


_SECRET_FRAGMENTS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "APIKEY", "PRIVATEKEY",
                     "ACCESSKEY", "AUTHTOKEN")
_SECRET_WORDS = frozenset({"PASS", "PWD", "TOKEN", "TOKENS", "CREDENTIAL", "CREDENTIALS"})
# Names ending so hold a path, an address, a name or a setting, not the secret.
_NOT_SECRET_TAILS = frozenset({
    "FILE", "PATH", "DIR", "DIRS", "DIRECTORY", "FILENAME", "URL", "URI", "HOST", "HOSTNAME",
    "PORT", "ENDPOINT", "ADDR", "ADDRESS", "USER", "USERNAME", "LOGIN", "EMAIL", "NAME", "ID",
    "ARN", "REF", "REFERENCE", "SOURCE", "TYPE", "KIND", "MODE", "METHOD", "FORMAT", "ALGORITHM",
    "ALG", "ENCRYPTION", "HEADER", "PREFIX", "SUFFIX", "REGION", "MOUNT", "ROLE", "POLICY",
    "ENABLED", "DISABLED", "ENABLE", "DISABLE", "REQUIRED", "TTL", "EXPIRY", "EXPIRES",
    "EXPIRATION", "LIFETIME", "TIMEOUT", "INTERVAL", "ROTATION", "AGE", "DAYS", "LENGTH", "LEN",
    "SIZE", "MIN", "MAX", "COUNT", "LIMIT", "RETRIES", "VERSION", "AUDIENCE", "ISSUER", "SCOPE",
    "SCOPES", "PROVIDER", "BACKEND", "STORE",
})
_NOT_SECRET_KEYS = frozenset({"PUBLIC", "PUBLISHABLE", "ROUTING", "PARTITION", "SORT", "CACHE",
                              "PRIMARY", "FOREIGN", "SHARD", "IDEMPOTENCY"})


def literal_env_entry(name: str, value: str | None) -> bool:
    """A secret-named variable with a literal value, or a literal password in a URL."""
    if value is None:
        return False
    if secret_name(name) and name.upper() not in ("PWD", "OLDPWD") and is_literal_secret(value):
        return True
    return any(is_literal_secret(match.group("password")) for match in _URL_PASSWORD.finditer(value))


# --- compose and env files -------------------------------------------------------

def literal_env_secret_lines(path: str, text: str, lines: list[str]) -> list[int]:
    """Lines of compose `environment:` entries / env file variables that hold a literal secret."""
    name = os.path.basename(path)
    if COMPOSE_LIKE_FILE.fullmatch(name):
        found = _compose_lines(text)
    elif name == ".env" or name.startswith(".env.") or name.endswith(".env"):
        found = _env_file_lines(text)
    else:
        return []
    return sorted(number for number in set(found) if not _allowlisted(path, lines, number))


def _env_file_lines(text: str) -> list[int]:
    from dotenv.parser import parse_stream  # lazy: python-dotenv only for env files

    return [binding.original.line for binding in parse_stream(io.StringIO(text))
            if binding.key is not None and literal_env_entry(binding.key, binding.value)]


def _compose_lines(text: str) -> list[int]:
    """Nothing for a file that is not YAML: detect-secrets has still read it line by line."""
    return [entry.line for entry in environment_entries(text)
            if literal_env_entry(entry.name, entry.value)]


def _allowlisted(path: str, lines: list[str], line: int) -> bool:
    """detect-secrets' own pragma check on the file as written (its YAML reading drops
    comments, and with them a `pragma: allowlist nextline secret`), for every kind."""
    from detect_secrets.filters.allowlist import is_line_allowlisted  # lazy: the scan extra
    from detect_secrets.util.code_snippet import get_code_snippet  # lazy: the scan extra

    if not 0 < line <= len(lines):
        return False
    return is_line_allowlisted(path, lines[line - 1], get_code_snippet(lines, line))


# --- small helpers -------------------------------------------------------------

def _most_telling(kinds: set[str]) -> set[str]:
    """Generic detect-secrets types only where nothing more telling was found on the line."""
    telling = {kind for kind in kinds if kind.partition(":")[2] not in GENERIC_TYPES}
    return telling or kinds


def _slug(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", secret_type.lower()).strip("-")
