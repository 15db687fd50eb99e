"""Bitwarden Secrets Manager: secrets by id with a machine account's access token.

    ref+bws://SECRET_ID[#/json/pointer]     one secret's value
    ref+bws://project/PROJECT_ID            every secret of a project (for --import)

The syntax is a row of shim/syntax/refs.py. A run logs in once (client credentials at the identity
server), opens the organization key from the login answer with the access token's own key
(shim/providers/bwscrypto.py), then reads each secret with one GET, all at once; a project is
one listing and one `get-by-ids` for all its secrets. Values arrive encrypted and are opened here.

Under --watch the login is kept across ticks (`export_session`/`resume_session`, carried by
shim/pipeline/helper.py as Vault's session is): the bearer token, when it expires, and the login
answer's encrypted payload, which the next helper opens again with the access token (so no
organization key is ever carried). It logs in again only when the bearer expired or the API
refused it. Each tick then asks one question for every reference together: the
organization's secret list (`GET /organizations/ID/secrets`: ids, encrypted names, projects
and `revisionDate`, no values), which `bws secret list` also uses; values are read only when a
revision date changed. The organization is the bearer token's `organization` claim, as
Bitwarden's SDK reads it.

BWS_ACCESS_TOKEN is the credential; BWS_SERVER_URL (bws's variable) names a self-hosted or EU
server (`https://host`: its API is /api and its identity server /identity), https only.

Plain REST over `requests`; docs/bitwarden.md says why not the SDK. Messages quote secret and
project ids and HTTP statuses, never a value, a key name, the token or the server's text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from typing import NamedTuple

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
# A bearer handed to the next --watch helper is used only while it has more than this left.
TOKEN_RESERVE_SECONDS = 60


class Login(NamedTuple):
    bearer: str
    key: bwscrypto.SymmetricKey     # the organization's key, opened from `payload`
    payload: str                    # the login answer's encrypted_payload (carried, not the key)
    expires: float                  # time.monotonic() when the bearer expires
    carried: bool                   # from an earlier --watch helper, not this run's login


def urls_of(environ) -> tuple[str, str]:
    server = rest.endpoint_setting(SERVER_VARIABLE, environ.get(SERVER_VARIABLE),
                                   "https://vault.example.internal")
    return (f"{server}/api", f"{server}/identity") if server else (DEFAULT_API, DEFAULT_IDENTITY)


class SecretsManagerProvider:
    name = "bws"

    def __init__(self, context):
        self.context = context
        self._session = None
        # One login shared by every read of the run (and carried to the next --watch tick);
        # a refused login is every read's failure, not tried again per read.
        self._login: Login | None = None
        self._login_error: ShimError | None = None
        self._login_lock = threading.Lock()
        self._listing = rest.Once(self._list_organization)     # the probes' one question

    def fetch_all(self, references, deadline):
        if not references:
            return {}
        try:
            self._ready()
        except ShimError as error:
            return {reference.fetch_key: error for reference in references}
        return rest.read_each_locator(references, self._read, deadline, TITLE)

    def _ready(self) -> None:
        self._api, self._identity = urls_of(self.context.environ)
        if self._session is None:
            self._session = rest.new_session()

    # -- handing over between --watch helpers (shim.pipeline.helper) ----------------------------

    def export_session(self) -> dict:
        """The bearer, its expiry (CLOCK_MONOTONIC is the machine's, shared by every process)
        and the encrypted payload, while the bearer has more than the reserve left."""
        login = self._login
        if login is None or time.monotonic() >= login.expires - TOKEN_RESERVE_SECONDS:
            return {}
        return {"bearer": login.bearer, "payload": login.payload, "expires": login.expires}

    def resume_session(self, state) -> None:
        bearer, payload, expires = state.get("bearer"), state.get("payload"), state.get("expires")
        if not (isinstance(bearer, str) and isinstance(payload, str)
                and isinstance(expires, (int, float))):
            return
        token = bwscrypto.parse_access_token(self.context.environ.get(TOKEN_VARIABLE) or "")
        try:
            key = open_payload(payload, token) if token is not None else None
        except ShimError:
            key = None      # not this access token's login: log in afresh
        if key is not None:
            self._login = Login(bearer, key, payload, float(expires), carried=True)

    # -- login -----------------------------------------------------------------------------------

    def _logged_in(self, deadline, refused: str | None = None) -> Login:
        """This run's login: the carried one while it has time left, else a new one; `refused`
        names a bearer the API just refused with 401, which is then not used again."""
        with self._login_lock:
            login = self._login
            if login is not None and login.bearer != refused and (
                    time.monotonic() < login.expires - TOKEN_RESERVE_SECONDS):
                return login
            if self._login_error is not None:
                raise self._login_error
            try:
                self._login = self._log_in(deadline)
            except ShimError as error:
                self._login, self._login_error = None, error
                raise
            return self._login

    def _log_in(self, deadline) -> Login:
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
        key = open_payload(payload, token)
        if not isinstance(bearer, str) or not bearer:
            raise PermissionDenied("the login answer holds no access token",
                                   hint=f"check {SERVER_VARIABLE} points at Bitwarden")
        lifetime = body.get("expires_in")
        lifetime = lifetime if isinstance(lifetime, int) and not isinstance(lifetime, bool) else 0
        self.context.log.event("bws.credential", "debug",
                               "logged in to Bitwarden Secrets Manager with the access token",
                               provider=self.name)
        return Login(bearer, key, payload, time.monotonic() + min(max(lifetime, 0), 86400),
                     carried=False)

    # -- reads -----------------------------------------------------------------------------------

    def _call(self, method, path, deadline, operation, json_body=None):
        """One API request with this run's login; a carried bearer the API refuses (revoked,
        or expired early) is replaced by a new login and the request made once more."""
        login = self._logged_in(deadline)
        answer = self._request(method, path, deadline, operation, login.bearer, json_body)
        if answer.status == 401 and login.carried:
            login = self._logged_in(deadline, refused=login.bearer)
            answer = self._request(method, path, deadline, operation, login.bearer, json_body)
        return answer

    def _request(self, method, path, deadline, operation, bearer, json_body):
        return retry(lambda: rest.call(self._session, method, self._api + path,
                                       headers={"Authorization": f"Bearer {bearer}",
                                                "Accept": "application/json"},
                                       json_body=json_body, timeout=deadline.remaining(),
                                       cap=BITWARDEN_BODY_CAP, store=TITLE),
                     deadline, self.context.log, provider=self.name, title=TITLE,
                     operation=operation, hint=RETRY_HINT)

    def _read(self, locator: str, deadline):
        try:
            key = self._logged_in(deadline).key
            if locator.startswith(PROJECT_PREFIX):
                return self._read_project(locator[len(PROJECT_PREFIX):], key, deadline)
            answer = self._call("GET", f"/secrets/{locator}", deadline, "get")
            if answer.status != 200:
                return rest.outcome_of_status(answer.status, f"secret {locator}", HINTS)
            _, value = open_secret(answer.body, key, f"secret {locator}")
            return Fetched(value, SecretMeta())
        except ShimError as error:
            return error

    def _read_project(self, project: str, key, deadline):
        shown = f"project {project}"
        listed = self._call("GET", f"/projects/{project}/secrets", deadline, "list")
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
            answer = self._call("POST", "/secrets/get-by-ids", deadline, "get-by-ids",
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


    # -- --watch change probes (shim.pipeline.probes) -------------------------------------------

    def probe_kind(self, reference) -> str:
        return "revision"

    def probe(self, reference, deadline):
        """The revision date of the secret (or the ids and revision dates of the project's
        secrets) from the organization's list, asked once per run for every reference; DENIED
        when the machine account may read its secrets but not list the organization's; None
        when the list does not name the secret (the read says why)."""
        self._ready()
        listing = self._listing(deadline)
        if listing is DENIED:
            return DENIED
        locator = reference.locator.lower()
        if locator.startswith(PROJECT_PREFIX):
            project = locator[len(PROJECT_PREFIX):]
            members = sorted((secret_id, revised) for secret_id, (revised, projects)
                             in listing.items() if project in projects)
            return "project " + hashlib.sha256(repr(members).encode()).hexdigest()
        found = listing.get(locator)
        return f"revised {found[0]}" if found is not None else None

    def _list_organization(self, deadline):
        """{secret id: (revisionDate, project ids)} of the organization's secrets the machine
        account may read, or DENIED."""
        organization = organization_of(self._logged_in(deadline).bearer)
        if organization is None:
            return DENIED       # not a token shim can read the organization from: read instead
        answer = self._call("GET", f"/organizations/{organization}/secrets", deadline, "probe")
        if answer.status in (403, 404):
            return DENIED
        if answer.status != 200:
            raise rest.outcome_of_status(answer.status, "the organization's secret list", HINTS)
        entries = answer.body.get("secrets") if isinstance(answer.body, dict) else None
        listing: dict = {}      # an answer shim cannot read names nothing: every secret is read
        if not isinstance(entries, list):
            return listing
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            secret_id, revised = entry.get("id"), entry.get("revisionDate")
            projects = entry.get("projects") if isinstance(entry.get("projects"), list) else []
            if isinstance(secret_id, str) and isinstance(revised, str) and len(revised) < 64:
                listing[secret_id.lower()] = (revised, frozenset(
                    str(project.get("id")).lower() for project in projects
                    if isinstance(project, dict)))
        return listing


DENIED = "denied"   # shim.pipeline.probes.DENIED: the store refuses the probe, read instead


def organization_of(bearer: str) -> str | None:
    """The `organization` claim of the bearer (a JWT; its signature is the server's business),
    as Bitwarden's SDK reads it; None unless it is a UUID (it becomes part of a path)."""
    try:
        claims = json.loads(base64.urlsafe_b64decode(bearer.split(".")[1] + "=="))
    except (ValueError, IndexError):
        return None
    organization = claims.get("organization") if isinstance(claims, dict) else None
    if isinstance(organization, str) and re.fullmatch(bwscrypto.UUID, organization):
        return organization.lower()
    return None


def open_payload(payload, token) -> bwscrypto.SymmetricKey:
    """The organization's key from a login answer's encrypted payload, with the access token's
    own key."""
    try:
        opened = json.loads(bwscrypto.decrypt(payload, bwscrypto.shareable_key(
            token.encryption_key)))
        return bwscrypto.key_from_bytes(base64.b64decode(opened["encryptionKey"], validate=True))
    except (ValueError, KeyError, TypeError):
        raise PermissionDenied("the login answer's encrypted payload does not open with the "
                               "access token's key",
                               hint=f"check {TOKEN_VARIABLE} and {SERVER_VARIABLE}") from None


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

