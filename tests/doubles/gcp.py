"""A Google Cloud Secret Manager double, with the token services google-auth talks to.

Real sockets; google-auth's own credential classes and `requests` talk to it unchanged:

- `gcp.endpoint`  https  Secret Manager REST v1 ("secretmanager"); the value of SHIM_GCP_ENDPOINT
- `gcp.oauth_url` https  Google's OAuth 2.0 token endpoint ("oauth2"): a service-account key's
                         `token_uri` (JWT bearer grant) points here
- `gcp.sts_url`   https  the Security Token Service ("sts"): a workload identity federation
                         configuration's `token_url` (RFC 8693 token exchange)
- `gcp.metadata_host` http  the metadata server ("metadata"); the value of GCE_METADATA_HOST

Built on the shared base of the HTTPS doubles (tests/doubles/https.py): one Service a Google
host, each on its own port with its own faults; HTTPS uses the CA made at test time
(tests/doubles/tls.py), which clients trust through REQUESTS_CA_BUNDLE (`gcp.ca_path`).

    with SecretManagerDouble(tmp_path) as gcp:
        gcp.add_version("db-password", canary)            # project gcp.project
        env = {**gcp.metadata_env(), "SHIM_GCP_ENDPOINT": gcp.endpoint,
               "REQUESTS_CA_BUNDLE": str(gcp.ca_path)}

Wire facts reproduced (Google's API reference pages are linked from docs/gcp.md):

Secret Manager
- `GET /v1/projects/P/secrets/S/versions/V:access` (and `/v1/projects/P/locations/L/...` for
  regional secrets) → `{"name": "projects/NUMBER/secrets/S/versions/N", "payload": {"data":
  base64, "dataCrc32c": "decimal int64 as a string"}}`. The name always carries the project
  NUMBER and the resolved version number, whatever P and V (id or number, `latest` or N) were.
- `GET .../versions/V` → `{"name", "createTime": RFC 3339 with nanoseconds, "state": "ENABLED" |
  "DISABLED" | "DESTROYED", "etag", "replication": {"automatic": {}}}` (regional: no replication).
- `latest` is the most recently created version.
- Errors are google.rpc.Status: `{"error": {"code": HTTP, "message", "status"}}`:
  404 NOT_FOUND `Secret [projects/N/secrets/S] not found or has no versions.` and `Secret Version
  [projects/N/secrets/S/versions/V] not found.`; 400 FAILED_PRECONDITION `Secret Version [...] is
  in DISABLED state.` / `... DESTROYED state.`; 403 PERMISSION_DENIED `Permission
  'secretmanager.versions.access' denied for resource '...' (or it may not exist).`; 401
  UNAUTHENTICATED for a missing or unknown token; 429 RESOURCE_EXHAUSTED, 500 INTERNAL,
  503 UNAVAILABLE, 504 DEADLINE_EXCEEDED.
- Access needs `secretmanager.versions.access`, get needs `secretmanager.versions.get`; the usual
  role roles/secretmanager.secretAccessor grants only the first (`gcp.allow_get = False`).

OAuth 2.0 token endpoint (google.oauth2._client)
- JWT bearer: form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`; the
  JWT is RS256-signed by the key's private key, `iss` = client_email, `aud` =
  https://oauth2.googleapis.com/token (google-auth sends Google's endpoint as the audience even
  when the request goes to another token_uri), `scope` = space-separated scopes. Answer
  `{"access_token", "expires_in", "token_type": "Bearer"}`. Errors: 400 `{"error":
  "invalid_grant", "error_description": "Invalid JWT Signature."}`.
- An authorized_user file (gcloud's ADC file) cannot be pointed here: google-auth's
  `from_authorized_user_info` always sends its refresh-token grant to https://oauth2.googleapis.com
  /token, whatever token_uri the file names. `authorized_user_file()` writes one for tests of the
  credential order only.

STS (google.oauth2.sts)
- form `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `audience`,
  `requested_token_type=urn:ietf:params:oauth:token-type:access_token`, `subject_token`,
  `subject_token_type`, `scope` → `{"access_token", "issued_token_type", "token_type": "Bearer",
  "expires_in"}`; a subject token or audience it does not know → 400 invalid_grant.

Metadata server
- Every request must carry `Metadata-Flavor: Google` (else 403) and every answer carries it.
- `GET /computeMetadata/v1/instance/service-accounts/default/?recursive=true` → `{"email",
  "scopes", "aliases"}`; `.../default/token[?scopes=...]` → `{"access_token", "expires_in",
  "token_type"}`; `/computeMetadata/v1/project/project-id` → text.

The request log (the base's) keeps service, method, path, query, whether an Authorization header
came along (never its value), status and monotonic arrival/answer times (overlap shows
concurrency). No body is logged.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shim.providers.gcp import crc32c

from .https import HttpsDouble, Incoming, Reply, Service

SERVICES = ("secretmanager", "oauth2", "sts", "metadata")
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
RPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE",
              503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass
class Version:
    number: int
    data: bytes
    created: str
    state: str = "ENABLED"


def rpc_error(status: int, message: str, code: Optional[str] = None) -> Reply:
    return Reply(status, {"error": {"code": status, "message": message,
                                    "status": code or RPC_STATUS.get(status, "UNKNOWN")}})


class SecretManagerDouble(HttpsDouble):
    def __init__(self, directory: Path, *, project: str = "shim-test", project_number: str = "123456789012"):
        super().__init__(directory, "gcp")
        self.project = project
        self.project_number = project_number
        self.service_account_email = f"shim@{project}.iam.gserviceaccount.com"
        self.allow_get = True
        self.corrupt_checksums = False
        self._secrets: dict[tuple, list[Version]] = {}
        self._denied: set[tuple] = set()                 # (principal, secret)
        self._tokens: dict[str, str] = {}                # access token -> principal
        self._keys: dict[str, Any] = {}                  # client_email -> public key
        self._refresh_tokens: dict[str, tuple] = {}      # refresh token -> (client_id, secret, principal)
        self._subject_tokens: dict[str, tuple] = {}      # subject token -> (audience, principal)

    def services(self) -> list[Service]:
        return [_SecretManager(self), _OAuth(self), _Sts(self), _Metadata(self)]

    # ------------------------------------------------------------------------------ addresses

    @property
    def oauth_url(self) -> str:
        return f"{self.url_of('oauth2')}/token"

    @property
    def sts_url(self) -> str:
        return f"{self.url_of('sts')}/v1/token"

    @property
    def metadata_host(self) -> str:
        return f"127.0.0.1:{self.port('metadata')}"

    # ---------------------------------------------------------------------------- credentials

    def base_env(self) -> dict[str, str]:
        """What every client needs here: the endpoint, the test CA, and no real metadata server."""
        return {"SHIM_GCP_ENDPOINT": self.endpoint, "REQUESTS_CA_BUNDLE": str(self.ca_path),
                "GCE_METADATA_HOST": self.metadata_host, "GCE_METADATA_IP": self.metadata_host}

    def metadata_env(self) -> dict[str, str]:
        return self.base_env()

    def service_account_key(self, path: Path, *, principal: Optional[str] = None) -> Path:
        """Write a service-account key file whose token_uri is this double."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = principal or self.service_account_email
        with self.lock:
            self._keys[email] = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": self.project, "private_key_id": secrets.token_hex(20),
            "private_key": pem, "client_email": email, "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.oauth_url,
        }))
        return path

    def authorized_user_file(self, path: Path, *, principal: str = "user@example.com") -> Path:
        """Write what `gcloud auth application-default login` leaves behind (google-auth sends its
        refresh to Google whatever the file says, so this serves tests of the credential order)."""
        client_id, client_secret = f"{secrets.token_hex(8)}.apps.googleusercontent.com", secrets.token_hex(12)
        refresh_token = "1//" + secrets.token_urlsafe(30)
        with self.lock:
            self._refresh_tokens[refresh_token] = (client_id, client_secret, principal)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"type": "authorized_user", "client_id": client_id,
                                    "client_secret": client_secret, "refresh_token": refresh_token}))
        return path

    def workload_identity_config(self, directory: Path, *, principal: str = "principal://wif/subject") -> Path:
        """Write a federated subject token file and the external_account configuration reading it."""
        audience = (f"//iam.googleapis.com/projects/{self.project_number}/locations/global/"
                    "workloadIdentityPools/shim-pool/providers/shim-provider")
        subject = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(20)
        with self.lock:
            self._subject_tokens[subject] = (audience, principal)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "subject-token").write_text(subject)
        config = directory / "wif.json"
        config.write_text(json.dumps({
            "type": "external_account", "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": self.sts_url,
            "credential_source": {"file": str(directory / "subject-token")},
        }))
        return config

    def issued_tokens(self) -> list[str]:
        with self.lock:
            return list(self._tokens)

    def credential_material(self) -> list[str]:
        """Every token and refresh token the double knows, for leak checks."""
        with self.lock:
            return [*self._tokens, *self._refresh_tokens, *self._subject_tokens,
                    *(value[1] for value in self._refresh_tokens.values())]

    def _issue(self, principal: str) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(48)
        with self.lock:
            self._tokens[token] = principal
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # -------------------------------------------------------------------------------- secrets

    def add_version(self, secret: str, value: str | bytes, *, location: Optional[str] = None,
                    created: Optional[datetime] = None) -> int:
        """A new version of `secret` (created on first use); its number."""
        data = value.encode() if isinstance(value, str) else value
        moment = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z"
        with self.lock:
            versions = self._secrets.setdefault((location, secret), [])
            versions.append(Version(len(versions) + 1, data, stamp))
            return len(versions)

    def set_state(self, secret: str, number: int, state: str, *, location: Optional[str] = None) -> None:
        with self.lock:
            self._secrets[(location, secret)][number - 1].state = state

    def deny(self, principal: str, secret: str) -> None:
        with self.lock:
            self._denied.add((principal, secret))

    # ------------------------------------------------------------------------------ internals

    def _principal(self, token: Optional[str]) -> Optional[str]:
        with self.lock:
            return self._tokens.get(token or "")

    def _find(self, project: str, location: Optional[str], secret: str, version: str) -> Version:
        secret_name = (f"projects/{self.project_number}/locations/{location}/secrets/{secret}"
                       if location else f"projects/{self.project_number}/secrets/{secret}")
        with self.lock:
            versions = list(self._secrets.get((location, secret), ()))
        if project not in (self.project, self.project_number) or not versions:
            raise rpc_error(404, f"Secret [{secret_name}] not found or has no versions.")
        if version == "latest":
            return versions[-1]
        if not version.isdigit() or not 1 <= int(version) <= len(versions):
            raise rpc_error(404, f"Secret Version [{secret_name}/versions/{version}] not found.")
        return versions[int(version) - 1]


class _GoogleService(Service):
    content_type = "application/json; charset=UTF-8"
    double: SecretManagerDouble

    def error(self, status: int, message: str) -> Reply:
        return rpc_error(status, message)


class _SecretManager(_GoogleService):
    name = "secretmanager"

    def route(self, request: Incoming) -> Any:
        method, path = request.method, request.path
        match = re.fullmatch(r"/v1/projects/([^/]+)(?:/locations/([^/]+))?/secrets/([^/]+)/versions/"
                             r"([^/:]+)(:access)?", path)
        if method != "GET" or not match:
            return rpc_error(404, f"the double does not implement {method} {path}")
        project, location, secret, version, access = match.groups()
        principal = self.double._principal(request.bearer())
        if principal is None:
            return rpc_error(401, "Request had invalid authentication credentials. Expected OAuth 2 "
                                  "access token, login cookie or other valid authentication credential.")
        resource = path[len("/v1/"):].removesuffix(":access")
        permission = "secretmanager.versions.access" if access else "secretmanager.versions.get"
        with self.double.lock:
            denied = (principal, secret) in self.double._denied
        if denied or (not access and not self.double.allow_get):
            return rpc_error(403, f"Permission '{permission}' denied for resource '{resource}' "
                                  "(or it may not exist).")
        found = self.double._find(project, location, secret, version)
        prefix = (f"projects/{self.double.project_number}/locations/{location}" if location
                  else f"projects/{self.double.project_number}")
        name = f"{prefix}/secrets/{secret}/versions/{found.number}"
        if access:
            if found.state != "ENABLED":
                return rpc_error(400, f"Secret Version [{name}] is in {found.state} state.",
                                 "FAILED_PRECONDITION")
            checksum = crc32c(found.data) ^ (1 if self.double.corrupt_checksums else 0)
            return {"name": name, "payload": {"data": base64.b64encode(found.data).decode(),
                                              "dataCrc32c": str(checksum)}}
        answer = {"name": name, "createTime": found.created, "state": found.state,
                  "etag": f'"{secrets.token_hex(7)}"'}
        if not location:
            answer["replication"] = {"automatic": {}}
        if found.state == "DESTROYED":
            answer["destroyTime"] = found.created
        return answer


class _TokenService(_GoogleService):
    """An OAuth 2.0 token endpoint: form in, token or OAuth error out."""

    def error(self, status: int, message: str) -> Reply:
        return Reply(status, {"error": "internal_failure", "error_description": message})


class _OAuth(_TokenService):
    name = "oauth2"

    def route(self, request: Incoming) -> Any:
        if request.method != "POST" or request.path != "/token":
            return Reply(404, {"error": "not_found"})
        form = request.form()
        if form.get("grant_type") == JWT_BEARER:
            return self._jwt_bearer(form.get("assertion", ""))
        return Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})

    def _jwt_bearer(self, assertion: str) -> Any:
        invalid = Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        try:
            header, claims, signature = assertion.split(".")
            payload = json.loads(_unb64(claims))
            with self.double.lock:
                public_key = self.double._keys[payload["iss"]]
            public_key.verify(_unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(),
                              hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            return invalid
        if payload.get("aud") != GOOGLE_TOKEN_AUDIENCE or SCOPE not in str(payload.get("scope", "")).split():
            return Reply(400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."})
        return self.double._issue(payload["iss"])


class _Sts(_TokenService):
    name = "sts"

    def route(self, request: Incoming) -> Any:
        if request.method != "POST" or request.path != "/v1/token":
            return Reply(404, {"error": "not_found"})
        form = request.form()
        if form.get("grant_type") != TOKEN_EXCHANGE or form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return Reply(400, {"error": "invalid_request", "error_description": "Invalid grant_type or requested_token_type."})
        with self.double.lock:
            known = self.double._subject_tokens.get(form.get("subject_token", ""))
        if known is None or known[0] != form.get("audience"):
            return Reply(400, {"error": "invalid_grant", "error_description": "The audience in ID Token does not match the expected audience."})
        answer = self.double._issue(known[1])
        return {**answer, "issued_token_type": ACCESS_TOKEN_TYPE}


class _Metadata(_GoogleService):
    name = "metadata"
    tls = False     # the metadata server is plain HTTP on the instance's link-local address

    def headers(self, request: Incoming) -> dict[str, str]:
        return {"Metadata-Flavor": "Google", "Server": "Metadata Server for VM"}

    def error(self, status: int, message: str) -> Reply:
        return Reply(status, message, "text/html")

    def route(self, request: Incoming) -> Any:
        if request.headers.get("Metadata-Flavor") != "Google":
            return Reply(403, "Missing Metadata-Flavor:Google header.", "text/html")
        double, path = self.double, request.path
        if path in ("/", ""):
            return Reply(200, "computeMetadata/\n", "application/text")
        if path == "/computeMetadata/v1/project/project-id":
            return Reply(200, double.project, "application/text")
        if path == "/computeMetadata/v1/project/numeric-project-id":
            return Reply(200, double.project_number, "application/text")
        if path == "/computeMetadata/v1/instance/service-accounts/default/":
            return {"aliases": ["default"], "email": double.service_account_email, "scopes": [SCOPE]}
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            return double._issue(double.service_account_email)
        return Reply(404, "Not Found", "text/html")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
