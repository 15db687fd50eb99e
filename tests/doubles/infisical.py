"""An Infisical API double: universal-auth login and the secrets of a folder, as Infisical's API
reference documents them.

Real HTTPS on 127.0.0.1 (tests/doubles/https.py); shim finds it through SHIM_INFISICAL_ENDPOINT
(or the CLI's INFISICAL_API_URL, `<endpoint>/api`) and trusts it through REQUESTS_CA_BUNDLE.

    with InfisicalDouble(tmp_path) as infisical:
        infisical.add_secret(project, "prod", "/app", "DB_PASSWORD", canary)
        client_id, client_secret = infisical.machine_identity((project, "prod"))

Wire facts reproduced (https://infisical.com/docs/api-reference/endpoints/universal-auth/login,
https://infisical.com/docs/api-reference/endpoints/secrets (GET /api/v4/secrets),
https://infisical.com/docs/documentation/platform/identities/universal-auth):

- `POST /api/v1/auth/universal-auth/login` with JSON `{"clientId", "clientSecret"}` answers
  `{"accessToken", "expiresIn", "accessTokenMaxTTL", "tokenType": "Bearer"}`; an unknown client
  id or a wrong or revoked client secret is 401.
- `GET /api/v4/secrets?projectId=P&environment=E&secretPath=/a/b` with `Authorization: Bearer
  TOKEN` answers `{"secrets": [{"id", "_id", "workspace", "environment", "version", "type":
  "shared"|"personal", "secretKey", "secretValue", "secretComment", "secretPath",
  "secretValueHidden", ...}], "imports": []}` for the one folder (not its sub-folders).
  `viewSecretValue=false`, or an identity whose role may only describe secrets, gives
  `"secretValue": "<hidden-by-infisical>"` with `"secretValueHidden": true`.
- Errors are `{"reqId", "statusCode", "message", "error"}`: 401 `UnauthorizedError`, 403
  `PermissionDenied` (the identity has no role in the project or environment), 404 `NotFound`
  (no such project, environment or folder), 429 with `Retry-After`, 5xx.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from .https import HttpsDouble, Incoming, Reply, token_tag

LOGIN = "/api/v1/auth/universal-auth/login"
SECRETS = "/api/v4/secrets"
ERRORS = {400: "BadRequest", 401: "UnauthorizedError", 403: "PermissionDenied", 404: "NotFound",
          429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
          503: "ServiceUnavailable", 504: "GatewayTimeout"}


class InfisicalDouble(HttpsDouble):
    def __init__(self, directory: Path):
        super().__init__(directory, "infisical")
        self._folders: dict[tuple, dict] = {}      # (project, env, path) -> {key: (value, type)}
        self._identities: dict[str, tuple] = {}    # client id -> (client secret, grants, reader)
        self._tokens: dict[str, str] = {}          # access token -> client id
        self.project = secrets.token_hex(12)       # Infisical project ids are opaque
        self.expires_in = 7200                     # the access token's lifetime, in seconds

    # -- set-up --------------------------------------------------------------------------------

    def add_secret(self, project: str, environment: str, path: str, key: str, value: str, *,
                   personal: bool = False) -> None:
        with self.lock:
            folder = self._folders.setdefault((project, environment, path), {})
            folder[(key, personal)] = value
            # Every ancestor folder exists too.
            parts = path.strip("/").split("/")
            for depth in range(len(parts)):
                self._folders.setdefault((project, environment, "/" + "/".join(parts[:depth])), {})

    def machine_identity(self, *grants: tuple, reader: bool = True) -> tuple[str, str]:
        """A universal-auth identity allowed into (project, environment) pairs; `reader=False`
        gives a role that may list secrets but not read their values."""
        client_id, client_secret = secrets.token_hex(16), secrets.token_hex(32)
        with self.lock:
            self._identities[client_id] = (client_secret, set(grants), reader)
        return client_id, client_secret

    def access_token(self, client_id: str) -> str:
        """An access token of `client_id`, as a login would give it (for INFISICAL_TOKEN)."""
        token = "eyJ" + secrets.token_urlsafe(48)
        with self.lock:
            self._tokens[token] = client_id
        return token

    def revoke(self, client_id: str) -> None:
        with self.lock:
            self._identities.pop(client_id, None)

    def env(self, client_id: str = "", client_secret: str = "", token: str = "") -> dict[str, str]:
        env = {"SHIM_INFISICAL_ENDPOINT": self.endpoint, "REQUESTS_CA_BUNDLE": str(self.ca_path)}
        if client_id:
            env["INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"] = client_id
        if client_secret:
            env["INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"] = client_secret
        if token:
            env["INFISICAL_TOKEN"] = token
        return env

    def credential_material(self) -> list[str]:
        with self.lock:
            return list(self._tokens) + [entry[0] for entry in self._identities.values()]

    def lists(self, token: str = "") -> list:
        found = self.requests(path=SECRETS)
        return [entry for entry in found if not token or entry.bearer == token_tag(token)]

    # -- the API -------------------------------------------------------------------------------

    def error(self, status: int, message: str) -> Reply:
        return Reply(status, {"reqId": f"req-{secrets.token_hex(6)}", "statusCode": status,
                              "message": message, "error": ERRORS.get(status, "Error")})

    def route(self, request: Incoming):
        if request.method == "POST" and request.path == LOGIN:
            return self._login(request.json())
        if request.method == "GET" and request.path == SECRETS:
            return self._list(request)
        return self.error(404, f"Route {request.method}:{request.path} not found")

    def _login(self, body) -> object:
        if not isinstance(body, dict) or not body.get("clientId"):
            return self.error(400, "clientId: Required")
        with self.lock:
            identity = self._identities.get(body["clientId"])
        if identity is None or identity[0] != body.get("clientSecret"):
            return self.error(401, "Invalid credentials")
        token = self.access_token(body["clientId"])
        return {"accessToken": token, "expiresIn": self.expires_in, "accessTokenMaxTTL": 2592000,
                "tokenType": "Bearer"}

    def _list(self, request: Incoming) -> object:
        with self.lock:
            client_id = self._tokens.get(request.bearer())
            identity = self._identities.get(client_id or "")
        if identity is None:
            return self.error(401, "Invalid token")
        project = request.query.get("projectId", "")
        environment = request.query.get("environment", "")
        path = request.query.get("secretPath", "/")
        if not project or not environment:
            return self.error(400, "projectId and environment are required")
        _, grants, reader = identity
        with self.lock:
            known_projects = {key[0] for key in self._folders}
            known_envs = {key[:2] for key in self._folders}
            folder = dict(self._folders.get((project, environment, path)) or {}) \
                if (project, environment, path) in self._folders else None
        if project not in known_projects:
            return self.error(404, f"Project with ID '{project}' not found")
        if (project, environment) not in grants:
            return self.error(403, "You are not allowed to read on secrets")
        if (project, environment) not in known_envs:
            return self.error(404, f"Environment with slug '{environment}' not found")
        if folder is None:
            return self.error(404, f"Folder with path '{path}' in environment with slug "
                                   f"'{environment}' not found")
        hidden = not reader or request.query.get("viewSecretValue") == "false"
        listed = []
        for (key, personal), value in folder.items():
            listed.append({"id": secrets.token_hex(8), "_id": secrets.token_hex(8),
                           "workspace": project, "environment": environment, "version": 1,
                           "type": "personal" if personal else "shared", "secretKey": key,
                           "secretValue": "<hidden-by-infisical>" if hidden else value,
                           "secretValueHidden": hidden, "secretComment": "",
                           "secretPath": path, "tags": [], "secretMetadata": []})
        return {"secrets": listed, "imports": []}
