"""Infisical: the secrets of one folder of a project environment, one request per folder.

    ref+infisical://PROJECT_ID/ENVIRONMENT[/FOLDER/...]#/KEY

The locator is `PROJECT_ID/ENVIRONMENT[/FOLDER/...]` (no folder: the root, `/`); the key is a
selector into the folder's map, so every reference into one folder shares one
`GET /api/v4/secrets`. The syntax is a row of shim/syntax/refs.py.

Credentials, in the Infisical CLI's order: INFISICAL_TOKEN (an access token used as it is), then
a universal-auth machine identity (INFISICAL_UNIVERSAL_AUTH_CLIENT_ID and _CLIENT_SECRET), which
logs in once per run; every read waits for that one login, and a refused login fails them all.
The API is Infisical Cloud's unless INFISICAL_API_URL (the CLI's variable, for a self-hosted
instance) or SHIM_INFISICAL_ENDPOINT names another: https only, and never an address a reference
or an answer names.

Plain REST over `requests` (shim/providers/rest.py); docs/infisical.md has the measurements and
the reasons. Messages quote project ids, environments, folders and HTTP statuses, never a value,
a token, a client secret or Infisical's own message text.
"""

from __future__ import annotations

import time

from shim.tools.errors import ConfigError, PermissionDenied, ShimError, Unavailable, UnusableValue
from shim.providers import rest
from shim.providers.base import Fetched, SecretMeta
from shim.providers.bodycap import INFISICAL_BODY_CAP
from shim.providers.mechanism import retry

DEFAULT_ENDPOINT = "https://app.infisical.com"
LOGIN_PATH = "/api/v1/auth/universal-auth/login"
SECRETS_PATH = "/api/v4/secrets"
TITLE = "Infisical"
TOKEN_VARIABLE = "INFISICAL_TOKEN"
CLIENT_ID_VARIABLE = "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"
CLIENT_SECRET_VARIABLE = "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"
SITE_VARIABLE = "INFISICAL_API_URL"
ENDPOINT_VARIABLE = "SHIM_INFISICAL_ENDPOINT"
HINTS = rest.StatusHints(
    store=TITLE, endpoint=f"{SITE_VARIABLE} or {ENDPOINT_VARIABLE}",
    not_found="check the project id, the environment slug and the folder path",
    denied="check the identity's credentials and its role in the project and environment",
    bad_request="check the project id and environment slug in the reference")
# A token handed to the next --watch helper is used only while it has more than this left.
TOKEN_RESERVE_SECONDS = 60
RETRY_HINT = "transient failures were retried until --deadline; raise it or check the instance"


def endpoint_of(environ) -> str:
    """SHIM_INFISICAL_ENDPOINT, else the CLI's INFISICAL_API_URL (which ends in /api), else
    Infisical Cloud; both must be https:// URLs."""
    override = rest.endpoint_setting(ENDPOINT_VARIABLE, environ.get(ENDPOINT_VARIABLE),
                                     "https://infisical.example.internal")
    if override:
        return override
    site = rest.endpoint_setting(SITE_VARIABLE, environ.get(SITE_VARIABLE),
                                 "https://infisical.example.internal/api")
    if site:
        return site[:-len("/api")] if site.endswith("/api") else site
    return DEFAULT_ENDPOINT


class InfisicalProvider:
    name = "infisical"

    def __init__(self, context):
        self.context = context
        self._endpoint = endpoint_of(context.environ)
        self._session = None
        # INFISICAL_TOKEN, or one universal-auth login shared by every read of the run.
        self._access_token = rest.Once(self._obtain)
        self._login_token = None       # (access token, monotonic expiry) of our own login

    # -- handing over between --watch helpers (shim.pipeline.helper) -------------------------------------

    def export_session(self) -> dict:
        """The universal-auth access token and when it expires, so the next tick does not log
        in again: one login per token lifetime, not per tick. The expiry is a time.monotonic()
        (CLOCK_MONOTONIC is the machine's, shared by every helper), not the seconds left: the
        supervisor holds the session between ticks, and seconds counted at the hand-over
        would be stale by a tick at each one, so the token would never be seen to expire."""
        if self._login_token is None:
            return {}
        token, expiry = self._login_token
        if expiry - time.monotonic() - TOKEN_RESERVE_SECONDS <= 0:
            return {}
        return {"token": token, "expires": expiry}

    def resume_session(self, state) -> None:
        token, expires = state.get("token"), state.get("expires")
        if isinstance(token, str) and token and isinstance(expires, (int, float)):
            self._login_token = (token, float(expires))

    def fetch_all(self, references, deadline):
        if self._session is None:
            self._session = rest.new_session()
        return rest.read_each_locator(references, self._read_folder, deadline, TITLE)

    # -- credentials -----------------------------------------------------------------------------

    def _obtain(self, deadline) -> str:
        environ = self.context.environ
        if environ.get(TOKEN_VARIABLE):
            return environ[TOKEN_VARIABLE]
        client_id, client_secret = environ.get(CLIENT_ID_VARIABLE), environ.get(CLIENT_SECRET_VARIABLE)
        if not client_id and not client_secret:
            raise ConfigError(f"no Infisical credentials: neither {TOKEN_VARIABLE} nor "
                              f"{CLIENT_ID_VARIABLE} and {CLIENT_SECRET_VARIABLE} are set",
                              hint="give the machine identity's universal-auth client id and "
                                   "secret, or an access token")
        if self._login_token is not None and (
                time.monotonic() < self._login_token[1] - TOKEN_RESERVE_SECONDS):
            return self._login_token[0]
        if not client_id or not client_secret:
            missing = CLIENT_SECRET_VARIABLE if client_id else CLIENT_ID_VARIABLE
            raise ConfigError(f"{missing} is not set",
                              hint="universal auth needs both the client id and the client secret")
        answer = retry(lambda: rest.call(self._session, "POST", self._endpoint + LOGIN_PATH,
                                         headers={"Accept": "application/json"},
                                         json_body={"clientId": client_id,
                                                    "clientSecret": client_secret},
                                         timeout=deadline.remaining(), cap=INFISICAL_BODY_CAP,
                                         store=TITLE),
                       deadline, self.context.log, provider=self.name, title=TITLE,
                       operation="login", hint=RETRY_HINT)
        if answer.status in (400, 401, 403, 404):
            raise PermissionDenied(f"the universal-auth login was refused (HTTP {answer.status})",
                                   hint=f"check {CLIENT_ID_VARIABLE} and {CLIENT_SECRET_VARIABLE}"
                                        ", and that the client secret is not revoked or expired")
        if answer.status != 200:
            raise rest.outcome_of_status(answer.status, "the universal-auth login", HINTS)
        token = answer.body.get("accessToken") if isinstance(answer.body, dict) else None
        if not isinstance(token, str) or not token:
            raise PermissionDenied("the universal-auth login answer holds no access token",
                                   hint=f"check {ENDPOINT_VARIABLE} or {SITE_VARIABLE} points "
                                        "at Infisical")
        expires_in = answer.body.get("expiresIn")
        lifetime = expires_in if isinstance(expires_in, int) and expires_in > 0 else 0
        self._login_token = (token, time.monotonic() + lifetime)
        self.context.log.event("infisical.credential", "debug",
                               "logged in to Infisical with universal auth",
                               provider=self.name, credential="universal-auth")
        return token

    # -- reads -----------------------------------------------------------------------------------

    def _read_folder(self, locator: str, deadline):
        """The folder's map as Fetched, or the ShimError that says why not."""
        project, environment, folder = split_locator(locator)
        shown = f"folder {folder} of {project}/{environment}"
        params = {"projectId": project, "environment": environment, "secretPath": folder,
                  "viewSecretValue": "true", "expandSecretReferences": "true",
                  "include_imports": "false", "recursive": "false"}
        try:
            bearer = self._access_token(deadline)
            answer = retry(lambda: rest.call(self._session, "GET", self._endpoint + SECRETS_PATH,
                                             headers={"Authorization": f"Bearer {bearer}",
                                                      "Accept": "application/json"},
                                             params=params, timeout=deadline.remaining(),
                                             cap=INFISICAL_BODY_CAP, store=TITLE),
                           deadline, self.context.log, provider=self.name, title=TITLE,
                           operation="list", folder=shown, hint=RETRY_HINT)
        except ShimError as error:
            return error
        if answer.status == 401:
            self._login_token = None     # not handed to the next --watch tick: log in again
        if answer.status != 200:
            return rest.outcome_of_status(answer.status, shown, HINTS)
        return folder_map(answer.body, shown)


def split_locator(locator: str) -> tuple[str, str, str]:
    project, environment, *folders = locator.split("/")
    return project, environment, "/" + "/".join(folders)


def folder_map(body, shown: str):
    """`{"secrets": [{"secretKey", "secretValue", "type", ...}]}` -> {key: value}. A personal
    override (type "personal") wins over the shared value, as in Infisical's CLI."""
    secrets = body.get("secrets") if isinstance(body, dict) else None
    if not isinstance(secrets, list) or not all(isinstance(item, dict) for item in secrets):
        return Unavailable(f"the answer for {shown} is not a list of secrets",
                           hint=f"check {ENDPOINT_VARIABLE} or {SITE_VARIABLE} points at Infisical")
    values: dict[str, str] = {}
    for item in sorted(secrets, key=lambda item: item.get("type") == "personal"):
        key, value = item.get("secretKey"), item.get("secretValue")
        if item.get("secretValueHidden") is True:
            return PermissionDenied(f"{shown}: the identity may list the secrets but not read "
                                    "their values",
                                    hint="give the identity a role that can read secret values")
        if not isinstance(key, str) or not isinstance(value, str):
            return UnusableValue(f"the answer for {shown} holds a secret that is not text",
                                 hint=f"check {ENDPOINT_VARIABLE} or {SITE_VARIABLE} points at "
                                      "Infisical")
        values[key] = value
    return Fetched(values, SecretMeta())
