"""The data key: from the first master key the file lists that this machine can use.

Kinds are tried in a fixed order (age, pgp, aws kms, vault transit, azure key
vault), each kind's keys in file order; the first success wins. A key that
cannot be tried (no identity, no credentials) and a key that was tried and
refused are told apart, so the caller can say 78 or 77.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Callable, Mapping

from shim.providers.sops import services
from shim.providers.sops.metadata import KEY_KINDS, MasterKey
from shim.tools.errors import ConfigError, PermissionDenied, ShimError, Unavailable
from shim.providers.registry import load_provider
from shim.providers.base import ProviderContext
from shim.tools.safe_read import read_capped

ORDER = ("age", "pgp", "kms", "hc_vault", "azure_kv")
DATA_KEY_BYTES = 32
# What gpg may write when it opens a PGP data key (32 bytes): a compression bomb stops here.
MAX_PGP_OUTPUT_BYTES = 4096
# Age identity files and keys are small; anything larger is not one.
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFailure(Exception):
    """Why one master key gave no data key. `how`: unconfigured | refused | unreachable."""

    def __init__(self, how: str, why: str):
        super().__init__(why)
        self.how = how
        self.why = why


def data_key(group: list[MasterKey], environ: Mapping[str, str], deadline,
             log=None) -> tuple[bytes | None, list]:
    """The data key, or None and the KeyFailures, one per key tried."""
    failures = []
    identities = _Identities(environ, log)
    for kind in ORDER:
        for key in group:
            if key.kind != kind:
                continue
            try:
                value = _SOURCES[kind](key, identities, environ, deadline)
            except KeyFailure as failure:
                failures.append(failure)
                continue
            if len(value) != DATA_KEY_BYTES:
                failures.append(KeyFailure("refused", f"{KEY_KINDS[kind]} gave a data key of the wrong size"))
                continue
            return value, failures
    for key in group:
        if key.kind not in ORDER:
            failures.append(KeyFailure("unconfigured", f"shim does not read {KEY_KINDS[key.kind]} keys"))
    return None, failures


class _Identities:
    """Age identities, read once per file from where sops looks for them."""

    def __init__(self, environ, log):
        self.environ = environ
        self.log = log if log is not None else _QuietLog()
        self._age = None

    def age(self) -> tuple[list, list[str]]:
        if self._age is None:
            self._age = _load_age_identities(self.environ)
        return self._age


# --- age ---------------------------------------------------------------------------

def _age(key: MasterKey, identities: _Identities, environ, deadline) -> bytes:
    try:
        import pyrage  # lazy: the sops extra, only for an age key
    except ImportError:
        raise KeyFailure("unconfigured", "pyrage is not installed (shim-secrets[sops])") from None
    parsed, places = identities.age()
    if not parsed:
        raise KeyFailure("unconfigured",
                         "no age identity (set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)")
    try:
        ciphertext = dearmor_age(key.enc)
    except ValueError:
        raise KeyFailure("refused", "its age data key is not an age message") from None
    try:
        return pyrage.decrypt(ciphertext, parsed)
    except Exception:   # pyrage raises its own DecryptError (and others) for refusals
        raise KeyFailure("refused", f"no age identity in {', '.join(places)} opens it") from None


def _load_age_identities(environ) -> tuple[list, list[str]]:
    import pyrage  # lazy: the sops extra, only for an age key
    texts = []
    if environ.get("SOPS_AGE_KEY"):
        texts.append(("SOPS_AGE_KEY", environ["SOPS_AGE_KEY"]))
    if environ.get("SOPS_AGE_KEY_FILE"):
        texts.append(("SOPS_AGE_KEY_FILE", _read_key_file(environ["SOPS_AGE_KEY_FILE"])))
    config = environ.get("XDG_CONFIG_HOME") or (
        os.path.join(environ["HOME"], ".config") if environ.get("HOME") else "")
    if config:
        default = os.path.join(config, "sops", "age", "keys.txt")
        if os.path.lexists(default):
            texts.append((default, _read_key_file(default)))
    parsed, places = [], []
    for place, text in texts:
        found = False
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("AGE-SECRET-KEY-"):
                continue    # comments, blank lines, public key notes
            try:
                parsed.append(pyrage.x25519.Identity.from_str(line))
                found = True
            except Exception:   # pyrage's IdentityError; the line is never quoted
                raise KeyFailure("unconfigured", f"{place} holds a malformed age identity") from None
        if found:
            places.append(place)
    return parsed, places


def _read_key_file(path: str) -> str:
    try:
        content = read_capped(path, cap=MAX_KEY_FILE_BYTES, what="age key file",
                              size_text="64 KiB")
    except ShimError as error:
        raise KeyFailure("unconfigured", error.message) from None
    return content.decode("utf-8", "replace")


AGE_ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
AGE_ARMOR_END = "-----END AGE ENCRYPTED FILE-----"


def dearmor_age(text: str) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 2 or lines[0] != AGE_ARMOR_BEGIN or lines[-1] != AGE_ARMOR_END:
        raise ValueError("not armored")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        raise ValueError("bad base64") from None


def armor_age(data: bytes) -> str:
    body = base64.b64encode(data).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([AGE_ARMOR_BEGIN, *lines, AGE_ARMOR_END]) + "\n"


# --- pgp -----------------------------------------------------------------------------

def _pgp(key: MasterKey, identities, environ, deadline) -> bytes:
    try:
        import gnupg  # lazy: the sops extra, only for a PGP key
    except ImportError:
        raise KeyFailure("unconfigured", "python-gnupg is not installed (shim-secrets[sops])") from None
    try:
        # --max-output: the stanza is data, and a few hundred bytes of bzip2 inflate to any
        # size; python-gnupg would buffer all of it. A data key is 32 bytes.
        gpg = gnupg.GPG(gnupghome=environ.get("GNUPGHOME") or None,
                        options=["--pinentry-mode", "loopback",
                                 "--max-output", str(MAX_PGP_OUTPUT_BYTES)])
    except (OSError, ValueError, RuntimeError):
        raise KeyFailure("unconfigured", "gpg is not installed or GNUPGHOME is unusable") from None
    result = gpg.decrypt(key.enc)
    if result.ok:
        return bytes(result.data)
    status = (result.status or "").lower()
    if "no secret key" in status or "no_seckey" in status:
        raise KeyFailure("unconfigured", f"no PGP secret key for {_short(key.fields.get('fp'))} "
                                         "in the keyring (GNUPGHOME)")
    raise KeyFailure("refused", f"gpg could not decrypt with {_short(key.fields.get('fp'))}")


# --- aws kms ---------------------------------------------------------------------------

def _kms(key: MasterKey, identities, environ, deadline) -> bytes:
    try:
        import boto3  # lazy: the aws extra, only for a KMS key
        from botocore.config import Config  # lazy: the aws extra, only for a KMS key
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # lazy: the aws extra, only for a KMS key
        from shim.providers.aws.common import transient_reason  # lazy: the aws extra, only for a KMS key
    except ImportError:
        raise KeyFailure("unconfigured", "boto3 is not installed (shim-secrets[aws])") from None
    from shim.providers.mechanism import retry  # lazy: only when a store is asked
    arn = key.fields.get("arn")
    if not isinstance(arn, str) or ":kms:" not in arn or arn.count(":") < 5:
        raise KeyFailure("refused", "an aws kms key has no usable arn")
    region = arn.split(":")[3]
    # The region is the only part of the endpoint a file chooses (AWS_ENDPOINT_URL, the
    # operator's, wins): it must be a region, so the host stays AWS's KMS endpoint for it.
    if not services.aws_region_ok(region):
        raise KeyFailure("refused", "its aws kms arn names no AWS region (the file was edited?)")
    try:
        blob = base64.b64decode(key.enc, validate=True)
    except binascii.Error:
        raise KeyFailure("refused", "its aws kms data key is not base64") from None
    context = key.fields.get("context") or {}
    if not isinstance(context, dict):
        raise KeyFailure("refused", "its aws kms encryption context is not a mapping")
    timeout = max(0.1, min(10.0, deadline.remaining()))
    # One attempt per call: mechanism.retry retries (throttling, 5xx, connection errors)
    # until the deadline, as for every store.
    config = Config(retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=timeout, read_timeout=timeout, user_agent_extra="shim")

    def decrypt() -> bytes:
        session = boto3.session.Session(profile_name=key.fields.get("aws_profile") or None)
        if key.fields.get("role"):
            session = _assumed(session, key.fields["role"], region, config)
        client = session.client("kms", region_name=region, config=config)
        answer = client.decrypt(CiphertextBlob=blob, KeyId=arn,
                                EncryptionContext={str(k): str(v) for k, v in context.items()})
        return answer["Plaintext"]

    def attempts() -> bytes:
        return retry(decrypt, deadline, identities.log, provider="sops", title="AWS KMS",
                     operation="Decrypt", transient=transient_reason,
                     hint="KMS is throttling, failing or unreachable; check the endpoint and "
                          "network, or raise --deadline")
    try:
        return _within(attempts, deadline, "AWS KMS", region[:30])
    except NoCredentialsError:
        raise KeyFailure("unconfigured", "boto3 found no AWS credentials") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise KeyFailure("refused", f"aws kms refused {_short(arn, 90)} ({code[:40]})") from None
    except BotoCoreError as error:
        if "profile" in type(error).__name__.lower():
            raise KeyFailure("unconfigured", "the aws_profile it names is not configured") from None
        raise KeyFailure("unreachable", f"aws kms in {region[:30]} could not be reached "
                                        f"({type(error).__name__})") from None


def _within(job: Callable, deadline, title: str, where: str):
    """job() bounded by the deadline: a key service still silent then is 'unreachable'.

    The call runs on the providers' runner (call_within), so a store that accepts the
    connection and never answers cannot hold shim past --deadline.
    """
    from shim.providers.mechanism import call_within  # lazy: only when a store is asked
    try:
        return call_within(job, deadline, title=title)
    except Unavailable as error:
        raise KeyFailure("unreachable", f"{error.message} ({_short(where)})") from None


def _assumed(session, role: str, region: str, config):
    answer = session.client("sts", region_name=region, config=config).assume_role(
        RoleArn=role, RoleSessionName="shim-sops")
    credentials = answer["Credentials"]
    import boto3  # lazy: the aws extra, only for a KMS key
    return boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                 aws_secret_access_key=credentials["SecretAccessKey"],
                                 aws_session_token=credentials["SessionToken"])


# --- vault transit -------------------------------------------------------------------------

def _vault_transit(key: MasterKey, identities: _Identities, environ, deadline) -> bytes:
    """Decrypt with Vault transit at the key's vault_address, logged in as the vault provider does."""
    address, engine, name = (key.fields.get(field) for field in
                             ("vault_address", "engine_path", "key_name"))
    if not all(isinstance(v, str) and v for v in (address, engine, name)):
        raise KeyFailure("refused", "a vault transit key lacks vault_address, engine_path or key_name")
    # Checked before any login or request: the file may not choose where the token goes, nor
    # which Vault path it is used on.
    if not services.vault_allowed(address, environ):
        raise KeyFailure("refused", f"its vault transit key names {_short(address)}, which is "
                                    f"neither VAULT_ADDR nor listed in {services.ALLOW_LIST_VARIABLE} "
                                    "(set one of them if that Vault is yours)")
    ok, field = services.transit_path_ok(engine, name)
    if not ok:
        raise KeyFailure("refused", f"its vault transit {field} is not a transit mount path or key "
                                    "name (letters, digits, _ - . segments)")
    try:
        # The operator's own address when the file names it (BAO_ADDR wins over VAULT_ADDR,
        # as for every Vault read); else the allow-listed address, under both names.
        operator = environ.get("BAO_ADDR") or environ.get("VAULT_ADDR")
        addressed = environ if services.origin(address) == services.origin(operator) \
            else {**environ, "VAULT_ADDR": address, "BAO_ADDR": address}
        provider = load_provider("vault", ProviderContext(addressed, identities.log))
        plaintext = _within(lambda: provider.transit_decrypt(engine, name, key.enc, deadline),
                            deadline, "Vault transit", address)
    except Unavailable:
        raise KeyFailure("unreachable", f"vault at {_short(address)} could not be reached") from None
    except ConfigError as error:
        raise KeyFailure("unconfigured", f"vault transit: {error.message}") from None
    except (PermissionDenied, ShimError) as error:
        raise KeyFailure("refused", f"vault transit: {error.message}") from None
    # sops sends base64(data key) as transit's plaintext, which transit itself takes in base64:
    # Vault stores the data key's bytes, and transit.decrypt has already undone Vault's base64.
    return plaintext


# --- azure key vault keys ------------------------------------------------------------------

def _azure_key(key: MasterKey, identities: _Identities, environ, deadline) -> bytes:
    """RSA-OAEP-256 by the named Key Vault key, with the azure provider's credential."""
    url, name = key.fields.get("vault_url"), key.fields.get("name")
    version = key.fields.get("version") or ""
    if not all(isinstance(v, str) and v for v in (url, name)) or not isinstance(version, str):
        raise KeyFailure("refused", "an azure key vault key lacks vault_url or name")
    try:
        # sops writes the RSA result in base64url without padding.
        ciphertext = base64.urlsafe_b64decode(key.enc + "=" * (-len(key.enc) % 4))
    except (binascii.Error, ValueError):
        raise KeyFailure("refused", "its azure key vault data key is not base64url") from None
    try:
        if not _azure_vault_allowed(url, environ):
            raise KeyFailure("refused", f"its azure key vault key names {_short(url)}, which is not "
                                        f"listed in {services.ALLOW_LIST_VARIABLE} (needed while "
                                        "SHIM_AZURE_VERIFY_CHALLENGE_RESOURCE is off)")
        provider = load_provider("azurekeyvault", ProviderContext(environ, identities.log))
        return provider.decrypt_with_key(url, name, version, ciphertext, deadline)
    except ImportError:
        raise KeyFailure("unconfigured", "azure-keyvault-keys is not installed (shim-secrets[azure])") from None
    except Unavailable as error:
        raise KeyFailure("unreachable", f"azure key vault: {error.message}") from None
    except ConfigError as error:
        raise KeyFailure("unconfigured", f"azure key vault: {error.message}") from None
    except ShimError as error:
        raise KeyFailure("refused", f"azure key vault: {error.message}") from None


def _azure_vault_allowed(url: str, environ) -> bool:
    """With challenge verification on (the default), azure-keyvault only sends a token to a
    host in the domain of the resource Key Vault's challenge names, so a file cannot route it.
    Off (private endpoints), nothing checks the host: only an allow-listed vault is used."""
    from shim.providers.azure import AzureOptions  # lazy: the azure extra, only for a Key Vault key
    options = AzureOptions.from_context(ProviderContext(environ, None))
    return options.verify_challenge_resource or services.service_allowed(url, environ)


class _QuietLog:
    """For callers without a log (dev-init): the vault provider's events go nowhere."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _short(text, limit: int = 60) -> str:
    text = str(text or "?")
    return text if len(text) <= limit else text[:limit - 3] + "..."


_SOURCES: dict[str, Callable] = {
    "age": _age, "pgp": _pgp, "kms": _kms, "hc_vault": _vault_transit, "azure_kv": _azure_key,
}
