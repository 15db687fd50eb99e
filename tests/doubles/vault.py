"""A HashiCorp Vault test double that the real hvac client talks to over a real socket.

    with VaultDouble() as vault:
        vault.kv2_put("secret", "app", {"password": canary})
        client = vault.client()                      # hvac.Client with the root token
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)

The server is a stdlib `ThreadingHTTPServer` (listen backlog 128, like Go's) on 127.0.0.1, port 0
(optionally TLS through `ssl_context=`). All state lives in this object; tests seed it with the
helper methods and inspect it afterwards (request log, leases, issued credentials). One lock
serialises state changes, so concurrent clients see a consistent server.

Test controls: seal() / unseal() / unseal_after(s); `latency` (seconds slept before every answer);
fail_next(n, status, path=...) queues injected errors; advance_clock(s) moves the double's clock so
tokens, leases and wrapping tokens expire without sleeping; `requests`, count(), reset_log();
`max_in_flight` is the most requests that were being answered at the same moment (reset_log()
resets it), which shows whether a client really reads concurrently. `echo_credentials = True`
makes every error body quote what the client sent (its token header and request body), as a
careless plugin or proxy may: the client's redaction of error text is then exercised.
Request bodies are never logged, and token headers are logged as "<redacted>".

Facts this double is built from (wire-facts.md "HashiCorp Vault", plus what was looked up):

Envelope and errors
- Every JSON body is the envelope `request_id, lease_id, renewable, lease_duration, data,
  wrap_info, warnings, auth, mount_type`, written with a trailing newline as Go's json.Encoder
  does, with `Content-Type: application/json` exactly and `Cache-Control: no-store`.
  hvac (adapters.RawAdapter._raise_for_error) parses an error body only when the Content-Type
  header equals "application/json"; otherwise the exception message is the raw text.
- JSON is written the way Go's encoder writes it: compact, UTF-8, with `<`, `>`, `&`, U+2028 and
  U+2029 escaped as \\u003c etc. (so a secret containing them is escaped on the wire).
- Errors are `{"errors": [...]}`. hvac maps 400 InvalidRequest, 401 Unauthorized, 403 Forbidden,
  404 InvalidPath, 429 RateLimitExceeded, 500 InternalServerError, 501 VaultNotInitialized,
  502 BadGateway, 503 VaultDown, anything else UnexpectedError (hvac/exceptions.py).
- 403: policy denial and a missing token answer `["permission denied"]`. Vault 1.x joins errors
  with go-multierror, so a current server says `"1 error occurred:\\n\\t* permission denied\\n\\n"`
  for a policy denial and `"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n"`
  for an unknown, expired or revoked token (Vault docs concepts/tokens "Error Responses",
  hashicorp/vault#26687; many client test suites quote these bodies). `forbidden_style=
  "multierror"` produces those; the default "plain" gives `["permission denied"]` everywhere.
  A Kubernetes login with a JWT that fails review is also 403 `["permission denied"]`
  (hashicorp/vault-plugin-auth-kubernetes#84, Content-Length 33).
- 404: an unknown secret or version inside a mount is `{"errors":[]}`; a path no mount serves is
  `{"errors":["no handler for route \\"<path>\\". route entry not found."]}`. Reading a KV v2 mount
  without `data/` is 404 with the full envelope, no `errors` key, and the warning "Invalid path for
  a versioned K/V secrets engine. ..." (seen in Spring Vault, Ansible community.hashi_vault and
  Go clients that match on it).
- 405 for an operation a path does not support; 503 `["Vault is sealed"]` for everything except
  `sys/health` and `sys/seal-status` while sealed.

KV
- v1 `GET <mount>/<path>`: data is the secret map, lease_duration the mount TTL (2764800) or the
  secret's own `ttl` key, lease_id "" and renewable false. Writes (POST/PUT) and DELETE are 204.
- v2 `GET <mount>/data/<path>[?version=N]` (0 or absent = latest): data = {data, metadata:
  {created_time, custom_metadata, deletion_time, destroyed, version}}. A deleted (deletion_time in
  the past) or destroyed version is 404 with the full envelope and data.data = null.
  hvac's `read_secret_version(raise_on_deleted_version=False)` returns that envelope only when
  `deletion_time != ""`, so a destroyed-but-not-deleted version still raises InvalidPath.
- v2 write `POST/PUT <mount>/data/<path>` {"data", "options": {"cas"}} returns the new version's
  metadata (hvac `create_or_update_secret`; `patch` reads, then writes with cas). Metadata
  `GET <mount>/metadata/<path>`; `DELETE data/`, `POST delete/|undelete/|destroy/` are 204.
  Versions beyond max_versions (default 10) are dropped and oldest_version moves up.
- Times are RFC 3339 with nanoseconds and "Z", as Go writes them.

Tokens and policies
- Token in `X-Vault-Token` or `Authorization: Bearer`. Service tokens look like `hvs.` + ~90
  characters; the dev-mode root token is short. hvac's `Client(token=None)` falls back to
  VAULT_TOKEN / ~/.vault-token, so `client(token="")` is how a test sends no token at all.
- A policy here is a list of path patterns relative to the token's namespace: "a/b" allows "a/b"
  and everything under "a/b/"; a trailing "*" is a plain prefix glob (Vault's policy syntax).
  Capabilities are not modelled: a matching pattern allows every operation. Policies are looked
  up on each request, so editing one affects tokens that already hold it, as in Vault.
  The built-in default policy grants lookup-self, renew-self, revoke-self, sys/leases/renew and
  sys/wrapping/unwrap. Revoking a lease needs `sys/leases/revoke` in a policy, as in Vault.
- `sys/internal/ui/mounts/<path>` is answered when the token can reach anything in that mount
  (Vault's hasMountAccess); an unknown mount is 403, not 404, so mounts cannot be enumerated.
  `create_token(preflight=False)` models a policy that denies the preflight explicitly.
- renew-self / lease renew past max_ttl are capped with the warning
  `TTL of "<asked>" exceeded the effective max_ttl of "<left>"; TTL value is capped accordingly`
  (durations in Go's format, e.g. "1h0m0s"). A non-renewable token: 400 "lease is not renewable".
  An unknown, expired or revoked lease: 400 "lease not found". Revoke is 204 even when unknown.
- Revoking a token revokes the leases it created.

Auth methods (the auth block: client_token, accessor, policies, token_policies,
identity_policies, metadata, lease_duration, renewable, entity_id, token_type, orphan,
mfa_requirement, num_uses)
- AppRole `POST auth/<mount>/login` {role_id, secret_id}; bad: 400 "invalid role or secret ID".
  `GET auth/<mount>/role/<r>/role-id` and `POST .../secret-id` (what hvac `generate_secret_id`,
  optionally with wrap_ttl, calls) are served too.
- Kubernetes `auth/<mount>/login` {role, jwt}: unknown role 400 `invalid role name "<r>"`,
  rejected JWT 403. JWT: unknown role 400 `role "<r>" could not be found`, rejected JWT 400
  "error validating token: ...".

Wrapping
- `X-Vault-Wrap-TTL` on a request whose answer has data or auth: 200 envelope with data null and
  wrap_info {token, accessor, ttl, creation_time, creation_path[, wrapped_accessor]}.
  `POST sys/wrapping/unwrap` with {"token"} or with the wrapping token as X-Vault-Token returns
  the original body once; again (or expired): 400 "wrapping token is not valid or does not exist".

Dynamic database secrets
- `GET <mount>/creds/<role>`: lease_id `<mount>/creds/<role>/<id>`, renewable, username and
  password minted together per read; unknown role 400 "unknown role: <r>". `PUT sys/leases/renew`
  {lease_id, increment} and `PUT sys/leases/revoke` {lease_id} (hvac uses PUT for both).

Namespaces, health
- `X-Vault-Namespace: ns1/` (with or without slashes) makes the path relative to ns1; a path may
  continue into a child namespace ("ns2/secret/..."). Each namespace has its own mounts, roles and
  leases; a token works in its own namespace and below it; the root token works everywhere.
  A namespace that does not exist answers 404 "no handler for route".
- `sys/health` (GET and HEAD; 200 active, 503 sealed; `activecode`/`sealedcode` override) and
  `sys/seal-status` (always 200) need no token. hvac's `read_health_status` uses HEAD by default
  and never raises (raise_exception=False).

hvac details that matter to callers (hvac 2.4.0 source, adapters.py, utils.py, kv_v1.py, kv_v2.py)
- JSONAdapter returns a dict only for status 200; a 204 comes back as a requests.Response.
- `kv.v1.create_or_update_secret(method=None)` first GETs the path to choose POST or PUT.
- `Client.read()` turns InvalidPath into None; `is_authenticated()` swallows 403/404/400.
- Exception text is `"<errors joined by ', '>, on <METHOD> <url>"`; hvac never retries.
- `kv.v2.patch()` calls read_secret_version without raise_on_deleted_version, so hvac itself
  emits the DeprecationWarning about that parameter.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import secrets
import ssl
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

VAULT_VERSION = "1.17.6"
BUILD_DATE = "2024-09-24T19:48:40Z"
KV1_DEFAULT_TTL = 2764800  # 768h, Vault's system default lease TTL
KV2_DEFAULT_MAX_VERSIONS = 10
JSON = "application/json"

# Paths any valid token may use: Vault's built-in "default" policy.
DEFAULT_POLICY_PATHS = frozenset({
    "auth/token/lookup-self",
    "auth/token/renew-self",
    "auth/token/revoke-self",
    "sys/leases/renew",
    "sys/wrapping/unwrap",
})

KV2_WRONG_PATH_WARNING = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API "
    "endpoints to use. If using the Vault CLI, use 'vault kv {verb}' for this operation."
)
WRAPPING_TOKEN_INVALID = "wrapping token is not valid or does not exist"

_ALNUM = string.ascii_letters + string.digits


# ---------------------------------------------------------------------------------------------
# Small value helpers
# ---------------------------------------------------------------------------------------------

def _random(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _service_token() -> str:
    # Vault >= 1.10 service tokens: "hvs." + a base64url protobuf, about 95 characters in all.
    return "hvs.CAESI" + _random(86, _ALNUM + "-_")


def _rfc3339(epoch: float | None = None) -> str:
    """Go's RFC3339Nano in UTC: nanoseconds, trailing zeros trimmed, "Z"."""
    nanos = time.time_ns() if epoch is None else int(epoch * 1_000_000_000)
    seconds, fraction = divmod(nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> int:
    """Vault's parseutil.ParseDurationSecond: an int, "3600", "90s", "1h30m", "7d"."""
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {value!r}")
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def go_duration(seconds: int) -> str:
    """time.Duration.String() for whole seconds: 3600 -> "1h0m0s", 90 -> "1m30s"."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _ttl_capped_warning(asked: int, left: int) -> str:
    return (f'TTL of "{go_duration(asked)}" exceeded the effective max_ttl of '
            f'"{go_duration(left)}"; TTL value is capped accordingly')


def _clean_namespace(value: str) -> str:
    return "/".join(part for part in value.split("/") if part)


def _pattern_allows(pattern: str, path: str) -> bool:
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.endswith("/"):
        return path.startswith(pattern)
    return path == pattern or path.startswith(pattern + "/")


def _pattern_reaches_mount(pattern: str, mount_path: str) -> bool:
    """Whether a policy pattern grants anything inside the mount (Vault's hasMountAccess)."""
    literal = pattern.rstrip("*")
    if literal.startswith(mount_path) or literal + "/" == mount_path:
        return True
    return pattern.endswith("*") and mount_path.startswith(literal)


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------

@dataclass
class Token:
    id: str
    accessor: str
    policies: list[str]          # names; patterns are looked up per request, as Vault does
    namespace: str
    ttl: int                     # creation TTL (0 = never expires)
    max_ttl: int                 # explicit max TTL (0 = none)
    renewable: bool
    issued: float
    expires: float | None
    display_name: str
    path: str
    orphan: bool
    meta: dict[str, str] | None
    preflight: bool = True
    entity_id: str = ""
    revoked: bool = False

    @property
    def is_root(self) -> bool:
        return "root" in self.policies

    def alive(self, now: float) -> bool:
        return not self.revoked and (self.expires is None or now < self.expires)

    def auth_block(self) -> dict:
        return {
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": list(self.policies),
            "token_policies": list(self.policies),
            "identity_policies": [],
            "metadata": copy.deepcopy(self.meta),
            "lease_duration": self.ttl,
            "renewable": self.renewable,
            "entity_id": self.entity_id,
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": None,
            "num_uses": 0,
        }


@dataclass
class KvVersion:
    data: dict | None
    created_time: str
    deleted_at: float | None = None
    destroyed: bool = False

    @property
    def deletion_time(self) -> str:
        return _rfc3339(self.deleted_at) if self.deleted_at is not None else ""

    def hidden(self, now: float) -> bool:
        """Deleted (deletion time reached) or destroyed: reads give 404."""
        return self.destroyed or (self.deleted_at is not None and self.deleted_at <= now)


@dataclass
class KvSecret:
    created_time: str
    updated_time: str
    versions: dict[int, KvVersion] = field(default_factory=dict)
    current_version: int = 0
    oldest_version: int = 0
    custom_metadata: dict[str, str] | None = None
    max_versions: int = 0
    cas_required: bool = False

    def version_metadata(self, number: int) -> dict:
        version = self.versions[number]
        return {
            "created_time": version.created_time,
            "custom_metadata": copy.deepcopy(self.custom_metadata),
            "deletion_time": version.deletion_time,
            "destroyed": version.destroyed,
            "version": number,
        }


@dataclass
class DatabaseRole:
    name: str
    default_ttl: int
    max_ttl: int


@dataclass
class Mount:
    path: str                    # "secret/" (relative to its namespace)
    type: str                    # "kv" or "database"
    version: int | None = None   # kv only: 1, 2, or None (a v1 mount created without options)
    accessor: str = ""
    uuid: str = ""
    kv1: dict[str, dict] = field(default_factory=dict)
    kv2: dict[str, KvSecret] = field(default_factory=dict)
    roles: dict[str, DatabaseRole] = field(default_factory=dict)

    @property
    def is_kv2(self) -> bool:
        return self.type == "kv" and self.version == 2


@dataclass
class LoginRole:
    """An AppRole, Kubernetes or JWT role and the token it hands out."""
    name: str
    policies: list[str]
    ttl: int
    max_ttl: int
    renewable: bool
    preflight: bool
    role_id: str = ""
    secret_ids: set[str] = field(default_factory=set)
    jwt: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class AuthMount:
    path: str                    # "approle/"
    type: str                    # "approle", "kubernetes", "jwt"
    accessor: str
    roles: dict[str, LoginRole] = field(default_factory=dict)


@dataclass
class Lease:
    lease_id: str
    role: str
    username: str
    password: str
    namespace: str
    token_id: str
    issued: float
    ttl: int
    expires: float
    max_expires: float
    revoked: bool = False
    renewals: int = 0

    def alive(self, now: float) -> bool:
        return not self.revoked and now < self.expires


@dataclass(frozen=True)
class IssuedCredential:
    lease_id: str
    role: str
    username: str
    password: str
    namespace: str


@dataclass
class Wrapped:
    token: str
    accessor: str
    ttl: int
    creation_time: str
    creation_path: str
    namespace: str
    expires: float
    body: dict


@dataclass
class Namespace:
    path: str                    # "" for root, "ns1", "ns1/ns2"
    id: str
    mounts: dict[str, Mount] = field(default_factory=dict)
    auth: dict[str, AuthMount] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    policies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def mount_for(self, path: str) -> tuple[Mount | None, str]:
        """Longest mount prefix of path, and the rest of the path after it."""
        best = None
        for mount in self.mounts.values():
            longer = best is None or len(mount.path) > len(best.path)
            if (path + "/").startswith(mount.path) and longer:
                best = mount
        if best is None:
            return None, path
        return best, path[len(best.path):]


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str                    # as sent, e.g. "/v1/secret/data/app"
    query: dict[str, str]
    headers: dict[str, str]      # token-bearing headers redacted
    namespace: str
    status: int
    time: float


@dataclass
class _Failure:
    status: int
    errors: list[str] | None
    path: str | None
    body: bytes | None
    content_type: str
    headers: dict[str, str]


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------

@dataclass
class Request:
    method: str                  # upper case; GET ?list=true is turned into LIST
    raw_path: str
    path: str                    # without "/v1/" and surrounding slashes
    query: dict[str, str]
    headers: dict[str, str]      # lower-cased names
    body: bytes

    def json(self) -> dict:
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise VaultFailure(400, ["failed to parse JSON input: invalid character"]) from None
        if not isinstance(value, dict):
            raise VaultFailure(400, ["failed to parse JSON input: not an object"])
        return value


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0         # seconds between body bytes (a slow server); 0: all at once


class VaultFailure(Exception):
    """Raised by a handler to answer with an error status (or a prepared response)."""

    def __init__(self, status: int, errors: list[str] | None = None,
                 response: Response | None = None):
        super().__init__(status, errors)
        self.response = response or _json_response(status, {"errors": errors or []})


_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                    "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_json(payload: Any) -> bytes:
    """JSON as Go's json.Encoder writes it: compact, UTF-8, HTML characters escaped, newline."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    # These characters can only occur inside JSON strings, so replacing them is safe.
    for char, escape in _GO_HTML_ESCAPES.items():
        text = text.replace(char, escape)
    return (text + "\n").encode()


def _json_response(status: int, payload: dict) -> Response:
    return Response(status, _go_json(payload))


def _echoing(request: Request, response: Response) -> Response:
    """The error answer, plus the credentials of the request quoted back (echo_credentials)."""
    try:
        errors = json.loads(response.body).get("errors") or []
    except ValueError:
        errors = []
    sent = " ".join(part for part in (request.headers.get("x-vault-token", ""),
                                      request.body.decode("utf-8", "replace")) if part)
    return _json_response(response.status, {"errors": [*errors, f"request was: {sent}"]})


def envelope(data: Any = None, *, lease_id: str = "", renewable: bool = False,
             lease_duration: int = 0, auth: dict | None = None, warnings: list[str] | None = None,
             wrap_info: dict | None = None, mount_type: str = "") -> dict:
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": lease_id,
        "renewable": renewable,
        "lease_duration": lease_duration,
        "data": data,
        "wrap_info": wrap_info,
        "warnings": warnings,
        "auth": auth,
        "mount_type": mount_type,
    }


def _ok(payload: dict) -> Response:
    return _json_response(200, payload)


def _no_content() -> Response:
    return Response(204, b"", content_type=None)


def _methods(request: Request, handlers: dict[str, Callable[[], Response]]) -> Response:
    """Vault treats POST and PUT alike; anything not listed is 405."""
    method = "PUT" if request.method == "POST" else request.method
    table = {("PUT" if name == "POST" else name): fn for name, fn in handlers.items()}
    if method not in table:
        raise VaultFailure(405, ["unsupported operation"])
    return table[method]()


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as hvac's requests.Session expects
    # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs add
    # about 40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw_path = unquote(url.path)
        method = self.command.upper()
        if method == "GET" and query.get("list", "").lower() in ("true", "1"):
            method = "LIST"
        path = raw_path[len("/v1/"):] if raw_path.startswith("/v1/") else ""
        request = Request(method, raw_path, path.strip("/"), query,
                          {k.lower(): v for k, v in self.headers.items()}, body)
        self._send(self.server.vault._handle(request))  # type: ignore[attr-defined]

    def send_response(self, code: int, message: str | None = None) -> None:
        # Vault (Go net/http) sends Date but no Server header.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.status != 204:
            if response.trickle:
                self._trickle(response)
            else:
                self.wfile.write(response.body)

    def _trickle(self, response: Response) -> None:
        """Headers at once, then the body a byte at a time (until the client or the double goes)."""
        self.wfile.flush()
        for index in range(len(response.body)):
            if self.server.vault._server is None:  # type: ignore[attr-defined]
                break
            try:
                self.wfile.write(response.body[index:index + 1])
                self.wfile.flush()
            except OSError:
                break
            time.sleep(response.trickle)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the double keeps its own request log


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a client opening 16 connections at once
    # would see some SYNs dropped and retried a second later. Go's listener (Vault) uses the
    # system's somaxconn.
    request_queue_size = 128


@dataclass
class _Call:
    """One request being answered: where it points and who makes it."""
    request: Request
    namespace: Namespace
    path: str                    # relative to the namespace
    token: Token | None = None


# ---------------------------------------------------------------------------------------------
# The double
# ---------------------------------------------------------------------------------------------

_ROOT = object()


class VaultDouble:
    """A Vault server in-process. Use as a context manager, or call start() and stop()."""

    def __init__(self, *, kv_mounts: dict[str, int | None] | None = None,
                 root_token: str | None = None, default_lease_ttl: int = 3600,
                 max_lease_ttl: int = 86400, forbidden_style: str = "plain",
                 ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        if forbidden_style not in ("plain", "multierror"):
            raise ValueError("forbidden_style must be 'plain' or 'multierror'")
        self.root_token = root_token or "hvs." + _random(24)
        self.default_lease_ttl = default_lease_ttl
        self.max_lease_ttl = max_lease_ttl
        self.forbidden_style = forbidden_style
        self.latency = 0.0
        self.echo_credentials = False
        self._host = host
        self._ssl_context = ssl_context
        self._lock = threading.RLock()
        self._sealed = False
        self._timers: list[threading.Timer] = []
        self._failures: list[_Failure] = []
        self._trickles: list[list] = []   # [path prefix, seconds per byte, answers to skip]
        self._log: list[LoggedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._tokens: dict[str, Token] = {}
        self._wrapped: dict[str, Wrapped] = {}
        self._issued: list[IssuedCredential] = []
        self._namespaces: dict[str, Namespace] = {}
        self._server: ThreadingHTTPServer | None = None
        self._cluster_id = str(uuid.uuid4())
        self._clock_offset = 0.0
        self._thread: threading.Thread | None = None
        self.add_namespace("")
        if kv_mounts is None:
            kv_mounts = {"secret": 2, "kv1": 1}
        for name, version in kv_mounts.items():
            self.add_mount(name, "kv", version=version)
        self.add_mount("database", "database")
        self._add_token(self.root_token, policies=["root"], namespace="", ttl=0,
                        max_ttl=0, renewable=False, display_name="root", path="auth/token/root",
                        orphan=True, meta=None, preflight=True)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> "VaultDouble":
        server = _Server((self._host, 0), _HttpHandler)
        server.daemon_threads = True
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        server.vault = self  # type: ignore[attr-defined]
        self._server = server
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="vault-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "VaultDouble":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the double first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    def client(self, token: Any = _ROOT, namespace: str | None = None, **kwargs: Any):
        """An hvac.Client for this server; token="" sends no token (hvac would read VAULT_TOKEN)."""
        import hvac
        value = self.root_token if token is _ROOT else (token or "")
        return hvac.Client(url=self.url, token=value, namespace=namespace, **kwargs)

    # -- test controls ----------------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        return self._sealed

    def seal(self) -> None:
        with self._lock:
            self._sealed = True

    def unseal(self) -> None:
        with self._lock:
            self._sealed = False

    def unseal_after(self, seconds: float) -> None:
        timer = threading.Timer(seconds, self.unseal)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def advance_clock(self, seconds: float) -> None:
        """Move the double's clock forward: tokens, leases and wrapping tokens expire sooner.

        Lets a test reach an expiry without sleeping; timestamps in responses move too.
        """
        with self._lock:
            self._clock_offset += seconds

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def fail_next(self, n: int = 1, status: int = 429, *, errors: list[str] | None = None,
                  path: str | None = None, body: bytes | str | None = None,
                  content_type: str = JSON, headers: dict[str, str] | None = None) -> None:
        """Answer the next n requests (whose API path starts with `path`, if given) with an error.

        Default bodies are what Vault says for that status; pass `body` (and `content_type`) to
        imitate a proxy's non-JSON page instead.
        """
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            for _ in range(n):
                self._failures.append(_Failure(status, errors, path and path.strip("/"), raw,
                                               content_type, dict(headers or {})))

    def trickle(self, path: str, seconds_per_byte: float = 1.0, *, after: int = 0) -> None:
        """Answer requests under `path` slowly: headers, then one body byte every interval.

        The first `after` matching requests are answered normally.
        """
        with self._lock:
            self._trickles.append([path.strip("/"), seconds_per_byte, after])

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None, method: str | None = None, *,
              prefix: bool = False) -> int:
        """Requests seen for an API path ("secret/data/app" or "/v1/secret/data/app")."""
        wanted = path.strip("/").removeprefix("v1/") if path is not None else None
        total = 0
        for entry in self.requests:
            api_path = entry.path.strip("/").removeprefix("v1/")
            if method is not None and entry.method != method.upper():
                continue
            matches = api_path.startswith(wanted) if prefix else api_path == wanted
            if wanted is not None and not matches:
                continue
            total += 1
        return total

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._max_in_flight = self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests in progress at once since start (or the last reset_log())."""
        with self._lock:
            return self._max_in_flight

    # -- namespaces and mounts --------------------------------------------------------------

    def add_namespace(self, path: str) -> Namespace:
        """Create a namespace (and its parents) with empty copies of the root's mounts."""
        path = _clean_namespace(path)
        with self._lock:
            if path in self._namespaces:
                return self._namespaces[path]
            if path:
                self.add_namespace(path.rpartition("/")[0])
            namespace = Namespace(path=path, id=_random(5) if path else "root")
            self._namespaces[path] = namespace
            if path:
                for mount in list(self._namespaces[""].mounts.values()):
                    self.add_mount(mount.path, mount.type, version=mount.version, namespace=path)
            return namespace

    def add_mount(self, path: str, type: str = "kv", *, version: int | None = 2,
                  namespace: str = "") -> Mount:
        mount = Mount(path=path.strip("/") + "/", type=type,
                      version=version if type == "kv" else None,
                      accessor=f"{type}_{secrets.token_hex(4)}", uuid=str(uuid.uuid4()))
        with self._lock:
            return self._ns(namespace).mounts.setdefault(mount.path, mount)

    def _ns(self, namespace: str) -> Namespace:
        path = _clean_namespace(namespace)
        return self._namespaces[path] if path in self._namespaces else self.add_namespace(path)

    def _kv_mount(self, mount: str, namespace: str, version: int) -> Mount:
        found = self._ns(namespace).mounts.get(mount.strip("/") + "/")
        if found is None or found.type != "kv" or (found.version == 2) != (version == 2):
            raise KeyError(f"no KV v{version} mount {mount!r} in namespace {namespace!r}")
        return found

    # -- KV helpers -------------------------------------------------------------------------

    def kv1_put(self, mount: str, path: str, data: dict, *, namespace: str = "") -> None:
        with self._lock:
            self._kv_mount(mount, namespace, 1).kv1[path.strip("/")] = copy.deepcopy(data)

    def kv1_read(self, mount: str, path: str, *, namespace: str = "") -> dict | None:
        with self._lock:
            return copy.deepcopy(self._kv_mount(mount, namespace, 1).kv1.get(path.strip("/")))

    def kv2_put(self, mount: str, path: str, data: dict, custom_metadata: dict | None = None, *,
                namespace: str = "") -> int:
        """Write a new version; returns its number."""
        with self._lock:
            target = self._kv_mount(mount, namespace, 2)
            secret = self._kv2_write(target, path.strip("/"), data, cas=None)
            if custom_metadata is not None:
                secret.custom_metadata = dict(custom_metadata)
            return secret.current_version

    def kv2_read(self, mount: str, path: str, version: int | None = None, *,
                 namespace: str = "") -> dict | None:
        """The stored data of a version (None when deleted, destroyed or absent)."""
        with self._lock:
            secret = self._kv_mount(mount, namespace, 2).kv2.get(path.strip("/"))
            if secret is None:
                return None
            stored = secret.versions.get(version or secret.current_version)
            if stored is None or stored.hidden(self._now()):
                return None
            return copy.deepcopy(stored.data)

    def kv2_delete(self, mount: str, path: str, versions: list[int] | None = None, *,
                   namespace: str = "") -> None:
        """Soft delete (default: the latest version): deletion_time set, data kept."""
        with self._lock:
            secret = self._kv_mount(mount, namespace, 2).kv2[path.strip("/")]
            self._kv2_soft_delete(secret, versions or [secret.current_version])

    def kv2_undelete(self, mount: str, path: str, versions: list[int], *,
                     namespace: str = "") -> None:
        with self._lock:
            self._kv2_undelete(self._kv_mount(mount, namespace, 2).kv2[path.strip("/")], versions)

    def kv2_destroy(self, mount: str, path: str, versions: list[int], *,
                    namespace: str = "") -> None:
        with self._lock:
            self._kv2_destroy(self._kv_mount(mount, namespace, 2).kv2[path.strip("/")], versions)

    # -- tokens and policies ----------------------------------------------------------------

    def add_policy(self, name: str, paths: list[str], *, namespace: str = "") -> None:
        with self._lock:
            self._ns(namespace).policies[name] = tuple(p.lstrip("/") for p in paths)

    def create_token(self, allowed: list[str] = (), policies: list[str] = (), *, ttl: int = 3600,
                     max_ttl: int = 0, renewable: bool = True, namespace: str = "",
                     preflight: bool = True, display_name: str = "token",
                     meta: dict[str, str] | None = None) -> str:
        """A token allowed exactly the given path patterns (plus named policies and default)."""
        with self._lock:
            names = self._policy_names(allowed, policies, namespace)
            value = _service_token()
            self._add_token(value, policies=names, namespace=_clean_namespace(namespace),
                            ttl=ttl, max_ttl=max_ttl,
                            renewable=renewable, display_name=display_name,
                            path="auth/token/create", orphan=False, meta=meta, preflight=preflight)
            return value

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._revoke_token(self._tokens[token])

    def token_info(self, token: str) -> Token:
        with self._lock:
            return copy.deepcopy(self._tokens[token])

    def _policy_names(self, allowed: list[str], policies: list[str], namespace: str) -> list[str]:
        names = ["default", *policies]
        if allowed:
            name = f"test-{secrets.token_hex(3)}"
            self.add_policy(name, list(allowed), namespace=namespace)
            names.append(name)
        return sorted(set(names))

    def _patterns(self, token: Token) -> tuple[str, ...]:
        """The token's path patterns as its policies say now (policy edits apply at once)."""
        table = self._ns(token.namespace).policies
        return tuple(p for name in token.policies for p in table.get(name, ()))

    def _add_token(self, value: str, *, policies: list[str], namespace: str, ttl: int,
                   max_ttl: int, renewable: bool, display_name: str, path: str, orphan: bool,
                   meta: dict[str, str] | None, preflight: bool) -> Token:
        now = self._now()
        token = Token(id=value, accessor=_random(24), policies=policies, namespace=namespace,
                      ttl=ttl, max_ttl=max_ttl, renewable=renewable, issued=now,
                      expires=now + ttl if ttl else None, display_name=display_name, path=path,
                      orphan=orphan, meta=meta, preflight=preflight,
                      entity_id="" if "root" in policies else str(uuid.uuid4()))
        self._tokens[value] = token
        return token

    def _revoke_token(self, token: Token) -> None:
        token.revoked = True
        for namespace in self._namespaces.values():
            for lease in namespace.leases.values():
                if lease.token_id == token.id:
                    lease.revoked = True

    # -- auth method helpers ----------------------------------------------------------------

    def add_approle(self, role: str, allowed: list[str] = (), policies: list[str] = (), *,
                    token_ttl: int = 3600, token_max_ttl: int = 0, renewable: bool = True,
                    preflight: bool = True, role_id: str | None = None, mount: str = "approle",
                    namespace: str = "") -> str:
        """Define an AppRole; returns its role_id. Mint secret ids with new_secret_id()."""
        with self._lock:
            entry = self._login_role(role, allowed, policies, token_ttl, token_max_ttl, renewable,
                                     preflight, "approle", mount, namespace)
            entry.role_id = role_id or str(uuid.uuid4())
            return entry.role_id

    def new_secret_id(self, role: str, *, mount: str = "approle", namespace: str = "") -> str:
        with self._lock:
            secret_id = str(uuid.uuid4())
            self._auth_mount(mount, namespace).roles[role].secret_ids.add(secret_id)
            return secret_id

    def wrapped_secret_id(self, role: str, ttl: int = 60, *, mount: str = "approle",
                          namespace: str = "") -> str:
        """A response-wrapping token whose unwrap yields a fresh secret_id (the trusted-
        orchestrator hand-off). Returns the wrapping token."""
        with self._lock:
            secret_id = self.new_secret_id(role, mount=mount, namespace=namespace)
            body = envelope(self._secret_id_data(secret_id), mount_type="approle")
            return self._store_wrapped(body, ttl, f"auth/{mount.strip('/')}/role/{role}/secret-id",
                                       _clean_namespace(namespace))["token"]

    def wrap(self, data: dict, ttl: int = 60, *, namespace: str = "") -> str:
        """Wrap arbitrary data as sys/wrapping/wrap does; returns the wrapping token."""
        with self._lock:
            return self._store_wrapped(envelope(copy.deepcopy(data)), ttl, "sys/wrapping/wrap",
                                       _clean_namespace(namespace))["token"]

    def add_kubernetes_role(self, role: str, jwt: str, allowed: list[str] = (),
                            policies: list[str] = (), *, service_account: str = "default",
                            service_account_namespace: str = "default", token_ttl: int = 3600,
                            token_max_ttl: int = 0, renewable: bool = True, preflight: bool = True,
                            mount: str = "kubernetes", namespace: str = "") -> None:
        with self._lock:
            entry = self._login_role(role, allowed, policies, token_ttl, token_max_ttl, renewable,
                                     preflight, "kubernetes", mount, namespace)
            entry.jwt = jwt
            entry.metadata = {
                "role": role,
                "service_account_name": service_account,
                "service_account_namespace": service_account_namespace,
                "service_account_secret_name": "",
                "service_account_uid": str(uuid.uuid4()),
            }

    def add_jwt_role(self, role: str, jwt: str, allowed: list[str] = (), policies: list[str] = (),
                     *, token_ttl: int = 3600, token_max_ttl: int = 0, renewable: bool = True,
                     preflight: bool = True, mount: str = "jwt", namespace: str = "") -> None:
        with self._lock:
            entry = self._login_role(role, allowed, policies, token_ttl, token_max_ttl, renewable,
                                     preflight, "jwt", mount, namespace)
            entry.jwt = jwt
            entry.metadata = {"role": role}

    def _auth_mount(self, mount: str, namespace: str, type: str | None = None) -> AuthMount:
        table = self._ns(namespace).auth
        key = mount.strip("/") + "/"
        if key not in table:
            if type is None:
                raise KeyError(f"no auth mount {mount!r}")
            accessor = f"auth_{type}_{secrets.token_hex(4)}"
            table[key] = AuthMount(path=key, type=type, accessor=accessor)
        return table[key]

    def _login_role(self, role: str, allowed: list[str], policies: list[str], ttl: int,
                    max_ttl: int, renewable: bool, preflight: bool, type: str, mount: str,
                    namespace: str) -> LoginRole:
        names = self._policy_names(allowed, policies, namespace)
        entry = LoginRole(name=role, policies=names, ttl=ttl, max_ttl=max_ttl,
                          renewable=renewable, preflight=preflight)
        self._auth_mount(mount, namespace, type).roles[role] = entry
        return entry

    # -- database helpers -------------------------------------------------------------------

    def add_database_role(self, role: str, *, default_ttl: int | None = None,
                          max_ttl: int | None = None, mount: str = "database",
                          namespace: str = "") -> None:
        with self._lock:
            target = self.add_mount(mount, "database", namespace=namespace)
            target.roles[role] = DatabaseRole(
                role, self.default_lease_ttl if default_ttl is None else default_ttl,
                self.max_lease_ttl if max_ttl is None else max_ttl)

    def leases(self, namespace: str | None = None) -> list[Lease]:
        """Every lease issued (copies), optionally of one namespace."""
        with self._lock:
            spaces = (self._namespaces.values() if namespace is None
                      else [self._ns(namespace)])
            return [copy.deepcopy(lease) for ns in spaces for lease in ns.leases.values()]

    def live_leases(self, namespace: str | None = None) -> list[Lease]:
        now = self._now()
        return [lease for lease in self.leases(namespace) if lease.alive(now)]

    def revoked_leases(self, namespace: str | None = None) -> list[Lease]:
        return [lease for lease in self.leases(namespace) if lease.revoked]

    def issued_credentials(self, role: str | None = None) -> list[IssuedCredential]:
        """Every username/password pair handed out, in order, one per creds read."""
        with self._lock:
            return [c for c in self._issued if role is None or c.role == role]

    # =====================================================================================
    # Request handling
    # =====================================================================================

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)  # outside the lock: concurrent requests overlap
            with self._lock:
                try:
                    response = self._answer(request)
                except VaultFailure as failure:
                    response = failure.response
                if self.echo_credentials and response.status >= 400:
                    response = _echoing(request, response)
                self._record(request, response.status)
                for trickle in self._trickles:
                    if request.path.startswith(trickle[0]):
                        if trickle[2] > 0:
                            trickle[2] -= 1
                        else:
                            response.trickle = trickle[1]
                        break
            return response
        finally:
            with self._lock:
                self._in_flight -= 1

    def _record(self, request: Request, status: int) -> None:
        headers = {}
        for name, value in request.headers.items():
            redacted = name in ("x-vault-token", "authorization")
            headers[name] = "<redacted>" if redacted else value
        self._log.append(LoggedRequest(
            method=request.method, path=request.raw_path, query=dict(request.query),
            headers=headers,
            namespace=_clean_namespace(request.headers.get("x-vault-namespace", "")),
            status=status, time=time.time()))

    def _answer(self, request: Request) -> Response:
        if not request.raw_path.startswith("/v1/"):
            raise VaultFailure(404, [])
        failure = self._take_failure(request)
        if failure is not None:
            return failure
        if request.path == "sys/health":
            return self._health(request)
        if request.path == "sys/seal-status":
            return _methods(request, {"GET": self._seal_status})
        if self._sealed:
            raise VaultFailure(503, ["Vault is sealed"])
        call = self._locate(request)
        response = self._route(call)
        return self._wrap_if_asked(call, response)

    def _take_failure(self, request: Request) -> Response | None:
        for index, failure in enumerate(self._failures):
            if failure.path is None or request.path.startswith(failure.path):
                del self._failures[index]
                if failure.body is not None:
                    return Response(failure.status, failure.body, failure.content_type,
                                    failure.headers)
                errors = failure.errors
                if errors is None:
                    errors = self._default_errors(failure.status, request.path)
                response = _json_response(failure.status, {"errors": errors})
                response.headers.update(failure.headers)
                return response
        return None

    @staticmethod
    def _default_errors(status: int, path: str) -> list[str]:
        return {
            400: ["invalid request"],
            403: ["permission denied"],
            404: [],
            429: [f'request path "{path}": rate limit quota exceeded'],
            500: ["internal error"],
            501: ["Vault is not initialized"],
            502: ["bad gateway"],
            503: ["Vault is sealed"],
        }.get(status, ["error"])

    def _health(self, request: Request) -> Response:
        def read() -> Response:
            body = {
                "initialized": True,
                "sealed": self._sealed,
                "standby": self._sealed,
                "performance_standby": False,
                "replication_performance_mode": "disabled",
                "replication_dr_mode": "disabled",
                "server_time_utc": int(self._now()),
                "version": VAULT_VERSION,
                "enterprise": False,
                "echo_duration_ms": 0,
                "clock_skew_ms": 0,
            }
            if not self._sealed:
                body.update(cluster_name="vault-cluster-double", cluster_id=self._cluster_id)
            code_param = "sealedcode" if self._sealed else "activecode"
            status = int(request.query.get(code_param, 503 if self._sealed else 200))
            return _json_response(status, body)
        return _methods(request, {"GET": read, "HEAD": read})

    def _seal_status(self) -> Response:
        body = {
            "type": "shamir", "initialized": True, "sealed": self._sealed, "t": 1, "n": 1,
            "progress": 0, "nonce": "", "version": VAULT_VERSION, "build_date": BUILD_DATE,
            "migration": False, "recovery_seal": False, "storage_type": "inmem",
            "removed_from_cluster": False,
        }
        if not self._sealed:
            body.update(cluster_name="vault-cluster-double", cluster_id=self._cluster_id)
        return _ok(body)

    # -- namespace and token resolution -----------------------------------------------------

    def _locate(self, request: Request) -> _Call:
        """Split the path into a namespace and the path relative to it."""
        current = _clean_namespace(request.headers.get("x-vault-namespace", ""))
        if current not in self._namespaces:
            raise self._no_handler(request.path)
        rest = request.path
        while True:  # the path may continue into a child namespace: "ns2/secret/data/x"
            head, _, tail = rest.partition("/")
            child = f"{current}/{head}" if current else head
            if not tail or child not in self._namespaces:
                break
            current, rest = child, tail
        return _Call(request, self._namespaces[current], rest)

    @staticmethod
    def _no_handler(path: str) -> VaultFailure:
        return VaultFailure(404, [f'no handler for route "{path}". route entry not found.'])

    def _presented_token(self, request: Request) -> str:
        value = request.headers.get("x-vault-token", "")
        if not value:
            scheme, _, rest = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                value = rest.strip()
        return value

    def _forbidden(self, kind: str = "policy") -> VaultFailure:
        if self.forbidden_style == "plain" or kind == "missing":
            return VaultFailure(403, ["permission denied"])
        if kind == "invalid":
            return VaultFailure(
                403, ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"])
        return VaultFailure(403, ["1 error occurred:\n\t* permission denied\n\n"])

    def _authenticate(self, call: _Call) -> Token:
        value = self._presented_token(call.request)
        if not value:
            raise self._forbidden("missing")
        token = self._tokens.get(value)
        usable = (token is not None and token.alive(self._now())
                  and self._token_reaches(token, call.namespace))
        if not usable:
            raise self._forbidden("invalid")
        call.token = token
        return token

    @staticmethod
    def _token_reaches(token: Token, namespace: Namespace) -> bool:
        return (token.namespace == "" or namespace.path == token.namespace
                or namespace.path.startswith(token.namespace + "/"))

    @staticmethod
    def _token_relative(token: Token, namespace: Namespace, path: str) -> str:
        """A path as the token's policies see it (relative to the token's namespace)."""
        full = f"{namespace.path}/{path}" if namespace.path else path
        return full[len(token.namespace) + 1:] if token.namespace else full

    def _authorize(self, call: _Call) -> None:
        token = self._authenticate(call)
        if token.is_root or call.path in DEFAULT_POLICY_PATHS:
            return
        relative = self._token_relative(token, call.namespace, call.path)
        if not any(_pattern_allows(p, relative) for p in self._patterns(token)):
            raise self._forbidden("policy")

    # -- routing ----------------------------------------------------------------------------

    def _route(self, call: _Call) -> Response:
        path = call.path
        if path == "sys/wrapping/unwrap":
            return _methods(call.request, {"POST": lambda: self._unwrap(call)})
        if path.startswith("sys/internal/ui/mounts/"):
            return _methods(call.request, {"GET": lambda: self._preflight(call)})
        login = self._login_route(call)
        if login is not None:
            return login
        self._authorize(call)
        if path.startswith("auth/token/"):
            return self._token_route(call)
        if path.startswith("sys/leases/"):
            return self._lease_route(call)
        if path.startswith("auth/"):
            return self._auth_admin_route(call)
        mount, rest = call.namespace.mount_for(path)
        if mount is None:
            raise self._no_handler(path)
        if mount.type == "database":
            return self._database_route(call, mount, rest)
        if mount.is_kv2:
            return self._kv2_route(call, mount, rest)
        return self._kv1_route(call, mount, rest)

    def _wrap_if_asked(self, call: _Call, response: Response) -> Response:
        wrap_ttl = call.request.headers.get("x-vault-wrap-ttl")
        if not wrap_ttl or response.status != 200 or call.path == "sys/wrapping/unwrap":
            return response
        body = json.loads(response.body)
        if body.get("data") is None and body.get("auth") is None:
            return response
        try:
            ttl = parse_duration(wrap_ttl)
        except ValueError:
            raise VaultFailure(400, ["error parsing X-Vault-Wrap-TTL"]) from None
        wrap_info = self._store_wrapped(body, ttl, call.path, call.namespace.path)
        return _ok(envelope(wrap_info=wrap_info))

    def _store_wrapped(self, body: dict, ttl: int, creation_path: str, namespace: str) -> dict:
        token, now = _service_token(), self._now()
        wrapped = Wrapped(token=token, accessor=_random(24), ttl=ttl, creation_time=_rfc3339(now),
                          creation_path=creation_path, namespace=namespace, expires=now + ttl,
                          body=body)
        self._wrapped[token] = wrapped
        info = {"token": token, "accessor": wrapped.accessor, "ttl": ttl,
                "creation_time": wrapped.creation_time, "creation_path": creation_path}
        if body.get("auth"):
            info["wrapped_accessor"] = body["auth"]["accessor"]
        return info

    def _unwrap(self, call: _Call) -> Response:
        requested = call.request.json().get("token")
        presented = self._presented_token(call.request)
        if requested is None:
            value = presented  # the wrapping token itself authenticates the unwrap
        else:
            if presented not in self._wrapped and presented != requested:
                self._authenticate(call)  # the caller's own token, under the default policy
            value = requested
        wrapped = self._wrapped.pop(value, None)
        if wrapped is None or wrapped.expires <= self._now():
            raise VaultFailure(400, [WRAPPING_TOKEN_INVALID])
        return _ok(wrapped.body)

    def _preflight(self, call: _Call) -> Response:
        token = self._authenticate(call)
        target = call.path[len("sys/internal/ui/mounts/"):]
        mount, _ = call.namespace.mount_for(target)
        if mount is None:
            raise self._forbidden("policy")  # hides which mounts exist
        if not token.is_root:
            mount_relative = self._token_relative(token, call.namespace, mount.path)
            if not token.preflight or not any(_pattern_reaches_mount(p, mount_relative)
                                              for p in self._patterns(token)):
                raise self._forbidden("policy")
        options = None if mount.version is None else {"version": str(mount.version)}
        data = {
            "accessor": mount.accessor,
            "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            "description": "",
            "external_entropy_access": False,
            "local": False,
            "options": options,
            "path": mount.path,
            "plugin_version": "",
            "running_plugin_version": (
                "v0.19.0+builtin" if mount.type == "kv" else f"v{VAULT_VERSION}+builtin.vault"),
            "running_sha256": "",
            "seal_wrap": False,
            "type": mount.type,
            "uuid": mount.uuid,
        }
        return _ok(envelope(data, mount_type="system"))

    # -- tokens -----------------------------------------------------------------------------

    def _token_route(self, call: _Call) -> Response:
        routes = {
            "auth/token/lookup-self": {"GET": lambda: self._lookup_self(call)},
            "auth/token/renew-self": {"POST": lambda: self._renew_self(call)},
            "auth/token/revoke-self": {"POST": lambda: self._revoke_self(call)},
        }
        if call.path not in routes:
            raise VaultFailure(404, ["unsupported path"])
        return _methods(call.request, routes[call.path])

    def _lookup_self(self, call: _Call) -> Response:
        token, now = call.token, self._now()
        assert token is not None
        data = {
            "accessor": token.accessor,
            "creation_time": int(token.issued),
            "creation_ttl": token.ttl,
            "display_name": token.display_name,
            "entity_id": token.entity_id,
            "expire_time": _rfc3339(token.expires) if token.expires else None,
            "explicit_max_ttl": token.max_ttl,
            "id": token.id,
            "identity_policies": [],
            "issue_time": _rfc3339(token.issued),
            "meta": copy.deepcopy(token.meta),
            "num_uses": 0,
            "orphan": token.orphan,
            "path": token.path,
            "policies": list(token.policies),
            "renewable": token.renewable,
            "ttl": max(0, int(token.expires - now)) if token.expires else 0,
            "type": "service",
        }
        if token.namespace:
            data["namespace_path"] = token.namespace + "/"
        return _ok(envelope(data, mount_type="token"))

    def _renew_self(self, call: _Call) -> Response:
        token, now = call.token, self._now()
        assert token is not None
        if not token.renewable or token.expires is None:
            raise VaultFailure(400, ["lease is not renewable"])
        asked = self._increment(call.request.json(), token.ttl)
        max_expires = token.issued + token.max_ttl if token.max_ttl else None
        ttl, warnings = self._capped(asked, max_expires, now)
        token.expires = now + ttl
        auth = token.auth_block()
        auth["lease_duration"] = ttl
        return _ok(envelope(auth=auth, warnings=warnings, mount_type="token"))

    def _revoke_self(self, call: _Call) -> Response:
        assert call.token is not None
        self._revoke_token(call.token)
        return _no_content()

    @staticmethod
    def _increment(body: dict, default: int) -> int:
        if body.get("increment") in (None, "", 0, "0"):
            return default
        try:
            return parse_duration(body["increment"])
        except ValueError:
            raise VaultFailure(400, ['error converting input for field "increment"']) from None

    @staticmethod
    def _capped(asked: int, max_expires: float | None, now: float) -> tuple[int, list[str] | None]:
        if max_expires is None or now + asked <= max_expires:
            return asked, None
        left = max(0, int(max_expires - now))
        return left, [_ttl_capped_warning(asked, left)]

    # -- leases and database credentials ----------------------------------------------------

    def _lease_route(self, call: _Call) -> Response:
        if call.path == "sys/leases/renew":
            return _methods(call.request, {"PUT": lambda: self._renew_lease(call)})
        if call.path == "sys/leases/revoke":
            return _methods(call.request, {"PUT": lambda: self._revoke_lease(call, None)})
        if call.path.startswith("sys/leases/revoke/"):
            lease_id = call.path[len("sys/leases/revoke/"):]
            return _methods(call.request, {"PUT": lambda: self._revoke_lease(call, lease_id)})
        raise VaultFailure(404, ["unsupported path"])

    def _renew_lease(self, call: _Call) -> Response:
        body, now = call.request.json(), self._now()
        lease = call.namespace.leases.get(body.get("lease_id") or "")
        if lease is None or not lease.alive(now):
            raise VaultFailure(400, ["lease not found"])
        asked = self._increment(body, lease.ttl)
        ttl, warnings = self._capped(asked, lease.max_expires, now)
        lease.ttl, lease.expires = ttl, now + ttl
        lease.renewals += 1
        return _ok(envelope(lease_id=lease.lease_id, renewable=True, lease_duration=ttl,
                            warnings=warnings, mount_type="system"))

    def _revoke_lease(self, call: _Call, lease_id: str | None) -> Response:
        lease_id = lease_id or call.request.json().get("lease_id") or ""
        if not lease_id:
            raise VaultFailure(400, ["invalid request"])
        lease = call.namespace.leases.get(lease_id)
        if lease is not None:
            lease.revoked = True
        return _no_content()

    def _database_route(self, call: _Call, mount: Mount, rest: str) -> Response:
        if not rest.startswith("creds/"):
            raise VaultFailure(404, ["unsupported path"])
        role_name = rest[len("creds/"):]
        return _methods(call.request, {"GET": lambda: self._database_creds(call, mount, role_name)})

    def _database_creds(self, call: _Call, mount: Mount, role_name: str) -> Response:
        role = mount.roles.get(role_name)
        if role is None:
            raise VaultFailure(400, [f"unknown role: {role_name}"])
        token, now = call.token, self._now()
        assert token is not None
        # Vault's username template: v-<display name>-<role>-<random>-<unix time>
        username = f"v-{token.display_name[:8]}-{role_name[:8]}-{_random(20)}-{int(now)}"
        password = "A1a-" + _random(16)  # pragma: allowlist secret
        lease_id = f"{mount.path}creds/{role_name}/{_random(24)}"
        call.namespace.leases[lease_id] = Lease(
            lease_id=lease_id, role=role_name, username=username, password=password,
            namespace=call.namespace.path, token_id=token.id, issued=now, ttl=role.default_ttl,
            expires=now + role.default_ttl, max_expires=now + role.max_ttl)
        self._issued.append(IssuedCredential(lease_id, role_name, username, password,
                                             call.namespace.path))
        return _ok(envelope({"username": username, "password": password}, lease_id=lease_id,
                            renewable=True, lease_duration=role.default_ttl,
                            mount_type="database"))

    # -- auth methods -----------------------------------------------------------------------

    def _login_route(self, call: _Call) -> Response | None:
        """auth/<mount>/login for AppRole, Kubernetes and JWT; no token needed."""
        parts = call.path.split("/")
        if len(parts) < 3 or parts[0] != "auth" or parts[-1] != "login":
            return None
        mount = call.namespace.auth.get("/".join(parts[1:-1]) + "/")
        if mount is None:
            return None
        login = {"approle": self._approle_login, "kubernetes": self._kubernetes_login,
                 "jwt": self._jwt_login}[mount.type]
        return _methods(call.request, {"POST": lambda: login(call, mount)})

    def _approle_login(self, call: _Call, mount: AuthMount) -> Response:
        body = call.request.json()
        if not body.get("role_id"):
            raise VaultFailure(400, ["missing role_id"])
        role = next((r for r in mount.roles.values() if r.role_id == body["role_id"]), None)
        if role is None or body.get("secret_id") not in role.secret_ids:
            raise VaultFailure(400, ["invalid role or secret ID"])
        return self._issue_login(call, mount, role, "approle", {"role_name": role.name})

    def _kubernetes_login(self, call: _Call, mount: AuthMount) -> Response:
        body = call.request.json()
        if not body.get("role"):
            raise VaultFailure(400, ["missing role"])
        role = mount.roles.get(body["role"])
        if role is None:
            raise VaultFailure(400, [f'invalid role name "{body["role"]}"'])
        if not body.get("jwt") or body["jwt"] != role.jwt:
            raise VaultFailure(403, ["permission denied"])
        sa = role.metadata
        display = "-".join((mount.path.rstrip("/"), sa["service_account_namespace"],
                            sa["service_account_name"]))
        return self._issue_login(call, mount, role, display, dict(role.metadata))

    def _jwt_login(self, call: _Call, mount: AuthMount) -> Response:
        body = call.request.json()
        if not body.get("role"):
            raise VaultFailure(400, ["missing role"])
        role = mount.roles.get(body["role"])
        if role is None:
            raise VaultFailure(400, [f'role "{body["role"]}" could not be found'])
        if not body.get("jwt") or body["jwt"] != role.jwt:
            raise VaultFailure(400, ["error validating token: invalid signature"])
        return self._issue_login(call, mount, role, mount.path.rstrip("/"), dict(role.metadata))

    def _issue_login(self, call: _Call, mount: AuthMount, role: LoginRole, display: str,
                     metadata: dict[str, str]) -> Response:
        token = self._add_token(
            _service_token(), policies=list(role.policies),
            namespace=call.namespace.path, ttl=role.ttl, max_ttl=role.max_ttl,
            renewable=role.renewable, display_name=display, path=f"auth/{mount.path}login",
            orphan=True, meta=metadata, preflight=role.preflight)
        return _ok(envelope(auth=token.auth_block(), mount_type=mount.type))

    def _auth_admin_route(self, call: _Call) -> Response:
        """AppRole role-id and secret-id endpoints (policy-checked like any other path)."""
        match = re.fullmatch(r"auth/(.+)/role/([^/]+)/(role-id|secret-id)", call.path)
        mount = call.namespace.auth.get(match.group(1) + "/") if match else None
        if match is None or mount is None or mount.type != "approle":
            raise self._no_handler(call.path)
        role = mount.roles.get(match.group(2))
        if role is None:
            raise VaultFailure(400, [f'role "{match.group(2)}" does not exist'])
        if match.group(3) == "role-id":
            return _methods(call.request, {
                "GET": lambda: _ok(envelope({"role_id": role.role_id}, mount_type="approle"))})

        def generate() -> Response:
            secret_id = str(uuid.uuid4())
            role.secret_ids.add(secret_id)
            return _ok(envelope(self._secret_id_data(secret_id), mount_type="approle"))
        return _methods(call.request, {"POST": generate})

    @staticmethod
    def _secret_id_data(secret_id: str) -> dict:
        return {"secret_id": secret_id, "secret_id_accessor": str(uuid.uuid4()),
                "secret_id_num_uses": 0, "secret_id_ttl": 0}

    # -- KV version 1 -----------------------------------------------------------------------

    def _kv1_route(self, call: _Call, mount: Mount, key: str) -> Response:
        def read() -> Response:
            data = mount.kv1.get(key)
            if data is None:
                raise VaultFailure(404, [])
            ttl = KV1_DEFAULT_TTL
            if "ttl" in data:
                with contextlib.suppress(ValueError):
                    ttl = parse_duration(data["ttl"])
            return _ok(envelope(copy.deepcopy(data), lease_duration=ttl, mount_type="kv"))

        def write() -> Response:
            mount.kv1[key] = call.request.json()
            return _no_content()

        def delete() -> Response:
            mount.kv1.pop(key, None)
            return _no_content()

        return _methods(call.request, {"GET": read, "POST": write, "DELETE": delete,
                                       "LIST": lambda: self._list_keys(mount.kv1, key)})

    @staticmethod
    def _list_keys(store: dict, prefix: str) -> Response:
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        keys = sorted({name[len(base):].split("/")[0] + ("/" if "/" in name[len(base):] else "")
                       for name in store if name.startswith(base)})
        if not keys:
            raise VaultFailure(404, [])
        return _ok(envelope({"keys": keys}, mount_type="kv"))

    # -- KV version 2 -----------------------------------------------------------------------

    def _kv2_route(self, call: _Call, mount: Mount, rest: str) -> Response:
        section, _, key = rest.partition("/")
        handlers = {
            "data": self._kv2_data,
            "metadata": self._kv2_metadata,
            "delete": self._kv2_delete_endpoint,
            "undelete": self._kv2_undelete_endpoint,
            "destroy": self._kv2_destroy_endpoint,
        }
        if section not in handlers or (not key and section != "metadata"):
            verb = "get" if call.request.method in ("GET", "LIST") else "put"
            body = envelope(warnings=[KV2_WRONG_PATH_WARNING.format(verb=verb)])
            raise VaultFailure(404, response=_json_response(404, body))
        return handlers[section](call, mount, key)

    def _kv2_data(self, call: _Call, mount: Mount, key: str) -> Response:
        def read() -> Response:
            return self._kv2_read_response(mount, key, call.request.query.get("version", "0"))

        def write() -> Response:
            body = call.request.json()
            if not isinstance(body.get("data"), dict):
                raise VaultFailure(400, ["no data provided"])
            cas = (body.get("options") or {}).get("cas")
            secret = self._kv2_write(mount, key, body["data"], cas=cas)
            return _ok(envelope(secret.version_metadata(secret.current_version), mount_type="kv"))

        def delete_latest() -> Response:
            secret = mount.kv2.get(key)
            if secret is not None:
                self._kv2_soft_delete(secret, [secret.current_version])
            return _no_content()

        return _methods(call.request, {"GET": read, "POST": write, "DELETE": delete_latest})

    def _kv2_read_response(self, mount: Mount, key: str, version_text: str) -> Response:
        try:
            number = int(version_text or 0)
        except ValueError:
            raise VaultFailure(400, ['error converting input for field "version"']) from None
        secret = mount.kv2.get(key)
        if secret is None:
            raise VaultFailure(404, [])
        number = number or secret.current_version
        version = secret.versions.get(number)
        if version is None:
            raise VaultFailure(404, [])
        metadata = secret.version_metadata(number)
        if version.hidden(self._now()):
            body = envelope({"data": None, "metadata": metadata}, mount_type="kv")
            raise VaultFailure(404, response=_json_response(404, body))
        return _ok(envelope({"data": copy.deepcopy(version.data), "metadata": metadata},
                            mount_type="kv"))

    def _kv2_write(self, mount: Mount, key: str, data: dict, cas: int | None) -> KvSecret:
        now = _rfc3339(self._now())
        secret = mount.kv2.get(key)
        current = secret.current_version if secret else 0
        # Vault requires cas when the key (or mount) says so; cas=0 means "only if absent".
        if cas is None and secret is not None and secret.cas_required:
            raise VaultFailure(400, ["check-and-set parameter required for this call"])
        if cas is not None and int(cas) != current:
            raise VaultFailure(400, ["check-and-set parameter did not match the current version"])
        if secret is None:
            secret = mount.kv2[key] = KvSecret(created_time=now, updated_time=now)
        secret.current_version += 1
        secret.versions[secret.current_version] = KvVersion(copy.deepcopy(data), created_time=now)
        secret.updated_time = now
        self._kv2_trim(secret)
        return secret

    @staticmethod
    def _kv2_trim(secret: KvSecret) -> None:
        """Drop versions beyond max_versions; oldest_version stays 0 until something is dropped."""
        keep = secret.max_versions or KV2_DEFAULT_MAX_VERSIONS
        dropped = sorted(secret.versions)[:-keep]
        for number in dropped:
            del secret.versions[number]
        if dropped:
            secret.oldest_version = min(secret.versions)

    def _kv2_soft_delete(self, secret: KvSecret, versions: list[int]) -> None:
        now = self._now()
        for number in versions:
            version = secret.versions.get(int(number))
            if version is not None and version.deleted_at is None and not version.destroyed:
                version.deleted_at = now

    @staticmethod
    def _kv2_undelete(secret: KvSecret, versions: list[int]) -> None:
        for number in versions:
            version = secret.versions.get(int(number))
            if version is not None and not version.destroyed:
                version.deleted_at = None

    @staticmethod
    def _kv2_destroy(secret: KvSecret, versions: list[int]) -> None:
        for number in versions:
            version = secret.versions.get(int(number))
            if version is not None:
                version.destroyed = True
                version.data = None

    def _kv2_versions_endpoint(self, call: _Call, mount: Mount, key: str,
                               apply: Callable[[KvSecret, list[int]], None]) -> Response:
        def run() -> Response:
            versions = call.request.json().get("versions")
            if not versions:
                raise VaultFailure(400, ["no version number provided"])
            secret = mount.kv2.get(key)
            if secret is not None:
                apply(secret, [int(v) for v in versions])
            return _no_content()
        return _methods(call.request, {"POST": run})

    def _kv2_delete_endpoint(self, call: _Call, mount: Mount, key: str) -> Response:
        return self._kv2_versions_endpoint(call, mount, key, self._kv2_soft_delete)

    def _kv2_undelete_endpoint(self, call: _Call, mount: Mount, key: str) -> Response:
        return self._kv2_versions_endpoint(call, mount, key, self._kv2_undelete)

    def _kv2_destroy_endpoint(self, call: _Call, mount: Mount, key: str) -> Response:
        return self._kv2_versions_endpoint(call, mount, key, self._kv2_destroy)

    def _kv2_metadata(self, call: _Call, mount: Mount, key: str) -> Response:
        def read() -> Response:
            secret = mount.kv2.get(key)
            if secret is None:
                raise VaultFailure(404, [])
            versions = {str(n): {"created_time": v.created_time, "deletion_time": v.deletion_time,
                                 "destroyed": v.destroyed}
                        for n, v in sorted(secret.versions.items())}
            data = {
                "cas_required": secret.cas_required,
                "created_time": secret.created_time,
                "current_version": secret.current_version,
                "custom_metadata": copy.deepcopy(secret.custom_metadata),
                "delete_version_after": "0s",
                "max_versions": secret.max_versions,
                "oldest_version": secret.oldest_version,
                "updated_time": secret.updated_time,
                "versions": versions,
            }
            return _ok(envelope(data, mount_type="kv"))

        def update() -> Response:
            body = call.request.json()
            secret = mount.kv2.get(key)
            if secret is None:
                now = _rfc3339(self._now())
                secret = mount.kv2[key] = KvSecret(created_time=now, updated_time=now)
            if "custom_metadata" in body:
                secret.custom_metadata = body["custom_metadata"]
            if "max_versions" in body:
                secret.max_versions = int(body["max_versions"])
            if "cas_required" in body:
                secret.cas_required = bool(body["cas_required"])
            return _no_content()

        def delete_all() -> Response:
            mount.kv2.pop(key, None)
            return _no_content()

        return _methods(call.request, {"GET": read, "POST": update, "DELETE": delete_all,
                                       "LIST": lambda: self._list_keys(mount.kv2, key)})


@contextlib.contextmanager
def vault_double(**kwargs: Any) -> Iterator[VaultDouble]:
    """`with vault_double() as vault:` a started VaultDouble; arguments as for VaultDouble."""
    with VaultDouble(**kwargs) as vault:
        yield vault
