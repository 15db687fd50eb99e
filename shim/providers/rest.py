"""One HTTPS call to a store that speaks plain JSON REST (Doppler, Infisical, ...).

What every such store needs and nothing store-specific: an https-only endpoint setting, a
requests session, and `call()`, which makes one request, reads at most the store's answer cap
(shim/providers/bodycap.py), never follows a redirect (a bearer token must reach only the
address shim was configured with, never one an answer names) and raises Transient for what
another attempt may fix, for the mechanism's retry.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Mapping, NamedTuple, Optional

import requests

from shim.tools.errors import ConfigError, NotFound, PermissionDenied, ShimError, Unavailable
from shim.providers.bodycap import CHUNK, read_body
from shim.providers.mechanism import Transient, by_fetch_key, run_concurrently

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# Connections kept per host: enough for a start-up's reads in one wave.
POOL_SIZE = 16


class Answer(NamedTuple):
    status: int
    body: Any                  # parsed JSON, or None when the body is empty or not JSON
    headers: Mapping[str, str]


class Once:
    """`obtain()` run once for all the run's reads (a login): every caller gets its result, or
    the ShimError it raised, raised again for each, so a refused login fails every read at once
    instead of being tried again per read."""

    def __init__(self, obtain):
        self._obtain = obtain
        self._lock = threading.Lock()
        self._outcome = None

    def __call__(self, *args):
        with self._lock:
            if self._outcome is None:
                try:
                    self._outcome = (True, self._obtain(*args))
                except ShimError as error:
                    self._outcome = (False, error)
        succeeded, value = self._outcome
        if not succeeded:
            raise value
        return value


def read_each_locator(references, read, deadline, title: str) -> dict:
    """One `read(locator, deadline)` per distinct fetch key, at the same time: the stores whose
    locator names a whole map (a Doppler config, an Infisical folder) read it once for every
    key selected from it."""
    groups = by_fetch_key(references)
    jobs = [lambda first=same[0]: read(first.locator, deadline) for same in groups.values()]
    return dict(zip(groups, run_concurrently(jobs, deadline, title=title, workers=POOL_SIZE)))


def endpoint_setting(variable: str, value: Optional[str], example: str) -> Optional[str]:
    """An https:// base URL from `variable`, without its trailing /; anything else is 78, so a
    token never travels in clear text."""
    if value is None or value == "":
        return None
    if not re.fullmatch(r"https://[^/?#\s@]+(/[^?#\s]*)?", value):
        raise ConfigError(f"{variable} must be an https:// base URL",
                          hint=f"write e.g. {variable}={example}")
    return value.rstrip("/")


def new_session() -> requests.Session:
    session = requests.Session()
    # Environment proxies still apply (trust_env); netrc credentials must not be added to a
    # request that already carries the store's token, so auth from netrc is switched off.
    session.auth = lambda request: request
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    return session


def call(session: requests.Session, method: str, url: str, *, headers: Mapping[str, str],
         timeout: float, cap: int, store: str, params=None, json_body=None,
         form=None) -> Answer:
    """One request; 429/5xx, connection failures and a 200 that is not JSON raise Transient.

    A body past `cap` raises UnusableValue (65, bodycap.too_large); an untrusted certificate
    raises ConfigError (78). Every other answer, redirects included, is returned.
    """
    timeout = max(timeout, 0.1)
    try:
        with session.request(method, url, headers=dict(headers), params=params, json=json_body,
                             data=form,
                             timeout=(min(timeout, 10.0), timeout), stream=True,
                             allow_redirects=False) as response:
            content = read_body(response.iter_content(CHUNK), response.headers, cap, store)
    except requests.exceptions.SSLError:
        origin = re.match(r"https://[^/]+", url)
        raise ConfigError(f"the TLS certificate of {origin.group(0) if origin else store} is "
                          "not trusted", hint="trust its CA with REQUESTS_CA_BUNDLE=/path/ca.pem"
                          ) from None
    except (requests.exceptions.RequestException, OSError) as error:
        raise Transient(network_reason(str(error))) from None
    try:
        body = json.loads(content) if content else None
    except (ValueError, RecursionError):
        body = None
    status = response.status_code
    if status in RETRIED_STATUSES:
        raise Transient(f"HTTP {status}",
                        retry_after=seconds(response.headers.get("Retry-After")))
    if status == 200 and body is None:
        raise Transient("HTTP 200 with a body that is not JSON")
    return Answer(status, body, response.headers)


class StatusHints(NamedTuple):
    """What to do about each final answer of one store, for `outcome_of_status`."""
    store: str                 # "Doppler"
    endpoint: str              # the variable(s) naming the address, for a redirect
    not_found: str
    denied: str
    bad_request: str


def outcome_of_status(status: int, shown: str, hints: StatusHints) -> ShimError:
    """A final (not retried) answer that is not 200 -> the ShimError of the exit-code table the
    REST stores share: 404 is 66, 401/403 77, 400 and a redirect 78, anything else 69. The
    store's own message text is never quoted (an answer is data)."""
    if status == 404:
        return NotFound(f"{shown} does not exist (HTTP 404)", hint=hints.not_found)
    if status in (401, 403):
        return PermissionDenied(f"reading {shown} was refused (HTTP {status})", hint=hints.denied)
    if status == 400:
        return ConfigError(f"{hints.store} refused the request for {shown} (HTTP 400)",
                           hint=hints.bad_request)
    if 300 <= status < 400:
        return ConfigError(f"the {hints.store} endpoint answered {shown} with a redirect (HTTP "
                           f"{status}); shim does not send credentials on",
                           hint=f"point {hints.endpoint} at the API itself")
    return Unavailable(f"reading {shown} failed (HTTP {status})",
                       hint=f"see {hints.store}'s API reference for the status")


def seconds(value: Optional[str]) -> Optional[float]:
    """A Retry-After in seconds (the HTTP-date form is not used by these stores)."""
    try:
        return min(max(0.0, float(value)), 60.0) if value else None
    except ValueError:
        return None


def network_reason(text: str) -> str:
    """What went wrong on the wire, in words that hold no URL, header or body."""
    for pattern in (r"timed out", r"Connection refused", r"Connection reset by peer",
                    r"Name or service not known", r"Temporary failure in name resolution",
                    r"RemoteDisconnected", r"IncompleteRead", r"Connection aborted"):
        if re.search(pattern, text):
            return pattern
    return "network error"
