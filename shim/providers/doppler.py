"""Doppler: a config's secrets, one download per config, read with DOPPLER_TOKEN.

    ref+doppler://PROJECT/CONFIG#/NAME      (canonical; vals' PROJECT/CONFIG/NAME is the same)
    ref+doppler:////NAME                    (the project and config of a service token)

The locator is `PROJECT/CONFIG`, or empty for the config a service token is scoped to; the
secret's name is a selector into the config's map, so every reference into one config shares
one `GET /v3/configs/config/secrets/download` (Doppler has no cheaper read of one secret: its
single-secret endpoint costs a request per name). The syntax is a row of shim/syntax/refs.py.

--watch probe: the same download with `If-None-Match: <the ETag of the last one>`, as Doppler's
own CLI sends it (DopplerHQ/cli, pkg/http/api.go, DownloadSecrets): 304 with no body while the
config is unchanged. Doppler has no cheaper question (no version or metadata call for a
config), so the probe is the read made conditional: one request per config per tick either
way, the values on the wire only when they changed, and a 200 to the probe is kept as the
tick's read. The ETags travel between --watch helpers with the session (`export_session`).

Plain REST over `requests` (shim/providers/rest.py): Doppler's Python SDK adds nothing shim
needs (docs/doppler.md has the measurements). Messages quote project and config names and HTTP
statuses, never a value, a token or Doppler's own message text.
"""

from __future__ import annotations

import re

from shim.tools.errors import ConfigError, ShimError, Unavailable, UnusableValue
from shim.providers import rest
from shim.providers.base import Fetched, SecretMeta
from shim.providers.bodycap import DOPPLER_BODY_CAP
from shim.providers.mechanism import retry

DEFAULT_ENDPOINT = "https://api.doppler.com"
DOWNLOAD_PATH = "/v3/configs/config/secrets/download"
TITLE = "Doppler"
TOKEN_VARIABLE = "DOPPLER_TOKEN"
ENDPOINT_VARIABLE = "SHIM_DOPPLER_ENDPOINT"
HINTS = rest.StatusHints(
    store=TITLE, endpoint=ENDPOINT_VARIABLE,
    not_found="check the project and config names, and that the token can see them",
    denied=f"check {TOKEN_VARIABLE}: a service token reads only its own config, and a revoked "
           "token reads nothing",
    bad_request="a personal or service account token needs the project and config in the "
                "reference: ref+doppler://PROJECT/CONFIG#/NAME")
# An entity tag as RFC 9110 writes it (sent back verbatim, so nothing else is kept), bounded.
ETAG_PATTERN = r'(W/)?"[\x21\x23-\x7e]{0,200}"'


class DopplerProvider:
    name = "doppler"

    def __init__(self, context):
        self.context = context
        self._endpoint = rest.endpoint_setting(
            ENDPOINT_VARIABLE, context.environ.get(ENDPOINT_VARIABLE),
            "https://doppler.example.internal") or DEFAULT_ENDPOINT
        self._token = context.environ.get(TOKEN_VARIABLE) or ""
        self._session = None
        self._etags: dict[str, str] = {}        # locator -> ETag of its last download
        self._probed: dict[str, object] = {}    # locator -> what this run's probe downloaded

    # -- handing over between --watch helpers (shim.pipeline.helper) ----------------------------

    def export_session(self) -> dict:
        """The ETag of each config's last download, for the next tick's conditional probe."""
        return {"etags": dict(self._etags)} if self._etags else {}

    def resume_session(self, state) -> None:
        etags = state.get("etags")
        if isinstance(etags, dict):
            self._etags.update({locator: tag for locator, tag in etags.items()
                                if isinstance(tag, str) and re.fullmatch(ETAG_PATTERN, tag)})

    # -- --watch change probes (shim.pipeline.probes) -------------------------------------------

    def probe_kind(self, reference) -> str:
        return "etag"

    def probe(self, reference, deadline):
        """The config's ETag: asked with If-None-Match, a 304 says it is unchanged; a 200 (or the
        first tick, with no ETag yet) brings the config, kept for this tick's read. None when
        the store gives no ETag or fails: the read says what is wrong, in its own words."""
        if not self._token:
            return None
        if self._session is None:
            self._session = rest.new_session()
        locator = reference.locator
        known = self._etags.get(locator)
        outcome = self._download(locator, deadline, if_none_match=known)
        if outcome is NOT_MODIFIED:
            return f"etag {known}"
        if isinstance(outcome, ShimError):
            return None
        self._probed[locator] = outcome
        tag = self._etags.get(locator)
        return f"etag {tag}" if tag else None

    def fetch_all(self, references, deadline):
        if not references:
            return {}
        if not self._token:
            missing = ConfigError(f"{TOKEN_VARIABLE} is not set",
                                  hint="set it to a Doppler service token (dp.st...) or a "
                                       "service account token")
            return {reference.fetch_key: missing for reference in references}
        if self._session is None:
            self._session = rest.new_session()
        return rest.read_each_locator(references, self._download, deadline, TITLE)

    def _download(self, locator: str, deadline, if_none_match=None):
        """The config's map as Fetched, or the ShimError that says why not; NOT_MODIFIED when
        `if_none_match` is still the config's ETag. A config this tick's probe downloaded is
        not asked for again."""
        if if_none_match is None and locator in self._probed:
            return self._probed.pop(locator)
        shown = shown_config(locator)
        params = {"format": "json"}
        if locator:
            params["project"], params["config"] = locator.split("/", 1)
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        try:
            answer = retry(lambda: rest.call(self._session, "GET", self._endpoint + DOWNLOAD_PATH,
                                             headers=headers, params=params,
                                             timeout=deadline.remaining(),
                                             cap=DOPPLER_BODY_CAP, store=TITLE),
                           deadline, self.context.log, provider=self.name, title=TITLE,
                           operation="download", config=shown,
                           hint="transient failures were retried until --deadline; raise it or "
                                "check Doppler's status page")
        except ShimError as error:
            return error
        if answer.status == 304 and if_none_match:
            return NOT_MODIFIED
        if answer.status != 200:
            return rest.outcome_of_status(answer.status, shown, HINTS)
        outcome = config_map(answer.body, shown)
        tag = answer.headers.get("ETag")
        if isinstance(outcome, Fetched) and tag and re.fullmatch(ETAG_PATTERN, tag):
            self._etags[locator] = tag
        else:
            self._etags.pop(locator, None)
        return outcome


NOT_MODIFIED = object()     # a conditional download's 304: the config has not changed


def config_map(body, shown: str):
    """format=json answers one flat object of names to text values."""
    if not isinstance(body, dict):
        return Unavailable(f"the answer for {shown} is not a map of secrets",
                           hint=f"check {ENDPOINT_VARIABLE} points at the Doppler API")
    if not all(isinstance(value, str) for value in body.values()):
        return UnusableValue(f"the answer for {shown} holds a value that is not text",
                             hint=f"check {ENDPOINT_VARIABLE} points at the Doppler API")
    return Fetched(body, SecretMeta())


def shown_config(locator: str) -> str:
    return f"config {locator}" if locator else "the service token's config"
