"""A Google Cloud Secret Manager double, with the token services google-auth talks to.

Real sockets; google-auth's own credential classes and `requests` talk to it unchanged:

- `gcp.endpoint`  https  Secret Manager REST v1 ("secretmanager"); the value of SHIM_GCP_ENDPOINT
- `gcp.oauth_url` https  Google's OAuth 2.0 token endpoint ("oauth2"): a service-account key's
                         `token_uri` (JWT bearer grant) points here
- `gcp.sts_url`   https  the Security Token Service ("sts"): a workload identity federation
                         configuration's `token_url` (RFC 8693 token exchange)
- `gcp.metadata_host` http  the metadata server ("metadata"); the value of GCE_METADATA_HOST

HTTPS uses a CA made at test time (tests/doubles/tls.py); clients trust it through
REQUESTS_CA_BUNDLE (`gcp.ca_path`).

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

The request log keeps service, method, path, whether a bearer token came along (never its value),
status and monotonic arrival/answer times (overlap shows concurrency). No body is logged.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shim.providers.gcp import crc32c

from .tls import make_test_pki

SERVICES = ("secretmanager", "oauth2", "sts", "metadata")
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
RPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE",
              503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass(frozen=True)
class LoggedRequest:
    service: str
    method: str
    path: str
    authorized: bool
    status: int
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Version:
    number: int
    data: bytes
    created: str
    state: str = "ENABLED"


@dataclass
class _Controls:
    latency: float = 0.0
    failures: deque = field(default_factory=deque)   # (status, retry_after)
    garbage: int = 0          # answers replaced by a 200 that is not JSON
    slow_body: float = 0.0    # seconds between the bytes of each answer body
    garbage_size: int = 0     # bytes of a garbage answer (0: a short HTML error page)


class _Reply(Exception):
    def __init__(self, status: int, payload: Any, content_type: str = "application/json; charset=UTF-8"):
        super().__init__(status)
        self.status, self.payload, self.content_type = status, payload, content_type


def rpc_error(status: int, message: str, code: Optional[str] = None) -> _Reply:
    return _Reply(status, {"error": {"code": status, "message": message,
                                     "status": code or RPC_STATUS.get(status, "UNKNOWN")}})


class SecretManagerDouble:
    def __init__(self, directory: Path, *, project: str = "shim-test", project_number: str = "123456789012"):
        self.directory = Path(directory) / "gcp-double"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pki = make_test_pki(self.directory / "pki")
        self.project = project
        self.project_number = project_number
        self.service_account_email = f"shim@{project}.iam.gserviceaccount.com"
        self.allow_get = True
        self.corrupt_checksums = False
        self._lock = threading.Lock()
        self._secrets: dict[tuple, list[Version]] = {}
        self._denied: set[tuple] = set()                 # (principal, secret)
        self._tokens: dict[str, str] = {}                # access token -> principal
        self._keys: dict[str, Any] = {}                  # client_email -> public key
        self._refresh_tokens: dict[str, tuple] = {}      # refresh token -> (client_id, secret, principal)
        self._subject_tokens: dict[str, tuple] = {}      # subject token -> (audience, principal)
        self._controls = {service: _Controls() for service in SERVICES}
        self._log: list[LoggedRequest] = []
        self._servers: dict[str, ThreadingHTTPServer] = {}

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> "SecretManagerDouble":
        context = self.pki.server_context()
        for service, handler in (("secretmanager", _SecretManagerHandler), ("oauth2", _OAuthHandler),
                                 ("sts", _StsHandler), ("metadata", _MetadataHandler)):
            server = _Server(("127.0.0.1", 0), handler)
            server.double = self  # type: ignore[attr-defined]
            if service != "metadata":
                server.socket = context.wrap_socket(server.socket, server_side=True,
                                                    do_handshake_on_connect=False)
            threading.Thread(target=server.serve_forever, daemon=True, name=f"gcp-{service}").start()
            self._servers[service] = server
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "SecretManagerDouble":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _port(self, service: str) -> int:
        return self._servers[service].server_address[1]

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self._port('secretmanager')}"

    @property
    def oauth_url(self) -> str:
        return f"https://127.0.0.1:{self._port('oauth2')}/token"

    @property
    def sts_url(self) -> str:
        return f"https://127.0.0.1:{self._port('sts')}/v1/token"

    @property
    def metadata_host(self) -> str:
        return f"127.0.0.1:{self._port('metadata')}"

    @property
    def ca_path(self) -> Path:
        return self.pki.ca_path

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
        with self._lock:
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
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            return list(self._tokens)

    def credential_material(self) -> list[str]:
        """Every token and refresh token the double knows, for leak checks."""
        with self._lock:
            return [*self._tokens, *self._refresh_tokens, *self._subject_tokens,
                    *(value[1] for value in self._refresh_tokens.values())]

    def _issue(self, principal: str) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = principal
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # -------------------------------------------------------------------------------- secrets

    def add_version(self, secret: str, value: str | bytes, *, location: Optional[str] = None,
                    created: Optional[datetime] = None) -> int:
        """A new version of `secret` (created on first use); its number."""
        data = value.encode() if isinstance(value, str) else value
        moment = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z"
        with self._lock:
            versions = self._secrets.setdefault((location, secret), [])
            versions.append(Version(len(versions) + 1, data, stamp))
            return len(versions)

    def set_state(self, secret: str, number: int, state: str, *, location: Optional[str] = None) -> None:
        with self._lock:
            self._secrets[(location, secret)][number - 1].state = state

    def deny(self, principal: str, secret: str) -> None:
        with self._lock:
            self._denied.add((principal, secret))

    # --------------------------------------------------------------------------------- faults

    def set_latency(self, seconds: float, service: str = "secretmanager") -> None:
        with self._lock:
            self._controls[service].latency = seconds

    def inject_failure(self, status: int, *, count: int = 1, retry_after: Optional[float] = None,
                       service: str = "secretmanager") -> None:
        """The next `count` requests to `service` get `status` (google.rpc.Status body)."""
        with self._lock:
            self._controls[service].failures.extend([(status, retry_after)] * count)

    def inject_garbage(self, count: int = 1, service: str = "secretmanager", *, size: int = 0) -> None:
        """The next `count` answers are 200 with a body that is not JSON (`size` bytes of it)."""
        with self._lock:
            self._controls[service].garbage += count
            self._controls[service].garbage_size = size

    def set_slow_body(self, seconds_per_byte: float, service: str = "secretmanager") -> None:
        with self._lock:
            self._controls[service].slow_body = seconds_per_byte

    # ------------------------------------------------------------------------------------ log

    def requests(self, service: Optional[str] = "secretmanager", **match: Any) -> list[LoggedRequest]:
        with self._lock:
            log = list(self._log)
        return [entry for entry in log if (service is None or entry.service == service)
                and all(getattr(entry, key) == wanted for key, wanted in match.items())]

    def count(self, service: Optional[str] = "secretmanager", **match: Any) -> int:
        return len(self.requests(service, **match))

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------------------------ internals

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _before_answer(self, service: str) -> tuple[Optional[tuple], Any, float]:
        """(failure, garbage body or None, slow_body) for the next answer, after the latency."""
        with self._lock:
            controls = self._controls[service]
            latency, slow = controls.latency, controls.slow_body
            failure = controls.failures.popleft() if controls.failures else None
            garbage = None
            if failure is None and controls.garbage > 0:
                controls.garbage -= 1
                size = controls.garbage_size
                garbage = "x" * size if size else "<html>502 upstream connect error</html>"
        if latency:
            time.sleep(latency)
        return failure, garbage, slow

    def _principal(self, token: Optional[str]) -> Optional[str]:
        with self._lock:
            return self._tokens.get(token or "")

    def _find(self, project: str, location: Optional[str], secret: str, version: str) -> Version:
        secret_name = (f"projects/{self.project_number}/locations/{location}/secrets/{secret}"
                       if location else f"projects/{self.project_number}/secrets/{secret}")
        with self._lock:
            versions = list(self._secrets.get((location, secret), ()))
        if project not in (self.project, self.project_number) or not versions:
            raise rpc_error(404, f"Secret [{secret_name}] not found or has no versions.")
        if version == "latest":
            return versions[-1]
        if not version.isdigit() or not 1 <= int(version) <= len(versions):
            raise rpc_error(404, f"Secret Version [{secret_name}/versions/{version}] not found.")
        return versions[int(version) - 1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: shim opening 50 connections at once would see
    # some SYNs dropped and retried a second later (Google's front ends never do that).
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (abandoned at its deadline) is not a double bug


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    service = ""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    @property
    def double(self) -> SecretManagerDouble:
        return self.server.double  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        started = time.monotonic()
        failure, garbage, slow = self.double._before_answer(self.service)
        try:
            if failure is not None:
                status, retry_after = failure
                reply = self.failure(status)
                if retry_after is not None:
                    reply.retry_after = retry_after  # type: ignore[attr-defined]
                raise reply
            if garbage is not None:
                raise _Reply(200, garbage, "text/html")
            status, payload, content_type = 200, self.route(method, path, query, body), None
            reply = _Reply(200, payload) if not isinstance(payload, _Reply) else payload
        except _Reply as raised:
            reply = raised
        bearer = self.headers.get("Authorization", "")
        self.double._record(LoggedRequest(self.service, method, path, bearer.startswith("Bearer "),
                                          reply.status, started, time.monotonic()))
        self._answer(reply, slow)

    def _answer(self, reply: _Reply, slow: float) -> None:
        payload = reply.payload
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        retry_after = getattr(reply, "retry_after", None)
        if retry_after is not None:
            self.send_header("Retry-After", f"{retry_after:g}")
        for name, value in self.extra_headers().items():
            self.send_header(name, value)
        self.end_headers()
        if not slow:
            self.wfile.write(data)
            return
        for index in range(len(data)):
            self.wfile.write(data[index:index + 1])
            self.wfile.flush()
            time.sleep(slow)

    def extra_headers(self) -> dict[str, str]:
        return {}

    def failure(self, status: int) -> _Reply:
        return rpc_error(status, "injected failure")

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> Any:
        raise NotImplementedError

    def form(self, body: bytes) -> dict[str, str]:
        return {key: values[-1] for key, values in parse_qs(body.decode(), keep_blank_values=True).items()}


class _SecretManagerHandler(_Handler):
    service = "secretmanager"

    def route(self, method, path, query, body):
        import re

        match = re.fullmatch(r"/v1/projects/([^/]+)(?:/locations/([^/]+))?/secrets/([^/]+)/versions/"
                             r"([^/:]+)(:access)?", path)
        if method != "GET" or not match:
            return rpc_error(404, f"the double does not implement {method} {path}")
        project, location, secret, version, access = match.groups()
        token = self.headers.get("Authorization", "")[len("Bearer "):]
        principal = self.double._principal(token)
        if principal is None:
            return rpc_error(401, "Request had invalid authentication credentials. Expected OAuth 2 "
                                  "access token, login cookie or other valid authentication credential.")
        resource = path[len("/v1/"):].removesuffix(":access")
        permission = "secretmanager.versions.access" if access else "secretmanager.versions.get"
        with self.double._lock:
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


class _OAuthHandler(_Handler):
    service = "oauth2"

    def failure(self, status: int) -> _Reply:
        return _Reply(status, {"error": "internal_failure", "error_description": "injected failure"})

    def route(self, method, path, query, body):
        if method != "POST" or path != "/token":
            return _Reply(404, {"error": "not_found"})
        form = self.form(body)
        if form.get("grant_type") == JWT_BEARER:
            return self._jwt_bearer(form.get("assertion", ""))
        return _Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})

    def _jwt_bearer(self, assertion: str) -> Any:
        invalid = _Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        try:
            header, claims, signature = assertion.split(".")
            payload = json.loads(_unb64(claims))
            with self.double._lock:
                public_key = self.double._keys[payload["iss"]]
            public_key.verify(_unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(),
                              hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            return invalid
        if payload.get("aud") != GOOGLE_TOKEN_AUDIENCE or SCOPE not in str(payload.get("scope", "")).split():
            return _Reply(400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."})
        return self.double._issue(payload["iss"])


class _StsHandler(_Handler):
    service = "sts"

    def failure(self, status: int) -> _Reply:
        return _Reply(status, {"error": "internal_failure", "error_description": "injected failure"})

    def route(self, method, path, query, body):
        if method != "POST" or path != "/v1/token":
            return _Reply(404, {"error": "not_found"})
        form = self.form(body)
        if form.get("grant_type") != TOKEN_EXCHANGE or form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return _Reply(400, {"error": "invalid_request", "error_description": "Invalid grant_type or requested_token_type."})
        with self.double._lock:
            known = self.double._subject_tokens.get(form.get("subject_token", ""))
        if known is None or known[0] != form.get("audience"):
            return _Reply(400, {"error": "invalid_grant", "error_description": "The audience in ID Token does not match the expected audience."})
        answer = self.double._issue(known[1])
        return {**answer, "issued_token_type": ACCESS_TOKEN_TYPE}


class _MetadataHandler(_Handler):
    service = "metadata"

    def extra_headers(self) -> dict[str, str]:
        return {"Metadata-Flavor": "Google", "Server": "Metadata Server for VM"}

    def failure(self, status: int) -> _Reply:
        return _Reply(status, "injected failure", "text/html")

    def route(self, method, path, query, body):
        if self.headers.get("Metadata-Flavor") != "Google":
            return _Reply(403, "Missing Metadata-Flavor:Google header.", "text/html")
        double = self.double
        if path in ("/", ""):
            return _Reply(200, "computeMetadata/\n", "application/text")
        if path == "/computeMetadata/v1/project/project-id":
            return _Reply(200, double.project, "application/text")
        if path == "/computeMetadata/v1/project/numeric-project-id":
            return _Reply(200, double.project_number, "application/text")
        if path == "/computeMetadata/v1/instance/service-accounts/default/":
            return {"aliases": ["default"], "email": double.service_account_email, "scopes": [SCOPE]}
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            return double._issue(double.service_account_email)
        return _Reply(404, "Not Found", "text/html")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
