"""A faithful Azure Key Vault (secrets) double, with the token services the real SDK needs.

The real `azure.keyvault.secrets.SecretClient` and the real `azure.identity` credentials talk to it
over real sockets: Key Vault and the Entra ID ("login") endpoints over HTTPS with a CA made at test
time (tests/doubles/tls.py), the App Service managed-identity endpoint over plain HTTP, as in
App Service itself. Nothing is mocked inside the SDK.

    with AzureKeyVaultDouble(tmp_path) as kv:
        version = kv.add_secret("db-password", canary)
        monkeypatch.setenv("IDENTITY_ENDPOINT", kv.identity_endpoint)   # or kv.app_service_env()
        monkeypatch.setenv("IDENTITY_HEADER", kv.identity_header)
        client = SecretClient(credential=ManagedIdentityCredential(), **kv.secret_client_kwargs())
        client.get_secret("db-password").value == canary

Three services on the shared base of the HTTPS doubles (tests/doubles/https.py), one per real
host, each on 127.0.0.1 with an ephemeral port and its own faults:

- `kv.url`        https  Key Vault data plane   (service name "vault" in the request log)
- `kv.authority`  https  Entra ID / AAD         ("login"); give it to ClientSecretCredential
- `kv.identity_endpoint`  http  App Service MI   ("identity"); the value of IDENTITY_ENDPOINT

How a client must be configured (all of it is in `secret_client_kwargs()` /
`client_secret_credential_kwargs()`):

- `SecretClient(vault_url=kv.url, credential=..., verify_challenge_resource=False,
  connection_verify=str(kv.ca_path))`. `verify_challenge_resource` (default True) demands that the
  vault host end with "." + the challenge resource's host (`vault.azure.net`); 127.0.0.1 does not.
  Turn it off only for tests and private endpoints. `connection_verify` trusts the test CA
  (`REQUESTS_CA_BUNDLE` works too). The SDK refuses bearer tokens over http (ServiceRequestError,
  no opt-out), hence HTTPS.
- `ClientSecretCredential(tenant_id=kv.tenant_id, client_id=kv.client_id,
  client_secret=kv.client_secret, authority=kv.authority, disable_instance_discovery=True,
  connection_verify=str(kv.ca_path))`. Without `disable_instance_discovery` msal first asks
  https://login.microsoftonline.com/common/discovery/instance about our host (real network).
  azure-identity rejects a non-https authority.
- `ManagedIdentityCredential()` with IDENTITY_ENDPOINT + IDENTITY_HEADER in the environment (read at
  construction; see `app_service_env()`).

The challenge cache is PROCESS-GLOBAL: `azure.keyvault.secrets._shared.http_challenge_cache` keys
the 401 challenge by host:port (":443" dropped) and shares it between every SecretClient in the
process. A second client for the same double skips the challenge round trip; a new double that
happened to get a recycled port would inherit a stale challenge. The double therefore forgets the
cache entry for its own host:port when it starts and when it stops (nothing else is touched).

Wire facts this double reproduces (docs/wire-facts.md and the SDK sources: azure-keyvault-secrets
4.12.0, azure-core 1.41.0, azure-identity 1.27.0, msal 1.39.0; plus the sources named inline):

Key Vault
- `get_secret(name)` sends `GET /secrets/<name>/?api-version=2026-04-01`: the empty version leaves a
  trailing slash. `GET /secrets/<name>` (no slash) is also latest; `GET /secrets/<name>/<version>`
  one version. Any api-version is accepted (none is required either). Names and versions are
  case-insensitive; ids keep the stored spelling.
- Bundle: `{"value", "id": "https://127.0.0.1:PORT/secrets/<name>/<version>", "attributes":
  {"enabled", "created", "updated", "recoveryLevel", "recoverableDays", "exp"?, "nbf"?},
  "contentType"?, "tags"?}`, times as unix seconds. `id` must parse as
  scheme://host[:port]/secrets/<name>[/<version>] (parse_key_vault_id) or the SDK raises.
  Versions are 32 lowercase hex characters.
- Expired (`exp` past) or not-yet-valid (`nbf` future) secrets are still returned, 200 with the
  value and the attributes: the service does not enforce them on get (Azure/AzureKeyVault#19:
  "Response status: 200" after expiry; Altinn/altinn-studio#5029 closed as expected behaviour; the
  about-secrets page: the get operation works for not-yet-valid and expired secrets).
- Disabled version (latest or explicit) → 403 `{"error":{"code":"Forbidden","message":"Operation get
  is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}`. Disabled
  versions still appear in version lists (nagyesta/lowkey-vault#467).
- Missing secret or version → 404 code SecretNotFound ("A secret with (name/id) <name>[/<version>]
  was not found in this key vault. ..."), which the SDK maps to ResourceNotFoundError. Listing the
  versions of a missing secret is also a 404.
- `GET /secrets/<name>/versions?maxresults=N` → `{"value": [SecretItem], "nextLink": str|null}`;
  SecretItem = `{"id", "attributes", "contentType"?, "tags"?}` (no value). Page size 1..25, default
  25 (out of range → 400 BadParameter). Versions are listed in ascending version-id order, as the
  real service does (nagyesta/lowkey-vault#428/#467). `nextLink` is absolute:
  `https://127.0.0.1:PORT/secrets/<name>/versions?api-version=..&$skiptoken=..&maxresults=N`; the SDK
  follows it with its own api-version.
- `PUT /secrets/<name>` `{"value", "contentType"?, "tags"?, "attributes"?: {"enabled","nbf","exp"}}`
  creates a new version and answers 200 with the bundle (set_secret). Missing value → 400.
- Headers on every answer: `Content-Type: application/json; charset=utf-8`, `Cache-Control:
  no-cache`, `Pragma: no-cache`, `Expires: -1`, `x-ms-request-id`, `x-ms-keyvault-region`,
  `x-ms-keyvault-service-version`, `x-ms-keyvault-network-info`, `X-Content-Type-Options`,
  `Strict-Transport-Security`, and `x-ms-client-request-id` echoed (as in real throttling reports,
  e.g. vcsjones/AzureSignTool#219).

Challenge authentication
- No Authorization → 401 `{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a
  Bearer or PoP token."}}` + `WWW-Authenticate: Bearer
  authorization="https://login.windows.net/<tenant>", resource="https://vault.azure.net"`. The SDK
  sends that first request without body (a bodiless copy of a PUT), caches the challenge, gets a
  token for `https://vault.azure.net/.default` for tenant <tenant> and resends. Every 401 carries
  the challenge header, so a rejected token ends the flow with a second 401 →
  ClientAuthenticationError (the policy retries a KV challenge only once).
- Tokens are checked against the tokens this double issued (JWT-shaped, HS256 with a per-double
  key; real Key Vault validates an Entra-signed JWT). Audience other than https://vault.azure.net
  → 401 "AKV10022: Invalid audience. Expected https://vault.azure.net, found: <aud>." and a token
  from another tenant → 401 "AKV10032: Invalid issuer. Expected one of
  https://sts.windows.net/<tenant>/, found https://sts.windows.net/<other>/." (both formats as
  reported from the real service). A token the double never issued gets the AKV10032 form with
  "found (unknown issuer)": that text is an approximation. Token expiry is not enforced.
- A principal the double denies (`forbid`) → 403 `{"error":{"code":"Forbidden","message":"Caller is
  not authorized to perform action on resource.\\r\\n...Action: 'Microsoft.KeyVault/vaults/secrets/
  getSecret/action'...DecisionReason: 'DeniedWithNoValidRBAC' ...","innererror":{"code":
  "ForbiddenByRbac"}}}` (message layout from real RBAC denials). The RBAC check precedes the
  existence check, so a denied caller cannot probe which names exist.
- Retries: azure-core's RetryPolicy sits outside the challenge policy, so a retried request redoes
  the challenge if none is cached yet. Defaults: 3 status retries, backoff 0 s then 0.8 s x 2^n
  (tests pass `retry_backoff_factor` to stay fast); Retry-After (float seconds) replaces the backoff.
- Throttling: 429 `{"error":{"code":"Throttled","message":"Request was not processed because too many
  requests were received. Reason: VaultRequestTypeLimitReached"}}` (verbatim) + Retry-After.
  500/502/503/504 bodies use the same envelope with codes InternalServerError / BadGateway /
  ServiceUnavailable / GatewayTimeout (codes approximate).

App Service managed identity (azure-identity 1.27 delegates to msal.ManagedIdentityClient:
msal.managed_identity._obtain_token_on_app_service; the env is read when the credential is built,
and the token is cached per credential instance)
- `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=https://vault.azure.net` with headers
  `X-IDENTITY-HEADER: {IDENTITY_HEADER}` and `Metadata: true`; user-assigned identities add
  `client_id` / `mi_res_id` / `object_id`. The resource is the scope minus "/.default".
- Answer `{"access_token", "expires_on": "<epoch seconds as a string>", "resource", "token_type":
  "Bearer", "client_id"}` (App Service documents expires_on as a string; msal does
  int(expires_on) - now, so string or int both work, and needs only access_token + expires_on).
- Errors are `{"statusCode": N, "message": "..."}`; msal turns any answer without access_token into
  `invalid_scope` and azure-identity into CredentialUnavailableError. Status codes and messages of
  the double's 400/401 answers are approximations.

Entra ID client credentials (msal authority.py, oauth2cli/oauth2.py, application.py)
- msal reads `GET {authority}/{tenant}/v2.0/.well-known/openid-configuration` (needs
  `authorization_endpoint` and `token_endpoint`; the port is kept) when the credential first needs
  a token, then `POST {token_endpoint}` form-encoded: grant_type=client_credentials, client_id,
  client_secret (in the body; HTTP Basic is accepted too), scope=".../.default", client_info=1,
  and for CAE (the Key Vault policy always asks) claims={"access_token":{"xms_cc":{"values":
  ["CP1"]}}}. Observed on the wire with msal 1.39.
- Answer `{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token"}`.
- Workload identity federation (AKS): the same POST with `client_assertion_type=urn:ietf:params:
  oauth:client-assertion-type:jwt-bearer` and `client_assertion=<service-account token>` instead of
  a secret (azure-identity's WorkloadIdentityCredential reads AZURE_FEDERATED_TOKEN_FILE). The
  assertion must match a federated credential (issuer, subject, audience api://AzureADTokenExchange)
  of the app; otherwise 401 invalid_client AADSTS70021 "No matching federated identity record found
  for presented assertion. Assertion Issuer: '..'. Assertion Subject: '..'. Assertion Audience:
  '..'." (as reported from the real service, e.g. external-secrets/external-secrets#2783; older
  reports show 400 invalid_request). The double signs service-account tokens itself
  (`register_workload_identity`) where AKS's OIDC issuer would.
- Errors (AADSTS format): unknown tenant → 400 invalid_tenant AADSTS90002; unknown client → 400
  unauthorized_client AADSTS700016; wrong secret → 401 invalid_client AADSTS7000215; scope without
  /.default → 400 invalid_scope AADSTS1002012. The tenant in the token request must be the
  credential's own tenant: azure-identity refuses the challenge's tenant otherwise unless it is in
  `additionally_allowed_tenants`.

The request log (the base's) records, per request: service, method, path, query, whether an
Authorization header was present (never its value), status, and when it arrived and was answered
(`time.monotonic()`, so overlap shows concurrency without wall-clock assertions). No body is ever
logged (a token POST carries the client secret). `issued_tokens()` lists the tokens handed out, for
leak checks; `managed_identity_tenant_id` (default: the vault's tenant) set to another tenant
makes the managed identity's tokens ones the vault rejects with AKV10032.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote_plus

from .https import HttpsDouble, Incoming, Reply, Service

VAULT_RESOURCE = "https://vault.azure.net"
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_PAGE_SIZE = 25
_NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_RETRYABLE_CODES = {
    429: "Throttled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class SecretVersion:
    """One stored version; the test's view of what the vault holds."""

    name: str
    version: str
    value: str
    enabled: bool = True
    created: int = 0
    updated: int = 0
    not_before: Optional[int] = None
    expires_on: Optional[int] = None
    content_type: Optional[str] = None
    tags: Optional[dict[str, str]] = None


@dataclass(frozen=True)
class _IssuedToken:
    principal: str
    tenant_id: str
    audience: str


@dataclass
class _App:
    client_secret: Optional[str]
    tenant_id: str
    # Federated identity credentials: (issuer, subject) pairs whose assertions this app accepts.
    federated: list[tuple[str, str]] = field(default_factory=list)


def _unix(value: Any) -> Optional[int]:
    """Accept None, an int/float epoch or an aware datetime; store whole seconds like the service."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp())
    return int(value)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AzureKeyVaultDouble(HttpsDouble):
    """Key Vault secrets + App Service managed identity + Entra ID client credentials, in-process.

    Constructor arguments (all optional except `directory`, where the test CA is written):
      tenant_id        the vault's tenant (default: a fresh GUID); the challenge names it
      vault_name       appears in RBAC denial messages only
      client_id, client_secret   the one registered app (defaults generated; more: `register_app`)
      managed_identity_client_id the App Service identity's client id (default generated)
      token_lifetime   seconds until issued tokens expire (reported to clients, not enforced)
      recovery_level, recoverable_days   copied into every secret's attributes
    """

    def __init__(
        self,
        directory: Path,
        *,
        tenant_id: Optional[str] = None,
        vault_name: str = "shim-test-vault",
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        managed_identity_client_id: Optional[str] = None,
        token_lifetime: int = 3599,
        recovery_level: str = "Recoverable+Purgeable",
        recoverable_days: int = 90,
    ) -> None:
        super().__init__(directory, "azure")
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.vault_name = vault_name
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret or "cs-" + secrets.token_urlsafe(24)
        self.managed_identity_client_id = managed_identity_client_id or str(uuid.uuid4())
        # The managed identity's home tenant. Another tenant than the vault's makes the vault reject
        # its tokens (AKV10032), as a vault in another directory does.
        self.managed_identity_tenant_id = self.tenant_id
        self.identity_header = "ih-" + secrets.token_urlsafe(24)
        self.token_lifetime = token_lifetime
        self.recovery_level = recovery_level
        self.recoverable_days = recoverable_days

        self._signing_key = secrets.token_bytes(32)
        self._secrets: dict[str, list[SecretVersion]] = {}
        self._keys: dict[str, dict[str, Any]] = {}  # lower-case key name -> version -> RSA private key
        self._tokens: dict[str, _IssuedToken] = {}
        self._apps: dict[str, _App] = {self.client_id: _App(self.client_secret, self.tenant_id)}
        self._forbidden: dict[str, set[str]] = {}  # principal -> lower-case names; empty = whole vault
        self._forbidden_action: dict[str, Optional[str]] = {}  # principal -> the one action denied

    def services(self) -> list[Service]:
        return [_Vault(self), _Login(self), _Identity(self)]

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> "AzureKeyVaultDouble":
        super().start()
        self._forget_cached_challenge()
        return self

    def stop(self) -> None:
        self._forget_cached_challenge()
        super().stop()

    def _forget_cached_challenge(self) -> None:
        if not self._servers:
            return
        try:
            from azure.keyvault.secrets._shared import http_challenge_cache
        except ImportError:  # the SDK is not installed: nothing can have cached anything
            return
        http_challenge_cache.remove_challenge_for_url(self.url)

    # ---------------------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        """The vault URL, https://127.0.0.1:PORT (no trailing slash, as the SDK stores it)."""
        return self.url_of("vault")

    @property
    def authority(self) -> str:
        """The Entra ID authority host for ClientSecretCredential(authority=...)."""
        return self.url_of("login")

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def identity_endpoint(self) -> str:
        """The value for IDENTITY_ENDPOINT (plain http, like App Service's local endpoint)."""
        return f"{self.url_of('identity')}/msi/token"

    def app_service_env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.identity_endpoint, "IDENTITY_HEADER": self.identity_header}

    def secret_client_kwargs(self) -> dict[str, Any]:
        """Everything SecretClient needs besides the credential."""
        return {
            "vault_url": self.url,
            "verify_challenge_resource": False,
            "connection_verify": str(self.ca_path),
        }

    def client_secret_credential_kwargs(self) -> dict[str, Any]:
        """Everything ClientSecretCredential needs to authenticate the registered app here."""
        return {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authority": self.authority,
            "disable_instance_discovery": True,
            "connection_verify": str(self.ca_path),
        }

    def secret_id(self, name: str, version: str) -> str:
        return f"{self.url}/secrets/{name}/{version}"

    # ------------------------------------------------------------------------- test helpers

    def add_secret(
        self,
        name: str,
        value: str,
        *,
        enabled: bool = True,
        not_before: Any = None,
        expires_on: Any = None,
        content_type: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        created: Any = None,
    ) -> str:
        """Store a new version of `name` (it becomes the latest) and return its version id.

        `not_before`, `expires_on` and `created` take unix seconds or aware datetimes.
        """
        if not _NAME_PATTERN.match(name):
            raise ValueError(f"Key Vault secret names match {_NAME_PATTERN.pattern}: {name!r}")
        timestamp = _unix(created) or int(time.time())
        stored = SecretVersion(
            name=name,
            version=secrets.token_hex(16),
            value=value,
            enabled=enabled,
            created=timestamp,
            updated=timestamp,
            not_before=_unix(not_before),
            expires_on=_unix(expires_on),
            content_type=content_type,
            tags=dict(tags) if tags is not None else None,
        )
        with self.lock:
            history = self._secrets.setdefault(name.lower(), [])
            if history:
                stored.name = history[0].name  # names are case-insensitive; the first spelling stays
            history.append(stored)
        return stored.version

    def add_rsa_key(self, name: str) -> tuple[str, Any]:
        """A new version of RSA key `name`: (its version, the cryptography private key)."""
        from cryptography.hazmat.primitives.asymmetric import rsa
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        version = secrets.token_hex(16)
        with self.lock:
            self._keys.setdefault(name.lower(), {})[version] = private
        return version, private

    def set_enabled(self, name: str, version: Optional[str], enabled: bool) -> None:
        """Enable or disable one version (None = the latest)."""
        with self.lock:
            try:
                self._find(name, version).enabled = enabled
            except Reply:
                raise KeyError(f"{name}/{version or 'latest'}") from None

    def versions(self, name: str) -> list[SecretVersion]:
        """The stored versions of `name`, oldest first (copies)."""
        with self.lock:
            return [SecretVersion(**vars(v)) for v in self._secrets.get(name.lower(), [])]

    def register_app(self, client_id: str, client_secret: str, tenant_id: Optional[str] = None) -> None:
        """Register another app registration (service principal) with the login double."""
        with self.lock:
            self._apps[client_id] = _App(client_secret, tenant_id or self.tenant_id)

    def register_workload_identity(
        self,
        client_id: Optional[str] = None,
        *,
        subject: str = "system:serviceaccount:default:workload-identity-sa",
        tenant_id: Optional[str] = None,
    ) -> tuple[str, str]:
        """Register an app with a federated identity credential, as AKS workload identity sets up.

        Returns `(client_id, service_account_token)`: write the token to the file named by
        AZURE_FEDERATED_TOKEN_FILE. The double plays the cluster's OIDC issuer too: the token is
        JWT-shaped with `iss` (this double's issuer URL), `sub` and `aud=api://AzureADTokenExchange`,
        signed with the double's key.
        """
        client_id = client_id or str(uuid.uuid4())
        with self.lock:
            self._apps[client_id] = _App(None, tenant_id or self.tenant_id, [(self.oidc_issuer, subject)])
        now = int(time.time())
        claims = {"iss": self.oidc_issuer, "sub": subject, "aud": [FEDERATED_AUDIENCE],
                  "iat": now, "nbf": now, "exp": now + 3600}
        return client_id, self._sign(claims)

    @property
    def oidc_issuer(self) -> str:
        """The issuer of service-account tokens in `register_workload_identity` (an AKS OIDC URL)."""
        return f"https://oidc.prod-aks.azure.com/{self.tenant_id}/shim-test-cluster/"

    def forbid(self, principal: str, *names: str, action: Optional[str] = None) -> None:
        """Deny `principal` (an app's client id or `managed_identity_client_id`) by RBAC.

        With names, only those secrets are denied; without, the whole vault. With `action`
        (e.g. "readMetadata": a role that may get but not list), only that data action.
        """
        with self.lock:
            self._forbidden[principal] = {n.lower() for n in names}
            self._forbidden_action[principal] = action

    def issue_token(
        self,
        principal: Optional[str] = None,
        *,
        audience: str = VAULT_RESOURCE,
        tenant_id: Optional[str] = None,
    ) -> str:
        """Mint a token as Entra ID would, without a token request (for hand-made credentials)."""
        return self._issue(principal or self.client_id, tenant_id or self.tenant_id, audience)

    def issued_tokens(self) -> list[str]:
        """Every access token handed out so far (to assert that none leaks into output)."""
        with self.lock:
            return list(self._tokens)

    def inject_failure(self, status: int, **how: Any) -> None:
        """Queue the service's error answer with `status` for the next requests (the base's
        `inject_failure`: `count`, `retry_after`, `service`, default "vault").

        They are consumed in arrival order by any request, including the unauthenticated first
        request of the challenge flow. Only the statuses Azure answers to be retried are offered.
        """
        if status not in _RETRYABLE_CODES:
            raise ValueError(f"inject one of {sorted(_RETRYABLE_CODES)}")
        super().inject_failure(status, **how)

    # ------------------------------------------------------------------------------ internals

    def _issue(self, principal: str, tenant_id: str, audience: str) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "appid": principal,
            "oid": principal,
            "sub": principal,
            "tid": tenant_id,
            "idtyp": "app",
            "ver": "1.0",
            "jti": secrets.token_hex(8),
        }
        token = self._sign(claims)
        with self.lock:
            self._tokens[token] = _IssuedToken(principal, tenant_id, audience)
        return token

    def _sign(self, claims: dict[str, Any]) -> str:
        signing_input = (
            _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64url(signature)

    def _verified_claims(self, token: str) -> Optional[dict[str, Any]]:
        """The claims of a JWT this double signed, or None."""
        header, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        expected = hmac.new(self._signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not signature or not hmac.compare_digest(signature, _b64url(expected)):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None

    def _find(self, name: str, version: Optional[str]) -> SecretVersion:
        """Caller holds the lock. Raises the service's 404 when absent."""
        history = self._secrets.get(name.lower())
        if history:
            if not version:
                return history[-1]
            for stored in history:
                if stored.version == version.lower():
                    return stored
        shown = f"{name}/{version}" if version else name
        raise Reply(
            404,
            _error(
                "SecretNotFound",
                f"A secret with (name/id) {shown} was not found in this key vault. If you recently "
                "deleted this secret you may be able to recover it using the correct recovery "
                "command. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125182",
            ),
        )

    def _attributes(self, stored: SecretVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {"enabled": stored.enabled}
        if stored.not_before is not None:
            attributes["nbf"] = stored.not_before
        if stored.expires_on is not None:
            attributes["exp"] = stored.expires_on
        attributes.update(
            created=stored.created,
            updated=stored.updated,
            recoveryLevel=self.recovery_level,
            recoverableDays=self.recoverable_days,
        )
        return attributes

    def _item(self, stored: SecretVersion) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.secret_id(stored.name, stored.version),
            "attributes": self._attributes(stored),
        }
        if stored.content_type is not None:
            item["contentType"] = stored.content_type
        if stored.tags is not None:
            item["tags"] = stored.tags
        return item

    def _bundle(self, stored: SecretVersion) -> dict[str, Any]:
        bundle = {"value": stored.value}
        bundle.update(self._item(stored))
        return bundle


# --------------------------------------------------------------------------------- services


def _error(code: str, message: str, inner: Optional[str] = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return {"error": error}


class _AzureService(Service):
    content_type = "application/json; charset=utf-8"
    double: AzureKeyVaultDouble

    def headers(self, request: Incoming) -> dict[str, str]:
        return {"Cache-Control": "no-store, no-cache"}

    def _not_implemented(self, method: str, path: str) -> Reply:
        # Loud on purpose: a test that reaches an endpoint the double lacks must fail visibly.
        return Reply(501, _error("NotImplemented", f"the test double does not implement {method} {path}"))


class _Vault(_AzureService):
    name = "vault"

    def headers(self, request: Incoming) -> dict[str, str]:
        headers = {
            "Cache-Control": "no-cache",
            "Pragma": "no-cache",
            "Expires": "-1",
            "x-ms-keyvault-region": "local",
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-keyvault-service-version": "1.9.0.0",
            "x-ms-keyvault-network-info": "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
            "X-Content-Type-Options": "nosniff",
            "Strict-Transport-Security": "max-age=31536000;includeSubDomains",
        }
        request_id = request.headers.get("x-ms-client-request-id")
        if request_id:
            headers["x-ms-client-request-id"] = request_id
        return headers

    def error(self, status: int, message: str) -> Reply:
        if status == 429:
            message = (
                "Request was not processed because too many requests were received. "
                "Reason: VaultRequestTypeLimitReached"
            )
        else:
            message = "The service encountered an internal error. Please retry the request."
        return Reply(status, _error(_RETRYABLE_CODES[status], message))

    def route(self, request: Incoming) -> Any:
        double = self.double
        method, path, query, body = request.method, request.path, request.query, request.body
        principal = self._authenticate(request)
        segments = path.split("/")[1:]  # "/secrets/db/" -> ["secrets", "db", ""]
        if segments and segments[0] == "keys":
            return self._key_route(principal, method, segments[1:], body)
        if len(segments) < 2 or segments[0] != "secrets" or not segments[1] or len(segments) > 3:
            raise self._not_implemented(method, path)
        name = segments[1]
        rest = segments[2] if len(segments) == 3 else ""

        if method == "GET" and rest == "versions":
            self._authorize(principal, name, "Microsoft.KeyVault/vaults/secrets/readMetadata/action")
            return self._list_versions(name, query)
        if method == "GET":
            self._authorize(principal, name, "Microsoft.KeyVault/vaults/secrets/getSecret/action")
            with double.lock:
                stored = double._find(name, rest or None)
                if not stored.enabled:
                    raise Reply(
                        403,
                        _error(
                            "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"
                        ),
                    )
                return double._bundle(stored)
        if method == "PUT" and not rest:
            self._authorize(principal, name, "Microsoft.KeyVault/vaults/secrets/setSecret/action")
            return self._set_secret(name, body)
        raise self._not_implemented(method, path)

    # Keys (RSA only): GET /keys/<name>[/<version>] (the public JWK, which the SDK's
    # CryptographyClient reads first), POST /keys/<name>/<version>/{decrypt,unwrapkey} with
    # {"alg": "RSA-OAEP-256", "value": base64url} -> {"kid", "value": base64url}.
    def _key_route(self, principal: str, method: str, segments: list[str], body: bytes) -> Any:
        double = self.double
        segments = [s for s in segments if s]
        if not segments or len(segments) > 3:
            raise self._not_implemented(method, "/keys/" + "/".join(segments))
        name = segments[0]
        version = segments[1] if len(segments) > 1 else None
        with double.lock:
            versions = double._keys.get(name.lower())
        if not versions or (version is not None and version.lower() not in versions):
            raise Reply(404, _error("KeyNotFound", f"A key with (name/id) {name} was not found in this key vault."))
        version = version.lower() if version else list(versions)[-1]
        private = versions[version]
        kid = f"{double.url}/keys/{name}/{version}"
        if method == "GET" and len(segments) <= 2:
            self._authorize(principal, name, "Microsoft.KeyVault/vaults/keys/read")
            numbers = private.public_key().public_numbers()
            return {"key": {"kid": kid, "kty": "RSA", "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
                            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                            "e": _b64url(numbers.e.to_bytes(3, "big"))},
                    "attributes": {"enabled": True, "created": int(time.time()), "updated": int(time.time())}}
        if method == "POST" and len(segments) == 3 and segments[2].lower() in ("decrypt", "unwrapkey"):
            self._authorize(principal, name, "Microsoft.KeyVault/vaults/keys/decrypt/action")
            request = json.loads(body or b"{}")
            if request.get("alg") != "RSA-OAEP-256":
                raise Reply(400, _error("BadParameter", "Unsupported algorithm"))
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding
            value = str(request.get("value") or "")
            try:
                ciphertext = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
                plaintext = private.decrypt(ciphertext, padding.OAEP(
                    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
            except ValueError:
                raise Reply(400, _error("BadParameter", "Error decrypting the ciphertext.")) from None
            return {"kid": kid, "value": _b64url(plaintext)}
        raise self._not_implemented(method, "/keys/" + "/".join(segments))

    def _challenge(self, message: str) -> Reply:
        header = (
            f'Bearer authorization="https://login.windows.net/{self.double.tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        )
        return Reply(401, _error("Unauthorized", message), headers={"WWW-Authenticate": header})

    def _authenticate(self, request: Incoming) -> str:
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        double = self.double
        with double.lock:
            issued = double._tokens.get(token.strip())
        expected_issuer = f"https://sts.windows.net/{double.tenant_id}/"
        if issued is None:
            raise self._challenge(
                f"AKV10032: Invalid issuer. Expected one of {expected_issuer}, found (unknown issuer)."
            )
        if issued.audience != VAULT_RESOURCE:
            raise self._challenge(
                f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {issued.audience}."
            )
        if issued.tenant_id != double.tenant_id:
            raise self._challenge(
                f"AKV10032: Invalid issuer. Expected one of {expected_issuer}, "
                f"found https://sts.windows.net/{issued.tenant_id}/."
            )
        return issued.principal

    def _authorize(self, principal: str, name: str, action: str) -> None:
        double = self.double
        with double.lock:
            denied = double._forbidden.get(principal)
            only = double._forbidden_action.get(principal)
        if denied is None or (denied and name.lower() not in denied):
            return
        if only is not None and f"/secrets/{only}/" not in action:
            return
        message = (
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, "
            "please observe propagation time.\r\n"
            f"Caller: appid={principal};oid={principal};iss=https://sts.windows.net/{double.tenant_id}/\r\n"
            f"Action: '{action}'\r\n"
            "Resource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/shim-test/"
            f"providers/microsoft.keyvault/vaults/{double.vault_name}/secrets/{name.lower()}'\r\n"
            "Assignment: (not found)\r\n"
            "DenyAssignmentId: null\r\n"
            "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
            f"Vault: {double.vault_name};location=local\r\n"
        )
        raise Reply(403, _error("Forbidden", message, "ForbiddenByRbac"))

    def _list_versions(self, name: str, query: dict[str, str]) -> dict[str, Any]:
        double = self.double
        try:
            page_size = int(query.get("maxresults") or MAX_PAGE_SIZE)
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise Reply(
                400,
                _error("BadParameter", f"The value of maxresults must be between 1 and {MAX_PAGE_SIZE}."),
            )
        offset = 0
        if query.get("$skiptoken"):
            padded = query["$skiptoken"] + "=" * (-len(query["$skiptoken"]) % 4)
            offset = json.loads(base64.urlsafe_b64decode(padded))["NextMarker"]
        with double.lock:
            double._find(name, None)  # 404 for a secret that does not exist
            ordered = sorted(double._secrets[name.lower()], key=lambda stored: stored.version)
            page = [double._item(stored) for stored in ordered[offset : offset + page_size]]
        next_link = None
        if offset + page_size < len(ordered):
            token = _b64url(json.dumps({"NextMarker": offset + page_size}).encode())
            api_version = query.get("api-version", "")
            next_link = (
                f"{double.url}/secrets/{name}/versions?api-version={api_version}"
                f"&$skiptoken={token}&maxresults={page_size}"
            )
        return {"value": page, "nextLink": next_link}

    def _set_secret(self, name: str, body: bytes) -> dict[str, Any]:
        double = self.double
        if not _NAME_PATTERN.match(name):
            raise Reply(
                400,
                _error(
                    "BadParameter",
                    "The request URI contains an invalid name: "
                    f"{name}. Secret names may only contain alphanumeric characters and dashes.",
                ),
            )
        try:
            parameters = json.loads(body or b"null")
        except ValueError:
            parameters = None
        if not isinstance(parameters, dict) or not isinstance(parameters.get("value"), str):
            raise Reply(400, _error("BadParameter", "Property 'value' is required and must be a string."))
        attributes = parameters.get("attributes") or {}
        version = double.add_secret(
            name,
            parameters["value"],
            enabled=attributes.get("enabled", True) is not False,
            not_before=attributes.get("nbf"),
            expires_on=attributes.get("exp"),
            content_type=parameters.get("contentType"),
            tags=parameters.get("tags"),
        )
        with double.lock:
            return double._bundle(double._find(name, version))


class _Identity(_AzureService):
    name = "identity"
    tls = False     # App Service's local endpoint is plain HTTP

    def error(self, status: int, message: str) -> Reply:
        return Reply(
            status,
            {"statusCode": status, "message": "The managed identity endpoint is temporarily unavailable."},
        )

    def route(self, request: Incoming) -> Any:
        double = self.double
        method, path, query = request.method, request.path, request.query
        if method != "GET" or path.rstrip("/") != "/msi/token":
            raise self._not_implemented(method, path)
        if request.headers.get("X-IDENTITY-HEADER") != double.identity_header:
            raise Reply(401, {"statusCode": 401, "message": "Invalid or missing X-IDENTITY-HEADER."})
        if query.get("api-version") != "2019-08-01":
            raise Reply(400, {"statusCode": 400, "message": "Unsupported or missing api-version."})
        resource = query.get("resource")
        if not resource:
            raise Reply(400, {"statusCode": 400, "message": "The resource parameter is required."})
        for selector in ("client_id", "mi_res_id", "object_id"):
            if query.get(selector) and query[selector] != double.managed_identity_client_id:
                raise Reply(
                    400,
                    {
                        "statusCode": 400,
                        "message": "No managed identity found for specified ClientId/ResourceId/PrincipalId.",
                    },
                )
        token = double._issue(double.managed_identity_client_id, double.managed_identity_tenant_id, resource)
        return {
            "access_token": token,
            "expires_on": str(int(time.time()) + double.token_lifetime),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": double.managed_identity_client_id,
        }


class _Login(_AzureService):
    name = "login"

    def error(self, status: int, message: str) -> Reply:
        return Reply(
            status,
            self._aad_error(
                "temporarily_unavailable", 50196 if status == 429 else 90033,
                "The service is temporarily unavailable. Please retry.",
            ),
        )

    def _aad_error(self, error: str, code: int, description: str) -> dict[str, Any]:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        timestamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        return {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: {correlation_id} "
                f"Timestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.double.authority}/error?code={code}",
        }

    def route(self, request: Incoming) -> Any:
        method, path = request.method, request.path
        segments = path.strip("/").split("/")
        tenant = segments[0] if segments else ""
        rest = "/".join(segments[1:])
        with self.double.lock:
            known_tenants = {app.tenant_id for app in self.double._apps.values()} | {self.double.tenant_id}
        if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
            if tenant not in known_tenants:
                raise Reply(400, self._aad_error("invalid_tenant", 90002, f"Tenant '{tenant}' not found."))
            return self._openid_configuration(tenant)
        if method == "POST" and rest == "oauth2/v2.0/token":
            return self._token(request, tenant, known_tenants)
        raise self._not_implemented(method, path)

    def _check_federated_assertion(self, app: _App, assertion: str) -> None:
        claims = self.double._verified_claims(assertion) or {}
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        issuer, subject = claims.get("iss"), claims.get("sub")
        if (issuer, subject) in app.federated and FEDERATED_AUDIENCE in audiences:
            return
        raise Reply(
            401,
            self._aad_error(
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. "
                f"Assertion Audience: '{','.join(str(a) for a in audiences)}'. "
                "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation",
            ),
        )

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.double.authority}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.double.authority}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver", "oid"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _token(self, request: Incoming, tenant: str, known_tenants: set[str]) -> dict[str, Any]:
        double = self.double
        if tenant not in known_tenants:
            raise Reply(400, self._aad_error("invalid_request", 90002, f"Tenant '{tenant}' not found."))
        form = request.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic" and credentials:
            basic_id, _, basic_secret = base64.b64decode(credentials).decode().partition(":")
            client_id, client_secret = unquote_plus(basic_id), unquote_plus(basic_secret)
        if form.get("grant_type") != "client_credentials":
            raise Reply(
                400,
                self._aad_error(
                    "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
                ),
            )
        with double.lock:
            app = double._apps.get(client_id or "")
        if app is None or app.tenant_id != tenant:
            raise Reply(
                400,
                self._aad_error(
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
                ),
            )
        if form.get("client_assertion_type") == JWT_BEARER:
            self._check_federated_assertion(app, form.get("client_assertion", ""))
        elif not client_secret or not app.client_secret or not hmac.compare_digest(client_secret, app.client_secret):
            raise Reply(
                401,
                self._aad_error(
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    "client secret value, not the client secret ID, for a secret added to app "
                    f"'{client_id}'.",
                ),
            )
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or " " in scope:
            raise Reply(
                400,
                self._aad_error(
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows must have "
                    "a scope value with /.default suffixed to the resource identifier (application ID URI).",
                ),
            )
        audience = scope[: -len("/.default")]
        return {
            "token_type": "Bearer",
            "expires_in": double.token_lifetime,
            "ext_expires_in": double.token_lifetime,
            "access_token": double._issue(client_id, tenant, audience),
        }
