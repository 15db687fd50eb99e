"""Bitwarden Secrets Manager: secrets by id with a machine account's access token.

    ref+bws://SECRET_ID[#/json/pointer]     one secret's value
    ref+bws://project/PROJECT_ID            every secret of a project (for --import)

The syntax is a row of shim/syntax/refs.py. A run logs in once (client credentials at the identity
server), opens the organization key from the login answer with the access token's own key
(shim/providers/bwscrypto.py), then reads each secret with one GET, all at once; a project is
one listing and one `get-by-ids` for all its secrets. Values arrive encrypted and are opened here.

BWS_ACCESS_TOKEN is the credential; BWS_SERVER_URL (bws's variable) names a self-hosted or EU
server (`https://host`: its API is /api and its identity server /identity), https only.

Plain REST over `requests`; docs/bitwarden.md says why not the SDK. Messages quote secret and
project ids and HTTP statuses, never a value, a key name, the token or the server's text.
"""

from __future__ import annotations

import base64
import json
import re

from shim.tools.errors import ConfigError, PermissionDenied, ShimError, Unavailable, UnusableValue
from shim.providers import bwscrypto, rest
from shim.providers.base import Fetched, SecretMeta
from shim.providers.bodycap import BITWARDEN_BODY_CAP
from shim.providers.mechanism import retry

TITLE = "Bitwarden Secrets Manager"
TOKEN_VARIABLE = "BWS_ACCESS_TOKEN"
SERVER_VARIABLE = "BWS_SERVER_URL"
DEFAULT_API = "https://api.bitwarden.com"
DEFAULT_IDENTITY = "https://identity.bitwarden.com"
PROJECT_PREFIX = "project/"
HINTS = rest.StatusHints(
    store=TITLE, endpoint=SERVER_VARIABLE,
    not_found="check the id, and that the machine account has access to the secret's project",
    denied=f"check {TOKEN_VARIABLE}: the access token may be revoked or expired",
    bad_request="check the secret or project id")
RETRY_HINT = "transient failures were retried until --deadline; raise it or check the server"


def urls_of(environ) -> tuple[str, str]:
    server = rest.endpoint_setting(SERVER_VARIABLE, environ.get(SERVER_VARIABLE),
                                   "https://vault.example.internal")
    return (f"{server}/api", f"{server}/identity") if server else (DEFAULT_API, DEFAULT_IDENTITY)


class SecretsManagerProvider:
    name = "bws"

    def __init__(self, context):
        self.context = context
        self._session = None
        # (bearer, organization key): one login shared by every read of the run.
        self._logged_in = rest.Once(self._log_in)

    def fetch_all(self, references, deadline):
        if not references:
            return {}
        try:
            self._api, self._identity = urls_of(self.context.environ)
        except ShimError as error:
            return {reference.fetch_key: error for reference in references}
        if self._session is None:
            self._session = rest.new_session()
        return rest.read_each_locator(references, self._read, deadline, TITLE)

    # -- login -----------------------------------------------------------------------------------

    def _log_in(self, deadline):
        text = self.context.environ.get(TOKEN_VARIABLE) or ""
        if not text:
            raise ConfigError(f"{TOKEN_VARIABLE} is not set",
                              hint="give a machine account's access token")
        token = bwscrypto.parse_access_token(text)
        if token is None:
            raise ConfigError(f"{TOKEN_VARIABLE} is not an access token",
                              hint="copy the whole token the web app showed (0.<id>.<secret>:<key>)")
        form = {"scope": "api.secrets", "grant_type": "client_credentials",
                "client_id": token.client_id, "client_secret": token.client_secret}
        answer = retry(lambda: rest.call(self._session, "POST", self._identity + "/connect/token",
                                         headers={"Accept": "application/json"}, form=form,
                                         timeout=deadline.remaining(), cap=BITWARDEN_BODY_CAP,
                                         store=TITLE),
                       deadline, self.context.log, provider=self.name, title=TITLE,
                       operation="login", hint=RETRY_HINT)
        if answer.status in (400, 401):
            raise PermissionDenied(f"the access token's login was refused (HTTP {answer.status})",
                                   hint=f"check {TOKEN_VARIABLE}: it may be revoked or expired")
        if answer.status != 200:
            raise rest.outcome_of_status(answer.status, "the login", HINTS)
        body = answer.body if isinstance(answer.body, dict) else {}
        bearer, payload = body.get("access_token"), body.get("encrypted_payload")
        try:
            opened = json.loads(bwscrypto.decrypt(payload, bwscrypto.shareable_key(
                token.encryption_key)))
            key = bwscrypto.key_from_bytes(base64.b64decode(opened["encryptionKey"],
                                                            validate=True))
        except (ValueError, KeyError, TypeError):
            raise PermissionDenied("the login answer's encrypted payload does not open with the "
                                   "access token's key",
                                   hint=f"check {TOKEN_VARIABLE} and {SERVER_VARIABLE}") from None
        if not isinstance(bearer, str) or not bearer:
            raise PermissionDenied("the login answer holds no access token",
                                   hint=f"check {SERVER_VARIABLE} points at Bitwarden")
        return bearer, key

    # -- reads -----------------------------------------------------------------------------------

    def _call(self, method, path, deadline, operation, bearer, json_body=None):
        return retry(lambda: rest.call(self._session, method, self._api + path,
                                       headers={"Authorization": f"Bearer {bearer}",
                                                "Accept": "application/json"},
                                       json_body=json_body, timeout=deadline.remaining(),
                                       cap=BITWARDEN_BODY_CAP, store=TITLE),
                     deadline, self.context.log, provider=self.name, title=TITLE,
                     operation=operation, hint=RETRY_HINT)

    def _read(self, locator: str, deadline):
        try:
            bearer, key = self._logged_in(deadline)
            if locator.startswith(PROJECT_PREFIX):
                return self._read_project(locator[len(PROJECT_PREFIX):], bearer, key, deadline)
            answer = self._call("GET", f"/secrets/{locator}", deadline, "get", bearer)
            if answer.status != 200:
                return rest.outcome_of_status(answer.status, f"secret {locator}", HINTS)
            _, value = open_secret(answer.body, key, f"secret {locator}")
            return Fetched(value, SecretMeta())
        except ShimError as error:
            return error

    def _read_project(self, project: str, bearer, key, deadline):
        shown = f"project {project}"
        listed = self._call("GET", f"/projects/{project}/secrets", deadline, "list", bearer)
        if listed.status != 200:
            return rest.outcome_of_status(listed.status, shown, HINTS)
        entries = listed.body.get("secrets") if isinstance(listed.body, dict) else None
        if not isinstance(entries, list):
            return Unavailable(f"the answer for {shown} is not a list of secrets",
                               hint=f"check {SERVER_VARIABLE} points at Bitwarden")
        ids = [entry.get("id") for entry in entries if isinstance(entry, dict)]
        if not all(isinstance(i, str) and re.fullmatch(bwscrypto.UUID, i) for i in ids):
            return Unavailable(f"the answer for {shown} holds an id that is not a UUID",
                               hint=f"check {SERVER_VARIABLE} points at Bitwarden")
        values: dict[str, str] = {}
        if ids:
            answer = self._call("POST", "/secrets/get-by-ids", deadline, "get-by-ids", bearer,
                                json_body={"ids": ids})
            if answer.status != 200:
                return rest.outcome_of_status(answer.status, shown, HINTS)
            data = answer.body.get("data") if isinstance(answer.body, dict) else None
            if not isinstance(data, list):
                return Unavailable(f"the answer for {shown} is not a list of secrets",
                                   hint=f"check {SERVER_VARIABLE} points at Bitwarden")
            for secret in data:
                name, value = open_secret(secret, key, shown)
                values[name] = value
        return Fetched(values, SecretMeta())


def open_secret(body, key, shown: str) -> tuple[str, str]:
    """A secret answer's (key name, value), decrypted with the organization key."""
    if not isinstance(body, dict):
        raise Unavailable(f"the answer for {shown} is not a secret",
                          hint=f"check {SERVER_VARIABLE} points at Bitwarden")
    try:
        name = bwscrypto.decrypt(body.get("key"), key).decode("utf-8")
        value = bwscrypto.decrypt(body.get("value"), key)
    except ValueError:
        raise UnusableValue(f"{shown} does not open with the organization's key",
                            hint="the answer was altered, or the server is not the one the "
                                 "token belongs to") from None
    try:
        return name, value.decode("utf-8")
    except UnicodeDecodeError:
        raise UnusableValue(f"the value of {shown} is not UTF-8 text",
                            hint="store text in Bitwarden Secrets Manager") from None

