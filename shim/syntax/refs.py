"""The reference grammar: every accepted syntax parses to one Reference.

A Reference says where a secret lives, which part of it to take and how to
treat it; nothing is fetched here. Each provider is one row of the table at the
end of this module (its ref+ scheme, options, parser and canonical render), and
each other spelling one Spelling row; `canonical` is the one spelling `shim
check` and every message show.

Canonical forms (docs/references.md has the full table):

    file        ref+file://<path>[?opts][#/a/b]
    vault       vault:<api-path>#<key>[#<version>]         (bank-vaults: API path, data/ included)
                ref+vault://<logical-path>[?version=N][#/a] (vals: KV v2 data/ added by the provider)
    awssecrets  ref+awssecrets://<name-or-arn>[?version_stage=S|version_id=I][#/key]
    awsssm      ref+awsssm://<name>[?version=N|label=L]    (a leading / is implied for hierarchies)
    azure       ref+azurekeyvault://<vault>/<name>[/<version>][#/key]
    sops        ref+sops://<path>[?format=F][#/key]          (a sops-encrypted file)
    gcpsecrets  ref+gcpsecrets://<project>/<secret>[?location=L][&version=V][#/key]
    doppler     ref+doppler://<project>/<config>[#/NAME]    (ref+doppler:////NAME: the token's config)
    infisical   ref+infisical://<project-id>/<env>[/<folder>...][#/KEY]
    onepassword op://<vault>/<item>/[<section>/]<field>          (ref+onepassword://<vault>/<item>#/...)
    bws         ref+bws://<secret-id>[#/key]   ref+bws://project/<project-id> (an import)

Messages name the syntax but never quote the whole text: a value that only looks
like a reference may be a secret.

Longer than our other modules on purpose: every syntax's parser sits next to the table
that registers it and the shared helpers they all use (the parsers and the table would
otherwise import each other).
"""

from __future__ import annotations

import re

from shim.tools.durations import parse_duration
from shim.tools.errors import UsageError
from shim.tools.records import record

TYPE_CHECKING = False   # typing is not imported at start-up (shim.tools.records)
if TYPE_CHECKING:
    from collections.abc import Callable

# Options every provider understands; each provider's row (SYNTAXES, at the end) adds its own.
COMMON_OPTIONS = frozenset({"optional", "max_age", "allow_expired", "encoding"})
# Options only an import (--import, shim/pipeline/imports.py) understands: how the keys become names.
# Not COMMON: on a variable's reference `prefix` would mean nothing, so it is refused there.
# `allow_names`: names of docs/import.md's "never set" list this import may set after all.
IMPORT_OPTIONS = frozenset({"prefix", "allow_names"})


# The data carriers on the start-up path are records (shim.tools.records: named tuples without the
# import of typing) or plain classes, not dataclasses, which are several times dearer to build;
# shim runs at every container start (docs/performance.md).
@record
class Reference:
    provider: str                       # a row of the table below (file, vault, gcpsecrets, ...)
    locator: str                        # where the secret lives, in the provider's own terms
    selector: tuple[str, ...] = ()      # JSON pointer parts (or one plain key) into the secret
    version: str | None = None          # a pinned version (vault N, azure id, ssm N, gcp N/alias)
    options: tuple[tuple[str, str], ...] = ()
    syntax: str = ""                    # which accepted syntax it was written in
    canonical: str = ""                 # derived from the fields above

    def option(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.options:
            if key == name:
                return value
        return default

    def flag(self, name: str) -> bool:
        return (self.option(name) or "").lower() in ("1", "true", "yes")

    @property
    def optional(self) -> bool:
        return self.flag("optional")

    @property
    def fetch_key(self) -> tuple:
        """What one fetch reads: references that share it share one read."""
        fetch_options = tuple(
            (k, v) for k, v in self.options if k not in COMMON_OPTIONS and k not in IMPORT_OPTIONS)
        return (self.provider, self.syntax if self.provider == "vault" else "",
                self.locator, self.version, fetch_options)

    @property
    def shown(self) -> str:
        """What an error, a log line or the audit file may quote of this reference."""
        return shown_reference(self.canonical)

    def without_selector(self) -> "Reference":
        return Reference(self.provider, self.locator, (), self.version, self.options,
                         self.syntax, _render(self.provider, self.syntax, self.locator,
                                              (), self.version, self.options))

    def with_selector(self, selector: tuple[str, ...]) -> "Reference":
        return Reference(self.provider, self.locator, selector, self.version, self.options,
                         self.syntax, _render(self.provider, self.syntax, self.locator,
                                              selector, self.version, self.options))


def shown_reference(canonical: str) -> str:
    """A canonical reference as messages quote it: its path, then `?...` for a query and `#...`
    for a selector, never their text.

    A value that only looks like a reference (`vault:Tr0ub4dor&3#xkcd`, a password) parses as
    one, and its `#` selector or `?query` is the likeliest place for the rest of it; the path is
    what an operator needs to find the secret (the variable is named beside it).
    `tests/hardening/test_reference_quoting.py` checks that nothing quotes `.canonical` itself.
    """
    query, selector = canonical.find("?"), canonical.find("#")
    cuts = [index for index in (query, selector) if index >= 0]
    if not cuts:
        return canonical
    hidden = ("?..." if 0 <= query < (selector if selector >= 0 else len(canonical)) else "") \
        + ("#..." if selector >= 0 else "")
    return canonical[:min(cuts)] + hidden


def looks_like_reference(text: str) -> bool:
    return _spelling_of(text) is not None


def parse_reference(text: str) -> Reference:
    """Parse one reference; UsageError (64) says what is wrong and how to write it."""
    spelling = _spelling_of(text)
    if spelling is None:
        raise _malformed(text, "not a reference", "see the reference syntaxes in docs/references.md")
    return spelling.parse(text)


def parse_import_reference(text: str) -> Reference:
    """An --import reference: a whole map (no #key), which may carry ?prefix=.

    Bank-vaults' `vault:<path>` is accepted without its #key here, and only here.
    """
    if text.startswith("vault:") and "#" not in text:
        path = text[len("vault:"):].strip("/")
        if not path:
            raise _malformed(text, "the Vault path is empty",
                             "write vault:<path>, e.g. vault:secret/data/app")
        return _make("vault", path, (), None, (), "bank-vaults")
    spelling = _spelling_of(text)
    if spelling is None:
        raise _malformed(text, "not a reference", "see the reference syntaxes in docs/references.md")
    if spelling.prefix == "ref+":
        reference = _parse_vals(text, extra_options=IMPORT_OPTIONS)
    else:
        reference = spelling.parse(text)
    if reference.selector:
        raise _malformed(text, "an import takes every key of a secret, not one key",
                         "drop the #key part (or set one variable to the reference instead)")
    if reference.provider == "awsssm" and reference.locator.endswith("/") and (
            reference.version is not None or reference.option("label")):
        raise _malformed(text, "a parameter path has no version or label",
                         "drop the version or label: a path import reads the current values")
    return reference


def _spelling_of(text: str) -> "Spelling | None":
    for spelling in SPELLINGS:
        if text.startswith(spelling.prefix) and (
                spelling.pattern is None or re.match(spelling.pattern, text) is not None):
            return spelling
    return None


# --- vals: ref+<provider>://<path>[?query][#/pointer] -----------------------

def _parse_vals(text: str, extra_options: frozenset = frozenset()) -> Reference:
    match = re.fullmatch(r"ref\+([a-z0-9]+)://(.*)", text, re.DOTALL)
    if not match:
        raise _malformed(text, "a ref+ reference needs a scheme and ://",
                         "write e.g. ref+vault://secret/app#/password")
    scheme, rest = match.groups()
    row = SCHEMES.get(scheme)
    if row is None:
        raise _malformed(text, "unknown provider after ref+",
                         "use one of: " + ", ".join(sorted(SCHEMES)))
    rest, fragment = _split_once(rest, "#")
    path, query = _split_once(rest, "?")
    path = _unescape_body(path)
    selector = _parse_selector(text, fragment) if fragment is not None else ()
    options = _parse_query(text, row, query, extra_options)
    if not path:
        raise _malformed(text, "the path is empty", "name the secret after ://")
    return row.parse_vals(text, path, selector, options)


def _file_from_vals(text, path, selector, options) -> Reference:
    return _make("file", path, selector, None, options, "vals")


def _vault_from_vals(text, path, selector, options) -> Reference:
    version, options = _take_option(options, "version")
    if version is not None:
        _require_int(text, version)
    path = path.strip("/")
    if not path:
        raise _malformed(text, "the Vault path is empty", "write ref+vault://secret/app#/key")
    return _make("vault", path, selector, version, options, "vals")


def _awssecrets_from_vals(text, path, selector, options) -> Reference:
    if _option_value(options, "version_stage") and _option_value(options, "version_id"):
        raise _malformed(text, "version_stage and version_id are exclusive", "give one of them")
    secret_id = path
    if secret_id.startswith("arn:"):
        secret_id, options = _arn_region(text, secret_id, options)
    return _make("awssecrets", secret_id, selector, None, options, "vals")


def _awsssm_from_vals(text, path, selector, options) -> Reference:
    return _ssm_reference(text, path, selector, options, "vals")


SOPS_FORMATS = ("yaml", "json", "dotenv", "ini", "binary")


def _sops_from_vals(text, path, selector, options) -> Reference:
    fmt = _option_value(options, "format")
    if fmt is not None and fmt not in SOPS_FORMATS:
        raise _malformed(text, "unknown sops format",
                         "write format=yaml, json, dotenv, ini or binary")
    return _make("sops", path, selector, None, options, "vals")


# --- bank-vaults: vault:<api-path>#<key>[#<version>] ------------------------

def _parse_bank_vaults(text: str) -> Reference:
    body = text[len("vault:"):]
    parts = body.split("#")
    path = parts[0].strip("/")
    if not path:
        raise _malformed(text, "the Vault path is empty",
                         "write vault:<path>#<key>, e.g. vault:secret/data/app#password")
    if len(parts) < 2 or not parts[1]:
        raise _malformed(text, "a key is required after #",
                         "write vault:<path>#<key>, e.g. vault:secret/data/app#password")
    if len(parts) > 3:
        raise _malformed(text, "too many # separators",
                         "write vault:<path>#<key>[#<version>]")
    version = parts[2] if len(parts) == 3 else None
    if version is not None:
        _require_int(text, version)
    return _make("vault", path, (parts[1],), version, (), "bank-vaults")


# --- file:<path> ------------------------------------------------------------

def _parse_file_short(text: str) -> Reference:
    path = text[len("file:"):]
    if path.startswith("//"):
        # file:///abs/path is the URL spelling of the same thing.
        path = path[2:]
    if not path:
        raise _malformed(text, "the file path is empty", "write file:/run/secrets/name")
    return _make("file", path, (), None, (), "file")


# --- AWS ARNs as ECS task definitions write them ----------------------------

def _parse_secretsmanager_arn(text: str) -> Reference:
    fields = text.split(":")
    # arn:partition:secretsmanager:region:account:secret:name[:json-key:stage:version-id]
    if len(fields) < 7 or fields[5] != "secret" or not fields[6]:
        raise _malformed(text, "a Secrets Manager ARN needs ...:secret:<name>",
                         "write arn:aws:secretsmanager:<region>:<account>:secret:<name>")
    extra = fields[7:]
    if extra and len(extra) != 3:
        raise _malformed(
            text, "after the secret name give all three of json-key:version-stage:version-id",
            "leave unused fields empty, e.g. ...:secret:db:password::")
    region = fields[3]
    if not region:
        raise _malformed(text, "the ARN has no region", "write the region after secretsmanager:")
    json_key, stage, version_id = extra if extra else ("", "", "")
    if stage and version_id:
        raise _malformed(text, "version stage and version id are exclusive",
                         "give one of them and leave the other empty")
    options = [("region", region)]
    if stage:
        options.append(("version_stage", stage))
    if version_id:
        options.append(("version_id", version_id))
    secret_id = ":".join(fields[:7])
    selector = (json_key,) if json_key else ()
    return _make("awssecrets", secret_id, selector, None, tuple(options), "ecs")


def _parse_ssm_arn(text: str) -> Reference:
    match = re.fullmatch(r"arn:aws[a-z-]*:ssm:([a-z0-9-]*):(\d*):parameter/(.+)", text)
    if not match or not match.group(1):
        raise _malformed(text, "an SSM ARN needs a region and ...:parameter/<name>",
                         "write arn:aws:ssm:<region>:<account>:parameter/<name>")
    region, _account, name = match.groups()
    return _ssm_reference(text, name, (), (("region", region),), "ecs")


def _ssm_reference(text, path, selector, options, syntax) -> Reference:
    options = tuple(options)
    name = path.lstrip("/")
    if not name:
        raise _malformed(text, "the parameter name is empty", "name the parameter")
    # SSM's own selector syntax: name:3 (version) or name:label.
    version, options = _take_option(options, "version")
    label = _option_value(options, "label")
    if ":" in name:
        name, suffix = name.rsplit(":", 1)
        if not name or not suffix:
            raise _malformed(text, "empty parameter name or selector around ':'",
                             "write name:3 for a version or name:label for a label")
        if suffix.isdigit():
            version = suffix
        else:
            label = suffix
            options = _set_option(options, "label", label)
    if version is not None:
        _require_int(text, version)
    if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", name):
        raise _malformed(text, "the parameter name has characters SSM does not allow",
                         "names use letters, digits and _ . - /")
    if label is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]+", label):
        raise _malformed(text, "the label is not a valid SSM label",
                         "labels use letters, digits and _ . -")
    if version is not None and label:
        raise _malformed(text, "a version and a label are exclusive", "give one of them")
    # A hierarchical name starts with / (AWS drops that slash inside ARNs).
    full_name = "/" + name if "/" in name else name
    return _make("awsssm", full_name, selector, version, options, syntax)


def _arn_region(text, arn, options):
    fields = arn.split(":")
    if len(fields) < 7 or fields[2] != "secretsmanager" or not fields[3]:
        raise _malformed(text, "not a secretsmanager ARN with a region",
                         "write arn:aws:secretsmanager:<region>:<account>:secret:<name>")
    if len(fields) > 7:
        # The ECS :json-key:stage:version-id suffix would otherwise be dropped silently.
        raise _malformed(text, "a ref+awssecrets ARN ends at the secret name",
                         "drop ref+awssecrets:// to use the ECS form (...:secret:<name>:<json-key>:"
                         "<stage>:<version-id>), or write #/<key> and ?version_stage= / ?version_id=")
    options = tuple(options)
    if _option_value(options, "region") is None:
        options = _set_option(options, "region", fields[3])
    return ":".join(fields[:7]), options


# --- Azure ------------------------------------------------------------------

_AZURE_DEFAULT_SUFFIX = ".vault.azure.net"


def _parse_app_service(text: str) -> Reference:
    if not text.endswith(")"):
        raise _malformed(text, "missing the closing parenthesis",
                         "write @Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>)")
    body = text[len("@Microsoft.KeyVault("):-1]
    settings = {}
    for item in body.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise _malformed(text, "a setting is not Name=value",
                             "separate settings with ; e.g. VaultName=v;SecretName=n")
        settings[key.strip()] = value.strip()
    known = {"SecretUri", "VaultName", "SecretName", "SecretVersion"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise _malformed(text, "unknown setting name",
                         "use SecretUri=... or VaultName=...;SecretName=...[;SecretVersion=...]")
    if "SecretUri" in settings:
        if len(settings) > 1:
            raise _malformed(text, "SecretUri cannot be combined with other settings",
                             "give either SecretUri or VaultName and SecretName")
        uri = settings["SecretUri"]
        match = re.fullmatch(r"https://([^/?#]+)/secrets/([^/?#]+)(?:/([^/?#]*))?/?", uri)
        if not match:
            raise _malformed(text, "SecretUri must be https://<vault-host>/secrets/<name>[/<version>]",
                             "copy the secret identifier from the portal")
        host, name, version = match.groups()
        return _azure(text, host, name, version or None, (), (), "appservice")
    if "VaultName" not in settings or "SecretName" not in settings:
        raise _malformed(text, "VaultName and SecretName are both required",
                         "write @Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>)")
    vault = settings["VaultName"]
    host = vault if "." in vault else vault + _AZURE_DEFAULT_SUFFIX
    return _azure(text, host, settings["SecretName"], settings.get("SecretVersion"),
                  (), (), "appservice")


def _azure_from_vals(text, path, selector, options) -> Reference:
    parts = path.strip("/").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise _malformed(text, "expected <vault>/<name>[/<version>]",
                         "write ref+azurekeyvault://myvault/db-password")
    vault = parts[0]
    host = vault if "." in vault or ":" in vault else vault + _AZURE_DEFAULT_SUFFIX
    version = parts[2] if len(parts) == 3 else None
    return _azure(text, host, parts[1], version, selector, options, "vals")


def _azure(text, host, name, version, selector, options, syntax) -> Reference:
    if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", name):
        raise _malformed(text, "the secret name is not valid for Key Vault",
                         "names use letters, digits and dashes only")
    if version is not None and not re.fullmatch(r"[0-9A-Za-z]{1,64}", version):
        raise _malformed(text, "the secret version is not valid",
                         "a version is the 32-character id from the portal")
    locator = f"https://{host}/secrets/{name}"
    return _make("azurekeyvault", locator, selector, version, tuple(options), syntax)


# --- Google Cloud Secret Manager ---------------------------------------------
#
# The locator is the resource name projects/P[/locations/L]/secrets/S; the version is None for
# `latest`. berglas (sm://) and secrets-init (gcp:secretmanager:) are Spellings of the same row.

_GCP_PROJECT = r"[a-z0-9][a-z0-9.:-]{0,99}"       # id, number, or domain:id
_GCP_SECRET = r"[A-Za-z0-9_-]{1,255}"
_GCP_VERSION = r"[1-9][0-9]{0,18}|[A-Za-z][A-Za-z0-9_-]{0,62}"  # number or alias
_GCP_LOCATION = r"[a-z][a-z0-9-]{0,62}"
GCP_LOCATOR = r"projects/([^/]+)(?:/locations/([^/]+))?/secrets/([^/]+)"


def _parse_berglas(text: str) -> Reference:
    body, version = _split_once(text[len("sm://"):], "#")
    parts = body.split("/")
    if len(parts) != 2 or "?" in body:
        raise _malformed(text, "expected sm://<project>/<secret>[#<version>]",
                         "write e.g. sm://my-project/db-password#3")
    return _gcp(text, parts[0], None, parts[1], version, (), (), "berglas")


def _parse_secrets_init(text: str) -> Reference:
    match = re.fullmatch(r"projects/([^/]*)(?:/locations/([^/]*))?/secrets/([^/]*)"
                         r"(?:/versions/([^/]*))?", text[len("gcp:secretmanager:"):])
    if not match:
        raise _malformed(text, "expected projects/<project>/secrets/<secret>[/versions/<v>]",
                         "write e.g. gcp:secretmanager:projects/p/secrets/db/versions/3")
    project, location, secret, version = match.groups()
    return _gcp(text, project, location, secret, version, (), (), "secrets-init")


def _gcp_from_vals(text, path, selector, options) -> Reference:
    version, options = _take_option(options, "version")
    location, options = _take_option(options, "location")
    parts = path.split("/")
    if len(parts) != 2:
        raise _malformed(text, "expected <project>/<secret>",
                         "write e.g. ref+gcpsecrets://my-project/db-password?version=3")
    return _gcp(text, parts[0], location, parts[1], version, selector, options, "vals")


def _gcp(text, project, location, secret, version, selector, options, syntax) -> Reference:
    if not re.fullmatch(_GCP_PROJECT, project):
        raise _malformed(text, "the project is empty or not valid",
                         "give a project id (my-project) or number")
    if not re.fullmatch(_GCP_SECRET, secret):
        raise _malformed(text, "the secret is empty or not valid",
                         "give letters, digits, _ and - (at most 255)")
    if location is not None and not re.fullmatch(_GCP_LOCATION, location):
        raise _malformed(text, "the location is empty or not valid",
                         "give a region such as europe-west1")
    if version is not None and not re.fullmatch(_GCP_VERSION, version):
        raise _malformed(text, "the version is empty or not valid",
                         "give a version number, latest, or an alias")
    location_part = f"/locations/{location}" if location else ""
    locator = f"projects/{project}{location_part}/secrets/{secret}"
    return _make("gcpsecrets", locator, selector, None if version == "latest" else version,
                 options, syntax)


# --- Doppler -------------------------------------------------------------------
#
# The locator is PROJECT/CONFIG (empty: the config a service token is scoped to); a secret's name
# is a selector into the config, so every reference into one config shares one download. vals
# writes the name as a third path part (ref+doppler://P/C/NAME, ref+doppler:////NAME).

_DOPPLER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"    # a project or config name (slug)


def _doppler_from_vals(text, path, selector, options) -> Reference:
    parts = path.split("/")
    if len(parts) not in (2, 3):
        raise _malformed(text, "expected <project>/<config>[/<NAME>]",
                         "write e.g. ref+doppler://my-project/prd#/DB_PASSWORD")
    project, config = parts[0], parts[1]
    name = parts[2] if len(parts) == 3 else ""
    if name and selector:
        raise _malformed(text, "the secret is named twice (path and #)",
                         "write ref+doppler://my-project/prd#/DB_PASSWORD")
    if name:
        selector = (name,)
    if project == config == "":
        locator = ""
    elif re.fullmatch(_DOPPLER_NAME, project) and re.fullmatch(_DOPPLER_NAME, config):
        locator = f"{project}/{config}"
    else:
        raise _malformed(text, "the project or config is empty or not valid",
                         "give both (letters, digits, _ . -), or neither for a service token")
    return _make("doppler", locator, selector, None, options, "vals")


def _render_doppler(locator, version, query):
    return (locator or "//"), query


# --- Infisical -----------------------------------------------------------------
#
# The locator is PROJECT_ID/ENVIRONMENT[/FOLDER...] (no folder: the root); a key is a selector
# into the folder, so every reference into one folder shares one read. The key is always after
# #: a last path part could as well be a folder.

_INFISICAL_PART = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"   # a project id, environment slug or folder


def _infisical_from_vals(text, path, selector, options) -> Reference:
    parts = path.rstrip("/").split("/")
    if len(parts) < 2:
        raise _malformed(text, "expected <project-id>/<environment>[/<folder>...]",
                         "write e.g. ref+infisical://6f1c.../prod/app/db#/DB_PASSWORD")
    if not all(re.fullmatch(_INFISICAL_PART, part) for part in parts):
        raise _malformed(text, "the project id, environment or a folder is empty or not valid",
                         "use letters, digits, _ and -; give the key after #/")
    return _make("infisical", "/".join(parts), selector, None, options, "vals")


# --- 1Password -----------------------------------------------------------------
#
# 1Password's own secret references, op://VAULT/ITEM/[SECTION/]FIELD, are the canonical form; the
# locator is VAULT/ITEM (one read per item) and [SECTION, ]FIELD a selector into it. What op://
# cannot say (an option such as ?optional=true; 1Password's own ?attribute= is not supported) is
# written ref+onepassword://VAULT/ITEM?...#/SECTION/FIELD.

_OP_NAME = r'[^\x00-\x1f\x7f/"#?]{1,255}'    # a vault, item, section or field name or ID


def _parse_op(text: str) -> Reference:
    body = text[len("op://"):]
    if "?" in body:
        raise _malformed(text, "query attributes of op:// references are not supported",
                         "drop ?attribute=...; write ref+onepassword://VAULT/ITEM?optional=true#/FIELD for options")
    parts = body.split("/")
    if len(parts) not in (2, 3, 4) or not all(re.fullmatch(_OP_NAME, part) for part in parts):
        raise _malformed(text, "expected op://<vault>/<item>/[<section>/]<field>",
                         "write e.g. op://prod/postgres/password; names hold no / # ? or quotes")
    return _make("onepassword", f"{parts[0]}/{parts[1]}", tuple(parts[2:]), None, (), "op")


def _onepassword_from_vals(text, path, selector, options) -> Reference:
    parts = path.split("/")
    if len(parts) != 2 or not all(re.fullmatch(_OP_NAME, part) for part in parts):
        raise _malformed(text, "expected <vault>/<item>",
                         "write e.g. ref+onepassword://prod/postgres?optional=true#/password")
    return _make("onepassword", path, selector, None, options, "vals")


def _render_op(syntax, locator, selector, version, options):
    if options or len(selector) > 2 or not all(re.fullmatch(_OP_NAME, part) for part in selector):
        return None
    return "op://" + "/".join((locator, *selector))


# --- Bitwarden Secrets Manager ---------------------------------------------------
#
# Secrets are named by id (a UUID; their key names are encrypted, the server cannot look one up);
# a project, for --import, is project/<id>. Ids are written lower-case in the canonical form.

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _bws_from_vals(text, path, selector, options) -> Reference:
    match = re.fullmatch(r"(project/)?(" + _UUID + r")/?", path)
    if not match:
        raise _malformed(text, "expected a secret id (a UUID) or project/<project id>",
                         "write e.g. ref+bws://3f1b6a52-0f39-4c1d-9e4e-b1a2c3d4e5f6")
    return _make("bws", (match.group(1) or "") + match.group(2).lower(), selector, None,
                 options, "vals")


# --- shared pieces ----------------------------------------------------------

def _make(provider, locator, selector, version, options, syntax) -> Reference:
    options = tuple(sorted(options))
    return Reference(provider, locator, tuple(selector), version, options, syntax,
                     _render(provider, syntax, locator, tuple(selector), version, options))


def _render(provider, syntax, locator, selector, version, options) -> str:
    row = PROVIDERS[provider]
    if row.render_native is not None:
        native = row.render_native(syntax, locator, selector, version, options)
        if native is not None:
            return native
    body, query = row.render(locator, version, list(options))
    text = f"ref+{row.name}://{escape_body(body)}"
    if query:
        from urllib.parse import quote  # lazy: only references with options need it
        text += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(query))
    if selector:
        text += "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in selector)
    return text


def _render_path(locator, version, query):
    return locator, query


def _render_vault(locator, version, query):
    return locator, query + ([("version", version)] if version else [])


def _render_bank_vaults(syntax, locator, selector, version, options):
    if syntax == "bank-vaults" and not selector and not version and not options:
        return f"vault:{locator}"   # a whole secret: only an --import writes it so
    if syntax == "bank-vaults" and len(selector) == 1 and not options:
        return f"vault:{locator}#{selector[0]}" + (f"#{version}" if version else "")
    return None


def _render_awssecrets(locator, version, query):
    if locator.startswith("arn:"):
        query = [(k, v) for k, v in query if k != "region"]  # the ARN names its region
    return locator, query


def _render_awsssm(locator, version, query):
    return locator.lstrip("/"), query + ([("version", version)] if version else [])


def _render_gcp(locator, version, query):
    project, location, secret = re.fullmatch(GCP_LOCATOR, locator).groups()
    query = query + ([("location", location)] if location else [])
    return f"{project}/{secret}", query + ([("version", version)] if version else [])


def _render_azure(locator, version, query):
    host, name = re.fullmatch(r"https://([^/]+)/secrets/(.+)", locator).groups()
    vault = host[:-len(_AZURE_DEFAULT_SUFFIX)] if host.endswith(_AZURE_DEFAULT_SUFFIX) else host
    return f"{vault}/{name}" + (f"/{version}" if version else ""), query


def _parse_selector(text: str, fragment: str) -> tuple[str, ...]:
    if fragment == "":
        raise _malformed(text, "empty selector after #", "write #/key or #/a/b")
    if not fragment.startswith("/"):
        return (fragment,)  # a plain key, as vals users sometimes write it
    parts = fragment[1:].split("/")
    if any(part == "" for part in parts):
        raise _malformed(text, "empty key in the JSON pointer", "write #/key or #/a/b")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in parts)


def _parse_query(text: str, row: "ProviderSyntax", query: str | None,
                 extra_options: frozenset = frozenset()) -> tuple[tuple[str, str], ...]:
    if query is None:
        return ()
    from urllib.parse import parse_qsl  # lazy: only references with options need it
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _malformed(text, "the query is not name=value pairs",
                         "write ?name=value&name=value") from None
    allowed = COMMON_OPTIONS | row.options | extra_options
    seen = set()
    for key, value in pairs:
        if key not in allowed:
            # The name as written is never quoted (the value may be a secret that only looks
            # like a reference); the table's nearest option names the likely typo instead.
            from difflib import get_close_matches  # lazy: only for this mistake
            near = get_close_matches(key.lower(), sorted(allowed), n=1, cutoff=0.6)
            if near:
                raise _malformed(text, "unknown option name for this provider",
                                 "did you mean " + ", ".join(near) + "? options here: "
                                 + ", ".join(sorted(allowed)))
            raise _malformed(text, "unknown option name for this provider",
                             "options here: " + ", ".join(sorted(allowed)))
        if key in seen:
            raise _malformed(text, "an option is given twice", "give each option once")
        if value == "":
            raise _malformed(text, "an option has no value", "write name=value")
        seen.add(key)
    for key, value in pairs:
        if key == "encoding" and value not in ("base64", "base64url", "hex"):  # shim/pipeline/decoding.py
            raise _malformed(text, "unknown encoding", "write encoding=base64, base64url or hex")
        if key == "prefix" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise _malformed(text, "the prefix is not the start of a variable name",
                             "write letters, digits and _, not starting with a digit, e.g. prefix=APP_")
        if key == "allow_names" and not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
                                            for name in value.split(":")):
            raise _malformed(text, "allow_names is not a :-separated list of variable names",
                             "write e.g. allow_names=PATH:HOME")
        if key in ("optional", "allow_expired") and value.lower() not in ("true", "false", "1", "0"):
            raise _malformed(text, "optional and allow_expired take true or false",
                             "write e.g. optional=true")
        if key == "max_age":
            try:
                parse_duration(value, option="max_age")
            except UsageError:
                raise _malformed(text, "max_age is not a duration",
                                 "write e.g. max_age=90d") from None
    return tuple(pairs)


_BODY_ESCAPES = {"%": "%25", "#": "%23", "?": "%3F"}
_BODY_UNESCAPE = r"%(25|23|3[Ff])"  # compiled by re on first use


def escape_body(body: str) -> str:
    """Keep # and ? inside a path from reading as selector or query (and % itself)."""
    return "".join(_BODY_ESCAPES.get(char, char) for char in body)


def _unescape_body(body: str) -> str:
    return re.sub(_BODY_UNESCAPE, lambda m: {"25": "%", "23": "#"}.get(m.group(1), "?"), body)


def _split_once(text: str, separator: str) -> tuple[str, str | None]:
    head, sep, tail = text.partition(separator)
    return (head, tail) if sep else (head, None)


def _option_value(options, name):
    for key, value in options:
        if key == name:
            return value
    return None


def _take_option(options, name):
    """The option's value and the options without it."""
    return _option_value(options, name), tuple((k, v) for k, v in options if k != name)


def _set_option(options, name, value):
    return tuple([(k, v) for k, v in options if k != name] + [(name, value)])


def _require_int(text: str, value: str) -> None:
    if not value.isdigit():
        raise _malformed(text, "the version is not a whole number", "write the version as digits")


def _malformed(text: str, what: str, hint: str) -> UsageError:
    """The only way this module reports a malformed reference.

    `what` and `hint` are fixed text (tests/hardening/test_providers_hardening.py checks that
    every call passes string literals): nothing taken from the value is quoted, because a
    value that only looks like a reference (a password that happens to start with "vault:")
    would be printed, in part or whole. The caller names the variable; the syntax, from the
    table, is enough to find the fault.
    """
    return UsageError(f"malformed {_syntax_of(text)} reference: {what}", hint=hint)


def _syntax_of(text: str) -> str:
    """The spelling's fixed name (never text from the value)."""
    if text.startswith("ref+"):
        scheme = text[len("ref+"):].split("://", 1)[0]
        return f"ref+{scheme}" if scheme in SCHEMES else "ref+"
    spelling = _spelling_of(text)
    return spelling.name if spelling is not None else "reference-like"


# --- the syntax table -------------------------------------------------------
#
# One row per provider: its ref+ scheme (the canonical spelling), the options it takes beyond
# COMMON_OPTIONS, how a ref+<scheme>:// body becomes a Reference, and how a Reference is
# written back. Other spellings (vault:, file:, ARNs, @Microsoft.KeyVault(...), sm://,
# gcp:secretmanager:) are rows of SPELLINGS: a prefix (and, where a prefix is shared, a regex)
# and the parser of the whole text. A new provider adds its row here (or calls register() at
# import of this module).

@record
class ProviderSyntax:
    name: str                           # provider name (shim/providers REGISTRY) = ref+ scheme
    options: frozenset                  # options beyond COMMON_OPTIONS
    parse_vals: Callable                # (text, path, selector, options) -> Reference
    render: Callable                    # (locator, version, query) -> (body, query)
    aliases: tuple = ()                 # more ref+ schemes for the same provider
    render_native: Callable | None = None   # (syntax, ...) -> canonical text, or None for ref+


@record
class Spelling:
    name: str                           # how messages name the syntax
    prefix: str
    parse: Callable                     # (text) -> Reference
    pattern: str | None = None          # a regex the text must also match at its start


PROVIDERS: dict[str, ProviderSyntax] = {}
SCHEMES: dict[str, ProviderSyntax] = {}
SPELLINGS: list[Spelling] = [Spelling("ref+", "ref+", _parse_vals)]


def register(row: ProviderSyntax, *spellings: Spelling) -> None:
    """Add a provider's syntax: its ref+ scheme(s) and any other spellings."""
    PROVIDERS[row.name] = row
    for scheme in (row.name, *row.aliases):
        SCHEMES[scheme] = row
    SPELLINGS.extend(spellings)


register(ProviderSyntax("file", frozenset(), _file_from_vals, _render_path),
         Spelling("file:", "file:", _parse_file_short))
register(ProviderSyntax("vault", frozenset({"version"}), _vault_from_vals, _render_vault,
                        render_native=_render_bank_vaults),
         Spelling("vault:", "vault:", _parse_bank_vaults))
register(ProviderSyntax("awssecrets", frozenset({"version_stage", "version_id", "region"}),
                        _awssecrets_from_vals, _render_awssecrets),
         Spelling("arn:aws:secretsmanager:", "arn:", _parse_secretsmanager_arn,
                  r"arn:aws[a-z-]*:secretsmanager:"))
register(ProviderSyntax("awsssm", frozenset({"version", "label", "region"}),
                        _awsssm_from_vals, _render_awsssm),
         Spelling("arn:aws:ssm:", "arn:", _parse_ssm_arn, r"arn:aws[a-z-]*:ssm:"))
register(ProviderSyntax("azurekeyvault", frozenset(), _azure_from_vals, _render_azure),
         Spelling("@Microsoft.KeyVault(", "@Microsoft.KeyVault(", _parse_app_service))
register(ProviderSyntax("sops", frozenset({"format"}), _sops_from_vals, _render_path))
register(ProviderSyntax("gcpsecrets", frozenset({"version", "location"}), _gcp_from_vals,
                        _render_gcp),
         Spelling("sm://", "sm://", _parse_berglas),
         Spelling("gcp:secretmanager:", "gcp:secretmanager:", _parse_secrets_init))
register(ProviderSyntax("doppler", frozenset(), _doppler_from_vals, _render_doppler))
register(ProviderSyntax("infisical", frozenset(), _infisical_from_vals, _render_path))
register(ProviderSyntax("onepassword", frozenset(), _onepassword_from_vals, _render_path,
                        render_native=_render_op),
         Spelling("op://", "op://", _parse_op))
register(ProviderSyntax("bws", frozenset(), _bws_from_vals, _render_path))
