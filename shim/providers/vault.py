"""HashiCorp Vault: KV v1 and v2, dynamic secrets, token / AppRole / Kubernetes / JWT login.

Built on hvac's request adapter (session, X-Vault-Request, X-Vault-Namespace); every status is
classified here, because hvac never retries, its exception text embeds the full URL, and its
`Client.read()` turns a 404 into None. hvac and tenacity are imported when the provider is
created, which happens only when the plan holds a Vault reference.

One run:

1. Authenticate once (docs/vault.md has the rules): `VAULT_AUTH_METHOD` if set, else
   `VAULT_TOKEN` / `VAULT_TOKEN_FILE` → token, `VAULT_ROLE_ID[_FILE]` → AppRole,
   `VAULT_ROLE` → Kubernetes, `~/.vault-token` → token. A response-wrapped AppRole secret id
   is unwrapped first.
2. Plan each distinct fetch key's read, on a bounded thread pool. The mount under a path is
   found with `GET sys/internal/ui/mounts/<path>` (what the Vault CLI does), cached by the mount
   path it returns; one lookup per first path segment runs at a time, so N paths in one mount
   cost one lookup. When a policy denies that lookup (403) the reference's spelling decides:
     - bank-vaults `vault:<api-path>`: read as written; KV v2 when `/data/` follows the first
       segment, otherwise a plain logical read;
     - vals `ref+vault://<path>`: read `<first-segment>/data/<rest>` (KV v2 at the first
       segment, like the CLI); when that is 404 or 403, read `<path>` itself (KV v1 or any
       other engine). Not found when either said 404; permission denied when both said 403.
3. Read each distinct plan once, on the same pool: identical API reads (same path and version,
   however they were spelled) happen once, so a dynamic secret's username and password always
   come from one read, one lease.

Failures: connection refused/reset, timeouts, 412, 429 and 5xx (503 sealed) are retried with
jittered exponential backoff until the deadline, then Unavailable (69). 401/403 are
PermissionDenied (77) at once; 400 and 404 are NotFound (66), a deleted or destroyed KV v2
version included. Messages carry the API path and HTTP status (the resolver adds the variable
and canonical reference), never a value or a token; Vault's own error text is included with
every credential shim holds replaced by <redacted>.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import quote

from shim.deadline import Deadline
from shim.errors import ConfigError, NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue
from shim.providers.base import Fetched, SecretMeta

# Vault's own default (the CLI and Go client), not hvac's http://localhost:8200.
DEFAULT_ADDR = "https://127.0.0.1:8200"
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
AUTH_METHODS = ("token", "approle", "kubernetes", "jwt")
DEFAULT_AUTH_MOUNTS = {"approle": "approle", "kubernetes": "kubernetes", "jwt": "jwt"}

MAX_WORKERS = 16              # concurrent reads; also the HTTP connection pool size
REQUEST_TIMEOUT = 10.0        # per request, unless VAULT_CLIENT_TIMEOUT says otherwise
BACKOFF_FIRST = 0.25          # seconds; jittered exponential backoff between attempts ...
BACKOFF_MAX = 3.0             # ... capped, so a Vault unsealed mid-wait is noticed soon
LAST_ATTEMPT = 0.25           # an attempt is not started with less time than this left
MAX_CREDENTIAL_FILE = 64 * 1024
_TRUE = ("1", "t", "true")    # Go's strconv.ParseBool, as the Vault CLI reads VAULT_SKIP_VERIFY
_FALSE = ("0", "f", "false")
_VAULT_TOKEN = re.compile(r"^(hvs|s)\.")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class VaultProvider:
    """The `vault` provider; also a LeaseKeeper (renew/revoke leases, token TTL/renew/revoke)."""

    name = "vault"

    def __init__(self, context):
        try:
            import hvac  # noqa: F401 - fail here, cleanly, when shim[vault] is not installed
            import requests  # noqa: F401
            import tenacity  # noqa: F401
        except ImportError as error:
            raise ConfigError("provider vault is not available: install shim[vault]",
                              hint=f"{error.name} cannot be imported") from None
        self.environ: Mapping[str, str] = context.environ
        self.log = context.log
        self._connection = _Connection.from_environ(self.environ)
        self._http = None
        self._token: str | None = None
        self._token_expires: float | None = None     # monotonic; None = never / unknown
        self._token_ttl_known = False
        self._redact: set[str] = set()
        self._auth_lock = threading.Lock()
        self._mounts: dict[str, _Mount] = {}
        self._denied_segments: set[str] = set()
        self._mount_lock = threading.Lock()
        self._segment_locks: dict[str, threading.Lock] = {}
        self._invalid_token_logged = False
        self._unwrapped_secret_id: str | None = None

    # -- the Provider interface -------------------------------------------------------------

    def fetch_all(self, references, deadline: Deadline) -> dict:
        representatives: dict[tuple, Any] = {}
        for reference in references:
            representatives.setdefault(reference.fetch_key, reference)
        try:
            self._ensure_authenticated(deadline)
        except ShimError as error:
            return {key: error for key in representatives}
        run = _Run()

        def plan(reference) -> tuple | ShimError:
            try:
                return self._plans(reference, deadline, run)
            except ShimError as error:
                return error

        def read(plans: tuple) -> Fetched | ShimError:
            try:
                return self._read_first(plans, deadline, run)
            except ShimError as error:
                return error

        # Two rounds, so that a worker never waits for a read another worker is doing: first
        # each reference's read plan (mount lookups), then each distinct plan once.
        keys = list(representatives)
        with _Pool(len(keys)) as pool:
            planned = dict(zip(keys, pool.map(plan, [representatives[k] for k in keys])))
            distinct = list(dict.fromkeys(p for p in planned.values() if isinstance(p, tuple)))
            fetched = dict(zip(distinct, pool.map(read, distinct)))
        return {key: fetched.get(p, p) if isinstance(p, tuple) else p
                for key, p in planned.items()}

    # -- the LeaseKeeper interface ----------------------------------------------------------

    def renew_lease(self, lease_id: str, increment: int | None, deadline: Deadline) -> int:
        self._ensure_authenticated(deadline)
        body: dict[str, Any] = {"lease_id": lease_id}
        if increment:
            body["increment"] = int(increment)
        answer = self._request("PUT", "sys/leases/renew", deadline, "lease renewal", json=body)
        if answer.status != 200:
            raise self._refusal(answer, f"renewing lease {lease_id}")
        return int((answer.body or {}).get("lease_duration") or 0)

    def revoke_lease(self, lease_id: str, deadline: Deadline) -> None:
        self._ensure_authenticated(deadline)
        answer = self._request("PUT", "sys/leases/revoke", deadline, "lease revocation",
                               json={"lease_id": lease_id})
        if answer.status not in (200, 204):
            raise self._refusal(answer, f"revoking lease {lease_id}")

    def token_ttl(self) -> int | None:
        """Seconds left on shim's token; None when it never expires or cannot be looked up."""
        if not self._token_ttl_known:
            deadline = Deadline(self._connection.timeout)
            try:
                self._ensure_authenticated(deadline)
                answer = self._request("GET", "auth/token/lookup-self", deadline, "token lookup")
                if answer.status != 200:
                    raise self._refusal(answer, "looking up the token")
                data = (answer.body or {}).get("data") or {}
                self._set_token_ttl(int(data.get("ttl") or 0))
            except ShimError as error:
                self.log.event("vault.token_lookup_failed", "warning",
                               f"cannot tell the Vault token's TTL: {error.line()}")
                return None
        if self._token_expires is None:
            return None
        return max(0, int(self._token_expires - time.monotonic()))

    def renew_token(self, deadline: Deadline) -> int | None:
        """The token's new TTL; None when Vault says it is not renewable (log in again)."""
        self._ensure_authenticated(deadline)
        answer = self._request("POST", "auth/token/renew-self", deadline, "token renewal",
                               json={})
        if answer.status == 400 and any("not renewable" in e for e in answer.errors):
            return None
        if answer.status != 200:
            raise self._refusal(answer, "renewing the token")
        ttl = int(((answer.body or {}).get("auth") or {}).get("lease_duration") or 0)
        self._set_token_ttl(ttl)
        return ttl

    def revoke_token(self, deadline: Deadline) -> None:
        self._ensure_authenticated(deadline)
        answer = self._request("POST", "auth/token/revoke-self", deadline, "token revocation",
                               json={})
        if answer.status not in (200, 204):
            raise self._refusal(answer, "revoking the token")
        self._token = None
        self._http.token = ""

    # -- fetching one reference -------------------------------------------------------------

    # -- for sops files whose data key a Vault transit key encrypted (shim.sops.keys) -------

    def transit_decrypt(self, engine_path: str, key_name: str, ciphertext: str,
                        deadline: Deadline) -> bytes:
        """The plaintext of a transit ciphertext, logged in as for any Vault reference."""
        import base64
        self._ensure_authenticated(deadline)
        path = f"{engine_path.strip('/')}/decrypt/{key_name}"
        answer = self._request("POST", path, deadline, "transit decrypt",
                               json={"ciphertext": ciphertext})
        if answer.status != 200:
            raise self._refusal(answer, f"transit decrypt with key {key_name[:60]}")
        plaintext = ((answer.body or {}).get("data") or {}).get("plaintext")
        try:
            return base64.b64decode(plaintext or "", validate=True)
        except (ValueError, TypeError):
            raise UnusableValue("Vault's transit answer holds no base64 plaintext") from None

    def _plans(self, reference, deadline: Deadline, run: "_Run") -> tuple:
        """The reads that may answer a reference, in order (more than one only in fallback)."""
        path = reference.locator
        mount = self._mount_for(path, deadline, run)
        version = reference.version
        if reference.syntax == "bank-vaults":
            return (_bank_vaults_plan(path, version, mount),)
        if mount is not None:
            return (_vals_plan(path, version, mount),)
        return tuple(_vals_fallback_plans(path, version))

    def _read_first(self, plans: tuple, deadline: Deadline, run: "_Run") -> Fetched:
        outcomes: list[Fetched | ShimError] = []
        for plan in plans:
            outcome = run.once((plan.api_path, plan.version),
                               lambda plan=plan: self._read(plan, deadline))
            if isinstance(outcome, Fetched):
                return outcome
            outcomes.append(outcome)
            final = isinstance(outcome, _DeletedVersion)
            if final or not isinstance(outcome, (NotFound, PermissionDenied)):
                break
        raise _combine(outcomes)

    def _read(self, plan: "_ReadPlan", deadline: Deadline) -> Fetched | ShimError:
        params = {"version": plan.version} if plan.version else None
        try:
            answer = self._request("GET", plan.api_path, deadline, f"the read of {plan.api_path}",
                                   params=params)
        except ShimError as error:
            return error
        self.log.event("vault.read", "debug", path=plan.api_path, version=plan.version,
                       status=answer.status)
        if answer.status == 200:
            try:
                return _fetched(plan, answer.body)
            except (KeyError, TypeError, AttributeError, ValueError):
                return Unavailable(f"Vault answered the read of {plan.api_path} with a body "
                                   f"shim cannot read (HTTP 200)",
                                   hint="check that VAULT_ADDR points at Vault itself")
        return self._read_failure(plan, answer)

    def _read_failure(self, plan: "_ReadPlan", answer: "_Answer") -> ShimError:
        status = self._status_text(answer)
        where = plan.api_path + (f" version {plan.version}" if plan.version else "")
        if answer.status in (401, 403):
            self._note_invalid_token(answer)
            return PermissionDenied(
                f"Vault denied reading {plan.api_path} ({status})",
                hint=f"the token's policies must allow read on {plan.api_path}")
        if answer.status == 404 and plan.kv_version == 2:
            deleted = _deleted_version(answer.body)
            if deleted is not None:
                return _DeletedVersion(f"{plan.api_path}: {deleted} ({status})",
                                       hint="pin a live version, undelete it, or write a new one")
        hint = "check the path, the mount and (for KV v2) the version"
        if plan.hint:
            hint = plan.hint
        if answer.status == 404:
            return NotFound(f"{where} does not exist in Vault ({status})", hint=hint)
        return NotFound(f"Vault could not read {where} ({status})", hint=hint)

    # -- mounts -----------------------------------------------------------------------------

    def _mount_for(self, path: str, deadline: Deadline, run: "_Run") -> "_Mount | None":
        segment = path.split("/", 1)[0]
        with self._mount_lock:
            lock = self._segment_locks.setdefault(segment, threading.Lock())
        with lock:
            cached = self._cached_mount(path)
            if cached is not None or segment in self._denied_segments:
                return cached
            if segment in run.mount_failures:
                # Vault was unreachable for this mount's first lookup: do not wait again.
                raise run.mount_failures[segment]
            try:
                answer = self._request("GET", f"sys/internal/ui/mounts/{path}", deadline,
                                       "the mount lookup")
            except Unavailable as error:
                run.mount_failures[segment] = error
                raise
            if answer.status == 200:
                mount = _Mount.from_preflight((answer.body or {}).get("data") or {})
                if mount is not None and (path + "/").startswith(mount.path):
                    with self._mount_lock:
                        self._mounts[mount.path] = mount
                    self.log.event("vault.mount", "debug", mount=mount.path, type=mount.type,
                                   kv_version=mount.kv_version)
                    return mount
            self._denied_segments.add(segment)
            self.log.event("vault.mount_unknown", "info",
                           f"Vault did not tell the mount under {segment}/ "
                           f"({self._status_text(answer)}); using the reference's spelling",
                           segment=segment, status=answer.status)
            return None

    def _cached_mount(self, path: str) -> "_Mount | None":
        with self._mount_lock:
            matches = [m for m in self._mounts.values() if (path + "/").startswith(m.path)]
        return max(matches, key=lambda m: len(m.path)) if matches else None

    # -- authentication ---------------------------------------------------------------------

    def _ensure_authenticated(self, deadline: Deadline) -> None:
        with self._auth_lock:
            if self._http is None:
                self._http = self._connection.client(self.log)
            if self._token is None:
                self._authenticate(deadline)

    def _authenticate(self, deadline: Deadline) -> None:
        method = self._auth_method()
        if method == "token":
            token, source = self._configured_token()
            self._use_token(token)
            self._token_ttl_known = False
            self.log.event("vault.auth", "info", f"Vault token from {source}",
                           method="token", source=source)
            return
        mount = (self.environ.get("VAULT_PATH") or DEFAULT_AUTH_MOUNTS[method]).strip("/")
        if method == "approle":
            payload = self._approle_payload(deadline)
        else:
            payload = self._jwt_payload(method)
        self._login(method, mount, payload, deadline)

    def _auth_method(self) -> str:
        chosen = (self.environ.get("VAULT_AUTH_METHOD") or "").strip().lower()
        if chosen:
            if chosen not in AUTH_METHODS:
                raise ConfigError(f"VAULT_AUTH_METHOD={chosen!r} is not supported",
                                  hint="use one of: " + ", ".join(AUTH_METHODS))
            return chosen
        if self.environ.get("VAULT_TOKEN") or self.environ.get("VAULT_TOKEN_FILE"):
            return "token"
        if self.environ.get("VAULT_ROLE_ID") or self.environ.get("VAULT_ROLE_ID_FILE"):
            return "approle"
        if self.environ.get("VAULT_ROLE"):
            return "kubernetes"
        if os.path.exists(self._home_token_path()):
            return "token"
        raise ConfigError(
            "no Vault credentials: none of VAULT_TOKEN, VAULT_TOKEN_FILE, VAULT_ROLE_ID, "
            "VAULT_ROLE or ~/.vault-token is set",
            hint="set VAULT_TOKEN (or VAULT_TOKEN_FILE), VAULT_ROLE_ID and VAULT_SECRET_ID "
                 "for AppRole, or VAULT_ROLE for Kubernetes; see docs/vault.md")

    def _home_token_path(self) -> str:
        home = self.environ.get("HOME") or os.path.expanduser("~")
        return os.path.join(home, ".vault-token")

    def _configured_token(self) -> tuple[str, str]:
        found = _value_or_file(self.environ, "VAULT_TOKEN")
        if found is not None:
            return found
        path = self._home_token_path()
        if os.path.exists(path):
            return _read_credential_file(path, "~/.vault-token"), path
        raise ConfigError("VAULT_AUTH_METHOD=token but no token: VAULT_TOKEN, VAULT_TOKEN_FILE "
                          "and ~/.vault-token are all unset",
                          hint="set VAULT_TOKEN or VAULT_TOKEN_FILE (e.g. a Vault Agent sink)")

    def _approle_payload(self, deadline: Deadline) -> dict:
        role_id = _value_or_file(self.environ, "VAULT_ROLE_ID")
        secret_id = _value_or_file(self.environ, "VAULT_SECRET_ID")
        if role_id is None:
            raise ConfigError("AppRole login needs VAULT_ROLE_ID (or VAULT_ROLE_ID_FILE)",
                              hint="set the role id of the AppRole")
        payload = {"role_id": role_id[0]}
        self._redact.add(role_id[0])
        if secret_id is not None:
            value = secret_id[0]
            self._redact.add(value)
            if self._secret_id_is_wrapped(value):
                # A wrapping token works once: keep what it held for a later login.
                if self._unwrapped_secret_id is None:
                    self._unwrapped_secret_id = self._unwrap_secret_id(value, deadline)
                value = self._unwrapped_secret_id
                self._redact.add(value)
            payload["secret_id"] = value
        return payload

    def _secret_id_is_wrapped(self, value: str) -> bool:
        flag = (self.environ.get("VAULT_SECRET_ID_WRAPPED") or "").strip().lower()
        if flag:
            if flag in _TRUE:
                return True
            if flag in _FALSE:
                return False
            raise ConfigError(f"VAULT_SECRET_ID_WRAPPED={flag!r} is not true or false",
                              hint="write VAULT_SECRET_ID_WRAPPED=true or false")
        # Unset: a Vault token (hvs.…, s.…) is a wrapping token; secret ids are UUIDs.
        return bool(_VAULT_TOKEN.match(value)) and not _UUID.match(value)

    def _unwrap_secret_id(self, wrapping_token: str, deadline: Deadline) -> str:
        answer = self._request("POST", "sys/wrapping/unwrap", deadline, "the secret id unwrap",
                               json={}, headers={"X-Vault-Token": wrapping_token})
        secret_id = None
        if answer.status == 200:
            secret_id = ((answer.body or {}).get("data") or {}).get("secret_id")
        if not secret_id:
            message = (f"the response-wrapped VAULT_SECRET_ID could not be unwrapped "
                       f"({self._status_text(answer)})")
            self.log.event("auth.failed", "error", message, method="approle",
                           status=answer.status)
            raise PermissionDenied(
                message, hint="a wrapping token works once and expires: give shim a fresh one "
                              "(if shim did not use it, someone else may have)")
        self.log.event("vault.unwrapped", "info", "unwrapped the AppRole secret id",
                       method="approle")
        return secret_id

    def _jwt_payload(self, method: str) -> dict:
        role = self.environ.get("VAULT_ROLE")
        if not role:
            raise ConfigError(f"{method} login needs VAULT_ROLE", hint="set the Vault role name")
        found = _value_or_file(self.environ, "VAULT_JWT") if method == "jwt" else None
        if found is None:
            path = (self.environ.get("KUBERNETES_SERVICE_ACCOUNT_TOKEN")
                    or self.environ.get("VAULT_JWT_FILE") or SERVICE_ACCOUNT_TOKEN)
            found = (_read_credential_file(path, "service account token"), path)
        self._redact.add(found[0])
        return {"role": role, "jwt": found[0]}

    def _login(self, method: str, mount: str, payload: dict, deadline: Deadline) -> None:
        path = f"auth/{mount}/login"
        answer = self._request("POST", path, deadline, f"the {method} login", json=payload)
        auth = (answer.body or {}).get("auth") if answer.status == 200 else None
        if not auth or not auth.get("client_token"):
            message = f"Vault refused the {method} login at {path} ({self._status_text(answer)})"
            self.log.event("auth.failed", "error", message, method=method, mount=mount,
                           status=answer.status)
            hints = {
                "approle": "check VAULT_ROLE_ID, VAULT_SECRET_ID and VAULT_PATH (auth mount)",
                "kubernetes": "check VAULT_ROLE, VAULT_PATH (auth mount) and the service "
                              "account the pod runs as",
                "jwt": "check VAULT_ROLE, VAULT_PATH (auth mount) and the JWT",
            }
            raise PermissionDenied(message, hint=hints[method])
        self._use_token(auth["client_token"])
        self._set_token_ttl(int(auth.get("lease_duration") or 0))
        self.log.event("vault.auth", "info", f"logged in to Vault with {method} at {path}",
                       method=method, mount=mount, policies=auth.get("policies"),
                       ttl=auth.get("lease_duration"))

    def _use_token(self, token: str) -> None:
        self._token = token
        self._redact.add(token)
        self._http.token = token

    def _set_token_ttl(self, ttl: int) -> None:
        self._token_ttl_known = True
        self._token_expires = time.monotonic() + ttl if ttl else None

    def _note_invalid_token(self, answer: "_Answer") -> None:
        if self._invalid_token_logged or not any("invalid token" in e for e in answer.errors):
            return
        self._invalid_token_logged = True
        self.log.event("auth.failed", "error", "Vault says the token is invalid "
                       "(expired, revoked or unknown)", method="token", status=answer.status)

    # -- HTTP -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, deadline: Deadline, what: str,
                 **kwargs) -> "_Answer":
        """One Vault call, retried on transient failures until the deadline."""
        import tenacity

        attempts = 0
        started = time.monotonic()
        backoff = tenacity.wait_random_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX)

        def attempt() -> _Answer:
            nonlocal attempts
            attempts += 1
            return self._send(method, path, deadline, **kwargs)

        def wait(state) -> float:
            # Never sleep into the last LAST_ATTEMPT seconds: they are for one more attempt.
            return min(backoff(state), max(0.0, deadline.remaining() - LAST_ATTEMPT))

        def stop(state) -> bool:
            return deadline.remaining() < LAST_ATTEMPT

        def before_sleep(state) -> None:
            reason = state.outcome.exception().reason
            self.log.event("provider.retry", "info",
                           f"Vault: {what} failed ({reason}); retrying in "
                           f"{state.upcoming_sleep:.2f}s", provider="vault", path=path,
                           reason=reason, attempt=state.attempt_number,
                           wait=round(state.upcoming_sleep, 3))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient), wait=wait, stop=stop,
            before_sleep=before_sleep, reraise=False)
        try:
            return retrying(attempt)
        except tenacity.RetryError as failure:
            reason = failure.last_attempt.exception().reason
            elapsed = time.monotonic() - started
            noun = "attempt" if attempts == 1 else "attempts"
            raise Unavailable(
                f"Vault unreachable or sealed after {attempts} {noun} over {elapsed:.1f}s "
                f"(last: {reason})",
                hint="check VAULT_ADDR and that Vault is unsealed and reachable, "
                     "or allow more time with --deadline") from None

    def _send(self, method: str, path: str, deadline: Deadline, **kwargs) -> "_Answer":
        import requests

        timeout = max(0.1, min(deadline.remaining(), self._connection.timeout))
        url = "v1/" + quote(path, safe="/")
        try:
            result = self._http.request(method, url, raise_exception=False,
                                                  timeout=timeout, **kwargs)
        except requests.exceptions.SSLError:
            raise ConfigError(
                f"TLS verification of {self._connection.addr} failed",
                hint="point VAULT_CACERT (or VAULT_CAPATH) at the CA that signed Vault's "
                     "certificate") from None
        except requests.exceptions.Timeout:
            raise _Transient("timeout") from None
        except requests.exceptions.ConnectionError as error:
            raise _Transient(_connection_reason(error)) from None
        except requests.exceptions.InvalidHeader:
            # Its text would quote the header, token included.
            raise ConfigError("the Vault token holds characters an HTTP header cannot carry",
                              hint="check what writes the token (one line, no spaces)") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema):
            raise ConfigError(f"VAULT_ADDR={self._connection.addr!r} is not a usable URL",
                              hint="write e.g. VAULT_ADDR=https://vault.example.com:8200") from None
        except requests.exceptions.RequestException:
            raise _Transient("connection failed") from None
        if isinstance(result, dict):
            return _Answer(200, result)
        body = None
        if "json" in (result.headers.get("Content-Type") or ""):
            try:
                body = result.json()
            except ValueError:
                body = None
        answer = _Answer(result.status_code, body if isinstance(body, dict) else None)
        if answer.status in (412, 429) or answer.status >= 500:
            raise _Transient(self._status_text(answer))
        return answer

    def _status_text(self, answer: "_Answer") -> str:
        """'HTTP 403: permission denied', with every credential shim holds redacted."""
        text = "; ".join(" ".join(e.replace("*", " ").split()) for e in answer.errors)
        for secret in self._redact:
            if secret:
                text = text.replace(secret, "<redacted>")
        if len(text) > 200:
            text = text[:200] + "..."
        return f"HTTP {answer.status}: {text}" if text else f"HTTP {answer.status}"

    def _refusal(self, answer: "_Answer", doing: str) -> ShimError:
        status = self._status_text(answer)
        if answer.status in (401, 403):
            return PermissionDenied(f"Vault denied {doing} ({status})")
        return NotFound(f"Vault refused {doing} ({status})")


# --- connection settings ------------------------------------------------------------------

@dataclass(frozen=True)
class _Connection:
    addr: str
    verify: bool | str
    cert: tuple[str, str] | str | None
    namespace: str | None
    timeout: float
    skip_verify: bool

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "_Connection":
        addr = (environ.get("VAULT_AGENT_ADDR") or environ.get("VAULT_ADDR")
                or DEFAULT_ADDR).rstrip("/")
        verify: bool | str = True
        # VAULT_CACERT takes precedence over VAULT_CAPATH, as in the Vault CLI.
        for name in ("VAULT_CACERT", "VAULT_CAPATH"):
            path = environ.get(name)
            if path:
                if not os.path.exists(path):
                    raise ConfigError(f"{name} names {path}, which does not exist",
                                      hint="mount the CA certificate or fix the path")
                verify = path
                break
        skip = _parse_bool(environ, "VAULT_SKIP_VERIFY")
        if skip:
            verify = False
        cert_path, key_path = environ.get("VAULT_CLIENT_CERT"), environ.get("VAULT_CLIENT_KEY")
        if key_path and not cert_path:
            raise ConfigError("VAULT_CLIENT_KEY is set without VAULT_CLIENT_CERT",
                              hint="set both, or neither")
        cert = (cert_path, key_path) if cert_path and key_path else (cert_path or None)
        timeout = REQUEST_TIMEOUT
        if environ.get("VAULT_CLIENT_TIMEOUT"):
            timeout = _parse_timeout(environ["VAULT_CLIENT_TIMEOUT"])
        namespace = (environ.get("VAULT_NAMESPACE") or "").strip("/") or None
        return cls(addr, verify, cert, namespace, timeout, bool(skip))

    def client(self, log):
        """hvac's request adapter with every setting explicit.

        hvac.Client would read VAULT_TOKEN, ~/.vault-token and (at import) VAULT_CACERT and
        VAULT_CLIENT_CERT from os.environ by itself; the adapter takes only what it is given.
        """
        import hvac.adapters
        import requests

        if self.skip_verify:
            import urllib3
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.event("vault.tls_unverified", "warning",
                      "VAULT_SKIP_VERIFY is set: Vault's TLS certificate is not verified",
                      addr=self.addr)
        session = requests.Session()
        session.verify = self.verify
        session.cert = self.cert
        # One pool slot per worker, or urllib3 drops (and warns about) the extra connections.
        pool = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=MAX_WORKERS)
        session.mount("https://", pool)
        session.mount("http://", pool)
        return hvac.adapters.JSONAdapter(base_uri=self.addr, token="", cert=self.cert,
                                         verify=self.verify, timeout=self.timeout,
                                         session=session, namespace=self.namespace)


def _parse_bool(environ: Mapping[str, str], name: str) -> bool:
    text = (environ.get(name) or "").strip().lower()
    if not text:
        return False
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name}={text!r} is not true or false", hint=f"write {name}=true or false")


def _parse_timeout(text: str) -> float:
    from shim.durations import parse_duration

    text = text.strip()
    if text.isdigit():
        return float(text)  # the Vault CLI accepts plain seconds
    try:
        return parse_duration(text, option="VAULT_CLIENT_TIMEOUT")
    except ShimError:
        raise ConfigError(f"VAULT_CLIENT_TIMEOUT={text!r} is not a duration",
                          hint="write e.g. VAULT_CLIENT_TIMEOUT=30s") from None


def _value_or_file(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(value, where it came from) from NAME or the file NAME_FILE names; never both."""
    value, path = environ.get(name), environ.get(name + "_FILE")
    if value and path:
        raise ConfigError(f"both {name} and {name}_FILE are set (but are exclusive)",
                          hint=f"unset one of {name} or {name}_FILE")
    if value:
        return value.strip(), name
    if path:
        return _read_credential_file(path, name + "_FILE"), path
    return None


def _read_credential_file(path: str, what: str) -> str:
    try:
        with open(path, "rb") as stream:
            content = stream.read(MAX_CREDENTIAL_FILE + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path} ({what}) does not exist",
                          hint="mount the credential or fix the path") from None
    except PermissionError:
        raise PermissionDenied(f"{path} ({what}) is not readable by uid {os.getuid()}",
                               hint="check its owner and mode") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} ({what}) is a directory, not a file",
                          hint="point it at the file") from None
    if len(content) > MAX_CREDENTIAL_FILE:
        raise ConfigError(f"{path} ({what}) is larger than 64 KiB", hint="point it at the file")
    try:
        text = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} ({what}) is not UTF-8 text",
                          hint="point it at the file") from None
    if not text:
        raise ConfigError(f"{path} ({what}) is empty", hint="check what writes it")
    return text


def _connection_reason(error: Exception) -> str:
    text = repr(error).lower()
    for needle, reason in (("refused", "connection refused"), ("reset", "connection reset"),
                           ("name or service not known", "host name not found"),
                           ("nodename nor servname", "host name not found"),
                           ("timed out", "timeout"), ("aborted", "connection aborted")):
        if needle in text:
            return reason
    return "connection failed"


# --- answers ------------------------------------------------------------------------------

class _Transient(Exception):
    """A failure worth another attempt; `reason` is safe to show."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Answer:
    status: int
    body: dict | None

    @property
    def errors(self) -> list[str]:
        errors = (self.body or {}).get("errors") or []
        return [str(e) for e in errors] if isinstance(errors, list) else [str(errors)]


class _Pool:
    """A bounded thread pool, or none at all for a single item."""

    def __init__(self, items: int):
        self._executor = None
        if items > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._executor = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, items),
                                                thread_name_prefix="shim-vault")

    def map(self, function, items: list) -> list:
        if self._executor is None or len(items) < 2:
            return [function(item) for item in items]
        return list(self._executor.map(function, items))

    def __enter__(self) -> "_Pool":
        return self

    def __exit__(self, *exc) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class _DeletedVersion(NotFound):
    """A KV v2 version that exists but was deleted or destroyed: no fallback read helps."""


class _Run:
    """One fetch_all: each (API path, version) is read once, whichever references ask for it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[threading.Event, list]] = {}
        self.mount_failures: dict[str, ShimError] = {}

    def once(self, key: tuple, read):
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if owner:
                entry = self._entries[key] = (threading.Event(), [])
        event, box = entry
        if owner:
            try:
                box.append(read())
            finally:
                event.set()
        else:
            event.wait()
        if not box:
            raise Unavailable("the shared Vault read failed", hint="see the other errors")
        return box[0]


# --- mounts and read plans ----------------------------------------------------------------

@dataclass(frozen=True)
class _Mount:
    path: str                   # "secret/", relative to the namespace
    type: str                   # "kv", "database", ...
    kv_version: int | None      # 1 or 2 for a KV mount, None for any other engine

    @classmethod
    def from_preflight(cls, data: Mapping) -> "_Mount | None":
        path = data.get("path")
        if not isinstance(path, str) or not path:
            return None
        kind = str(data.get("type") or "")
        version = None
        if kind in ("kv", "generic"):
            options = data.get("options") or {}
            version = 2 if str(options.get("version") or "1") == "2" else 1
        return cls(path if path.endswith("/") else path + "/", kind, version)


@dataclass(frozen=True)
class _ReadPlan:
    api_path: str
    kv_version: int | None      # 2: data.data + metadata; 1: data; None: a logical read
    version: str | None = None
    hint: str | None = None     # what to suggest when this read fails


def _bank_vaults_plan(path: str, version: str | None, mount: _Mount | None) -> _ReadPlan:
    """vault:<api-path>: the path is read as written."""
    if mount is not None:
        rest = path[len(mount.path):]
        if mount.kv_version == 2:
            if rest.startswith("data/"):
                return _ReadPlan(path, 2, version)
            hint = (f"{mount.path} is a KV v2 mount: the vault: syntax takes the API path, "
                    f"e.g. vault:{mount.path}data/{rest}#key")
            _no_version(path, version, hint)
            return _ReadPlan(path, None, None, hint)
        _no_version(path, version, f"{mount.path} is not a KV v2 mount")
        return _ReadPlan(path, mount.kv_version, None)
    _first, _, rest = path.partition("/")
    if rest.startswith("data/") or "/data/" in rest:
        return _ReadPlan(path, 2, version)
    _no_version(path, version, "without data/ in the path shim reads it as KV v1 or a "
                               "dynamic secret, which have no versions")
    return _ReadPlan(path, None, None)


def _vals_plan(path: str, version: str | None, mount: _Mount) -> _ReadPlan:
    """ref+vault://<logical-path> with the mount known."""
    rest = path[len(mount.path):] if (path + "/") != mount.path else ""
    if mount.kv_version == 2:
        if not rest:
            raise NotFound(f"{path} names the KV v2 mount itself, not a secret in it",
                           hint=f"write ref+vault://{mount.path}<name>")
        return _ReadPlan(f"{mount.path}data/{rest}", 2, version)
    _no_version(path, version, f"{mount.path} is not a KV v2 mount")
    return _ReadPlan(path, mount.kv_version, None)


def _vals_fallback_plans(path: str, version: str | None) -> list[_ReadPlan]:
    """The mount is unknown: KV v2 at the first segment first, then the path itself."""
    first, _, rest = path.partition("/")
    plans = []
    if rest:
        plans.append(_ReadPlan(f"{first}/data/{rest}", 2, version))
    if version is None:
        plans.append(_ReadPlan(path, 1 if rest else None, None))
    elif not plans:
        _no_version(path, version, "versions exist in KV v2 only")
    return plans


def _no_version(path: str, version: str | None, why: str) -> None:
    if version:
        raise NotFound(f"version {version} of {path} cannot exist: {why}",
                       hint="drop the version, or point at a KV v2 secret")


def _fetched(plan: _ReadPlan, body: dict) -> Fetched:
    data = body.get("data")
    if plan.kv_version == 2:
        secret, metadata = data.get("data"), data.get("metadata") or {}
        if not isinstance(secret, Mapping):
            raise ValueError("no data.data in a KV v2 answer")
        created = _timestamp(metadata.get("created_time"))
        version = metadata.get("version")
        return Fetched(secret, SecretMeta(version=str(version) if version is not None else None,
                                          created=created, updated=created))
    if not isinstance(data, Mapping):
        raise ValueError("no data in the answer")
    lease_id = body.get("lease_id") or None
    if lease_id is None:
        return Fetched(data, SecretMeta())
    return Fetched(data, SecretMeta(lease_id=lease_id,
                                    lease_duration=int(body.get("lease_duration") or 0),
                                    renewable=bool(body.get("renewable"))))


def _deleted_version(body: dict | None) -> str | None:
    """'version 2 was deleted' / '... destroyed' from a KV v2 404 that carries metadata."""
    metadata = ((body or {}).get("data") or {}).get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    version = metadata.get("version")
    if metadata.get("destroyed"):
        return f"version {version} was destroyed"
    if metadata.get("deletion_time"):
        return f"version {version} was deleted"
    return None


def _timestamp(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    # Go writes nanoseconds; Python keeps microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _combine(outcomes: list) -> ShimError:
    """The error to report after the fallback reads: any 404 wins over 403."""
    for outcome in outcomes:
        if isinstance(outcome, NotFound):
            return outcome
    return outcomes[0]
