"""Google Cloud Secret Manager, as berglas, vals and secrets-init reference it.

    sm://PROJECT/SECRET[#VERSION]                                          (berglas)
    ref+gcpsecrets://PROJECT/SECRET[?version=V][&location=L][#/json/ptr]   (vals; canonical)
    gcp:secretmanager:projects/P[/locations/L]/secrets/S[/versions/V]      (secrets-init)

The three syntaxes are one row of shim/syntax/refs.py's table (parsed before any provider is imported);
the locator is the resource name `projects/P[/locations/L]/secrets/S`, the version None for
`latest`. This module has three pieces:

1. Credentials: `obtain_credentials()` follows Application Default Credentials in Google's order
   with google-auth's public loaders; `TokenSource` asks for one token per run (and again only
   when it has expired, in --watch).
2. Reads: one `versions/V:access` call per fetch key, all at once through the shared mechanism
   (retries within --deadline, abandoning what outlasts it); then, only when something reads
   the dates (check, a rotation policy, an audit or info log of ages), a best-effort
   `versions/V` get for the create time. A pinned version that `latest` of the same secret
   turns out to be is not read a second time.
3. Answers: `outcome_of_status()` maps a google.rpc.Status error to a ShimError; the payload is
   checked against `dataCrc32c` with `crc32c()`.

Plain REST over `requests` (already installed with google-auth) rather than the
google-cloud-secret-manager client: docs/gcp.md has the measurements.
Messages quote resource names, versions, HTTP statuses and google.rpc codes; never a payload
or a token.

Longer than our other modules on purpose: a provider is one module, and Google's credential
order (three kinds of credential, each with its own failures) is part of this one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from datetime import datetime
from typing import Callable, NamedTuple, Optional

# Imported here so that a missing extra is an ImportError the registry turns into "install
# shim-secrets[gcp]". google-auth and urllib3 install NullHandlers on their loggers, so their
# retry warnings never reach stderr (tests/hardening/test_faults.py checks for one line).
import google.auth  # noqa: F401
import requests

from shim.tools.errors import ConfigError, NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue
from shim.providers.base import Fetched, SecretMeta
from shim.providers.mechanism import Transient, by_fetch_key, retry, run_concurrently
from shim.syntax.refs import GCP_LOCATOR

DEFAULT_ENDPOINT = "https://secretmanager.googleapis.com"
# Regional secrets live behind a regional endpoint (locational endpoints, `rep` domain).
REGIONAL_ENDPOINT = "https://secretmanager.{location}.rep.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Reads in flight at once. Secret Manager has no batch read; its access quota is per minute and
# far above what one start-up asks for, so one wave covers a typical image.
MAX_CONCURRENT_READS = 64
# A token handed to the next --watch helper is used only while it has more than this left.
TOKEN_RESERVE_SECONDS = 60
# Largest answer read: payloads are at most 64 KiB, base64 makes that about 88 KiB.
MAX_ANSWER_BYTES = 1 << 20
TITLE = "Secret Manager"


# ------------------------------------------------------------------------------ 1. credentials

class Credentials(NamedTuple):
    credentials: object       # a google.auth.credentials.Credentials
    source: str               # what was used, for the debug event and messages


def obtain_credentials(environ) -> Credentials:
    """Application Default Credentials, in Google's order, with google-auth's own loaders.

    1. GOOGLE_APPLICATION_CREDENTIALS: a service-account key, an authorized_user file, or an
       external_account configuration (workload identity federation: file, URL, AWS or executable
       subject tokens).
    2. gcloud's ADC file (`gcloud auth application-default login`), under CLOUDSDK_CONFIG or
       ~/.config/gcloud.
    3. The metadata server (GCE, GKE Workload Identity, Cloud Run), at GCE_METADATA_HOST if set.

    google.auth.default() is not called: besides credentials it looks up a project (the metadata
    server, gcloud as a subprocess, or Cloud Resource Manager for federated identities), which
    costs requests and time, and every reference already names its project.
    """
    explicit = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        return Credentials(_from_file(explicit, "GOOGLE_APPLICATION_CREDENTIALS"),
                           "GOOGLE_APPLICATION_CREDENTIALS")
    config = environ.get("CLOUDSDK_CONFIG") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".config", "gcloud")
    user_file = os.path.join(config, "application_default_credentials.json")
    if os.path.isfile(user_file):
        return Credentials(_from_file(user_file, "the gcloud ADC file"), "gcloud application-default")
    from google.auth.compute_engine import Credentials as MetadataCredentials  # lazy: only for the metadata server
    return Credentials(MetadataCredentials(scopes=[SCOPE]), "metadata server")


def _from_file(path: str, what: str):
    """google-auth credentials for a credentials file of a type Google's ADC accepts."""

    def unusable(problem: str) -> ConfigError:
        return ConfigError(f"{what} ({path}) {problem}",
                           hint="point it at a service-account key, a gcloud ADC file or a "
                                "workload identity federation configuration (docs/gcp.md)")

    try:
        with open(path, "rb") as stream:
            info = json.loads(stream.read(1 << 20))
    except OSError as error:
        raise unusable(f"cannot be read ({error.strerror})") from None
    except (ValueError, RecursionError):
        raise unusable("is not JSON") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            from google.oauth2 import service_account  # lazy: only for the credential type the file names
            return service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        if kind == "authorized_user":
            from google.oauth2 import credentials  # lazy: only for the credential type the file names
            return credentials.Credentials.from_authorized_user_info(info, scopes=[SCOPE])
        if kind == "external_account":
            source = info.get("credential_source") or {}
            if info.get("subject_token_type") == "urn:ietf:params:aws:token-type:aws4_request":
                from google.auth import aws as federation  # lazy: only for the credential type found
            elif isinstance(source, dict) and "executable" in source:
                from google.auth import pluggable as federation  # lazy: only for the credential type found
            else:
                from google.auth import identity_pool as federation  # lazy: only for the credential type found
            return federation.Credentials.from_info(info, scopes=[SCOPE])
    except (ValueError, KeyError, TypeError) as error:
        # google-auth names the missing or malformed field; nothing of the key is quoted.
        detail = type(error).__name__ if isinstance(error, (KeyError, TypeError)) else \
            _first_clause(error)
        raise unusable(f"is not a usable {kind} file ({detail})") from None
    raise unusable(f"has type {str(kind)[:40]!r}, which shim does not use")


class TokenSource:
    """One access token per run for every read; asked again only when it has expired."""

    def __init__(self, environ, session_factory: Callable[[], object]):
        self._environ = environ
        self._session_factory = session_factory
        self._lock = threading.Lock()
        self._credentials: Optional[Credentials] = None
        self.carried: tuple[str, float] | None = None   # (token, monotonic expiry) from --watch

    @property
    def source(self) -> str:
        return self._credentials.source if self._credentials else "none"

    def current(self) -> tuple[str | None, float]:
        """The token in hand and its seconds left, keeping a minute in reserve."""
        if self.carried is not None:
            left = self.carried[1] - time.monotonic()
            if left > 0:
                return self.carried[0], left
            # Expired: hand on the token obtained since (or none), never the dead one, or
            # every later helper would be given it and ask for a new token again.
            self.carried = None
        credentials = self._credentials.credentials if self._credentials else None
        if credentials is None or not credentials.valid or credentials.expiry is None:
            return None, 0.0
        # google-auth keeps expiry as a naive UTC datetime.
        left = (credentials.expiry - datetime.utcnow()).total_seconds() - TOKEN_RESERVE_SECONDS
        return (credentials.token, left) if left > 0 else (None, 0.0)

    def token(self) -> str:
        """The bearer token; PermissionDenied (77) or Unavailable (69) when none can be had."""
        from google.auth import exceptions  # lazy: only for the credential type found
        from google.auth.transport.requests import Request  # lazy: only when a token is needed

        with self._lock:
            if self.carried is not None and time.monotonic() < self.carried[1]:
                return self.carried[0]
            if self._credentials is None:
                self._credentials = obtain_credentials(self._environ)
            credentials = self._credentials.credentials
            if credentials.valid:
                return credentials.token
            try:
                credentials.refresh(Request(self._session_factory()))
            except (exceptions.RefreshError, exceptions.OAuthError) as error:
                # RefreshError: the token endpoint said no; OAuthError: STS (federation) said no.
                cause = error.__cause__
                if self._credentials.source == "metadata server" and isinstance(
                        cause, exceptions.TransportError) and "Response status: " in str(cause):
                    raise Unavailable(
                        "the metadata server failed to give a token (it answered "
                        f"{_metadata_status(str(cause))} until google-auth stopped retrying)",
                        hint="retry later, or raise --deadline") from None
                if self._credentials.source == "metadata server" and isinstance(
                        cause, exceptions.TransportError):
                    raise PermissionDenied(
                        "no Google credentials: GOOGLE_APPLICATION_CREDENTIALS is not set, there "
                        "is no gcloud ADC file, and the metadata server did not answer",
                        hint="on GCP check the workload identity; elsewhere set "
                             "GOOGLE_APPLICATION_CREDENTIALS") from None
                raise PermissionDenied(
                    f"the token request with {self.source} was refused: {_first_clause(error)}",
                    hint="check the identity and its configuration (docs/gcp.md lists the order)"
                ) from None
            except exceptions.TransportError as error:
                raise Unavailable(f"cannot reach the token endpoint of {self.source}: "
                                  f"{_network_reason(str(error))}",
                                  hint="check the network path, or raise --deadline") from None
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                # A token answer that is not JSON or lacks its fields (google-auth indexes it).
                raise PermissionDenied(f"the token answer for {self.source} is not usable "
                                       f"({type(error).__name__})",
                                       hint="check the token endpoint") from None
            if not credentials.token:
                raise PermissionDenied(f"the token answer for {self.source} holds no token",
                                       hint="check the token endpoint")
            return credentials.token


# ------------------------------------------------------------------------------------ 2. reads

def endpoint_for(locator: str, override: Optional[str]) -> str:
    if override:
        return override.rstrip("/")
    location = re.fullmatch(GCP_LOCATOR, locator).group(2)
    return REGIONAL_ENDPOINT.format(location=location) if location else DEFAULT_ENDPOINT


class Answer(NamedTuple):
    status: int
    body: object               # parsed JSON, or None when the body was not JSON


_RETRIED_STATUSES = {429, 500, 502, 503, 504}
_RETRIED_CODES = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED"}


def http_attempt(session, url: str, token: str, timeout: float) -> Answer:
    """One GET; transient outcomes (429, 5xx, google.rpc UNAVAILABLE & co, connection failures,
    a body that is not JSON or too large) raise Transient, every other answer is returned."""
    timeout = max(timeout, 0.1)
    try:
        with session.get(url, headers={"Authorization": f"Bearer {token}"},
                         timeout=(min(timeout, 10.0), timeout), stream=True) as response:
            # A secret is at most 64 KiB; a server sending more is not Secret Manager. Read
            # through iter_content so that a whole answer leaves the connection reusable.
            chunks, size = [], 0
            for chunk in response.iter_content(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    break
            content = b"".join(chunks)
    except requests.exceptions.SSLError:
        raise
    except (requests.exceptions.RequestException, OSError) as error:
        raise Transient(_network_reason(str(error))) from None
    if len(content) > MAX_ANSWER_BYTES:
        raise Transient(f"an answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        body = json.loads(content) if content else None
    except (ValueError, RecursionError):
        body = None
    code = _status_code(body)
    if response.status_code in _RETRIED_STATUSES or code in _RETRIED_CODES:
        raise Transient(f"HTTP {response.status_code} {code or ''}".strip(),
                        retry_after=_retry_after(response.headers.get("Retry-After")))
    if response.status_code == 200 and not isinstance(body, dict):
        raise Transient("HTTP 200 with a body that is not JSON")
    return Answer(response.status_code, body)


def read_version(reference, token: Callable[[], str], session, endpoint: str, deadline, log,
                 wants_date: bool = True):
    """Fetched, or the ShimError that says why not (one access call, then a best-effort get
    when `wants_date`)."""
    name = shown(reference)
    try:
        bearer = token()
        answer = retry(lambda: http_attempt(session, f"{endpoint}/v1/{name}:access", bearer,
                                            deadline.remaining()),
                       deadline, log, provider="gcpsecrets", title=TITLE, operation="access",
                       hint="transient failures were retried until --deadline; raise it or "
                            "check the service's status", reference=reference.shown)
    except ShimError as error:
        return error
    except requests.exceptions.SSLError:
        return ConfigError(f"the TLS certificate of {endpoint} is not trusted",
                           hint="trust its CA with REQUESTS_CA_BUNDLE=/path/ca.pem")
    if answer.status != 200:
        return outcome_of_status(answer, reference)
    try:
        payload = answer.body["payload"]
        data = base64.b64decode(payload.get("data", ""), validate=True)
        resolved = answer.body["name"]
    except (KeyError, TypeError, AttributeError, ValueError):
        return Unavailable(f"the answer for {name} is not a secret version",
                           hint="check SHIM_GCP_ENDPOINT points at Secret Manager")
    checksum = payload.get("dataCrc32c")
    if checksum is not None and str(checksum) != str(crc32c(data)):
        return UnusableValue(f"the payload of {name} does not match its dataCrc32c checksum",
                             hint="the value was corrupted on the way; retry, and check any proxy")
    version = resolved.rsplit("/", 1)[-1] if isinstance(resolved, str) else ""
    if not re.fullmatch(r"[1-9][0-9]{0,18}", version):
        return Unavailable(f"the answer for {name} names no version number",
                           hint="check SHIM_GCP_ENDPOINT points at Secret Manager")
    created = (_create_time(session, endpoint, reference.locator, version, bearer, deadline)
               if wants_date else None)
    return Fetched(data, SecretMeta(version=version, created=created))


def _create_time(session, endpoint, locator, version, token, deadline) -> Optional[datetime]:
    """The version's createTime, or None: reading it needs secretmanager.versions.get, which the
    usual accessor role (roles/secretmanager.secretAccessor) does not grant."""
    try:
        answer = http_attempt(session, f"{endpoint}/v1/{locator}/versions/{version}", token,
                              min(deadline.remaining(), 5.0))
    except Exception:  # best effort: any failure only means the age is unknown
        return None
    if answer.status != 200 or not isinstance(answer.body, dict):
        return None
    return parse_time(answer.body.get("createTime"))


# ---------------------------------------------------------------------------------- 3. answers

def outcome_of_status(answer: Answer, reference) -> ShimError:
    """A final (not retried) error answer -> ShimError; the table is in docs/gcp.md."""
    code = _status_code(answer.body) or "no status"
    message = _status_message(answer.body)
    where = f"{shown(reference)} ({answer.status} {code})"
    if code == "NOT_FOUND" or answer.status == 404:
        return NotFound(f"secret version {where} does not exist",
                        hint="check the project, secret name and version")
    if code == "FAILED_PRECONDITION" and "DESTROYED" in message:
        # `latest` is the newest version, destroyed or not: "use latest" would send a reader
        # back to the very version that failed.
        latest = (reference.version or "latest") == "latest"
        return NotFound(f"secret version {where} was destroyed",
                        hint="add a new version, or pin an older one that still exists" if latest
                        else "pin a version that still exists, or use latest")
    if code == "FAILED_PRECONDITION" and "DISABLED" in message:
        return PermissionDenied(f"secret version {where} is disabled",
                                hint="enable it, or pin an enabled version")
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or answer.status in (401, 403):
        return PermissionDenied(f"reading {where} was refused",
                                hint="grant the identity roles/secretmanager.secretAccessor on "
                                     "the secret or project")
    return Unavailable(f"reading {where} failed",
                       hint="see the google.rpc code in the Secret Manager documentation")


def shown(reference) -> str:
    """The version's resource name, as Google's messages and console write it."""
    return f"{reference.locator}/versions/{reference.version or 'latest'}"


def _status_code(body) -> Optional[str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        status = body["error"].get("status")
        return status if isinstance(status, str) and re.fullmatch(r"[A-Z_]{1,40}", status) else None
    return None


def _status_message(body) -> str:
    try:
        return str(body["error"]["message"])
    except (KeyError, TypeError):
        return ""


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def parse_time(value) -> Optional[datetime]:
    """RFC 3339 with nanoseconds (`2026-01-02T03:04:05.123456789Z`) -> an aware datetime."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    text = whole + (f".{(fraction or '0')[:6].ljust(6, '0')}") + ("+00:00" if zone == "Z" else zone)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _first_clause(error: Exception) -> str:
    """google-auth's message, short, without anything token-shaped."""
    text = " ".join(str(error.args[0] if error.args else error).split())[:200]
    return re.sub(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}|ya29\.[A-Za-z0-9_.-]+",
                  "[token]", text)


def _metadata_status(text: str) -> str:
    match = re.search(r"Response status: (\d{3})", text)
    return f"HTTP {match.group(1)}" if match else "errors"


def _network_reason(text: str) -> str:
    match = re.search(r"\[Errno -?\d+\] [^'\")\]]+|Name or service not known|timed out|"
                      r"Connection refused|Connection reset by peer|Connection aborted|"
                      r"RemoteDisconnected|IncompleteRead", text)
    return match.group(0).strip() if match else "network error"


# CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum Secret Manager reports as
# dataCrc32c. A byte-wise table is enough: payloads are at most 64 KiB.
def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE: list[int] = []


def crc32c(data: bytes) -> int:
    if not _CRC32C_TABLE:
        _CRC32C_TABLE.extend(_crc32c_table())
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ----------------------------------------------------------------------------------- provider

class SecretManagerProvider:
    name = "gcpsecrets"

    def __init__(self, context):
        self.context = context
        self._endpoint = _endpoint_setting(context.environ.get("SHIM_GCP_ENDPOINT") or None)
        self._session = None
        self._tokens = TokenSource(context.environ, self._shared_session)

    # -- handing over between --watch helpers (shim.pipeline.helper) -----------------------------------

    def export_session(self) -> dict:
        """The access token and when it stops being used (its expiry less a margin), so the next
        helper does not ask for another: one token per token lifetime, not per re-resolution.
        The moment is a time.monotonic() (CLOCK_MONOTONIC is the machine's, shared by every
        helper), not the seconds left: the supervisor holds the session between ticks, and
        seconds counted at each hand-over would push the expiry a tick later every time."""
        token, left = self._tokens.current()
        return {"token": token, "expires": time.monotonic() + left} if token else {}

    def resume_session(self, state) -> None:
        token, expires = state.get("token"), state.get("expires")
        if isinstance(token, str) and token and isinstance(expires, (int, float)):
            self._tokens.carried = (token, float(expires))

    def _shared_session(self):
        if self._session is None:
            self._session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4,
                                                    pool_maxsize=MAX_CONCURRENT_READS)
            self._session.mount("https://", adapter)
            self._session.mount("http://", adapter)
        return self._session

    def fetch_all(self, references, deadline):
        groups = by_fetch_key(references)
        if not groups:
            return {}
        token_once = _Once(self._tokens.token)
        session = self._shared_session()

        wants_dates = getattr(self.context, "wants_dates", True)

        def read_all(keys) -> dict:
            jobs = [lambda first=groups[key][0]: read_version(
                        first, token_once, session, endpoint_for(first.locator, self._endpoint),
                        deadline, self.context.log, wants_dates)
                    for key in keys]
            return dict(zip(keys, run_concurrently(jobs, deadline, title=TITLE,
                                                   workers=MAX_CONCURRENT_READS)))

        # `latest` first; a pinned version of the same secret waits for its answer, and is read
        # only when `latest` turned out to be another version.
        with_latest = {same[0].locator for same in groups.values() if same[0].version is None}
        waiting = [key for key, same in groups.items()
                   if same[0].version is not None and same[0].locator in with_latest]
        results = read_all([key for key in groups if key not in waiting])
        if waiting:
            latest = {(groups[key][0].locator, outcome.meta.version): outcome
                      for key, outcome in results.items()
                      if groups[key][0].version is None and isinstance(outcome, Fetched)}
            for key in waiting:
                same_version = latest.get((groups[key][0].locator, groups[key][0].version))
                if same_version is not None:
                    results[key] = same_version
            results.update(read_all([key for key in waiting if key not in results]))
        if token_once.succeeded:
            self.context.log.event("gcp.credential", "debug",
                                   f"authenticated to Secret Manager with {self._tokens.source}",
                                   provider=self.name, credential=self._tokens.source)
        return {key: results[key] for key in groups}


    # -- --watch change probes (shim.pipeline.probes) ----------------------------------------------

    def probe(self, reference, deadline) -> Optional[str]:
        """"vN" from the name of `versions/latest` (a get: metadata, no payload); "denied" when
        the identity may access but not get versions (roles/secretmanager.secretAccessor);
        None when there is nothing to ask (a pinned version) or the answer is unreadable."""
        if reference.version is not None:
            return None
        endpoint = endpoint_for(reference.locator, self._endpoint)
        bearer = self._tokens.token()
        url = f"{endpoint}/v1/{reference.locator}/versions/latest"
        answer = retry(lambda: http_attempt(self._shared_session(), url, bearer,
                                            deadline.remaining()),
                       deadline, self.context.log, provider=self.name, title=TITLE,
                       operation="probe", hint="transient failures were retried until "
                       "--deadline; raise it or check the service's status",
                       reference=reference.shown)
        if answer.status in (401, 403):
            return "denied"
        name = answer.body.get("name") if answer.status == 200 and isinstance(answer.body, dict) \
            else None
        version = name.rsplit("/", 1)[-1] if isinstance(name, str) else ""
        return f"v{version}" if re.fullmatch(r"[1-9][0-9]{0,18}", version) else None


def _endpoint_setting(value: Optional[str]) -> Optional[str]:
    """SHIM_GCP_ENDPOINT: an https:// base URL (a bearer token never travels in clear text)."""
    if value is not None and not re.fullmatch(r"https://[^/?#\s]+(/[^?#\s]*)?", value):
        raise ConfigError("SHIM_GCP_ENDPOINT must be an https:// base URL",
                          hint="write e.g. SHIM_GCP_ENDPOINT=https://secretmanager.example.internal")
    return value


class _Once:
    """Calls `source` once for all the run's reads; its failure is every read's failure."""

    def __init__(self, source: Callable[[], str]):
        self._source = source
        self._lock = threading.Lock()
        self._result: Optional[object] = None

    @property
    def succeeded(self) -> bool:
        return isinstance(self._result, str)

    def __call__(self) -> str:
        with self._lock:
            if self._result is None:
                try:
                    self._result = self._source()
                except ShimError as error:
                    self._result = error
        if isinstance(self._result, ShimError):
            raise self._result
        return self._result
