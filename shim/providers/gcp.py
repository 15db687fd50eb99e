"""Google Cloud Secret Manager, as berglas, vals and secrets-init reference it.

    sm://PROJECT/SECRET[#VERSION]                                          (berglas)
    ref+gcpsecrets://PROJECT/SECRET[?version=V][&location=L][#/json/ptr]   (vals; canonical)
    gcp:secretmanager:projects/P[/locations/L]/secrets/S[/versions/V]      (secrets-init)

The module has four pieces, kept apart so each can move onto shared machinery:

1. Syntax: `parse_gcp(text) -> Reference` and `render_gcp(...)`, pure functions (no Google
   import). The locator is the resource name `projects/P[/locations/L]/secrets/S`; the version is
   None for `latest`.
2. Credentials: `obtain_credentials()` follows Application Default Credentials in Google's order
   with google-auth's public loaders; `TokenSource` asks for one token per run (and again only
   when it has expired, in --watch).
3. Reads: `read_version()` makes one `versions/V:access` call per distinct (secret, version), all
   run at once by `run_concurrently()`; `with_retries()` retries transient answers until the
   deadline. Then a best-effort `versions/V` get for the create time.
4. Answers: `outcome_of_status()` maps a google.rpc.Status error to a ShimError; the payload is
   checked against `dataCrc32c` with `crc32c()`.

Plain REST over `requests` (already installed with google-auth) rather than the
google-cloud-secret-manager client: docs/gcp.md has the measurements.
Messages quote resource names, versions, HTTP statuses and google.rpc codes; never a payload
or a token.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import threading
import time
from datetime import datetime
from typing import Callable, NamedTuple, Optional

from shim.errors import NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue

SCHEME = "gcpsecrets"
DEFAULT_ENDPOINT = "https://secretmanager.googleapis.com"
# Regional secrets live behind a regional endpoint (locational endpoints, `rep` domain).
REGIONAL_ENDPOINT = "https://secretmanager.{location}.rep.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
OPTIONS = frozenset({"version", "location"})
# Reads in flight at once. Secret Manager has no batch read; its access quota is per minute and
# far above what one start-up asks for, so one wave covers a typical image.
MAX_CONCURRENT_READS = 64
# Largest answer read: payloads are at most 64 KiB, base64 makes that about 88 KiB.
MAX_ANSWER_BYTES = 1 << 20
# How long past --deadline a read may take to report its own failure before it is abandoned.
_ABANDON_AFTER = 1.0

_PROJECT = re.compile(r"[a-z0-9][a-z0-9.:-]{0,99}")       # id, number, or domain:id
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,255}")
_VERSION = re.compile(r"[1-9][0-9]{0,18}|[A-Za-z][A-Za-z0-9_-]{0,62}")  # number or alias
_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,62}")
_LOCATOR = re.compile(r"projects/([^/]+)(?:/locations/([^/]+))?/secrets/([^/]+)")


# ---------------------------------------------------------------------------------- 1. syntax

def parse_gcp(text: str):
    """Any of the three syntaxes -> one Reference (UsageError 64 says what is wrong)."""
    from shim import refs

    if text.startswith("sm://"):
        body, version = refs._split_once(text[len("sm://"):], "#")
        parts = body.split("/")
        if len(parts) != 2 or "?" in body:
            raise refs._malformed(text, "expected sm://<project>/<secret>[#<version>]",
                                  "write e.g. sm://my-project/db-password#3")
        return _reference(text, parts[0], None, parts[1], version, (), (), "berglas")
    if text.startswith("gcp:secretmanager:"):
        name = text[len("gcp:secretmanager:"):]
        match = re.fullmatch(r"projects/([^/]*)(?:/locations/([^/]*))?/secrets/([^/]*)"
                             r"(?:/versions/([^/]*))?", name)
        if not match:
            raise refs._malformed(text, "expected projects/<project>/secrets/<secret>[/versions/<v>]",
                                  "write e.g. gcp:secretmanager:projects/p/secrets/db/versions/3")
        project, location, secret, version = match.groups()
        return _reference(text, project, location, secret, version, (), (), "secrets-init")
    rest = text[len(f"ref+{SCHEME}://"):]
    rest, fragment = refs._split_once(rest, "#")
    path, query = refs._split_once(rest, "?")
    selector = refs._parse_selector(text, fragment) if fragment is not None else ()
    options = refs._parse_query(text, SCHEME, query)
    version, options = refs._take_option(options, "version")
    location, options = refs._take_option(options, "location")
    parts = path.split("/")
    if len(parts) != 2:
        raise refs._malformed(text, "expected <project>/<secret>",
                              f"write e.g. ref+{SCHEME}://my-project/db-password?version=3")
    return _reference(text, parts[0], location, parts[1], version, selector, options, "vals")


def _reference(text, project, location, secret, version, selector, options, syntax):
    from shim import refs

    for what, value, pattern, hint in (
            ("project", project, _PROJECT, "a project id (my-project) or number"),
            ("secret", secret, _SECRET, "letters, digits, _ and - (at most 255)"),
            ("location", location, _LOCATION, "a region such as europe-west1"),
            ("version", version, _VERSION, "a version number, latest, or an alias")):
        if value is None:
            continue
        if not pattern.fullmatch(value):
            raise refs._malformed(text, f"the {what} is empty or not valid", f"give {hint}")
    if version == "latest":
        version = None
    locator = (f"projects/{project}/locations/{location}/secrets/{secret}" if location
               else f"projects/{project}/secrets/{secret}")
    return refs._make(SCHEME, locator, selector, version, options, syntax)


def render_gcp(locator: str, selector, version, options) -> str:
    """The canonical form: ref+gcpsecrets://P/S, location and version as query options."""
    from shim import refs

    project, location, secret = _LOCATOR.fullmatch(locator).groups()
    query = list(options)
    if location:
        query.append(("location", location))
    if version:
        query.append(("version", version))
    return refs._with_query_and_selector(f"ref+{SCHEME}://{project}/{secret}", query, selector)


# ------------------------------------------------------------------------------ 2. credentials

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
    from google.auth.compute_engine import Credentials as MetadataCredentials
    return Credentials(MetadataCredentials(scopes=[SCOPE]), "metadata server")


def _from_file(path: str, what: str):
    """google-auth credentials for a credentials file of a type Google's ADC accepts."""
    from shim.errors import ConfigError

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
            from google.oauth2 import service_account
            return service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        if kind == "authorized_user":
            from google.oauth2 import credentials
            return credentials.Credentials.from_authorized_user_info(info, scopes=[SCOPE])
        if kind == "external_account":
            source = info.get("credential_source") or {}
            if info.get("subject_token_type") == "urn:ietf:params:aws:token-type:aws4_request":
                from google.auth import aws as federation
            elif isinstance(source, dict) and "executable" in source:
                from google.auth import pluggable as federation
            else:
                from google.auth import identity_pool as federation
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

    @property
    def source(self) -> str:
        return self._credentials.source if self._credentials else "none"

    def token(self) -> str:
        """The bearer token; PermissionDenied (77) or Unavailable (69) when none can be had."""
        from google.auth import exceptions
        from google.auth.transport.requests import Request

        with self._lock:
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


# ------------------------------------------------------------------------------------ 3. reads

class Wanted(NamedTuple):
    """One distinct (secret, version) to read, and every reference that asks for it."""
    locator: str
    version: str               # "latest" when the reference names none
    references: list


def distinct_versions(references) -> list[Wanted]:
    wanted: dict[tuple, Wanted] = {}
    for reference in references:
        key = (reference.locator, reference.version or "latest")
        if key not in wanted:
            wanted[key] = Wanted(reference.locator, reference.version or "latest", [])
        wanted[key].references.append(reference)
    return list(wanted.values())


def endpoint_for(locator: str, override: Optional[str]) -> str:
    if override:
        return override.rstrip("/")
    location = _LOCATOR.fullmatch(locator).group(2)
    return REGIONAL_ENDPOINT.format(location=location) if location else DEFAULT_ENDPOINT


class Answer(NamedTuple):
    status: int
    body: object               # parsed JSON, or None when the body was not JSON
    retry_after: Optional[float]


class _Retry(Exception):
    def __init__(self, answer: Optional[Answer], reason: str):
        super().__init__(reason)
        self.answer = answer
        self.reason = reason


_RETRIED_STATUSES = {429, 500, 502, 503, 504}
_RETRIED_CODES = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED"}


def with_retries(attempt: Callable[[float], Answer], deadline) -> Answer:
    """Call `attempt(timeout)` until it gives a final answer or the deadline would pass.

    Transient answers (429, 5xx, google.rpc codes UNAVAILABLE & co, connection failures, a body
    that is not JSON) are retried with full-jitter exponential backoff, Retry-After honoured. At
    the deadline the last transient failure is raised as Unavailable (69).
    """
    delay = 0.1
    last = "no attempt was made"
    while True:
        remaining = deadline.remaining()
        if remaining <= 0:
            break
        try:
            answer = attempt(remaining)
        except _Retry as retry:
            last = retry.reason
            wait = retry.answer.retry_after if retry.answer and retry.answer.retry_after else \
                random.uniform(0, delay)
            delay = min(delay * 2, 2.0)
            if wait >= deadline.remaining():
                break
            time.sleep(wait)
            continue
        return answer
    raise Unavailable(f"no usable answer within the deadline (last: {last})",
                      hint="transient failures were retried until --deadline; raise it or "
                           "check the service's status")


def http_attempt(session, url: str, token: str, timeout: float) -> Answer:
    """One GET; transient outcomes raise _Retry, every other answer is returned."""
    import requests

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
        raise _Retry(None, _network_reason(str(error))) from None
    if len(content) > MAX_ANSWER_BYTES:
        raise _Retry(None, f"an answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        body = json.loads(content) if content else None
    except (ValueError, RecursionError):
        body = None
    answer = Answer(response.status_code, body, _retry_after(response.headers.get("Retry-After")))
    code = _status_code(body)
    if response.status_code in _RETRIED_STATUSES or code in _RETRIED_CODES:
        raise _Retry(answer, f"HTTP {response.status_code} {code or ''}".strip())
    if response.status_code == 200 and not isinstance(body, dict):
        raise _Retry(answer, "HTTP 200 with a body that is not JSON")
    return answer


def read_version(item: Wanted, token: Callable[[], str], session, endpoint: str, deadline):
    """Fetched, or the ShimError that says why not (one access call, then a best-effort get)."""
    import requests

    from shim.providers.base import Fetched, SecretMeta

    name = f"{item.locator}/versions/{item.version}"
    try:
        bearer = token()
        answer = with_retries(lambda timeout: http_attempt(
            session, f"{endpoint}/v1/{name}:access", bearer, timeout), deadline)
    except ShimError as error:
        return error
    except requests.exceptions.SSLError:
        from shim.errors import ConfigError
        return ConfigError(f"the TLS certificate of {endpoint} is not trusted",
                           hint="trust its CA with REQUESTS_CA_BUNDLE=/path/ca.pem")
    if answer.status != 200:
        return outcome_of_status(answer, item)
    try:
        payload = answer.body["payload"]
        data = base64.b64decode(payload.get("data", ""), validate=True)
        resolved = answer.body["name"]
    except (KeyError, TypeError, AttributeError, ValueError):
        return Unavailable(f"the answer for {shown(item)} is not a secret version",
                           hint="check SHIM_GCP_ENDPOINT points at Secret Manager")
    checksum = payload.get("dataCrc32c")
    if checksum is not None and str(checksum) != str(crc32c(data)):
        return UnusableValue(f"the payload of {shown(item)} does not match its dataCrc32c checksum",
                             hint="the value was corrupted on the way; retry, and check any proxy")
    version = resolved.rsplit("/", 1)[-1] if isinstance(resolved, str) else ""
    if not re.fullmatch(r"[1-9][0-9]{0,18}", version):
        return Unavailable(f"the answer for {shown(item)} names no version number",
                           hint="check SHIM_GCP_ENDPOINT points at Secret Manager")
    created = _create_time(session, endpoint, item.locator, version, bearer, deadline)
    return Fetched(data, SecretMeta(version=version, created=created))


def _create_time(session, endpoint, locator, version, token, deadline) -> Optional[datetime]:
    """The version's createTime, or None: reading it needs secretmanager.versions.get, which the
    usual accessor role (roles/secretmanager.secretAccessor) does not grant."""
    try:
        answer = http_attempt(session, f"{endpoint}/v1/{locator}/versions/{version}", token,
                              max(0.1, min(deadline.remaining(), 5.0)))
    except Exception:  # best effort: any failure only means the age is unknown
        return None
    if answer.status != 200 or not isinstance(answer.body, dict):
        return None
    return parse_time(answer.body.get("createTime"))


def run_concurrently(jobs, deadline) -> list:
    """Run every job on daemon threads; a job still running at the deadline gives None.

    Daemon threads rather than a ThreadPoolExecutor: an executor's workers are joined at
    interpreter exit, so one request stuck past --deadline would keep a failing shim alive.
    """
    results: list = [None] * len(jobs)
    pending = iter(range(len(jobs)))
    state = threading.Condition()
    unfinished = [len(jobs)]

    def work():
        while True:
            with state:
                index = next(pending, None)
            if index is None:
                return
            try:
                outcome = jobs[index]()
            except BaseException as error:  # a bug: re-raised in the caller's thread
                outcome = error
            with state:
                results[index] = outcome
                unfinished[0] -= 1
                state.notify_all()

    for _ in range(min(MAX_CONCURRENT_READS, len(jobs))):
        threading.Thread(target=work, name="shim-gcp-read", daemon=True).start()
    with state:
        state.wait_for(lambda: unfinished[0] == 0, timeout=deadline.remaining() + _ABANDON_AFTER)
        finished = list(results)
    for outcome in finished:
        if isinstance(outcome, BaseException) and not isinstance(outcome, ShimError):
            raise outcome
    return finished


# ---------------------------------------------------------------------------------- 4. answers

def outcome_of_status(answer: Answer, item: Wanted) -> ShimError:
    """A final (not retried) error answer -> ShimError; the table is in docs/gcp.md."""
    code = _status_code(answer.body) or "no status"
    message = _status_message(answer.body)
    where = f"{shown(item)} ({answer.status} {code})"
    if code == "NOT_FOUND" or answer.status == 404:
        return NotFound(f"secret version {where} does not exist",
                        hint="check the project, secret name and version")
    if code == "FAILED_PRECONDITION" and "DESTROYED" in message:
        return NotFound(f"secret version {where} was destroyed",
                        hint="pin a version that still exists, or use latest")
    if code == "FAILED_PRECONDITION" and "DISABLED" in message:
        return PermissionDenied(f"secret version {where} is disabled",
                                hint="enable it, or pin an enabled version")
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or answer.status in (401, 403):
        return PermissionDenied(f"reading {where} was refused",
                                hint="grant the identity roles/secretmanager.secretAccessor on "
                                     "the secret or project")
    return Unavailable(f"reading {where} failed",
                       hint="see the google.rpc code in the Secret Manager documentation")


def shown(item: Wanted) -> str:
    return f"{item.locator}/versions/{item.version}"


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

class _SecretManagerProvider:
    name = SCHEME

    def __init__(self, context):
        self.context = context
        self._endpoint = _endpoint_setting(context.environ.get("SHIM_GCP_ENDPOINT") or None)
        self._session = None
        self._tokens = TokenSource(context.environ, self._shared_session)

    def _shared_session(self):
        if self._session is None:
            import requests
            self._session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4,
                                                    pool_maxsize=MAX_CONCURRENT_READS)
            self._session.mount("https://", adapter)
            self._session.mount("http://", adapter)
        return self._session

    def fetch_all(self, references, deadline):
        wanted = distinct_versions(references)
        if not wanted:
            return {}
        token_once = _Once(self._tokens.token)
        session = self._shared_session()
        jobs = [(lambda item=item: read_version(item, token_once, session,
                                                endpoint_for(item.locator, self._endpoint),
                                                deadline))
                for item in wanted]
        results = run_concurrently(jobs, deadline)
        if token_once.succeeded:
            self.context.log.event("gcp.credential", "debug",
                                   f"authenticated to Secret Manager with {self._tokens.source}",
                                   provider=self.name, credential=self._tokens.source)
        outcomes = {}
        for item, result in zip(wanted, results):
            if result is None:
                result = Unavailable(f"no answer for {shown(item)} within the deadline",
                                     hint="check the network path to Secret Manager, or raise "
                                          "--deadline")
            for reference in item.references:
                outcomes[reference.fetch_key] = result
        return outcomes


def _endpoint_setting(value: Optional[str]) -> Optional[str]:
    """SHIM_GCP_ENDPOINT: an https:// base URL (a bearer token never travels in clear text)."""
    from shim.errors import ConfigError

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


def __getattr__(name: str):
    # The registry imports this module by name; the Google libraries are imported here so that a
    # missing extra surfaces as an ImportError the registry turns into "install shim[gcp]", while
    # the syntax functions above stay usable without them.
    if name == "SecretManagerProvider":
        # google-auth and urllib3 install NullHandlers on their loggers, so their retry warnings
        # never reach stderr (tests/hardening/test_faults.py checks for one line).
        import google.auth  # noqa: F401
        import requests  # noqa: F401
        return _SecretManagerProvider
    raise AttributeError(name)
