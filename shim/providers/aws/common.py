"""AWS Secrets Manager and SSM Parameter Store, on boto3 (the `aws` extra).

This module is imported only when a plan holds an AWS reference, so boto3 is
imported at the top: a missing SDK then surfaces as the registry's clean
"provider awssecrets is not available: install shim-secrets[aws]" (exit 78).

What one run does:

- One boto3 session per provider (the two providers run in separate threads
  and a boto3 session is not thread-safe), one client per region per
  resolution, both made on first use. Credentials come from boto3's
  standard chain (environment, web identity, ECS container role, instance
  role, profiles); shim adds none and leaves the app's AWS_* variables
  alone. The region is the ARN's when the reference names one (or
  `?region=`), else AWS_REGION / AWS_DEFAULT_REGION, else the profile's.
- Secrets Manager: every reference that wants AWSCURRENT is read with
  BatchGetSecretValue, at most 20 secret ids per call, per region. The batch
  call only ever returns AWSCURRENT, so references pinning another
  version_stage or a version_id are read one by one with GetSecretValue.
  Where the batch call itself is denied (an IAM policy that allows only
  GetSecretValue) or a store does not know it, the same secrets are read one
  by one instead; per-secret transient errors are retried the same way.
- Parameter Store: GetParameters with WithDecryption=True, at most 10 names
  per call, per region; `name:3` and `name:label` go in the name as SSM
  expects. A batch never holds two selectors of one parameter, so each
  returned parameter maps back to exactly one request. The Secrets Manager
  pass-through `/aws/reference/secretsmanager/<name>` is read with
  GetParameter (its answers carry the secret's name, not the path asked for).
  A name ending in `/` is a path (what `--import ref+awsssm:///app/prod/`
  names): GetParametersByPath, recursive, decrypted, every page followed,
  read once into one map of names relative to the path.
- Groups run concurrently on shim.providers.mechanism's runner (abandoned at
  the deadline, however slowly an answer trickles in); each distinct
  (secret, version) is read once.
- Retries: botocore makes one attempt per call (its own back-off sleeps are
  not bounded by --deadline and would be invisible in the log); the shared
  retry (shim.providers.mechanism.retry) retries throttling, 5xx and
  connection failures, never sleeping past the deadline, logging
  `provider.retry` each time, then gives up with Unavailable (69) naming the
  last error code. Each client's connect/read timeouts are bounded by the
  time left when it is made.

Failures map to exit codes: not found / deleted → 66, access or KMS
decryption denied and rejected credentials → 77, throttled / 5xx /
unreachable after retries → 69, no region → 78, SecretBinary that is not
UTF-8 → 65. Messages carry the service's error code, never its free text
(and never a value); the resolver adds the variable and canonical reference.

Longer than our other modules on purpose: two services that share clients, batching and
error mapping, kept side by side so that a change to one is checked against the other.
"""

from __future__ import annotations

import re
import threading
from datetime import timezone

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError, ClientError, ConnectionError as BotoConnectionError, HTTPClientError,
    NoCredentialsError, NoRegionError, PartialCredentialsError,
)

from shim.tools.errors import ConfigError, NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue, UsageError
from shim.providers.base import Fetched, SecretMeta, nested_too_deeply
from shim.providers.bodycap import AWS_BODY_CAP, cap_botocore_client
from shim.providers.mechanism import by_fetch_key, retry, run_concurrently

SECRETS_PER_BATCH = 20          # BatchGetSecretValue's SecretIdList limit
# What a malformed answer raises in botocore's parser or in shim's reading of it.
_ODD_ANSWER = (RecursionError, KeyError, TypeError, AttributeError, ValueError)
PARAMETERS_PER_BATCH = 10       # GetParameters' Names limit
MAX_CONCURRENT_CALLS = 8
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0

THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "ProvisionedThroughputExceededException", "EC2ThrottledException",
})
TRANSIENT_CODES = frozenset({
    "InternalServiceError", "InternalServiceErrorException", "InternalServerError",
    "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException",
    "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
})
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
    "SignatureDoesNotMatch", "IncompleteSignature", "MissingAuthenticationToken",
    "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "AuthFailure",
})
DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})
# The batch call itself failing with one of these: read the same items one by one.
UNSUPPORTED_CODES = frozenset({"UnknownOperationException", "InvalidAction", "NotImplemented"})

PASS_THROUGH_PREFIX = "/aws/reference/secretsmanager/"
_ARN_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}\Z")


class _AwsProvider:
    """What both stores share: clients, the retry loop, concurrent groups."""

    name = ""
    service = ""            # boto3 service name
    title = ""              # how messages name the service
    access_hint = ""        # what to allow when access is denied

    def __init__(self, context):
        self.context = context
        self._session = None
        self._clients: dict[str | None, object] = {}
        self._clients_deadline = None
        self._lock = threading.Lock()

    # --- clients ------------------------------------------------------------

    def region_of(self, reference) -> str | None:
        environ = self.context.environ
        return (reference.option("region") or environ.get("AWS_REGION")
                or environ.get("AWS_DEFAULT_REGION") or None)

    def client(self, region: str | None, deadline):
        with self._lock:
            if deadline is not self._clients_deadline:
                # A new resolution (--watch re-resolves with the same provider):
                # fresh clients, their timeouts bounded by this deadline.
                self._clients, self._clients_deadline = {}, deadline
            if region not in self._clients:
                if self._session is None:
                    self._session = boto3.session.Session()
                config = Config(
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=_bounded(CONNECT_TIMEOUT, deadline),
                    read_timeout=_bounded(READ_TIMEOUT, deadline),
                    user_agent_extra="shim")
                # NoRegionError propagates: client_failure turns it into exit 78.
                client = self._session.client(self.service, region_name=region, config=config)
                cap_botocore_client(client, AWS_BODY_CAP, self.title)
                self._clients[region] = client
            return self._clients[region]

    # --- one API call, retried within the deadline ----------------------------

    def call(self, client, operation: str, params: dict, reference, deadline, *, batch=1):
        """The response of `operation`; raises ClientError for what retrying cannot fix."""
        attempts = [0]

        def attempt():
            attempts[0] += 1
            self.context.log.event(
                "provider.call", "debug", None, provider=self.name, operation=operation,
                region=client.meta.region_name, items=batch, attempt=attempts[0])
            return getattr(client, _snake(operation))(**params)

        try:
            return retry(attempt, deadline, self.context.log, provider=self.name,
                         title=self.title, operation=operation, transient=transient_reason,
                         hint="the service is throttling, failing or unreachable; check the "
                              "endpoint and network, or raise --deadline",
                         reference=reference.shown, items=batch)
        except BotoCoreError as error:
            raise self.client_failure(error) from None

    def single_read(self, region, refs, deadline, read) -> dict:
        """One un-batched read shared by `refs`: its Fetched, or the error it ended in."""
        try:
            outcome = read(self.client(region, deadline))
        except ClientError as error:
            outcome = self.failure(error, refs[0])
        except BotoCoreError as error:
            outcome = self.client_failure(error)
        except _ODD_ANSWER as error:
            outcome = self.odd_answer(error)
        except ShimError as error:
            outcome = error
        return {reference.fetch_key: outcome for reference in refs}

    def client_failure(self, error: BotoCoreError) -> ShimError:
        """botocore's own failures (no HTTP answer to map)."""
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return PermissionDenied(
                f"{self.title}: no AWS credentials found ({type(error).__name__})",
                hint="give the task or pod an IAM role, or set AWS_ACCESS_KEY_ID / "
                     "AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if isinstance(error, NoRegionError):
            return ConfigError(f"{self.title}: no AWS region for this reference",
                               hint="set AWS_REGION, add ?region=<region>, or use the full ARN "
                                    "(it names the region)")
        return Unavailable(f"{self.title}: {type(error).__name__}",
                           hint="check the AWS credentials source and the network")

    def common_failure(self, code: str, status: int | None, message: str) -> ShimError | None:
        """Failures both services report alike; None when the service must decide."""
        if code in DENIED_CODES or (status == 403 and code not in CREDENTIAL_CODES):
            if _mentions_kms(message):
                return PermissionDenied(
                    f"{self.title}: {code} (KMS decryption denied)",
                    hint="allow kms:Decrypt on the KMS key that encrypts it "
                         "for the role shim runs as")
            return PermissionDenied(f"{self.title}: {code} (access denied)",
                                    hint=self.access_hint)
        if code in CREDENTIAL_CODES:
            return PermissionDenied(
                f"{self.title}: {code} (the AWS credentials were rejected)",
                hint="check which credentials boto3 found: task role, AWS_* variables or profile")
        if code in ("ValidationException", "InvalidParameterException"):
            return UsageError(f"{self.title}: {code} (the service rejected the request)",
                              hint="check the reference against docs/aws.md")
        return None

    # --- running groups concurrently ------------------------------------------

    def run_groups(self, groups, deadline) -> dict:
        """groups: [(keys, callable -> {key: Outcome})]; every key gets an Outcome."""
        def guarded(keys, work):
            try:
                return work()
            except ClientError as error:
                failure = self.failure(error, None)
                return {key: failure for key in keys}
            except BotoCoreError as error:
                failure = self.client_failure(error)
                return {key: failure for key in keys}
            except _ODD_ANSWER as error:
                failure = self.odd_answer(error)
                return {key: failure for key in keys}

        outcomes: dict = {}
        results = run_concurrently([_bind(guarded, keys, work) for keys, work in groups],
                                   deadline, title=self.title, workers=MAX_CONCURRENT_CALLS)
        for (keys, _work), result in zip(groups, results):
            outcomes.update({key: result for key in keys} if isinstance(result, ShimError)
                            else result)
        return outcomes

    def failure(self, error: ClientError, reference) -> ShimError:
        """The ShimError for a service error that retrying cannot fix (per store)."""
        raise NotImplementedError

    def odd_answer(self, error: Exception) -> ShimError:
        """An answer without the shape every answer of the service has (botocore's parser
        or shim's reading of it failed): not the secret, and not shim's fault."""
        if isinstance(error, RecursionError):
            return nested_too_deeply(f"{self.title}'s answer")
        return Unavailable(f"{self.title}: the answer does not have the service's shape "
                           f"({type(error).__name__})",
                           hint="check that AWS_ENDPOINT_URL (or the proxy) points at the service")


class SecretsManagerProvider(_AwsProvider):
    """`arn:aws:secretsmanager:...` (ECS) and `ref+awssecrets://` references.

    AWSCURRENT reads are batched with BatchGetSecretValue (20 ids a call);
    that call returns only AWSCURRENT, so a pinned version_stage or version_id
    is read on its own with GetSecretValue.
    """

    name = "awssecrets"
    service = "secretsmanager"
    title = "Secrets Manager"
    access_hint = ("allow secretsmanager:GetSecretValue on this secret for the role shim runs as")

    def fetch_all(self, references, deadline):
        batched: dict[str | None, dict[str, list]] = {}   # region -> secret id -> references
        pinned: dict[tuple, list] = {}      # (region, id, stage, version id) -> references
        for reference in _first_of_each(references):
            region = self.region_of(reference)
            stage = reference.option("version_stage")
            version_id = reference.option("version_id")
            if version_id or (stage and stage != "AWSCURRENT"):
                pinned.setdefault((region, reference.locator, stage, version_id),
                                  []).append(reference)
            else:
                batched.setdefault(region, {}).setdefault(reference.locator, []).append(reference)

        groups = []
        for region, by_id in batched.items():
            ids = list(by_id)
            for start in range(0, len(ids), SECRETS_PER_BATCH):
                chunk = {secret_id: by_id[secret_id]
                         for secret_id in ids[start:start + SECRETS_PER_BATCH]}
                groups.append((_keys(chunk), _bind(self._batch, region, chunk, deadline)))
        for (region, secret_id, stage, version_id), refs in pinned.items():
            work = _bind(self._single, region, secret_id, stage, version_id, refs, deadline)
            groups.append((_keys({secret_id: refs}), work))
        return self.run_groups(groups, deadline)

    def _batch(self, region, by_id: dict[str, list], deadline) -> dict:
        ids = list(by_id)
        first = by_id[ids[0]][0]
        if len(ids) == 1:
            # One call either way, and GetSecretValue needs no batch permission.
            return self._single(region, ids[0], None, None, by_id[ids[0]], deadline)
        client = self.client(region, deadline)
        values, errors = [], []
        params = {"SecretIdList": ids}
        try:
            while True:
                response = self.call(client, "BatchGetSecretValue", params, first, deadline,
                                     batch=len(ids))
                values += response.get("SecretValues") or []
                errors += response.get("Errors") or []
                token = response.get("NextToken")
                if not token:
                    break
                params = {"SecretIdList": ids, "NextToken": token}
        except ClientError as error:
            code = _code(error)
            if code in DENIED_CODES or code in UNSUPPORTED_CODES:
                self.context.log.event(
                    "provider.fallback", "info",
                    f"{self.title}: BatchGetSecretValue answered {code}; reading "
                    f"{len(ids)} secrets one by one with GetSecretValue",
                    provider=self.name, reason=code, items=len(ids))
                return self._singles(region, by_id, deadline)
            raise

        found = _SecretIndex(values)
        error_codes = {entry.get("SecretId"): entry.get("ErrorCode") or "" for entry in errors}
        messages = {entry.get("SecretId"): entry.get("Message") or "" for entry in errors}
        outcomes: dict = {}
        again: dict[str, list] = {}
        for secret_id, refs in by_id.items():
            entry = found.lookup(secret_id)
            code = error_codes.get(secret_id)
            if entry is not None:
                outcome = self._outcome(entry)
            elif code and code not in THROTTLING_CODES and code not in TRANSIENT_CODES:
                outcome = self._failure_for_code(code, None, messages.get(secret_id, ""), refs[0])
            else:
                # Transient per-secret error, or an answer we could not map back:
                # ask for this one alone (with its own retries).
                again[secret_id] = refs
                continue
            for reference in refs:
                outcomes[reference.fetch_key] = outcome
        if again:
            outcomes.update(self._singles(region, again, deadline))
        return outcomes

    def _singles(self, region, by_id: dict[str, list], deadline) -> dict:
        outcomes: dict = {}
        for secret_id, refs in by_id.items():
            outcomes.update(self._single(region, secret_id, None, None, refs, deadline))
        return outcomes

    def _single(self, region, secret_id, stage, version_id, refs, deadline) -> dict:
        params = {"SecretId": secret_id}
        if stage:
            params["VersionStage"] = stage
        if version_id:
            params["VersionId"] = version_id
        return self.single_read(region, refs, deadline, lambda client: self._outcome(
            self.call(client, "GetSecretValue", params, refs[0], deadline)))

    def _outcome(self, entry: dict):
        meta = SecretMeta(version=entry.get("VersionId"), created=_utc(entry.get("CreatedDate")))
        text, binary = entry.get("SecretString"), entry.get("SecretBinary")
        if (text is not None and not isinstance(text, str)) or (
                text is None and binary is not None and not isinstance(binary, (bytes, bytearray))):
            # SecretString is text and SecretBinary bytes in every real answer.
            return UnusableValue(f"{self.title}: the answer holds a value of the wrong type",
                                 hint="check that AWS_ENDPOINT_URL (or the proxy) points at the "
                                      "service")
        if text is not None:
            return Fetched(text, meta)
        if binary is not None:
            binary = bytes(binary)
            try:
                binary.decode("utf-8")
            except UnicodeDecodeError:
                return UnusableValue(
                    f"{self.title}: the secret holds SecretBinary that is not UTF-8 text",
                    hint="an environment variable holds text: store it as SecretString "
                         "(base64-encode binary data)")
            return Fetched(binary, meta)
        return NotFound(f"{self.title}: the secret version has no value",
                        hint="put a value with PutSecretValue")

    def failure(self, error: ClientError, reference) -> ShimError:
        return self._failure_for_code(_code(error), _status(error), _message(error), reference)

    def _failure_for_code(self, code: str, status, message: str, reference) -> ShimError:
        pinned = reference is not None and (reference.option("version_stage")
                                            or reference.option("version_id"))
        if code == "ResourceNotFoundException":
            what = "secret or version not found" if pinned else "secret not found"
            return NotFound(f"{self.title}: {code} ({what})",
                            hint="check the secret name or ARN"
                                 + (", its region and the version stage or id" if pinned
                                    else " and its region")
                                 + " (aws secretsmanager describe-secret)")
        if code == "InvalidRequestException":
            return NotFound(f"{self.title}: {code} (the secret is scheduled for deletion "
                            "or cannot be read in its current state)",
                            hint="restore it (aws secretsmanager restore-secret) "
                                 "or point at another secret")
        if code == "DecryptionFailure":
            return PermissionDenied(
                f"{self.title}: {code} (KMS decryption denied)",
                hint="allow kms:Decrypt on the secret's KMS key for the role shim runs as")
        common = self.common_failure(code, status, message)
        if common is not None:
            return common
        return Unavailable(f"{self.title}: {code or 'unexpected error'}",
                           hint="see the AWS documentation of this error code")


class ParameterStoreProvider(_AwsProvider):
    """`arn:aws:ssm:...:parameter/...` (ECS) and `ref+awsssm://` references."""

    name = "awsssm"
    service = "ssm"
    title = "SSM Parameter Store"
    access_hint = ("allow ssm:GetParameters and ssm:GetParameter on this parameter "
                   "(ssm:GetParametersByPath on a path) "
                   "for the role shim runs as")

    def fetch_all(self, references, deadline):
        batched: dict[str | None, dict[str, list]] = {}   # region -> name[:selector] -> refs
        alone: dict[tuple, list] = {}
        paths: list = []
        for reference in _first_of_each(references):
            region = self.region_of(reference)
            request = _parameter_request(reference)
            if reference.locator.endswith("/"):
                paths.append(reference)
            elif reference.locator.startswith(PASS_THROUGH_PREFIX):
                alone.setdefault((region, request), []).append(reference)
            else:
                batched.setdefault(region, {}).setdefault(request, []).append(reference)

        groups = []
        for region, by_request in batched.items():
            for chunk in _parameter_batches(by_request):
                groups.append((_keys(chunk), _bind(self._batch, region, chunk, deadline)))
        for (region, request), refs in alone.items():
            groups.append((_keys({request: refs}),
                           _bind(self._single, region, request, refs, deadline)))
        for reference in paths:
            groups.append(([reference.fetch_key],
                           _bind(self._path, self.region_of(reference), reference, deadline)))
        return self.run_groups(groups, deadline)

    def _path(self, region, reference, deadline) -> dict:
        """Every parameter under a path, one map of relative name -> value (all pages)."""
        path = reference.locator

        def read(client) -> Fetched:
            values, newest, token = {}, None, None
            while True:
                params = {"Path": path.rstrip("/") or "/", "Recursive": True,
                          "WithDecryption": True}
                if token:
                    params["NextToken"] = token
                page = self.call(client, "GetParametersByPath", params, reference, deadline)
                for parameter in page.get("Parameters") or []:
                    name = parameter.get("Name", "")
                    values[name[len(path):] if name.startswith(path) else name.lstrip("/")] = \
                        parameter.get("Value", "")
                    updated = _utc(parameter.get("LastModifiedDate"))
                    if updated is not None and (newest is None or updated > newest):
                        newest = updated
                token = page.get("NextToken")
                if not token:
                    break
            if not values:
                raise NotFound(f"{self.title}: no parameter under this path",
                               hint="check the path and its region (paths start with /)")
            return Fetched(values, SecretMeta(updated=newest))

        return self.single_read(region, [reference], deadline, read)

    def _batch(self, region, by_request: dict[str, list], deadline) -> dict:
        names = list(by_request)
        first = by_request[names[0]][0]
        if len(names) == 1:
            # One call either way; GetParameter's answer needs no mapping back.
            return self._single(region, names[0], by_request[names[0]], deadline)
        client = self.client(region, deadline)
        try:
            response = self.call(client, "GetParameters",
                                 {"Names": names, "WithDecryption": True}, first, deadline,
                                 batch=len(names))
        except ClientError as error:
            code = _code(error)
            # One name the caller may not read (or decrypt), or that the call
            # rejects, fails the whole call: find out which, one by one.
            if code in DENIED_CODES or code in UNSUPPORTED_CODES or code in (
                    "ParameterNotFound", "ValidationException", "InvalidKeyId"):
                self.context.log.event(
                    "provider.fallback", "info",
                    f"{self.title}: GetParameters answered {code}; reading "
                    f"{len(names)} parameters one by one with GetParameter",
                    provider=self.name, reason=code, items=len(names))
                outcomes: dict = {}
                for name in names:
                    outcomes.update(self._single(region, name, by_request[name], deadline))
                return outcomes
            raise

        # A batch holds one request per parameter, so the name maps back.
        by_name = {_base_name(parameter.get("Name", "")): parameter
                   for parameter in response.get("Parameters") or []}
        invalid = set(response.get("InvalidParameters") or [])
        outcomes = {}
        for request, refs in by_request.items():
            parameter = by_name.get(_base_name(request.split(":", 1)[0]))
            if parameter is not None and request not in invalid:
                outcome = self._outcome(parameter)
            elif request in invalid:
                outcome = self._not_found("InvalidParameters", refs[0])
            else:
                outcomes.update(self._single(region, request, refs, deadline))
                continue
            for reference in refs:
                outcomes[reference.fetch_key] = outcome
        return outcomes

    def _single(self, region, request, refs, deadline) -> dict:
        params = {"Name": request, "WithDecryption": True}
        return self.single_read(region, refs, deadline, lambda client: self._outcome(
            self.call(client, "GetParameter", params, refs[0], deadline)["Parameter"]))

    def _outcome(self, parameter: dict) -> Fetched:
        version = parameter.get("Version")
        meta = SecretMeta(version=str(version) if version is not None else None,
                          updated=_utc(parameter.get("LastModifiedDate")))
        value = parameter.get("Value")
        if not isinstance(value, str):
            # Every parameter has a text value (SecureString too, once decrypted).
            return UnusableValue(f"{self.title}: the answer holds no text value for the parameter",
                                 hint="check that AWS_ENDPOINT_URL (or the proxy) points at the "
                                      "service")
        return Fetched(value, meta)

    def _not_found(self, code, reference) -> NotFound:
        pinned = reference.version is not None or reference.option("label")
        what = "parameter, version or label not found" if pinned else "parameter not found"
        return NotFound(f"{self.title}: {code} ({what})",
                        hint="check the parameter name (hierarchical names start with /)"
                             + (", its region and the version or label" if pinned
                                else " and its region"))

    def failure(self, error: ClientError, reference) -> ShimError:
        code = _code(error)
        if code in ("ParameterNotFound", "ParameterVersionNotFound"):
            if reference is None:
                return NotFound(f"{self.title}: {code}", hint="check the parameter name")
            return self._not_found(code, reference)
        if code in ("InvalidKeyId", "KMSAccessDeniedException", "KMSDisabledException"):
            return PermissionDenied(
                f"{self.title}: {code} (KMS decryption denied)",
                hint="allow kms:Decrypt on the parameter's KMS key for the role shim runs as, "
                     "and check that the key is enabled")
        common = self.common_failure(code, _status(error), _message(error))
        if common is not None:
            return common
        return Unavailable(f"{self.title}: {code or 'unexpected error'}",
                           hint="see the AWS documentation of this error code")


# --- helpers ------------------------------------------------------------------

class _SecretIndex:
    """BatchGetSecretValue entries, found by full ARN, partial ARN or name."""

    def __init__(self, entries):
        self.by_arn, self.by_partial_arn, self.by_name = {}, {}, {}
        for entry in entries:
            arn = entry.get("ARN") or ""
            if arn:
                self.by_arn[arn] = entry
                self.by_partial_arn[_ARN_SUFFIX.sub("", arn)] = entry
            if entry.get("Name"):
                self.by_name[entry["Name"]] = entry

    def lookup(self, secret_id: str):
        # A full ARN first, as the service resolves it; then without the
        # six-character suffix AWS appends; a name last.
        if secret_id.startswith("arn:"):
            return self.by_arn.get(secret_id) or self.by_partial_arn.get(secret_id)
        return self.by_name.get(secret_id)


def _parameter_request(reference) -> str:
    """The Name SSM expects: name, name:3 or name:label."""
    label = reference.option("label")
    if reference.version is not None:
        return f"{reference.locator}:{reference.version}"
    if label:
        return f"{reference.locator}:{label}"
    return reference.locator


def _parameter_batches(by_request: dict[str, list]) -> list[dict[str, list]]:
    """Chunks of at most 10 names, never two selectors of one parameter in a chunk."""
    batches: list[dict[str, list]] = []
    bases: list[set] = []
    for request, refs in by_request.items():
        base = _base_name(request.split(":", 1)[0])
        for batch, names in zip(batches, bases):
            if len(batch) < PARAMETERS_PER_BATCH and base not in names:
                batch[request] = refs
                names.add(base)
                break
        else:
            batches.append({request: refs})
            bases.append({base})
    return batches


def _base_name(name: str) -> str:
    """SSM treats `/name` and `name` alike for a name without further slashes."""
    stripped = name[1:] if name.startswith("/") else name
    return name if "/" in stripped else stripped


def _first_of_each(references):
    """One reference per fetch key: the others share its read (their keys are its key)."""
    return [refs[0] for refs in by_fetch_key(references).values()]


def _keys(by_id: dict[str, list]) -> list:
    return [reference.fetch_key for refs in by_id.values() for reference in refs]


def _bind(function, *args):
    return lambda: function(*args)


def _transient(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        code = _code(error)
        status = _status(error)
        return (code in THROTTLING_CODES or code in TRANSIENT_CODES
                or status == 429 or (status is not None and status >= 500))
    return isinstance(error, (BotoConnectionError, HTTPClientError))


def transient_reason(error: BaseException) -> str | None:
    """Why an AWS call failed in a way another attempt may fix (None: it will not)."""
    return _reason(error) if _transient(error) else None


def _reason(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return _code(error) or f"HTTP {_status(error)}"
    return type(error).__name__


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or "")


def _status(error: ClientError) -> int | None:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message") or "")


def _mentions_kms(message: str) -> bool:
    """Whether a denial is KMS's (the text is inspected, never shown)."""
    return "kms" in message.lower() or "ciphertext refers to a customer master key" in message


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _bounded(cap: float, deadline) -> float:
    return max(0.1, min(cap, deadline.remaining()))


def _utc(moment):
    return moment.astimezone(timezone.utc) if moment is not None else None
