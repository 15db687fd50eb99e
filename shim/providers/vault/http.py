"""Vault over HTTP: connection settings, hvac's request adapter, redaction, redirects, retries.

One VaultHttp per provider, shared by the login, mount lookups, reads and lease calls; it holds
the token and every credential to redact from Vault's error text, so the other modules take it
as a parameter and never import each other.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote, urljoin, urlsplit

import hvac.adapters
import requests
import tenacity  # noqa: F401 - the retry mechanism needs it: missing, the registry says "install shim-secrets[vault]"

from shim.tools.deadline import Deadline
from shim.tools.durations import parse_duration
from shim.tools.errors import ConfigError, NotFound, PermissionDenied, ShimError, UnusableValue
from shim.providers.base import nested_too_deeply
from shim.providers.bodycap import VAULT_BODY_CAP, CappedSession
from shim.providers.mechanism import MAX_WORKERS, Transient, retry
from shim.providers.vault.settings import VaultSettings

# Vault's own default (the CLI and Go client), not hvac's http://localhost:8200.
DEFAULT_ADDR = "https://127.0.0.1:8200"
REQUEST_TIMEOUT = 10.0        # per request, unless VAULT_CLIENT_TIMEOUT says otherwise
_TRUE = ("1", "t", "true")    # Go's strconv.ParseBool, as the Vault CLI reads VAULT_SKIP_VERIFY
_FALSE = ("0", "f", "false")
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?[^/@]*@")
# What Go's HTTP server answers (400, text) to plain HTTP on a TLS listener.
_HTTP_TO_HTTPS = b"Client sent an HTTP request to an HTTPS server"
# OpenSSL's reasons when the other end answered a ClientHello with something that is not TLS
# (a plain-HTTP answer): OpenSSL 1.1-3.1, then 3.2 and later.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


class VaultHttp:
    """The adapter, the token and the credentials to redact; `request` retries within the deadline."""

    def __init__(self, connection: "Connection", log):
        self.connection = connection
        self.log = log
        self.redact: set[str] = set()
        self.token: str | None = None
        self._adapter = None

    def open(self) -> None:
        if self._adapter is None:
            self._adapter = self.connection.client(self.log)

    def use_token(self, token: str | None) -> None:
        self.token = token
        if token:
            self.redact.add(token)
        self._adapter.token = token or ""

    def request(self, method: str, path: str, deadline: Deadline, what: str,
                **kwargs) -> "Answer":
        """One Vault call, retried on transient failures until the deadline."""
        return retry(lambda: self._send(method, path, deadline, what, **kwargs), deadline,
                     self.log, provider="vault", title="Vault", operation=what, path=path,
                     hint="check VAULT_ADDR and that Vault is unsealed and reachable, "
                          "or allow more time with --deadline")

    def _send(self, method: str, path: str, deadline: Deadline, what: str,
              **kwargs) -> "Answer":
        timeout = max(0.1, min(deadline.remaining(), self.connection.timeout))
        url = "v1/" + quote(path, safe="/")
        try:
            result = self._adapter.request(method, url, raise_exception=False,
                                                  timeout=timeout, **kwargs)
        except requests.exceptions.SSLError as error:
            raise self.connection.tls_failure(error) from None
        except requests.exceptions.Timeout:
            raise Transient("timeout") from None
        except requests.exceptions.ConnectionError as error:
            raise Transient(_connection_reason(error)) from None
        except requests.exceptions.InvalidHeader:
            # Its text would quote the header, token included.
            raise ConfigError("the Vault token holds characters an HTTP header cannot carry",
                              hint="check what writes the token (one line, no spaces)") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema):
            raise ConfigError(f"VAULT_ADDR={self.connection.shown!r} is not a usable URL",
                              hint="write e.g. VAULT_ADDR=https://vault.example.com:8200") from None
        except requests.exceptions.RequestException:
            raise Transient("connection failed") from None
        except RecursionError:  # hvac parses a successful answer itself
            raise nested_too_deeply(f"Vault's answer to {what}") from None
        if isinstance(result, dict):
            return Answer(200, result)
        if not isinstance(result, requests.Response):
            # hvac returns a successful answer's JSON as parsed: null, a list, a number.
            return Answer(200, None)
        if result.status_code == 400 and _HTTP_TO_HTTPS in (result.content or b""):
            raise self.connection.plain_http_to_https()
        if 300 <= result.status_code < 400:
            raise ConfigError(
                f"Vault at {self.connection.shown} answered {what} with a redirect "
                f"(HTTP {result.status_code}) that shim does not follow",
                hint="point VAULT_ADDR at the active Vault node or its load balancer; shim "
                     "follows only 307/308 to the same scheme, host and port (docs/vault.md)")
        body = None
        if "json" in (result.headers.get("Content-Type") or ""):
            try:
                body = result.json()
            except ValueError:
                body = None
            except RecursionError:
                raise nested_too_deeply(f"Vault's answer to {what}") from None
        answer = Answer(result.status_code, body if isinstance(body, dict) else None)
        if (answer.status in (412, 429) or answer.status >= 500) and not past_max_ttl(answer):
            raise Transient(self.status_text(answer))
        return answer

    def status_text(self, answer: "Answer") -> str:
        """'HTTP 403: permission denied', with every credential shim holds redacted."""
        text = "; ".join(" ".join(_unwrapped(e).replace("*", " ").split()) for e in answer.errors)
        for secret in self.redact:
            if secret:
                text = text.replace(secret, "<redacted>")
        if len(text) > 200:
            text = text[:200] + "..."
        return f"HTTP {answer.status}: {text}" if text else f"HTTP {answer.status}"

    def refusal(self, answer: "Answer", doing: str) -> ShimError:
        status = self.status_text(answer)
        if answer.status in (401, 403):
            return PermissionDenied(f"Vault denied {doing} ({status})")
        return NotFound(f"Vault refused {doing} ({status})")


# Vault and OpenBao wrap a policy's refusal in Go's multierror list ("1 error occurred:\n\t*
# permission denied\n\n"): the operator wants the items, not the wrapper.
_MULTIERROR = re.compile(r"^\s*\d+ errors? occurred:\s*(.*)$", re.S)


def _unwrapped(error: str) -> str:
    match = _MULTIERROR.match(error)
    if match is None:
        return error
    items = [item.strip() for item in match.group(1).split("\t*") if item.strip()]
    return "; ".join(items) if items else error


@dataclass(frozen=True)
class Connection:
    addr: str
    verify: bool | str
    cert: tuple[str, str] | str | None
    namespace: str | None
    timeout: float
    skip_verify: bool
    addr_variable: str = "VAULT_ADDR"    # the variable the address came from, for messages

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Connection":
        settings = VaultSettings(environ)
        # VAULT_AGENT_ADDR wins over VAULT_ADDR, as in the Vault CLI (BAO_* twins: settings.py).
        addr_variable = next((settings.name_of(name) for name in ("VAULT_AGENT_ADDR", "VAULT_ADDR")
                              if settings.get(name)), "VAULT_ADDR")
        addr = (settings.get(addr_variable) or DEFAULT_ADDR).rstrip("/")
        verify: bool | str = True
        # VAULT_CACERT takes precedence over VAULT_CAPATH, as in the Vault CLI.
        for name in ("VAULT_CACERT", "VAULT_CAPATH"):
            path = settings.get(name)
            if path:
                if not os.path.exists(path):
                    raise ConfigError(
                        f"{settings.name_of(name)} names {path}, which does not exist",
                        hint="mount the CA certificate or fix the path")
                verify = path
                break
        skip = parse_bool(settings, "VAULT_SKIP_VERIFY")
        if skip:
            verify = False
        cert_path, key_path = settings.get("VAULT_CLIENT_CERT"), settings.get("VAULT_CLIENT_KEY")
        if key_path and not cert_path:
            raise ConfigError(f"{settings.name_of('VAULT_CLIENT_KEY')} is set without "
                              f"{settings.name_of('VAULT_CLIENT_CERT')}",
                              hint="set both, or neither")
        cert = (cert_path, key_path) if cert_path and key_path else (cert_path or None)
        timeout = REQUEST_TIMEOUT
        if settings.get("VAULT_CLIENT_TIMEOUT"):
            timeout = _parse_timeout(settings["VAULT_CLIENT_TIMEOUT"],
                                     settings.name_of("VAULT_CLIENT_TIMEOUT"))
        namespace = (settings.get("VAULT_NAMESPACE") or "").strip("/") or None
        if namespace and (not namespace.isprintable() or " " in namespace):
            # Checked here: requests' refusal of the header would be taken for the token's.
            variable = settings.name_of("VAULT_NAMESPACE")
            raise ConfigError(f"{variable} holds characters an HTTP header cannot carry",
                              hint=f"write the namespace's path, e.g. {variable}=parent/child")
        return cls(addr, verify, cert, namespace, timeout, bool(skip), addr_variable)

    def tls_failure(self, error: Exception) -> ConfigError:
        """What a failed TLS handshake means: a certificate shim cannot verify, or no TLS at all."""
        cause = _ssl_cause(error)
        if getattr(cause, "reason", None) in _NOT_TLS:
            return ConfigError(
                f"{self.addr_variable}={self.shown} says https://, but the server there answers "
                f"plain HTTP (no TLS handshake)",
                hint=f"write http:// in {self.addr_variable} if that server runs without TLS (a "
                     f"dev server), or turn TLS on in its listener")
        if cause is None or isinstance(cause, ssl.SSLCertVerificationError):
            return ConfigError(
                f"TLS verification of {self.shown} failed",
                hint="point VAULT_CACERT (or VAULT_CAPATH) at the CA that signed Vault's "
                     "certificate")
        return ConfigError(f"the TLS handshake with {self.shown} failed "
                           f"({getattr(cause, 'reason', None) or 'no reason given'})",
                           hint="check that the address is Vault's TLS listener")

    def plain_http_to_https(self) -> ConfigError:
        return ConfigError(
            f"{self.addr_variable}={self.shown} says http://, but the server there answers only "
            f"HTTPS (it said: Client sent an HTTP request to an HTTPS server)",
            hint=f"write https:// in {self.addr_variable} (and point VAULT_CACERT at its CA if "
                 f"its certificate is not publicly trusted)")

    @property
    def shown(self) -> str:
        """The address as messages and events show it: user-info (user:password@) redacted."""
        return _USERINFO.sub(r"\1<redacted>@", self.addr)

    def client(self, log):
        """hvac's request adapter with every setting explicit.

        hvac.Client would read VAULT_TOKEN, ~/.vault-token and (at import) VAULT_CACERT and
        VAULT_CLIENT_CERT from os.environ by itself; the adapter takes only what it is given.
        """
        if self.skip_verify:
            import urllib3  # lazy: only with VAULT_SKIP_VERIFY
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.event("vault.tls_unverified", "warning",
                      "VAULT_SKIP_VERIFY is set: Vault's TLS certificate is not verified",
                      addr=self.shown)
        if _in_clear_to_another_host(self.addr):
            log.event("vault.plaintext", "warning",
                      f"{self.addr_variable}={self.shown} is plain http:// to another host: the "
                      f"Vault token and the secrets cross the network in clear; use https://",
                      addr=self.shown)
        session = SameOriginSession(VAULT_BODY_CAP, f"Vault at {self.shown}", too_large)
        session.verify = self.verify
        session.cert = self.cert
        # One pool slot per worker, or urllib3 drops (and warns about) the extra connections.
        pool = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=MAX_WORKERS)
        session.mount("https://", pool)
        session.mount("http://", pool)
        return hvac.adapters.JSONAdapter(base_uri=self.addr, token="", cert=self.cert,
                                         verify=self.verify, timeout=self.timeout,
                                         session=session, namespace=self.namespace)


class SameOriginSession(CappedSession):
    """Follows only the redirects the Vault CLI follows, and only where the token already goes.

    requests would follow 301/302/303 (turning a PUT into a GET) and https to http, carrying
    X-Vault-Token along. Here only 307/308 to the same scheme, host and port are followed; any
    other redirect is returned as it is and reported by VaultHttp._send instead. Every answer
    is read at most to the cap (CappedSession).
    """

    def get_redirect_target(self, response):
        target = super().get_redirect_target(response)
        if target is None or response.status_code not in (307, 308):
            return None
        here, there = urlsplit(response.url), urlsplit(urljoin(response.url, target))
        if (here.scheme, here.netloc.lower()) != (there.scheme, there.netloc.lower()):
            return None
        return target


def parse_bool(environ: Mapping[str, str], name: str) -> bool:
    settings = VaultSettings(environ)
    text = (settings.get(name) or "").strip().lower()
    if not text:
        return False
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    shown = settings.name_of(name)
    raise ConfigError(f"{shown}={text!r} is not true or false", hint=f"write {shown}=true or false")


def _parse_timeout(text: str, variable: str) -> float:
    text = text.strip()
    if text.isdigit():
        return float(text)  # the Vault CLI accepts plain seconds
    try:
        return parse_duration(text, option=variable)
    except ShimError:
        raise ConfigError(f"{variable}={text!r} is not a duration",
                          hint=f"write e.g. {variable}=30s") from None


def too_large(store: str, cap: int) -> UnusableValue:
    """The refusal of an answer over the cap: Vault itself stores larger secrets, so the message
    says that the limit is shim's."""
    return UnusableValue(
        f"{store} answered with more than {cap // (1024 * 1024)} MiB, shim's cap on one Vault "
        f"answer (Vault itself can store larger secrets); shim stopped reading",
        hint="keep each secret shim reads under that size (split a large map into several "
             "secrets, keep large files out of Vault), and check that VAULT_ADDR points at "
             "Vault itself")


def _in_clear_to_another_host(addr: str) -> bool:
    """http:// to a host that is not this machine (an unusable address is left to the request)."""
    try:
        parts = urlsplit(addr)
        return parts.scheme.lower() == "http" and not _is_loopback(parts.hostname or "")
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    """This machine: localhost, *.localhost, 127.0.0.0/8 or ::1 (names are not resolved)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    """The ssl module's error under requests' and urllib3's wrappers, if there is one."""
    pending, seen = [error], set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return item
        pending.extend([*item.args, getattr(item, "reason", None), item.__cause__,
                        item.__context__])
    return None


def _connection_reason(error: Exception) -> str:
    text = repr(error).lower()
    for needle, reason in (("refused", "connection refused"), ("reset", "connection reset"),
                           ("name or service not known", "host name not found"),
                           ("nodename nor servname", "host name not found"),
                           ("timed out", "timeout"), ("aborted", "connection aborted")):
        if needle in text:
            return reason
    return "connection failed"


def past_max_ttl(answer: "Answer") -> bool:
    """A 5xx that asking again cannot change: OpenBao and Vault answer a renewal in a token's
    or lease's last second with HTTP 500 "past the max TTL, cannot renew"; by the next attempt
    the token is gone. The caller logs in again or reads new credentials instead."""
    return answer.status == 500 and any("past the max TTL" in error for error in answer.errors)


@dataclass
class Answer:
    status: int
    body: dict | None

    @property
    def errors(self) -> list[str]:
        errors = (self.body or {}).get("errors") or []
        return [str(e) for e in errors] if isinstance(errors, list) else [str(errors)]
