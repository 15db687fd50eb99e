"""What AWS Secrets Manager (shim.providers.aws.secretsmanager) and SSM Parameter Store
(shim.providers.aws.ssm) share, on boto3 (the `aws` extra): sessions and clients, one call
retried within the deadline, concurrent groups, and the error codes both services answer.

These modules are imported only when a plan holds an AWS reference, so boto3 is
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
- Each store batches its own way (its module says how) and hands its groups of calls to
  run_groups().
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

from shim.tools.errors import ConfigError, PermissionDenied, ShimError, Unavailable, UsageError
from shim.providers.base import nested_too_deeply
from shim.providers.bodycap import AWS_BODY_CAP, cap_botocore_client
from shim.providers.mechanism import by_fetch_key, retry, run_concurrently

# What a malformed answer raises in botocore's parser or in shim's reading of it.
ODD_ANSWER = (RecursionError, KeyError, TypeError, AttributeError, ValueError)
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

class AwsProvider:
    """What both stores share: clients, the retry loop, concurrent groups. A store sets the
    class attributes below and writes fetch_all() and failure()."""

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
        except ODD_ANSWER as error:
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
        if _denial(code, status):
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
            except ODD_ANSWER as error:
                failure = self.odd_answer(error)
                return {key: failure for key in keys}

        outcomes: dict = {}
        results = run_concurrently([bind(guarded, keys, work) for keys, work in groups],
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


# --- helpers ------------------------------------------------------------------

def first_of_each(references):
    """One reference per fetch key: the others share its read (their keys are its key)."""
    return [refs[0] for refs in by_fetch_key(references).values()]


def fetch_keys(by_id: dict[str, list]) -> list:
    return [reference.fetch_key for refs in by_id.values() for reference in refs]


def bind(function, *args):
    return lambda: function(*args)


def _transient(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        code = error_code(error)
        status = error_status(error)
        return (code in THROTTLING_CODES or code in TRANSIENT_CODES
                or status == 429 or (status is not None and status >= 500))
    return isinstance(error, (BotoConnectionError, HTTPClientError))


def transient_reason(error: BaseException) -> str | None:
    """Why an AWS call failed in a way another attempt may fix (None: it will not)."""
    return _reason(error) if _transient(error) else None


def _reason(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return error_code(error) or f"HTTP {error_status(error)}"
    return type(error).__name__


def is_denial(error: ClientError) -> bool:
    """The policy refuses this call (not the credentials: those refuse every call)."""
    return _denial(error_code(error), error_status(error))


def _denial(code: str, status: int | None) -> bool:
    return code in DENIED_CODES or (status == 403 and code not in CREDENTIAL_CODES)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or "")


def error_status(error: ClientError) -> int | None:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message") or "")


def _mentions_kms(message: str) -> bool:
    """Whether a denial is KMS's (the text is inspected, never shown)."""
    return "kms" in message.lower() or "ciphertext refers to a customer master key" in message


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _bounded(cap: float, deadline) -> float:
    return max(0.1, min(cap, deadline.remaining()))


def as_utc(moment):
    return moment.astimezone(timezone.utc) if moment is not None else None
