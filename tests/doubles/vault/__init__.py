"""A HashiCorp Vault test double that the real hvac client talks to over a real socket.

    with VaultDouble() as vault:
        vault.kv2_put("secret", "app", {"password": canary})
        client = vault.client()                      # hvac.Client with the root token
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)

The server is a stdlib `ThreadingHTTPServer` (listen backlog 128, like Go's) on 127.0.0.1, port 0
(optionally TLS through `ssl_context=`). All state lives in this object; tests seed it with the
helper methods and inspect it afterwards (request log, leases, issued credentials). One lock
serialises state changes, so concurrent clients see a consistent server.

The package, one job per module: state.py (the one state object: lock, clock, namespaces,
mounts, tokens, policies), server.py (HTTP, lifecycle, request log), routing.py (namespace,
token and policy checks, dispatch), faults.py (seal, injected errors, slow bodies), system.py
(sys/ endpoints and response wrapping), auth.py (token endpoints and login methods), leases.py
(database credentials and leases), kv.py (KV v1 and v2), transit.py (encrypt/decrypt for sops);
records.py, wire.py and values.py hold the data types, the wire format and small helpers. Each
endpoint module is a mixin that works on the state through self, so none imports another;
VaultDouble below composes them.

Test controls: seal() / unseal() / unseal_after(s); `latency` (seconds slept before every answer);
fail_next(n, status, path=...) queues injected errors; advance_clock(s) moves the double's clock so
tokens, leases and wrapping tokens expire without sleeping; `requests`, count(), reset_log();
`max_in_flight` is the most requests that were being answered at the same moment (reset_log()
resets it), which shows whether a client really reads concurrently. `echo_credentials = True`
makes every error body quote what the client sent (its token header and request body), as a
careless plugin or proxy may: the client's redaction of error text is then exercised.
Request bodies are never logged, and token headers are logged as "<redacted>".

The server it plays is OpenBao 2.7 (the open-source fork of Vault, same HTTP API), and
tests/real/test_vault_conformance.py plays the same requests against a real OpenBao and this
double and compares status, JSON shape and error texts: what both can do, they do alike. Where
HashiCorp Vault differs, an option gives Vault's behaviour (forbidden_style="multierror",
token_style="vault").

Facts this double is built from (wire-facts.md "HashiCorp Vault", what was looked up, and what
OpenBao 2.7.2 answered to the conformance test):

Envelope and errors
- Every JSON body is the envelope `request_id, lease_id, renewable, lease_duration, data,
  wrap_info, warnings, auth` (OpenBao has no `mount_type`), written with a trailing newline as
  Go's json.Encoder does, with `Content-Type: application/json` exactly and
  `Cache-Control: no-store`.
  hvac (adapters.RawAdapter._raise_for_error) parses an error body only when the Content-Type
  header equals "application/json"; otherwise the exception message is the raw text.
- JSON is written the way Go's encoder writes it: compact, UTF-8, with `<`, `>`, `&`, U+2028 and
  U+2029 escaped as \\u003c etc. (so a secret containing them is escaped on the wire).
- Errors are `{"errors": [...]}`. hvac maps 400 InvalidRequest, 401 Unauthorized, 403 Forbidden,
  404 InvalidPath, 429 RateLimitExceeded, 500 InternalServerError, 501 VaultNotInitialized,
  502 BadGateway, 503 VaultDown, anything else UnexpectedError (hvac/exceptions.py).
- 403: a missing, unknown, expired or revoked token answers `["permission denied"]`; a policy
  denial is joined by go-multierror: `"1 error occurred:\\n\\t* permission denied\\n\\n"`
  (OpenBao 2.7, the default forbidden_style="openbao"; "invalid token" never appears).
  HashiCorp Vault 1.x says `"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid
  token\\n\\n"` for a bad token (Vault docs concepts/tokens "Error Responses",
  hashicorp/vault#26687): forbidden_style="multierror". "plain" gives `["permission denied"]`
  everywhere.
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
- Token in `X-Vault-Token` or `Authorization: Bearer`. OpenBao's service tokens are `s.` + 24
  alphanumerics, `s.<24>.<namespace id>` in a child namespace (accessors carry the same suffix);
  token_style="vault" issues HashiCorp Vault's `hvs.` + ~90 characters. hvac's `Client(token=None)` falls back to
  VAULT_TOKEN / ~/.vault-token, so `client(token="")` is how a test sends no token at all.
- A policy here is a list of path patterns relative to the token's namespace: "a/b" allows "a/b"
  and everything under "a/b/"; a trailing "*" is a plain prefix glob (Vault's policy syntax).
  Capabilities are not modelled: a matching pattern allows every operation. Policies are looked
  up on each request, so editing one affects tokens that already hold it, as in Vault.
  The built-in default policy grants lookup-self, renew-self, revoke-self, sys/leases/renew and
  sys/wrapping/unwrap. Revoking a lease needs `sys/leases/revoke` in a policy, as in Vault.
- `sys/internal/ui/mounts/<path>` is answered when the token can reach anything in that mount
  (hasMountAccess); no policy can deny it otherwise (OpenBao ignores a `deny` on it). No access,
  or no mount (403, not 404, so mounts cannot be enumerated): `preflight capability check
  returned 403, please ensure client's policies grant access to path "<path>/"`. The path may go
  on into child namespaces ("ns2/secret/..." from ns1): 200, and `path` is the mount's path from
  the root namespace ("ns1/ns2/secret/"). `create_token(preflight=False)` is not a policy but a
  proxy (or a server without the endpoint) refusing the lookup: 403 "permission denied".
- renew-self / lease renew past max_ttl are capped with the warning
  `TTL of "<asked>" exceeded the effective max_ttl of "<left>"; TTL value is capped accordingly`
  (durations with zero units left out, e.g. "1h", "1h30m"). A token's max TTL counts from its
  creation second (a Unix time): what is left is whole seconds of the clock, and once the clock
  passes it, in the token's last fraction of a second, renew-self is 500
  `"1 error occurred:\\n\\t* past the max TTL, cannot renew\\n\\n"`. A non-renewable token: 400
  "lease is not renewable".
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
  "error validating token: error verifying token signature: no known key successfully validated
  the token signature" (OpenBao 2.7's text for a JWT signed by a key it does not know).

Wrapping
- `X-Vault-Wrap-TTL` on a request whose answer has data or auth: 200 envelope with data null and
  wrap_info {token, accessor, ttl, creation_time, creation_path[, wrapped_accessor]}.
  `POST sys/wrapping/unwrap` with {"token"} or with the wrapping token as X-Vault-Token returns
  the original body once; again (or expired): 400 "wrapping token is not valid or does not exist".
  The wrapped answer's request_id is ""; a wrapped secret id's wrapped_accessor is its
  secret_id_accessor.

Dynamic database secrets
- `GET <mount>/creds/<role>`: lease_id `<mount>/creds/<role>/<id>`, renewable, username and
  password minted together per read; unknown role 400 "unknown role: <r>". `PUT sys/leases/renew`
  {lease_id, increment} and `PUT sys/leases/revoke` {lease_id} (hvac uses PUT for both).

Namespaces, health
- `X-Vault-Namespace: ns1/` (with or without slashes) makes the path relative to ns1; a path may
  continue into a child namespace ("ns2/secret/..."). Each namespace has its own mounts, roles and
  leases; a token works in its own namespace and below it; the root token works everywhere.
  A namespace that does not exist answers 404 "namespace not found".
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
from typing import Any, Iterator

from tests.doubles.vault.auth import AuthMixin
from tests.doubles.vault.faults import FaultsMixin
from tests.doubles.vault.kv import KvMixin
from tests.doubles.vault.leases import LeasesMixin
from tests.doubles.vault.records import (AuthMount, DatabaseRole, IssuedCredential, KvSecret,
                                         KvVersion, Lease, LoggedRequest, LoginRole, Mount,
                                         Namespace, Token, Wrapped)
from tests.doubles.vault.routing import RoutingMixin
from tests.doubles.vault.server import ServerMixin
from tests.doubles.vault.state import VaultState
from tests.doubles.vault.system import SystemMixin
from tests.doubles.vault.transit import TransitMixin
from tests.doubles.vault.values import (DEFAULT_POLICY_PATHS, VAULT_VERSION,
                                        WRAPPING_TOKEN_INVALID, go_duration, parse_duration)
from tests.doubles.vault.wire import Request, Response, VaultFailure, envelope


class VaultDouble(ServerMixin, FaultsMixin, RoutingMixin, SystemMixin, AuthMixin, LeasesMixin,
                  KvMixin, TransitMixin, VaultState):
    """A Vault server in-process. Use as a context manager, or call start() and stop().

    One object: VaultState holds everything; each mixin adds the endpoints and test helpers of
    one part of Vault and works on that state through self, so the modules never import each
    other's classes.
    """


@contextlib.contextmanager
def vault_double(**kwargs: Any) -> Iterator[VaultDouble]:
    """`with vault_double() as vault:` a started VaultDouble; arguments as for VaultDouble."""
    with VaultDouble(**kwargs) as vault:
        yield vault


__all__ = [
    "AuthMount", "DEFAULT_POLICY_PATHS", "DatabaseRole", "IssuedCredential", "KvSecret",
    "KvVersion", "Lease", "LoggedRequest", "LoginRole", "Mount", "Namespace", "Request",
    "Response", "Token", "VAULT_VERSION", "VaultDouble", "VaultFailure", "WRAPPING_TOKEN_INVALID",
    "Wrapped", "envelope", "go_duration", "parse_duration", "vault_double",
]
