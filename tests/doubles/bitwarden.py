"""A Bitwarden Secrets Manager server double: the identity server's client-credentials login
and the API's secret and project reads, with the values encrypted as Bitwarden encrypts them.

Real HTTPS on 127.0.0.1 (tests/doubles/https.py), the identity server under /identity and the
API under /api, as a self-hosted server lays them out; shim finds it through BWS_SERVER_URL.

    with BitwardenDouble(tmp_path) as bws:
        secret_id = bws.add_secret("DB_PASSWORD", canary, project=project_id)
        token = bws.access_token(project_id)

Wire facts reproduced (https://bitwarden.com/help/secrets-manager-sdk/ ,
https://bitwarden.com/help/access-tokens/ , the public API of bitwarden/server's
SecretsController and ProjectsController, and bitwarden/sdk's access-token login):

- An access token is `0.<client id>.<client secret>:<base64 of 16 bytes>`; the 16 bytes never
  reach the server.
- `POST /identity/connect/token`, form `scope=api.secrets&grant_type=client_credentials&
  client_id&client_secret` answers `{"access_token", "expires_in", "token_type": "Bearer",
  "scope": "api.secrets", "encrypted_payload"}`: the payload is an EncString (type 2) of
  `{"encryptionKey": base64 of the organization's 64-byte key}` under the token's shareable key
  (shim/providers/bwscrypto.py). A wrong or revoked client secret is 400 `{"error":
  "invalid_client"}`.
- `GET /api/secrets/ID` answers `{"object": "secret", "id", "organizationId", "projectId", "key",
  "value", "note", "creationDate", "revisionDate"}`, key, value and note EncStrings under the
  organization key. A secret that does not exist, or is outside the projects the machine
  account may read, is 404 `{"message": "Resource not found.", "object": "error", ...}`.
- `GET /api/projects/ID/secrets` answers `{"secrets": [{"id", "organizationId", "key",
  "creationDate", "revisionDate"}], "object": "SecretsWithProjectsList"}`;
  `POST /api/secrets/get-by-ids` with `{"ids": [...]}` answers `{"data": [secret...],
  "object": "list"}`, and 404 unless every id exists and is readable.
- `GET /api/organizations/ID/secrets` (what `bws secret list` asks) answers the same
  `SecretsWithProjectsList` for every secret of the organization the machine account may read,
  each with `"projects": [{"id", "name"}]` (bitwarden/server's SecretWithProjectsListResponseModel);
  an organization the caller has no Secrets Manager access to is 404. `revisionDate` changes
  whenever the secret is edited. The organization is the bearer's `organization` claim, which
  bitwarden/sdk's access-token login reads.
- A bearer token the server did not issue (or one past its `expires_in`) is 401 with an empty
  body.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
import uuid
from pathlib import Path

from shim.providers import bwscrypto

from .https import HttpsDouble, Incoming, Reply

NOT_FOUND = {"message": "Resource not found.", "validationErrors": None, "exceptionMessage": None,
             "exceptionStackTrace": None, "innerExceptionMessage": None, "object": "error"}


class BitwardenDouble(HttpsDouble):
    def __init__(self, directory: Path):
        super().__init__(directory, "bitwarden")
        self.organization = str(uuid.uuid4())
        self.org_key = bwscrypto.key_from_bytes(os.urandom(64))
        self._secrets: dict[str, dict] = {}        # id -> {"key", "value", "project"}
        self._clients: dict[str, tuple] = {}       # client id -> (client secret, key16, projects)
        self._bearers: dict[str, str] = {}         # bearer -> client id
        self._token_texts: list[str] = []
        self.tamper_values = False                 # values encrypted under another key
        self.expires_in = 3600                     # the bearer's lifetime, as the login says
        self.list_denied = False                   # the organization list is 404 (no access)
        self.list_reply = None                     # a Reply the organization list answers instead
        self._issued: dict[str, float] = {}        # bearer -> when it expires (time.time())

    # -- set-up --------------------------------------------------------------------------------

    def env(self, token: str) -> dict[str, str]:
        return {"BWS_SERVER_URL": self.endpoint, "BWS_ACCESS_TOKEN": token,
                "REQUESTS_CA_BUNDLE": str(self.ca_path)}

    def add_secret(self, key: str, value: str | bytes, *, project: str) -> str:
        secret_id = str(uuid.uuid4())
        raw = value.encode() if isinstance(value, str) else value
        with self.lock:
            self._secrets[secret_id] = {"key": key, "value": raw, "project": project,
                                        "revised": _now()}
        return secret_id

    def update_secret(self, secret_id: str, value: str) -> None:
        """An edit in the web app: a new value and a new revisionDate."""
        with self.lock:
            self._secrets[secret_id].update(value=value.encode(), revised=_now())

    def logins(self) -> int:
        return self.count(path="/identity/connect/token", status=200)

    def expire_bearers(self) -> None:
        """Every bearer issued so far is refused from now on (401), as after its expiry."""
        with self.lock:
            self._issued = {bearer: 0.0 for bearer in self._issued}

    def access_token(self, *projects: str) -> str:
        """A machine account's access token that may read `projects`."""
        client_id, client_secret = str(uuid.uuid4()), secrets.token_hex(15)
        key16 = os.urandom(16)
        with self.lock:
            self._clients[client_id] = (client_secret, key16, set(projects))
        text = f"0.{client_id}.{client_secret}:{base64.b64encode(key16).decode()}"
        self._token_texts.append(text)
        return text

    def revoke(self, token: str) -> None:
        with self.lock:
            self._clients.pop(token.split(".")[1], None)

    def credential_material(self) -> list[str]:
        with self.lock:
            material = list(self._bearers) + list(self._token_texts)
            material += [entry[0] for entry in self._clients.values()]
            material += [base64.b64encode(entry[1]).decode() for entry in self._clients.values()]
        return material

    # -- the API -------------------------------------------------------------------------------

    def error(self, status: int, message: str) -> Reply:
        return Reply(status, {**NOT_FOUND, "message": message})

    def route(self, request: Incoming):
        if request.method == "POST" and request.path == "/identity/connect/token":
            return self._token(request)
        with self.lock:
            client = self._clients.get(self._bearers.get(request.bearer(), ""))
            expired = self._issued.get(request.bearer(), 0.0) <= time.time()
        if client is None or expired:
            return Reply(401, "", "text/plain")
        readable = client[2]
        match = re.fullmatch(r"/api/organizations/([0-9a-f-]{36})/secrets", request.path)
        if request.method == "GET" and match:
            if match.group(1) != self.organization or self.list_denied:
                return Reply(404, NOT_FOUND)
            if self.list_reply is not None:
                return self.list_reply
            return self._listing(lambda entry: entry["project"] in readable)
        match = re.fullmatch(r"/api/secrets/([0-9a-f-]{36})", request.path)
        if request.method == "GET" and match:
            return self._secret(match.group(1), readable) or Reply(404, NOT_FOUND)
        match = re.fullmatch(r"/api/projects/([0-9a-f-]{36})/secrets", request.path)
        if request.method == "GET" and match:
            if match.group(1) not in readable:
                return Reply(404, NOT_FOUND)
            return self._listing(lambda entry, project=match.group(1): entry["project"] == project)
        if request.method == "POST" and request.path == "/api/secrets/get-by-ids":
            ids = (request.json() or {}).get("ids") or []
            found = [self._secret(secret_id, readable) for secret_id in ids]
            if not ids or not all(found):
                return Reply(404, NOT_FOUND)
            return {"data": found, "object": "list"}
        return Reply(404, NOT_FOUND)

    def _listing(self, chosen) -> dict:
        with self.lock:
            listed = [{"id": secret_id, "organizationId": self.organization,
                       "key": self._encrypt(entry["key"].encode()),
                       "creationDate": "2026-01-02T03:04:05.123Z",
                       "revisionDate": entry["revised"],
                       "projects": [{"id": entry["project"], "name": "project"}]}
                      for secret_id, entry in self._secrets.items() if chosen(entry)]
        projects = list({item["projects"][0]["id"]: item["projects"][0] for item in listed}
                        .values())
        return {"secrets": listed, "projects": projects, "object": "SecretsWithProjectsList"}

    def _token(self, request: Incoming):
        form = {key: values for key, values in _form(request.body).items()}
        with self.lock:
            client = self._clients.get(form.get("client_id", ""))
        if (form.get("grant_type") != "client_credentials" or form.get("scope") != "api.secrets"
                or client is None or client[0] != form.get("client_secret")):
            return Reply(400, {"error": "invalid_client"})
        bearer = self._jwt(form["client_id"])
        with self.lock:
            self._bearers[bearer] = form["client_id"]
            self._issued[bearer] = time.time() + self.expires_in
        payload = json.dumps({"encryptionKey": base64.b64encode(
            self.org_key.enc + self.org_key.mac).decode()}).encode()
        return {"access_token": bearer, "expires_in": self.expires_in, "token_type": "Bearer",
                "scope": "api.secrets",
                "encrypted_payload": bwscrypto.encrypt(payload, bwscrypto.shareable_key(client[1]),
                                                       os.urandom(16))}

    def _jwt(self, client_id: str) -> str:
        """A bearer token shaped as the identity server's: a JWT whose claims name the machine
        account and its organization (Bitwarden's SDK reads them; nobody checks the signature
        but the server)."""
        def part(data) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

        claims = {"iss": self.endpoint + "/identity", "nbf": int(time.time()) - 5,
                  "iat": int(time.time()) - 5, "exp": int(time.time()) + self.expires_in,
                  "scope": ["api.secrets"], "client_id": client_id, "sub": client_id,
                  "organization": self.organization, "jti": secrets.token_hex(16)}
        return ".".join((part({"alg": "RS256", "kid": "double", "typ": "at+jwt"}), part(claims),
                         base64.urlsafe_b64encode(os.urandom(64)).decode().rstrip("=")))

    def _secret(self, secret_id: str, readable: set):
        with self.lock:
            entry = self._secrets.get(secret_id)
        if entry is None or entry["project"] not in readable:
            return None
        return {"object": "secret", "id": secret_id, "organizationId": self.organization,
                "projectId": entry["project"], "key": self._encrypt(entry["key"].encode()),
                "value": (bwscrypto.encrypt(entry["value"], bwscrypto.key_from_bytes(
                    os.urandom(64)), os.urandom(16)) if self.tamper_values
                          else self._encrypt(entry["value"])),
                "note": self._encrypt(b""),
                "creationDate": "2026-01-02T03:04:05.123Z",
                "revisionDate": entry["revised"]}

    def _encrypt(self, plaintext: bytes) -> str:
        return bwscrypto.encrypt(plaintext, self.org_key, os.urandom(16))


def _now() -> str:
    """A revisionDate as the server writes it (UTC, with fractions of a second)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {key: values[-1] for key, values in parse_qs(body.decode()).items()}
