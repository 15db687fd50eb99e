"""Azure Key Vault secrets, as App Service and vals reference them.

    @Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>[/<version>])
    @Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>[;SecretVersion=<version>])
    ref+azurekeyvault://<vault>/<name>[/<version>][?allow_expired=true][#/key]

all parse (shim/syntax/refs.py) to a locator `https://<host>/secrets/<name>` plus a version; any host works
(sovereign clouds, private endpoints, host:port), always over HTTPS.

Credentials: one DefaultAzureCredential, shared by every vault (and kept for --watch), so the
same settings work on App Service (IDENTITY_ENDPOINT), AKS workload identity
(AZURE_FEDERATED_TOKEN_FILE), VMs (IMDS), a service principal (AZURE_CLIENT_ID/_SECRET/_TENANT_ID)
and a laptop (`az login`). Credentials that cannot work in a container (shared token cache,
VS Code, PowerShell, azd, broker) are left out of the chain, unless AZURE_TOKEN_CREDENTIALS picks
the credentials, as the SDK documents. The SDK reads these variables from the process
environment, which is the one shim started with.

One SecretClient per vault, one GET per distinct (vault, secret, version), concurrently. Key
Vault's challenge protocol makes a vault's first request go out unauthenticated to learn the
tenant; so in each vault one read goes first and the others wait until that read has the
challenge (the moment it asks for a token). Token requests are serialized: the credential caches
what it gets, so a run makes one token request, and a credential that failed fails the other
reads at once instead of being asked again.

Time: azure-core's retry policy (connection errors, 429 honouring Retry-After, 5xx) never runs
past --deadline; reads run on daemon threads and are abandoned at the deadline, so nothing the SDK
does (token requests have their own retries) can keep shim alive after it.

Attributes: a disabled secret is refused by the service (403 SecretDisabled, 77); an expired
(`exp` passed) or not-yet-valid (`nbf` ahead) secret is returned by the service but refused here
(77, event `secret.expired`) unless the reference says `?allow_expired=true`.

Options, read from the environment (docs/azure.md):

    SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE=false   accept a vault host outside the challenge's
                                                 resource domain (private endpoint, custom name)
    SHIM_AZURE_CA_BUNDLE=/path/ca.pem            trust this CA bundle (vault and login endpoints);
                                                 REQUESTS_CA_BUNDLE works too (requests reads it)
    SHIM_AZURE_DISABLE_INSTANCE_DISCOVERY=true   with AZURE_AUTHORITY_HOST on a non-Microsoft
                                                 authority (Azure Stack, ADFS)

Messages quote hosts, names, versions, status codes and service error codes; SDK text is shown
only for authentication failures, with credential material and anything token-shaped redacted.

Longer than our other modules on purpose: most of it is the mapping of every SDK failure
to one exit code and one safe message, which reads best next to the calls that raise them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from types import SimpleNamespace
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from shim.tools.errors import ConfigError, NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue
from shim.providers.base import Fetched, SecretMeta, nested_too_deeply
from shim.providers.bodycap import AZURE_BODY_CAP, CappedSession
from shim.providers.mechanism import call_within, run_concurrently

# Reads in flight at once (across all vaults); Key Vault allows thousands of GETs per 10 s.
MAX_CONCURRENT_READS = 16
VERSIONS_PER_PAGE = 25      # the most a versions list page holds
PROBE_PAGES = 4             # a secret with more versions than 4 pages is read on every tick
# DefaultAzureCredential members that need a desktop session; not tried unless
# AZURE_TOKEN_CREDENTIALS asks for them.
_DESKTOP_ONLY = ("shared_token_cache", "visual_studio_code", "powershell", "developer_cli", "broker")
# Credential material the SDK might echo in an error message.
_SENSITIVE_VARIABLES = ("AZURE_CLIENT_SECRET", "AZURE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
                        "IDENTITY_HEADER", "MSI_SECRET")
_TOKEN_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
_LOCATOR = re.compile(r"(https://[^/]+)/secrets/([^/]+)")

# The SDK logs its own warnings (e.g. every credential it tried); with no handler configured
# Python would print them to stderr around shim's own lines. shim reports failures itself.
for _sdk_logger in ("azure", "msal"):
    logging.getLogger(_sdk_logger).addHandler(logging.NullHandler())


@dataclass(frozen=True)
class AzureOptions:
    verify_challenge_resource: bool = True
    ca_bundle: Optional[str] = None
    disable_instance_discovery: bool = False

    @classmethod
    def from_context(cls, context) -> "AzureOptions":
        def setting(variable: str):
            return context.environ.get(variable) or None

        verify = _boolean(setting("SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE"),
                          "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE", default=True)
        discovery_off = _boolean(setting("SHIM_AZURE_DISABLE_INSTANCE_DISCOVERY"),
                                 "SHIM_AZURE_DISABLE_INSTANCE_DISCOVERY", default=False)
        ca_bundle = setting("SHIM_AZURE_CA_BUNDLE")
        if ca_bundle is not None and not (os.path.isfile(ca_bundle) and os.access(ca_bundle, os.R_OK)):
            raise ConfigError(f"SHIM_AZURE_CA_BUNDLE {ca_bundle} is not a readable file",
                              hint="point it at a PEM bundle of the CAs to trust")
        return cls(verify, ca_bundle, discovery_off)


def _boolean(value, name: str, *, default: bool) -> bool:
    if value is None or isinstance(value, bool):
        return default if value is None else value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}", hint=f"write {name}=false")


@dataclass
class _Wanted:
    """One distinct secret version to read, and every reference that asks for it."""
    vault_url: str
    name: str
    version: Optional[str]
    references: list = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.vault_url[len("https://"):]

    @property
    def shown(self) -> str:
        return f"{self.name} version {self.version}" if self.version else self.name


class _Vault:
    """A vault's client, kept for the provider's life; `ready` and `failure` are per run."""

    def __init__(self, url: str, client_factory: Callable[["_Vault"], SecretClient]):
        self.url = url
        self.ready = threading.Event()
        self.failure: Optional[ShimError] = None
        self.client = client_factory(self)

    def start_run(self) -> None:
        self.ready = threading.Event()
        self.failure = None


class _SharedCredential:
    """The run's one credential: token requests one at a time, a failure remembered for the run."""

    def __init__(self, credential):
        self.credential = credential
        self.lock = threading.Lock()
        self.failure: Optional[ClientAuthenticationError] = None

    def call(self, method: str, *args, **kwargs):
        with self.lock:
            if self.failure is not None:
                raise ClientAuthenticationError(message=self.failure.message)
            try:
                return getattr(self.credential, method)(*args, **kwargs)
            except ClientAuthenticationError as error:
                self.failure = error
                raise


class _VaultCredential:
    """What a vault's client sees: asking for a token means its challenge is known (open the gate)."""

    def __init__(self, shared: _SharedCredential, vault: _Vault):
        self._shared = shared
        self._vault = vault

    def get_token(self, *scopes, **kwargs):
        self._vault.ready.set()
        return self._shared.call("get_token", *scopes, **kwargs)

    def get_token_info(self, *scopes, options=None):
        self._vault.ready.set()
        return self._shared.call("get_token_info", *scopes, options=options)


class _DeadlineRetryPolicy(RetryPolicy):
    """azure-core's retries (defaults: 3 on connection errors, 3 on 429/5xx, exponential backoff,
    Retry-After honoured), but neither an attempt nor a wait runs past --deadline.

    A retry whose wait would end past the deadline is not made, so the caller sees the last real
    failure (connection refused, an untrusted certificate, 429) rather than a bare timeout.
    """

    def __init__(self, remaining: Callable[[], float], **kwargs):
        super().__init__(**kwargs)
        self._remaining = remaining

    def configure_retries(self, options):
        settings = super().configure_retries(options)
        settings["timeout"] = min(settings["timeout"], self._remaining())
        return settings

    def increment(self, settings, response=None, error=None):
        if not super().increment(settings, response=response, error=error):
            return False
        # With an error, `response` is the request: only a real answer carries Retry-After.
        return self._wait(settings, None if error is not None else response) < self._remaining()

    def sleep(self, settings, transport, response=None):
        wait = min(self._wait(settings, response), self._remaining())
        if wait > 0:
            transport.sleep(wait)

    def _wait(self, settings, response) -> float:
        retry_after = self.get_retry_after(response) if response is not None else None
        return retry_after or self.get_backoff_time(settings)


class KeyVaultProvider:
    name = "azurekeyvault"

    def __init__(self, context):
        self.context = context
        self.options = AzureOptions.from_context(context)
        self._deadline = None
        self._credential: Optional[_SharedCredential] = None
        self._vaults: dict[str, _Vault] = {}

    # ------------------------------------------------------------------------------ fetching

    def fetch_all(self, references, deadline):
        self._deadline = deadline
        outcomes = {}
        for item, result in self._per_vault(_distinct_secrets(references), self._read, deadline):
            if isinstance(result, Fetched):
                result = self._check_validity(item, result)
            for reference in item.references:
                outcomes[reference.fetch_key] = result
        return outcomes

    def _per_vault(self, wanted: list[_Wanted], work, deadline) -> list[tuple]:
        """[(item, work(item, vault) or its ShimError)], concurrently, each vault's first
        request going first (it learns the challenge)."""
        if not wanted:
            return []
        credential = self._shared_credential()
        credential.failure = None  # a new run may ask again
        vaults: dict[str, _Vault] = {}
        leaders, followers = [], []
        for item in wanted:
            if item.vault_url in vaults:
                followers.append(item)
                continue
            vaults[item.vault_url] = self._vault(item.vault_url)
            vaults[item.vault_url].start_run()
            leaders.append(item)
        # Leaders (each vault's first read) are queued first, so each gets a thread at once.
        ordered = leaders + followers
        jobs = [self._job(item, vaults[item.vault_url], work, leader=index < len(leaders))
                for index, item in enumerate(ordered)]
        results = run_concurrently(jobs, deadline, title="Key Vault",
                                   workers=MAX_CONCURRENT_READS)
        self._log_credential()
        return list(zip(ordered, results))

    def _job(self, item: _Wanted, vault: _Vault, work, *, leader: bool):
        """A leader reads at once; the others wait until it has the vault's challenge."""

        def run():
            if not leader:
                vault.ready.wait(max(0.0, self._remaining()))
                if vault.failure is not None:
                    return vault.failure
            try:
                return work(item, vault)
            except ShimError as error:
                if leader and getattr(error, "vault_wide", False):
                    vault.failure = error
                return error
            finally:
                if leader:
                    vault.ready.set()
        return run

    # --------------------------------------------- --watch change probes (shim.pipeline.probes)

    def probe_kind(self, reference) -> str:
        return "versions"

    def probe_all(self, references, deadline) -> tuple[dict, int]:
        """({fetch_key: a digest of the version(s) it reads}, requests made): each secret's
        versions list (properties only: ids, dates, enabled; never a value), one request per
        25 versions. Latest: the whole list, so a new version, a disabled or re-dated one, or
        one expiring changes the answer; a pinned version: that version's entry. "denied"
        where the identity may get but not list (an access policy without List; the RBAC role
        Key Vault Secrets User has both), or the list is longer than PROBE_PAGES pages."""
        self._deadline = deadline
        secrets: dict[tuple, _Wanted] = {}
        for item in _distinct_secrets(references):
            whole = secrets.setdefault((item.vault_url.lower(), item.name.lower()),
                                       _Wanted(item.vault_url, item.name, None))
            whole.references.extend(item.references)
        requests: list[int] = []
        answers = {}
        for item, listed in self._per_vault(list(secrets.values()),
                                            lambda item, vault: self._versions(item, vault,
                                                                               requests),
                                            deadline):
            for reference in item.references:
                answers[reference.fetch_key] = (_versions_answer(listed, reference.version)
                                                if isinstance(listed, list) else listed)
        return answers, len(requests)

    def _versions(self, item: _Wanted, vault: _Vault, requests: list):
        """The properties of every version of `item` (a list of tuples), or "denied"."""
        entries = []
        try:
            pages = vault.client.list_properties_of_secret_versions(
                item.name, max_page_size=VERSIONS_PER_PAGE,
                read_timeout=max(1.0, self._remaining())).by_page()
            for _ in range(PROBE_PAGES):
                requests.append(1)
                page = next(pages, None)
                if page is None:
                    break
                entries.extend(_version_entry(properties) for properties in page)
                if not pages.continuation_token:
                    break
            else:
                return "denied"     # longer than its read costs: read instead, stop asking
        except HttpResponseError as error:
            if error.status_code == 403:
                return "denied"
            raise _translate(error, item, self.context.environ) from None
        except (KeyError, TypeError, AttributeError, ValueError):
            return None     # an answer without Key Vault's shape: read, as without probes
        except Exception as error:  # every SDK failure becomes one ShimError (or is a bug)
            raise _translate(error, item, self.context.environ) from None
        return entries

    def _read(self, item: _Wanted, vault: _Vault) -> Fetched:
        try:
            secret = vault.client.get_secret(item.name, item.version,
                                             read_timeout=max(1.0, self._remaining()))
        except Exception as error:  # every SDK failure becomes one ShimError (or is a bug)
            raise _translate(error, item, self.context.environ) from None
        properties = secret.properties
        if secret.value is None:
            raise UnusableValue(f"secret {item.shown} in {item.host} has no value",
                                hint="set a value in the vault")
        meta = SecretMeta(version=properties.version, created=properties.created_on,
                          updated=properties.updated_on, expires=properties.expires_on,
                          not_before=properties.not_before, content_type=properties.content_type)
        return Fetched(secret.value, meta)

    def _check_validity(self, item: _Wanted, fetched: Fetched):
        """Expired or not yet valid: refused, unless every reference to it says allow_expired."""
        now = datetime.now(timezone.utc)
        meta = fetched.meta
        if meta.expires is not None and meta.expires <= now:
            problem = f"expired at {_iso(meta.expires)}"
        elif meta.not_before is not None and meta.not_before > now:
            problem = f"is not valid before {_iso(meta.not_before)}"
        else:
            return fetched
        allowed = all(reference.flag("allow_expired") for reference in item.references)
        reference = item.references[0].shown
        message = (f"{reference}: the secret {problem}"
                   + ("; used anyway (allow_expired=true)" if allowed else "; refused"))
        self.context.log.event("secret.expired", "warning", message, provider=self.name,
                               reference=reference, version=meta.version,
                               expires=_iso(meta.expires), not_before=_iso(meta.not_before),
                               allowed=allowed)
        if allowed:
            return fetched
        return PermissionDenied(
            f"the secret {problem}",
            hint="rotate it or fix its activation/expiry dates; to use it anyway add "
                 "?allow_expired=true to a ref+azurekeyvault:// reference")

    # --------------------------- for sops files whose data key a Key Vault key encrypted

    def decrypt_with_key(self, vault_url: str, name: str, version: str, ciphertext: bytes,
                         deadline) -> bytes:
        """RSA-OAEP-256 decryption by Key Vault key `name`, with this provider's credential.

        Bounded by the deadline like a read: the SDK's retries stop at it (the retry policy)
        and a call still hanging then is abandoned (call_within), giving Unavailable.
        """
        from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm  # lazy: only for a sops Key Vault key
        self._deadline = deadline
        key_id = f"{vault_url.rstrip('/')}/keys/{name}" + (f"/{version}" if version else "")
        where = SimpleNamespace(host=vault_url.split("://", 1)[-1].rstrip("/"), shown=f"key {name}")

        def decrypt() -> bytes:
            try:
                client = CryptographyClient(key_id, self._shared_credential().credential,
                                            **self._client_options(where.host))
                return client.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext).plaintext
            except HttpResponseError as error:
                if error.status_code == 403:
                    raise PermissionDenied(
                        f"Key Vault {where.host} denied decrypting with key {name}",
                        hint="grant the identity the 'Key Vault Crypto User' role (RBAC) or the "
                             "decrypt permission for keys (access policy)") from None
                if error.status_code == 400:
                    raise PermissionDenied(
                        f"Key Vault {where.host} could not decrypt with key {name}",
                        hint="the file was encrypted to another key or version") from None
                raise _translate(error, where, self.context.environ) from None
            except Exception as error:  # every other SDK failure becomes one ShimError (or is a bug)
                raise _translate(error, where, self.context.environ) from None

        return call_within(decrypt, deadline, title="Key Vault")

    # ----------------------------------------------------------------------- clients, tokens

    def _remaining(self) -> float:
        return self._deadline.remaining() if self._deadline is not None else 60.0

    def _shared_credential(self) -> _SharedCredential:
        if self._credential is None:
            self._credential = _SharedCredential(self._default_credential())
        return self._credential

    def _default_credential(self):
        kwargs = {"process_timeout": max(1, min(10, int(self._remaining())))}
        if self.options.ca_bundle:
            kwargs["connection_verify"] = self.options.ca_bundle
        if self.options.disable_instance_discovery:
            kwargs["disable_instance_discovery"] = True
        # The token endpoints' answers are capped too (IMDS, App Service, Entra ID).
        kwargs["transport"] = RequestsTransport(
            session=CappedSession(AZURE_BODY_CAP, "the Azure token endpoint"), session_owner=False,
            **({"connection_verify": self.options.ca_bundle} if self.options.ca_bundle else {}))
        if not os.environ.get("AZURE_TOKEN_CREDENTIALS"):
            kwargs.update({f"exclude_{name}_credential": True for name in _DESKTOP_ONLY})
        try:
            return DefaultAzureCredential(**kwargs)
        except ValueError as error:  # e.g. AZURE_TOKEN_CREDENTIALS names no credential
            raise ConfigError(f"the Azure credential cannot be set up: {_redact(str(error), {})}",
                              hint="check AZURE_TOKEN_CREDENTIALS and the AZURE_* variables") from None

    def _vault(self, url: str) -> _Vault:
        if url not in self._vaults:
            self._vaults[url] = _Vault(url, self._client_for)
        return self._vaults[url]

    def _client_for(self, vault: _Vault) -> SecretClient:
        return SecretClient(vault.url, _VaultCredential(self._shared_credential(), vault),
                            **self._client_options(vault.url[len("https://"):]))

    def _client_options(self, host: str) -> dict:
        """What every Key Vault client (secrets, keys) is built with."""
        kwargs = {"verify_challenge_resource": self.options.verify_challenge_resource,
                  "retry_policy": _DeadlineRetryPolicy(self._remaining)}
        transport_settings = {}
        if self.options.ca_bundle:
            transport_settings["connection_verify"] = self.options.ca_bundle
        # azure-core's requests transport on a session that reads at most the cap of each answer.
        session = CappedSession(AZURE_BODY_CAP, f"Key Vault {host}")
        kwargs["transport"] = RequestsTransport(session=session, session_owner=False,
                                                **transport_settings)
        return kwargs

    def _log_credential(self) -> None:
        chosen = getattr(self._credential.credential, "_successful_credential", None)
        if chosen is not None:
            self.context.log.event("azure.credential", "debug",
                                   f"authenticated to Key Vault with {type(chosen).__name__}",
                                   provider=self.name, credential=type(chosen).__name__)


def _version_entry(properties) -> tuple:
    """What a version's properties say about what a read would return (or refuse)."""
    now = datetime.now(timezone.utc)
    expires, not_before = properties.expires_on, properties.not_before
    valid = (expires is None or expires > now) and (not_before is None or not_before <= now)
    return (str(properties.version or "").lower(), properties.enabled is not False,
            _iso(properties.created_on), _iso(properties.updated_on), _iso(expires),
            _iso(not_before), valid)


def _versions_answer(entries: list, version: Optional[str]) -> Optional[str]:
    """A digest of the entries the reference depends on: all for latest, one for a pin."""
    if version is not None:
        entries = [entry for entry in entries if entry[0] == version.lower()]
        if len(entries) != 1:
            return None     # not listed: the read says what is wrong
    return hashlib.sha256(repr(sorted(entries)).encode()).hexdigest()


def _distinct_secrets(references) -> list[_Wanted]:
    """Group references by what the vault would return: names, versions and hosts ignore case."""
    wanted: dict[tuple, _Wanted] = {}
    for reference in references:
        vault_url, name = _LOCATOR.fullmatch(reference.locator).groups()
        key = (vault_url.lower(), name.lower(), (reference.version or "").lower())
        if key not in wanted:
            wanted[key] = _Wanted(vault_url, name, reference.version)
        wanted[key].references.append(reference)
    return list(wanted.values())


# ---------------------------------------------------------------------------------- errors

def _translate(error: Exception, item: _Wanted, environ) -> ShimError:
    """One ShimError per SDK failure; `vault_wide` marks failures that hold for the whole vault."""
    where = f"Key Vault {item.host}"
    if isinstance(error, ShimError):  # raised by shim's own code inside the SDK's pipeline
        return error
    if isinstance(error, ResourceNotFoundError):
        code = _service_codes(error)[0] or "SecretNotFound"
        return NotFound(f"secret {item.shown} does not exist in {where} ({code})",
                        hint="check the secret name and version (names use letters, digits, dashes)")
    if isinstance(error, ClientAuthenticationError) and error.status_code == 401:
        detail = _akv_detail(error)
        return _vault_wide(PermissionDenied(
            f"{where} rejected the token ({detail or _service_codes(error)[0] or 401})",
            hint="the identity must belong to the vault's tenant (AZURE_TENANT_ID) and ask for "
                 "the vault's audience"))
    if isinstance(error, ClientAuthenticationError):
        text = _redact(_attempts(str(error.message or error)), environ)
        return _vault_wide(PermissionDenied(
            f"could not get a token for {where}: {text}",
            hint="check the identity: AZURE_CLIENT_ID/AZURE_TENANT_ID, the managed or workload "
                 "identity, or `az login`; docs/azure.md lists what is tried"))
    if isinstance(error, HttpResponseError):
        status = error.status_code
        code, inner = _service_codes(error)
        if status == 403 and inner == "SecretDisabled":
            return PermissionDenied(f"secret {item.shown} is disabled in {where}",
                                    hint="enable it in the vault, or pin an enabled version")
        if status == 403:
            return PermissionDenied(
                f"{where} denied reading secret {item.shown} ({inner or code or 'Forbidden'})",
                hint="grant the identity the 'Key Vault Secrets User' role (RBAC) or a Get "
                     "permission for secrets (access policy), and check the vault's firewall")
        if status == 429 or (status or 0) >= 500:
            return Unavailable(f"{where} answered {status} ({code or 'no code'}) until retries "
                               "or the deadline ran out",
                               hint="the vault is throttling or failing; retry later or raise --deadline")
        return Unavailable(f"{where} answered {status} ({code or 'no code'})",
                           hint="see the Key Vault error code in the Azure documentation")
    if isinstance(error, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
        return _vault_wide(Unavailable(
            f"no answer from {where} within the deadline",
            hint="connection errors, 429 and 5xx were retried until --deadline"))
    if isinstance(error, ServiceRequestError):
        text = str(error)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            # Not transient: retrying cannot fix trust. Same class as Vault's TLS failure.
            return _vault_wide(ConfigError(
                f"the TLS certificate of {where} is not trusted",
                hint="trust its CA with SHIM_AZURE_CA_BUNDLE=/path/ca.pem (or REQUESTS_CA_BUNDLE)"))
        return _vault_wide(Unavailable(f"cannot reach {where} ({_network_reason(text)})",
                                       hint="check the vault URL, DNS, and network rules"))
    if isinstance(error, ServiceResponseError):
        return Unavailable(f"the connection to {where} failed during the answer "
                           f"({_network_reason(str(error))})", hint="retry later or raise --deadline")
    if isinstance(error, ValueError) and "challenge resource" in str(error):
        resource = re.search(r"resource '([^']*)'", str(error))
        return _vault_wide(ConfigError(
            f"{where} is not in the domain of the resource its challenge names "
            f"({resource.group(1) if resource else 'unknown'}), so no token is sent to it",
            hint="for a private endpoint or a custom host name set "
                 "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE=false"))
    if isinstance(error, AzureError):
        return Unavailable(f"reading from {where} failed ({type(error).__name__})",
                           hint="retry later or raise --deadline")
    if isinstance(error, RecursionError):
        return nested_too_deeply(f"the answer of {where}")
    if isinstance(error, (KeyError, TypeError, AttributeError, ValueError)):
        # The SDK's models read an answer that lacks Key Vault's shape.
        return Unavailable(f"the answer of {where} does not have Key Vault's shape "
                           f"({type(error).__name__})",
                           hint="check that the vault URL points at Key Vault itself")
    raise error


def _vault_wide(error: ShimError) -> ShimError:
    error.vault_wide = True
    return error


def _service_codes(error: HttpResponseError) -> tuple[Optional[str], Optional[str]]:
    """Key Vault's error code and inner error code, from the response body."""
    try:
        body = error.response.json()["error"]
    except Exception:  # no response, not JSON, another envelope
        return None, None
    inner = body.get("innererror") or {}
    return body.get("code"), inner.get("code") if isinstance(inner, dict) else None


def _attempts(text: str) -> str:
    """DefaultAzureCredential's report, one short clause per credential it tried."""
    attempts = re.findall(r"^\t(\w+): (.*)$", text, re.MULTILINE)
    if not attempts:
        return " ".join(text.split())[:300]
    clauses = []
    for name, detail in attempts:
        if "not fully configured" in detail:
            clauses.append(f"{name} not configured")
            continue
        detail = re.split(r" Trace ID: | To mitigate | Visit https?://", detail)[0].strip()
        clauses.append(f"{name}: {detail[:240]}")
    return "; ".join(clauses)


def _akv_detail(error: HttpResponseError) -> str:
    try:
        message = error.response.json()["error"]["message"]
    except Exception:
        return ""
    match = re.match(r"(AKV\d+: [^.]*\.)", message or "")
    return match.group(1) if match else ""


def _network_reason(text: str) -> str:
    match = re.search(r"\[Errno -?\d+\] [^'\")\]]+|Name or service not known|timed out|"
                      r"Connection refused|Connection reset by peer|Connection aborted", text)
    return match.group(0).strip() if match else "network error"


def _redact(text: str, environ) -> str:
    for name in _SENSITIVE_VARIABLES:
        for source in (environ, os.environ):
            value = source.get(name)
            if value and len(value) >= 4:
                text = text.replace(value, "[redacted]")
    return _TOKEN_SHAPED.sub("[token]", text)


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
