"""Logging in to Vault, and the token's life: token, AppRole (wrapped secret ids too),
Kubernetes and JWT (docs/vault.md has the order in which credentials are chosen).

Longer than our other modules on purpose: the logins, the token's renewal, the new login at its
max TTL and the state carried between --watch helpers share one lock and one token; split, each
half would need the other's private state.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Mapping

from shim.tools.deadline import Deadline
from shim.tools.errors import ConfigError, NotRead, PermissionDenied, ShimError, Unavailable
from shim.providers.vault.http import Answer, VaultHttp, parse_bool, past_max_ttl
from shim.providers.vault.settings import VaultSettings
from shim.tools.safe_read import read_capped

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
AUTH_METHODS = ("token", "approle", "kubernetes", "jwt")
DEFAULT_AUTH_MOUNTS = {"approle": "approle", "kubernetes": "kubernetes", "jwt": "jwt"}
MAX_CREDENTIAL_FILE = 64 * 1024
# A token obtained by login with no more than this left is not used: shim logs in again.
RELOGIN_MARGIN_SECONDS = 2.0
_VAULT_TOKEN = re.compile(r"^(hvs|s)\.")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Authenticator:
    """One login per provider (kept for --watch), the token's TTL, renewal and revocation."""

    def __init__(self, environ: Mapping[str, str], http: VaultHttp, log, read_only: bool = False):
        self.environ = VaultSettings(environ)
        self.http = http
        self.log = log
        self.read_only = read_only       # shim check: never unwrap (a wrapping token works once)
        self._token_expires: float | None = None     # monotonic; None = never / unknown
        self._token_ttl_known = False
        self._auth_lock = threading.Lock()
        self._invalid_token_logged = False
        self._unwrapped_secret_id: str | None = None
        self._resumed = False      # a --watch helper going on from an earlier run's session
        self._source_logged = False    # a --watch helper resuming a session: said on the first
        self._login_ttl = 0            # the TTL a login granted: a renewal giving less is capped
        self.generation = 0            # logins so far (carried across --watch helpers)
        self._relogin_reason: str | None = None

    def ensure(self, deadline: Deadline) -> None:
        # The run's deadline: the token lookup made afterwards for --watch stays within it.
        self._run_deadline = deadline
        # Bounded: a login stuck on a slow Vault (in an abandoned resolution) must not hold
        # lease and token renewal behind it.
        if not self._auth_lock.acquire(timeout=deadline.remaining()):
            raise Unavailable("Vault: no answer to the login within the deadline",
                              hint="check VAULT_ADDR and the network, or allow more time "
                                   "with --deadline")
        try:
            self.http.open()
            if self.http.token is None:
                self._authenticate(deadline)
        finally:
            self._auth_lock.release()

    def _authenticate(self, deadline: Deadline) -> None:
        method = self._auth_method()
        if method == "token":
            token, source = self._configured_token()
            self._use_token(token)
            self._token_ttl_known = False
            if source == self._home_token_path() and not self._resumed:
                # Said at the default verbosity (once: not again by each --watch helper): a
                # stale file left by an old `vault login` otherwise shows only as 403s.
                self.log.event("vault.auth", "warning",
                               f"using the Vault token in {source} (left by `vault login` or "
                               f"`bao login`); set VAULT_TOKEN to use another",
                               method="token", source=source)
            else:   # once a run: a --watch helper resuming the session says it at debug
                self.log.event("vault.auth",
                               "debug" if (self._resumed or self._source_logged) else "info",
                               f"Vault token from {source}", method="token", source=source)
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
            "no Vault credentials: none of VAULT_TOKEN (or BAO_TOKEN), VAULT_TOKEN_FILE, "
            "VAULT_ROLE_ID, VAULT_ROLE or ~/.vault-token is set",
            hint="set VAULT_TOKEN (or VAULT_TOKEN_FILE), VAULT_ROLE_ID and VAULT_SECRET_ID "
                 "for AppRole, or VAULT_ROLE for Kubernetes; see docs/vault.md")

    def _home_token_path(self) -> str:
        home = self.environ.get("HOME") or os.path.expanduser("~")
        return os.path.join(home, ".vault-token")

    def _configured_token(self) -> tuple[str, str]:
        found = value_or_file(self.environ, "VAULT_TOKEN")
        if found is not None:
            return found
        path = self._home_token_path()
        if os.path.exists(path):
            return read_credential_file(path, "~/.vault-token"), path
        raise ConfigError("VAULT_AUTH_METHOD=token but no token: VAULT_TOKEN, VAULT_TOKEN_FILE "
                          "and ~/.vault-token are all unset",
                          hint="set VAULT_TOKEN or VAULT_TOKEN_FILE (e.g. a Vault Agent sink)")

    def _approle_payload(self, deadline: Deadline) -> dict:
        role_id = value_or_file(self.environ, "VAULT_ROLE_ID")
        secret_id = value_or_file(self.environ, "VAULT_SECRET_ID")
        if role_id is None:
            raise ConfigError("AppRole login needs VAULT_ROLE_ID (or VAULT_ROLE_ID_FILE)",
                              hint="set the role id of the AppRole")
        payload = {"role_id": role_id[0]}
        self.http.redact.add(role_id[0])
        if secret_id is not None:
            value = secret_id[0]
            self.http.redact.add(value)
            if self._secret_id_is_wrapped(value):
                if self.read_only:
                    self._check_wrapping_token(value, deadline)
                # A wrapping token works once: keep what it held for a later login.
                if self._unwrapped_secret_id is None:
                    self._unwrapped_secret_id = self._unwrap_secret_id(value, deadline)
                value = self._unwrapped_secret_id
                self.http.redact.add(value)
            payload["secret_id"] = value
        return payload

    def _secret_id_is_wrapped(self, value: str) -> bool:
        if (self.environ.get("VAULT_SECRET_ID_WRAPPED") or "").strip():
            return parse_bool(self.environ, "VAULT_SECRET_ID_WRAPPED")
        # Unset: a Vault token (hvs.…, s.…) is a wrapping token; secret ids are UUIDs.
        return bool(_VAULT_TOKEN.match(value)) and not _UUID.match(value)

    def _check_wrapping_token(self, wrapping_token: str, deadline: Deadline) -> None:
        """check: look the wrapping token up (it stays usable), then stop: a login would need
        it unwrapped, and the exec after check would find it used."""
        answer = self.http.request("POST", "sys/wrapping/lookup", deadline,
                                   "the secret id wrapping lookup", json={"token": wrapping_token})
        if answer.status != 200:
            message = (f"the response-wrapped VAULT_SECRET_ID is not valid "
                       f"({self.http.status_text(answer)})")
            self.log.event("auth.failed", "error", message, method="approle",
                           status=answer.status)
            raise PermissionDenied(message, hint="a wrapping token works once and expires: give "
                                                 "shim a fresh one")
        raise NotRead("the AppRole login needs the response-wrapped VAULT_SECRET_ID unwrapped, "
                      "which works once (it is valid: shim exec will unwrap it)",
                      hint="check never unwraps it",
                      effect="logging in would use up the wrapped secret id")

    def _unwrap_secret_id(self, wrapping_token: str, deadline: Deadline) -> str:
        answer = self.http.request("POST", "sys/wrapping/unwrap", deadline, "the secret id unwrap",
                               json={}, headers={"X-Vault-Token": wrapping_token})
        secret_id = None
        if answer.status == 200:
            secret_id = ((answer.body or {}).get("data") or {}).get("secret_id")
        if not secret_id:
            message = (f"the response-wrapped VAULT_SECRET_ID could not be unwrapped "
                       f"({self.http.status_text(answer)})")
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
        found = value_or_file(self.environ, "VAULT_JWT") if method == "jwt" else None
        if found is None:
            path = (self.environ.get("KUBERNETES_SERVICE_ACCOUNT_TOKEN")
                    or self.environ.get("VAULT_JWT_FILE") or SERVICE_ACCOUNT_TOKEN)
            found = (read_credential_file(path, "service account token"), path)
        self.http.redact.add(found[0])
        return {"role": role, "jwt": found[0]}

    def _login(self, method: str, mount: str, payload: dict, deadline: Deadline) -> None:
        path = f"auth/{mount}/login"
        answer = self.http.request("POST", path, deadline, f"the {method} login", json=payload)
        auth = (answer.body or {}).get("auth") if answer.status == 200 else None
        if not auth or not auth.get("client_token"):
            message = f"Vault refused the {method} login at {path} ({self.http.status_text(answer)})"
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
        self._login_ttl = int(auth.get("lease_duration") or 0)
        self._set_token_ttl(self._login_ttl)
        if self.generation:
            reason = self._relogin_reason or "the previous token was given up"
            self.log.event("vault.relogin", "info",
                           f"logged in to Vault again with {method} at {path}: {reason}",
                           method=method, mount=mount, reason=reason,
                           ttl=auth.get("lease_duration"))
        self.generation += 1
        self._relogin_reason = None
        self.log.event("vault.auth", "info", f"logged in to Vault with {method} at {path}",
                       method=method, mount=mount, policies=auth.get("policies"),
                       ttl=auth.get("lease_duration"))

    def _use_token(self, token: str) -> None:
        self.http.use_token(token)

    def export_session(self) -> dict:
        """The token's TTL (unrounded: rounding at every hand-over would eat it away), and the
        token itself only when a login obtained it."""
        logins = {}
        if self.generation:
            logins["generation"] = self.generation
        if self._unwrapped_secret_id is not None:
            # The wrapping token worked once: a later login needs what it held.
            logins["secret_id"] = self._unwrapped_secret_id
        if self.http.token is None:   # a new login failed: the next helper logs in, counting on
            return logins
        if not self._token_ttl_known:
            self.token_ttl()       # a token from the environment: one lookup, then carried
        state = {"ttl_known": self._token_ttl_known,
                 "ttl": (max(0.0, self._token_expires - time.monotonic())
                         if self._token_expires is not None else None)}
        if self._auth_method() != "token":
            state.update(logins, token=self.http.token, login_ttl=self._login_ttl)
        return state

    def resume_session(self, state) -> None:
        self._resumed = True
        self.generation = int(state.get("generation") or 0)
        self._login_ttl = int(state.get("login_ttl") or 0)
        if state.get("secret_id"):
            self._unwrapped_secret_id = state["secret_id"]
            self.http.redact.add(state["secret_id"])
        ttl = state.get("ttl")
        if ttl is not None and "ttl_at" in state:   # less the time since it was measured
            ttl = max(0.0, ttl - (time.monotonic() - state["ttl_at"]))
        if state.get("token"):
            if state.get("ttl_known") and ttl is not None and ttl <= RELOGIN_MARGIN_SECONDS:
                self.http.redact.add(state["token"])     # unused: ensure() logs in again
                self._relogin_reason = ("the token expired" if ttl <= 0 else
                                        f"the token expires in {ttl:.1f}s")
                return
            self.http.open()
            self._use_token(state["token"])
        elif "ttl_known" in state:
            self._source_logged = True    # once per run (-v), not once per --watch tick
            self.ensure(Deadline(self.http.connection.timeout))   # local: the token method
        if state.get("ttl_known"):
            # Carried, not from Vault: 0 is "expired" here (a token that never expires is None).
            self._token_ttl_known = True
            self._token_expires = None if ttl is None else time.monotonic() + ttl

    def _set_token_ttl(self, ttl: float) -> None:
        self._token_ttl_known = True
        self._token_expires = time.monotonic() + ttl if ttl else None

    def token_expired(self) -> bool:
        """By shim's clock, the token's TTL has run out (what a 403 then means)."""
        return (self._token_ttl_known and self._token_expires is not None
                and time.monotonic() >= self._token_expires)

    def token_generation(self) -> int:
        return self.generation

    def note_invalid_token(self, answer: "Answer") -> None:
        if self._invalid_token_logged or not any("invalid token" in e for e in answer.errors):
            return
        self._invalid_token_logged = True
        self.log.event("auth.failed", "error", "Vault says the token is invalid "
                       "(expired, revoked or unknown)", method="token", status=answer.status)

    def token_ttl(self) -> int | None:
        """Seconds left on shim's token; None when it never expires or cannot be looked up."""
        if not self._token_ttl_known:
            # Within the run's --deadline when there was one: a --watch helper asks this after
            # its resolution, and an unreachable Vault must not keep it past the deadline (the
            # supervisor would kill it, a value served from the fallback cache with it).
            deadline = getattr(self, "_run_deadline", None) or Deadline(self.http.connection.timeout)
            try:
                self.ensure(deadline)
                answer = self.http.request("GET", "auth/token/lookup-self", deadline, "token lookup")
                if answer.status != 200:
                    raise self.http.refusal(answer, "looking up the token")
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
        """The token's new TTL; None when Vault says it is not renewable.

        A token obtained by login that cannot live on (its renewal capped by its max TTL,
        refused in its last second, or refused because it expired) is replaced by a new login:
        the TTL returned is the new token's, and `generation` tells the watcher that the leases
        the old token read die with it."""
        self.ensure(deadline)
        answer = self.http.request("POST", "auth/token/renew-self", deadline, "token renewal",
                               json={})
        if answer.status == 400 and any("not renewable" in e for e in answer.errors):
            return None
        ttl = int(((answer.body or {}).get("auth") or {}).get("lease_duration") or 0)
        ending = self._ending(answer, ttl)
        if ending is not None and self._auth_method() != "token":
            self._relogin_reason = ending
            self.http.use_token(None)
            self.ensure(deadline)
            return self.token_ttl()
        if answer.status != 200:
            if ending is not None:
                raise PermissionDenied(f"shim's Vault token {ending} "
                                       f"({self.http.status_text(answer)})",
                                       hint=FRESH_TOKEN_HINT)
            raise self.http.refusal(answer, "renewing the token")
        self._set_token_ttl(ttl)
        return ttl

    def _ending(self, answer: "Answer", ttl: int) -> str | None:
        """Why the token cannot live on after this renewal; None when it can."""
        if past_max_ttl(answer):
            return "reached its max TTL and cannot be renewed"
        if answer.status in (401, 403) and self.token_expired():
            return "expired"
        if answer.status == 200 and self._login_ttl and _capped(answer, ttl, self._login_ttl):
            return f"reaches its max TTL in {ttl}s"
        return None

    def discard_login(self, deadline: Deadline) -> None:
        if self.http.token is None or self._auth_method() == "token":
            return
        try:
            self.revoke_token(deadline)
        except ShimError as error:
            self.log.event("token.revoke_failed", "warning", error.line(), provider="vault")
            return
        self.log.event("token.revoked", "info", provider="vault")

    def revoke_token(self, deadline: Deadline) -> None:
        self.ensure(deadline)
        answer = self.http.request("POST", "auth/token/revoke-self", deadline, "token revocation",
                               json={})
        if answer.status not in (200, 204):
            raise self.http.refusal(answer, "revoking the token")
        self.http.use_token(None)


def _capped(answer: "Answer", ttl: int, login_ttl: int) -> bool:
    """Less than the login granted, the max TTL being near: Vault and OpenBao warn "... exceeded
    the effective max_ttl ...; TTL value is capped"; else a TTL over 1 s (rounding) short."""
    warnings = (answer.body or {}).get("warnings") or []
    if isinstance(warnings, list) and any("max_ttl" in str(w) and "capped" in str(w)
                                          for w in warnings):
        return True
    return ttl < login_ttl - 1


FRESH_TOKEN_HINT = ("give shim a token that lives as long as the container (a periodic token, "
                     "or one Vault Agent renews in VAULT_TOKEN_FILE), or let shim log in "
                     "itself (AppRole, Kubernetes, JWT), which it does again at the max TTL")


def value_or_file(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(value, where it came from) from NAME (or its BAO_* twin) or the file NAME_FILE names;
    never both."""
    settings = VaultSettings(environ)
    shown = settings.name_of(name)
    value, path = settings.get(name), settings.get(name + "_FILE")
    if value and path:
        raise ConfigError(f"both {shown} and {name}_FILE are set (but are exclusive)",
                          hint=f"unset one of {shown} or {name}_FILE")
    if value:
        return value.strip(), shown
    if path:
        return read_credential_file(path, name + "_FILE"), path
    return None


def read_credential_file(path: str, what: str) -> str:
    # A FIFO, a device or an endless file here must not hang or exhaust shim: the one reader
    # of named files opens non-blocking, takes only a regular file, and reads at most the cap.
    # Kubernetes mounts its service-account token as a symlink into ..data/, so links are followed.
    content = read_capped(path, cap=MAX_CREDENTIAL_FILE, what=what,
                          follow_symlinks=True, missing=ConfigError, unreadable=PermissionDenied,
                          not_regular=ConfigError, too_large=ConfigError, size_text="64 KiB")
    try:
        text = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} ({what}) is not UTF-8 text",
                          hint="point it at the file") from None
    if not text:
        raise ConfigError(f"{path} ({what}) is empty", hint="check what writes it")
    return text
