"""Classify the environment into a Plan: what each variable needs, nothing fetched.

Order (docs/reference.md, "What gets resolved"): env files fill gaps, NAME_FILE
becomes NAME, references and inline ${...} pieces become secrets, CHANGEME
placeholders are looked up. Every variable's value becomes a template of
literal text and secret parts; the resolver fills the parts in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from shim.pipeline.envfiles import EnvFileEntry, load_env_files
from shim.tools.errors import ConfigError, ShimError, UnusableValue, UsageError
from shim.syntax.placeholders import find_placeholders, has_placeholder, secrets_dir_candidates
from shim.tools.records import record
from shim.syntax.refs import Reference, looks_like_reference, parse_reference

TYPE_CHECKING = False   # typing is not imported at start-up (shim.tools.records)
if TYPE_CHECKING:
    from typing import Union

# *_FILE variables that hold paths programs read themselves: never replaced
# by the file's content, whatever --file-vars or the secrets dirs say.
NEVER_TOUCH_FILE_VARS = frozenset({
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE_FILE", "CURL_CA_BUNDLE_FILE",
    "NODE_EXTRA_CA_CERTS_FILE", "GOOGLE_APPLICATION_CREDENTIALS_FILE",
    "KUBECONFIG_FILE", "PGPASSFILE", "PGSSLCERT_FILE", "PGSSLKEY_FILE",
    "VAULT_TOKEN_FILE", "VAULT_ROLE_ID_FILE", "VAULT_SECRET_ID_FILE", "VAULT_JWT_FILE",
    "VAULT_CACERT_FILE", "VAULT_CLIENT_CERT_FILE", "VAULT_CLIENT_KEY_FILE",
    "KRB5_CONFIG_FILE", "KRB5CCNAME_FILE", "DOCKER_CERT_PATH_FILE",
    "HISTFILE", "ENV_FILE", "COMPOSE_FILE", "DOCKER_CONFIG_FILE",
})

SHIM_PREFIX = "SHIM_"


@record
class SecretPart:
    reference: Reference
    in_userinfo: bool = False              # percent-encode: it sits in scheme://user:HERE@host
    placeholder: str | None = None         # the CHANGEME token this part replaces, if any


if TYPE_CHECKING:
    Part = Union[str, SecretPart]


class Entry:
    """One variable of the child's environment that the shim produces or changes."""

    def __init__(self, name: str, source: str, parts: tuple, origin: str | None = None,
                 remove: tuple[str, ...] = (), whole: bool = False,
                 kept_placeholders: tuple[str, ...] = ()):
        self.name = name
        self.source = source                    # env-file, file-var, reference, inline, placeholder, literal
        self.parts = parts                      # literal text and SecretParts, in order
        self.origin = origin                    # NAME_FILE, or env file path:line
        self.remove = remove                    # variables to drop from the child (NAME_FILE)
        self.whole = whole                      # the value is exactly one secret part
        self.kept_placeholders = kept_placeholders  # --allow-placeholders left these in place

    @property
    def secret_parts(self) -> list[SecretPart]:
        return [part for part in self.parts if isinstance(part, SecretPart)]


@record
class Settings:
    env_files: Sequence[str] = ()
    secrets_dirs: Sequence[str] = ("/run/secrets",)
    file_vars: frozenset = frozenset()
    placeholder_source: Reference | None = None
    allow_placeholders: bool = False
    skip: frozenset = frozenset()
    imports: tuple = ()                  # --import references, in order (shim/pipeline/imports.py)


class Plan:
    def __init__(self, environ: dict[str, str]):
        self.environ = environ                              # the starting environment after env files
        self.entries: dict[str, Entry] = {}
        self.errors: list[ShimError] = []
        self.env_file_entries: Mapping[str, EnvFileEntry] = {}
        self.left_as_is: list[str] = []                     # NAME_FILE whose path is outside every secrets dir
        self.imports: tuple[Reference, ...] = ()           # --import maps; their entries join at resolution
        self.skip: frozenset = frozenset()                  # SHIM_SKIP: never imported either

    def references(self) -> list[Reference]:
        return [part.reference for entry in self.entries.values()
                for part in entry.secret_parts]


def build_plan(environ: Mapping[str, str], settings: Settings) -> Plan:
    environ = dict(environ)
    plan = Plan(environ=environ)
    plan.imports, plan.skip = tuple(settings.imports), settings.skip
    try:
        plan.env_file_entries = load_env_files(settings.env_files)
    except ShimError as error:
        plan.errors.append(error)
        return plan
    _apply_env_files(plan, settings)
    _plan_file_vars(plan, settings)
    failed = {error.variable for error in plan.errors}  # an env-file value already reported
    for name in sorted(environ):
        if name in plan.entries or name in failed or _exempt(name, settings):
            continue
        try:
            entry = _plan_value(plan, settings, name, environ[name])
        except ShimError as error:
            plan.errors.append(error.with_context(variable=name))
            continue
        if entry is not None:
            plan.entries[name] = entry
    return plan


def _exempt(name: str, settings: Settings) -> bool:
    return name.startswith(SHIM_PREFIX) or name in settings.skip


def _apply_env_files(plan: Plan, settings: Settings) -> None:
    """An env file fills a variable that is unset, empty or a placeholder (docker's -e wins)."""
    for name, entry in plan.env_file_entries.items():
        current = plan.environ.get(name)
        if current and not has_placeholder(current):
            continue
        plan.environ[name] = entry.value
        if _exempt(name, settings):
            continue
        try:
            planned = _plan_value(plan, settings, name, entry.value)
        except ShimError as error:
            plan.errors.append(error.with_context(variable=name))
            continue
        if planned is None:
            planned = Entry(name, "env-file", (entry.value,))
        planned.origin = f"{entry.path}:{entry.line}"
        if planned.source == "literal":
            planned.source = "env-file"
        plan.entries[name] = planned


def _file_var_target(name: str) -> str | None:
    """NAME for NAME_FILE and Grafana's NAME__FILE; None for anything else."""
    for suffix in ("__FILE", "_FILE"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _under_secrets_dir(path: str, secrets_dirs: Sequence[str]) -> bool:
    # Lexical check (no realpath): Kubernetes lays secrets out as symlinks into
    # ..data/ inside the same directory, and the path as written is what the
    # operator chose to trust.
    if not os.path.isabs(path):
        return False
    normal = os.path.normpath(path)
    for directory in secrets_dirs:
        base = os.path.normpath(directory)
        if normal.startswith(base.rstrip("/") + "/"):
            return True
    return False


def _plan_file_vars(plan: Plan, settings: Settings) -> None:
    environ = plan.environ
    for file_var in sorted(environ):
        target = _file_var_target(file_var)
        if target is None or file_var in NEVER_TOUCH_FILE_VARS or _exempt(file_var, settings):
            continue
        path = environ[file_var]
        wanted = target in settings.file_vars or "*" in settings.file_vars
        if not (wanted or _under_secrets_dir(path, settings.secrets_dirs)):
            if path:
                plan.left_as_is.append(file_var)
            continue
        if environ.get(target) and path:
            plan.errors.append(ConfigError(
                f"both {target} and {file_var} are set (but are exclusive)",
                variable=target, hint=f"unset one of {target} or {file_var}"))
            plan.entries[target] = Entry(target, "file-var", (), origin=file_var,
                                         remove=(file_var,))
            continue
        if not path:
            # docker-library file_env: an empty NAME_FILE leaves NAME as it is.
            entry = plan.entries.setdefault(
                target, Entry(target, "literal", (environ.get(target, ""),)))
            entry.remove = (file_var,)
            continue
        reference = parse_reference("file:" + path)
        plan.entries[target] = Entry(target, "file-var", (SecretPart(reference),),
                                     origin=file_var, remove=(file_var,), whole=True)


_INLINE_OPEN = "${"
# Every reference prefix (ARN partitions included) is shorter than this: looking at a window
# this long after ${ decides whether a reference starts there.
_PREFIX_WINDOW = 128


def _plan_value(plan: Plan, settings: Settings, name: str, value: str) -> Entry | None:
    """The Entry for one variable, or None when it is a plain literal."""
    if looks_like_reference(value):
        _require_utf8(value)
        reference = parse_reference(value)
        return Entry(name, "reference", (SecretPart(reference),), whole=True)
    pieces = _split_inline(value)
    has_inline = any(isinstance(piece, SecretPart) for piece in pieces)
    parts: list[Part] = []
    kept: list[str] = []
    saw_placeholder = False
    whole_placeholder = _is_whole_placeholder(name, pieces)
    for piece in pieces:
        if isinstance(piece, SecretPart):
            parts.append(piece)
            continue
        cursor = 0
        for placeholder in find_placeholders(name, piece):
            saw_placeholder = True
            parts.append(piece[cursor:placeholder.start])
            source = _placeholder_source(plan, settings, name, placeholder, whole_placeholder)
            if source is None:
                if settings.allow_placeholders:
                    kept.append(placeholder.token)
                    parts.append(placeholder.token)
                else:
                    raise _unresolved(plan, settings, name, placeholder, whole_placeholder)
            else:
                parts.append(source)
            cursor = placeholder.end
        parts.append(piece[cursor:])
    if not has_inline and not saw_placeholder:
        unescaped = "".join(p for p in parts if isinstance(p, str))
        if unescaped == value:
            return None
        return Entry(name, "literal", (unescaped,))
    _require_utf8(value)
    parts = _mark_userinfo([p for p in parts if p != ""])
    source = "placeholder" if saw_placeholder and not has_inline else "inline"
    if saw_placeholder and has_inline:
        source = "inline+placeholder"
    whole = len(parts) == 1 and isinstance(parts[0], SecretPart)
    return Entry(name, source, tuple(parts), whole=whole, kept_placeholders=tuple(kept))


def _require_utf8(value: str) -> None:
    """A value shim rewrites must be text: bytes that are not UTF-8 reach Python as lone
    surrogates, which no reference, store or output file can carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnusableValue("the value holds a reference but is not UTF-8 text",
                            hint="write the variable as UTF-8 text") from None


def _is_whole_placeholder(name: str, pieces: list[Part]) -> bool:
    """The value is exactly one placeholder token (e.g. CHANGEME_PG_PASSWORD), nothing around it."""
    if len(pieces) != 1 or not isinstance(pieces[0], str):
        return False
    found = find_placeholders(name, pieces[0])
    return len(found) == 1 and found[0].token == pieces[0]


def _split_inline(value: str) -> list[Part]:
    """Literal text and ${REFERENCE} pieces; $${ is a literal ${ everywhere.

    Linear in the length of the value: the search for a closing } is remembered between
    openings, and whether text after ${ is a reference is decided in place, without
    copying the rest of the value for every ${.
    """
    pieces: list[Part] = []
    literal: list[str] = []
    index = 0
    close = -2  # position of the next }, -1 when there is none left; -2: not searched yet
    while index < len(value):
        opening = value.find("$", index)
        if opening == -1:
            literal.append(value[index:])
            break
        literal.append(value[index:opening])
        index = opening
        if value.startswith("$${", index):
            literal.append("${")
            index += 3
            continue
        if value.startswith(_INLINE_OPEN, index) and looks_like_reference(value[index + 2: index + 2 + _PREFIX_WINDOW]):
            if close != -1 and close < index + 2:
                close = value.find("}", index + 2)
            if close == -1:
                raise UsageError("an inline ${ reference has no closing }",
                                 hint="close it with } or escape a literal ${ as $${")
            pieces.append("".join(literal))
            literal = []
            pieces.append(SecretPart(parse_reference(value[index + 2: close])))
            index = close + 1
            continue
        literal.append("$")
        index += 1
    pieces.append("".join(literal))
    return [piece for piece in pieces if piece != ""] or [""]


_USERINFO = r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#@]*)@"  # compiled by re on first use


def _mark_userinfo(parts: list[Part]) -> list[Part]:
    """Flag the secret parts that sit inside a URL's user-info (they get percent-encoded)."""
    skeleton = "".join(part if isinstance(part, str) else "\0" for part in parts)
    if "://" not in skeleton:
        return parts
    match = re.match(_USERINFO, skeleton)
    if not match:
        return parts
    start, end = match.span(1)
    marked: list[Part] = []
    offset = 0
    for part in parts:
        if isinstance(part, SecretPart):
            if start <= offset < end:
                part = SecretPart(part.reference, True, part.placeholder)
            offset += 1
        else:
            offset += len(part)
        marked.append(part)
    return marked


def _placeholder_source(plan: Plan, settings: Settings, name: str, placeholder,
                        whole: bool) -> SecretPart | None:
    """Where this placeholder's value comes from, in the documented order (README, "What gets resolved")."""
    entries = plan.env_file_entries
    candidates = ([name] if whole else []) + [placeholder.key]
    for candidate in candidates:
        entry = entries.get(candidate)
        if entry is not None and entry.value and not has_placeholder(entry.value):
            # An env-file value is literal text here; it becomes a constant part.
            return SecretPart(_literal_reference(entry), placeholder=placeholder.token)
    for path in secrets_dir_candidates(settings.secrets_dirs, name, placeholder.key, whole):
        if os.path.exists(path):
            return SecretPart(parse_reference("file:" + path), placeholder=placeholder.token)
    if settings.placeholder_source is not None:
        return SecretPart(settings.placeholder_source.with_selector((placeholder.key,)),
                          placeholder=placeholder.token)
    return None


def _literal_reference(entry: EnvFileEntry) -> Reference:
    """An env-file value used for a placeholder, carried as a pseudo-reference."""
    return Reference("envfile", entry.name, (), None, (), "envfile",
                     f"envfile:{entry.path}#{entry.name}")


def _unresolved(plan: Plan, settings: Settings, name: str, placeholder, whole: bool) -> ConfigError:
    looked = []
    if plan.env_file_entries or settings.env_files:
        looked.append("env files")
    looked.extend(secrets_dir_candidates(settings.secrets_dirs, name, placeholder.key, whole)[:3])
    where = ", ".join(looked) if looked else "nowhere (no secrets dir, env file or source)"
    first_dir = settings.secrets_dirs[0] if settings.secrets_dirs else "/run/secrets"
    return ConfigError(
        f"unresolved placeholder {placeholder.token} (looked in {where})",
        variable=name,
        hint=f"provide {os.path.join(first_dir, placeholder.key.lower())}, an env-file entry "
             f"{placeholder.key}=..., or --placeholder-source")
