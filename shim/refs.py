"""The reference grammar: every accepted syntax parses to one Reference.

A Reference says where a secret lives, which part of it to take and how to
treat it; nothing is fetched here. Each syntax of interface.md is a small
parser; `canonical` is the one spelling `shim check` and every message show.

Canonical forms (docs/references.md has the full table):

    file        ref+file://<path>[?opts][#/a/b]
    vault       vault:<api-path>#<key>[#<version>]         (bank-vaults: API path, data/ included)
                ref+vault://<logical-path>[?version=N][#/a] (vals: KV v2 data/ added by the provider)
    awssecrets  ref+awssecrets://<name-or-arn>[?version_stage=S|version_id=I][#/key]
    awsssm      ref+awsssm://<name>[?version=N|label=L]    (a leading / is implied for hierarchies)
    azure       ref+azurekeyvault://<vault>/<name>[/<version>][#/key]

Messages name the syntax but never quote the whole text: a value that only looks
like a reference may be a secret.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from shim.errors import UsageError

# Options every provider understands; each provider adds its own below.
COMMON_OPTIONS = frozenset({"optional", "max_age", "allow_expired"})
PROVIDER_OPTIONS = {
    "file": frozenset(),
    "vault": frozenset({"version"}),
    "awssecrets": frozenset({"version_stage", "version_id", "region"}),
    "awsssm": frozenset({"version", "label", "region"}),
    "azurekeyvault": frozenset(),
    "gcpsecrets": frozenset({"version", "location"}),
}

# Prefixes that make a value a reference. Order matters only for display.
REFERENCE_PREFIXES = (
    "ref+", "vault:", "file:", "@Microsoft.KeyVault(", "sm://", "gcp:secretmanager:",
)
# Google Cloud Secret Manager's three syntaxes are parsed and rendered by its provider module
# (pure functions there; the Google libraries are not imported for parsing).
_GCP_PREFIXES = ("sm://", "gcp:secretmanager:", "ref+gcpsecrets://")
_ARN_PREFIX = r"arn:aws[a-z-]*:(secretsmanager|ssm):"  # compiled by re on first use


# The data carriers on the start-up path are NamedTuples or plain classes, not dataclasses:
# building a dataclass costs about 0.4 ms, a NamedTuple 0.06 ms, and shim runs at every
# container start (docs/performance.md).
class Reference(NamedTuple):
    provider: str                       # file | vault | awssecrets | awsssm | azurekeyvault
    locator: str                        # where the secret lives, in the provider's own terms
    selector: tuple[str, ...] = ()      # JSON pointer parts (or one plain key) into the secret
    version: str | None = None          # a pinned version (vault N, azure id, ssm N)
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
            (k, v) for k, v in self.options if k not in COMMON_OPTIONS)
        return (self.provider, self.syntax if self.provider == "vault" else "",
                self.locator, self.version, fetch_options)

    def without_selector(self) -> "Reference":
        return Reference(self.provider, self.locator, (), self.version, self.options,
                         self.syntax, _render(self.provider, self.syntax, self.locator,
                                              (), self.version, self.options))

    def with_selector(self, selector: tuple[str, ...]) -> "Reference":
        return Reference(self.provider, self.locator, selector, self.version, self.options,
                         self.syntax, _render(self.provider, self.syntax, self.locator,
                                              selector, self.version, self.options))


def looks_like_reference(text: str) -> bool:
    return text.startswith(REFERENCE_PREFIXES) or (
        text.startswith("arn:") and re.match(_ARN_PREFIX, text) is not None)


def parse_reference(text: str) -> Reference:
    """Parse one reference; UsageError (64) says what is wrong and how to write it."""
    if text.startswith(_GCP_PREFIXES):
        from shim.providers.gcp import parse_gcp
        return parse_gcp(text)
    if text.startswith("ref+"):
        return _parse_vals(text)
    if text.startswith("vault:"):
        return _parse_bank_vaults(text)
    if text.startswith("file:"):
        return _parse_file_short(text)
    if text.startswith("@Microsoft.KeyVault("):
        return _parse_app_service(text)
    match = re.match(_ARN_PREFIX, text)
    if match:
        if match.group(1) == "secretsmanager":
            return _parse_secretsmanager_arn(text)
        return _parse_ssm_arn(text)
    raise _malformed(text, "not a reference",
                     "see the reference syntaxes in docs/references.md")


# --- vals: ref+<provider>://<path>[?query][#/pointer] -----------------------

_VALS_SCHEMES = {
    "file": "file", "vault": "vault", "awssecrets": "awssecrets",  # pragma: allowlist secret
    "awsssm": "awsssm", "azurekeyvault": "azurekeyvault",
}


def _parse_vals(text: str) -> Reference:
    match = re.fullmatch(r"ref\+([a-z0-9]+)://(.*)", text, re.DOTALL)
    if not match:
        raise _malformed(text, "a ref+ reference needs a scheme and ://",
                         "write e.g. ref+vault://secret/app#/password")
    scheme, rest = match.groups()
    provider = _VALS_SCHEMES.get(scheme)
    if provider is None:
        raise _malformed(text, f"unknown provider {scheme!r}",
                         "use one of: " + ", ".join(sorted(_VALS_SCHEMES)))
    rest, fragment = _split_once(rest, "#")
    path, query = _split_once(rest, "?")
    path = _unescape_body(path)
    selector = _parse_selector(text, fragment) if fragment is not None else ()
    options = _parse_query(text, provider, query)
    if not path:
        raise _malformed(text, "the path is empty", "name the secret after ://")
    if provider == "file":
        return _make("file", path, selector, None, options, "vals")
    if provider == "vault":
        version, options = _take_option(options, "version")
        if version is not None:
            _require_int(text, version, "version")
        path = path.strip("/")
        if not path:
            raise _malformed(text, "the Vault path is empty", "write ref+vault://secret/app#/key")
        return _make("vault", path, selector, version, options, "vals")
    if provider == "awssecrets":
        if _option_value(options, "version_stage") and _option_value(options, "version_id"):
            raise _malformed(text, "version_stage and version_id are exclusive",
                             "give one of them")
        secret_id = path
        if secret_id.startswith("arn:"):
            secret_id, options = _arn_region(text, secret_id, "secretsmanager", options)
        return _make("awssecrets", secret_id, selector, None, options, "vals")
    if provider == "awsssm":
        return _ssm_reference(text, path, selector, options, "vals")
    return _azure_from_vals(text, path, selector, options)


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
        _require_int(text, version, "version")
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
        _require_int(text, version, "version")
    if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", name):
        raise _malformed(text, f"parameter name {name!r} has characters SSM does not allow",
                         "names use letters, digits and _ . - /")
    if label is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]+", label):
        raise _malformed(text, f"label {label!r} is not a valid SSM label",
                         "labels use letters, digits and _ . -")
    if version is not None and label:
        raise _malformed(text, "a version and a label are exclusive", "give one of them")
    # A hierarchical name starts with / (AWS drops that slash inside ARNs).
    full_name = "/" + name if "/" in name else name
    return _make("awsssm", full_name, selector, version, options, syntax)


def _arn_region(text, arn, service, options):
    fields = arn.split(":")
    if len(fields) < 7 or fields[2] != service or not fields[3]:
        raise _malformed(text, f"not a {service} ARN with a region",
                         f"write arn:aws:{service}:<region>:<account>:...")
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
            raise _malformed(text, f"{item.strip()!r} is not Name=value",
                             "separate settings with ; e.g. VaultName=v;SecretName=n")
        settings[key.strip()] = value.strip()
    known = {"SecretUri", "VaultName", "SecretName", "SecretVersion"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise _malformed(text, f"unknown setting {unknown[0]!r}",
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
        raise _malformed(text, f"secret name {name!r} is not valid for Key Vault",
                         "names use letters, digits and dashes only")
    if version is not None and not re.fullmatch(r"[0-9A-Za-z]{1,64}", version):
        raise _malformed(text, f"secret version {version!r} is not valid",
                         "a version is the 32-character id from the portal")
    locator = f"https://{host}/secrets/{name}"
    return _make("azurekeyvault", locator, selector, version, tuple(options), syntax)


# --- shared pieces ----------------------------------------------------------

def _make(provider, locator, selector, version, options, syntax) -> Reference:
    options = tuple(sorted(options))
    return Reference(provider, locator, tuple(selector), version, options, syntax,
                     _render(provider, syntax, locator, tuple(selector), version, options))


def _render(provider, syntax, locator, selector, version, options) -> str:
    if provider == "gcpsecrets":
        from shim.providers.gcp import render_gcp
        return render_gcp(locator, selector, version, options)
    if provider == "vault" and syntax == "bank-vaults" and len(selector) == 1 and not options:
        text = f"vault:{locator}#{selector[0]}"
        return text + (f"#{version}" if version else "")
    query = list(options)
    if provider == "vault":
        if version:
            query.append(("version", version))
        body = locator
    elif provider == "file":
        body = locator
    elif provider == "awssecrets":
        body = locator
        if locator.startswith("arn:"):
            # The ARN already names its region.
            query = [(k, v) for k, v in query if k != "region"]
    elif provider == "awsssm":
        if version:
            query.append(("version", version))
        body = locator.lstrip("/")
    else:  # azurekeyvault
        host, name = re.fullmatch(r"https://([^/]+)/secrets/(.+)", locator).groups()
        vault = host[:-len(_AZURE_DEFAULT_SUFFIX)] if host.endswith(_AZURE_DEFAULT_SUFFIX) else host
        body = f"{vault}/{name}" + (f"/{version}" if version else "")
    return _with_query_and_selector(f"ref+{provider}://{_escape_body(body)}", query, selector)


def _with_query_and_selector(text: str, query, selector) -> str:
    if query:
        from urllib.parse import quote  # lazily: only references with options need it
        text += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(query))
    if selector:
        text += "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in selector)
    return text


def _parse_selector(text: str, fragment: str) -> tuple[str, ...]:
    if fragment == "":
        raise _malformed(text, "empty selector after #", "write #/key or #/a/b")
    if not fragment.startswith("/"):
        return (fragment,)  # a plain key, as vals users sometimes write it
    parts = fragment[1:].split("/")
    if any(part == "" for part in parts):
        raise _malformed(text, "empty key in the JSON pointer", "write #/key or #/a/b")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in parts)


def _parse_query(text: str, provider: str, query: str | None) -> tuple[tuple[str, str], ...]:
    if query is None:
        return ()
    from urllib.parse import parse_qsl  # lazily: only references with options need it
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _malformed(text, "the query is not name=value pairs",
                         "write ?name=value&name=value") from None
    allowed = COMMON_OPTIONS | PROVIDER_OPTIONS[provider]
    seen = set()
    for key, value in pairs:
        if key not in allowed:
            raise _malformed(text, f"unknown option {key!r}",
                             "options here: " + ", ".join(sorted(allowed)))
        if key in seen:
            raise _malformed(text, f"option {key!r} given twice", "give it once")
        if value == "":
            raise _malformed(text, f"option {key!r} has no value", f"write {key}=<value>")
        seen.add(key)
    for key, value in pairs:
        if key in ("optional", "allow_expired") and value.lower() not in ("true", "false", "1", "0"):
            raise _malformed(text, f"option {key} must be true or false", f"write {key}=true")
        if key == "max_age":
            from shim.durations import parse_duration
            try:
                parse_duration(value, option="max_age")
            except UsageError:
                raise _malformed(text, f"max_age {value!r} is not a duration",
                                 "write e.g. max_age=90d") from None
    return tuple(pairs)


_BODY_ESCAPES = {"%": "%25", "#": "%23", "?": "%3F"}
_BODY_UNESCAPE = r"%(25|23|3[Ff])"  # compiled by re on first use


def _escape_body(body: str) -> str:
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


def _require_int(text: str, value: str, what: str) -> None:
    if not value.isdigit():
        raise _malformed(text, f"{what} {value!r} is not a whole number", f"write {what} as digits")


def _malformed(text: str, what: str, hint: str) -> UsageError:
    # The text itself is not quoted: a value that only looks like a reference (a password
    # that happens to start with "vault:") would be printed whole. The variable is named by
    # the caller, and the syntax is enough to find the fault.
    return UsageError(f"malformed {_syntax_of(text)} reference: {what}", hint=hint)


def _syntax_of(text: str) -> str:
    if text.startswith("ref+"):
        scheme = text.split("://", 1)[0] if "://" in text else "ref+"
        return scheme if len(scheme) <= 20 else "ref+"
    for prefix in ("vault:", "file:", "@Microsoft.KeyVault(", "sm://", "gcp:secretmanager:"):
        if text.startswith(prefix):
            return prefix
    match = re.match(_ARN_PREFIX, text)
    return match.group(0) if match else "reference-like"
