"""A Doppler API double: the secrets download of a config, as the Doppler API documents it.

Real HTTPS on 127.0.0.1 (tests/doubles/https.py); shim finds it through SHIM_DOPPLER_ENDPOINT
and trusts it through REQUESTS_CA_BUNDLE (`doppler.env()` gives both).

    with DopplerDouble(tmp_path) as doppler:
        doppler.add_config("billing", "prd", {"DB_PASSWORD": canary})
        token = doppler.service_token("billing", "prd")

Wire facts reproduced (Doppler API reference, https://docs.doppler.com/reference/api and
https://docs.doppler.com/reference/config-secret-download):

- `GET /v3/configs/config/secrets/download?format=json[&project=P&config=C]` with
  `Authorization: Bearer TOKEN` answers the config's secrets as one flat JSON object of names to
  string values, with Doppler's own `DOPPLER_PROJECT`, `DOPPLER_CONFIG` and
  `DOPPLER_ENVIRONMENT` added.
- A service token (`dp.st.…`) is scoped to one config: without project and config it reads that
  config; naming another project or config is 403.
- A service account or personal token (`dp.sa.…`, `dp.pt.…`) must name project and config
  (400 without them) and reads only what it was granted (403 otherwise).
- Errors are `{"messages": ["…"], "success": false}` with the HTTP status: 401 `Invalid Auth
  token`, 403 `This token does not have access to requested config '…'`, 404 `Could not find
  requested project '…'` / `Could not find requested config '…'`, 429 with `Retry-After`, 5xx.
- A download answers with an `ETag`; the same download sent with `If-None-Match: <that ETag>`
  is 304 with no body while the config is unchanged. Doppler's own CLI relies on it for its
  fallback file (https://github.com/DopplerHQ/cli, pkg/http/api.go: DownloadSecrets sends
  If-None-Match with the ETag it kept).
- Secret names are upper-case letters, digits and underscores, not starting with a digit
  (https://docs.doppler.com/docs/secrets); the double refuses anything else when a test adds it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path

from .https import HttpsDouble, Incoming, Reply, token_tag

DOWNLOAD = "/v3/configs/config/secrets/download"


class DopplerDouble(HttpsDouble):
    def __init__(self, directory: Path):
        super().__init__(directory, "doppler")
        self._configs: dict[tuple, dict] = {}      # (project, config) -> {NAME: value}
        self._tokens: dict[str, object] = {}       # token -> (project, config) | set of them

    # -- set-up --------------------------------------------------------------------------------

    def env(self, token: str) -> dict[str, str]:
        return {"SHIM_DOPPLER_ENDPOINT": self.endpoint, "REQUESTS_CA_BUNDLE": str(self.ca_path),
                "DOPPLER_TOKEN": token}

    def add_config(self, project: str, config: str, values: dict) -> None:
        for name in values:
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), "Doppler refuses this secret name"
        with self.lock:
            self._configs.setdefault((project, config), {}).update(values)

    def service_token(self, project: str, config: str) -> str:
        token = f"dp.st.{config}.{secrets.token_urlsafe(30)}"
        with self.lock:
            self._tokens[token] = (project, config)
        return token

    def account_token(self, *granted: tuple) -> str:
        token = f"dp.sa.{secrets.token_urlsafe(30)}"
        with self.lock:
            self._tokens[token] = set(granted)
        return token

    def revoke(self, token: str) -> None:
        with self.lock:
            self._tokens.pop(token, None)

    def credential_material(self) -> list[str]:
        with self.lock:
            return list(self._tokens)

    def downloads(self, token: str = "") -> list:
        found = self.requests(path=DOWNLOAD)
        return [entry for entry in found if not token or entry.bearer == token_tag(token)]

    # -- the API -------------------------------------------------------------------------------

    def error(self, status: int, message: str) -> Reply:
        return Reply(status, {"messages": [message], "success": False})

    def route(self, request: Incoming):
        if request.method != "GET" or request.path != DOWNLOAD:
            return self.error(404, "Not found")
        with self.lock:
            scope = self._tokens.get(request.bearer())
        if scope is None:
            return self.error(401, "Invalid Auth token")
        if request.query.get("format", "json") != "json":
            return self.error(400, "Invalid format")
        project, config = request.query.get("project"), request.query.get("config")
        if isinstance(scope, tuple):
            project, config = project or scope[0], config or scope[1]
            if (project, config) != scope:
                return self.error(403, f"This token does not have access to requested config "
                                       f"'{config}'")
        elif not project or not config:
            return self.error(400, "You must specify a project" if not project
                              else "You must specify a config")
        elif (project, config) not in scope:
            return self.error(403, f"This token does not have access to requested config "
                                   f"'{config}'")
        with self.lock:
            projects = {known for known, _ in self._configs}
            values = self._configs.get((project, config))
            values = dict(values) if values is not None else None
        if project not in projects:
            return self.error(404, f"Could not find requested project '{project}'")
        if values is None:
            return self.error(404, f"Could not find requested config '{config}'")
        environment = config.split("_", 1)[0]
        answer = {**values, "DOPPLER_PROJECT": project, "DOPPLER_CONFIG": config,
                  "DOPPLER_ENVIRONMENT": environment}
        etag = 'W/"' + hashlib.sha256(json.dumps(answer, sort_keys=True).encode()).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return Reply(304, b"", headers={"ETag": etag})
        return Reply(200, answer, headers={"ETag": etag})
