"""AWS Secrets Manager: `arn:aws:secretsmanager:...` (ECS) and `ref+awssecrets://` references.

Every reference that wants AWSCURRENT is read with BatchGetSecretValue, at most 20 secret ids
per call, per region. The batch call only ever returns AWSCURRENT, so references pinning
another version_stage or a version_id are read one by one with GetSecretValue. Where the batch
call itself is denied (an IAM policy that allows only GetSecretValue) or a store does not know
it, the same secrets are read one by one instead; per-secret transient errors are retried the
same way. Clients, retries and the shared error codes: shim.providers.aws.common.
"""

from __future__ import annotations

import re

from botocore.exceptions import ClientError

from shim.providers.aws.common import (
    DENIED_CODES, ODD_ANSWER, THROTTLING_CODES, TRANSIENT_CODES, UNSUPPORTED_CODES, AwsProvider,
    as_utc, bind, error_code, error_message, error_status, fetch_keys, first_of_each, is_denial,
)
from shim.providers.base import Fetched, SecretMeta
from shim.tools.errors import NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue

SECRETS_PER_BATCH = 20          # BatchGetSecretValue's SecretIdList limit
_ARN_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}\Z")


class SecretsManagerProvider(AwsProvider):
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
        for reference in first_of_each(references):
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
                groups.append((fetch_keys(chunk), bind(self._batch, region, chunk, deadline)))
        for (region, secret_id, stage, version_id), refs in pinned.items():
            work = bind(self._single, region, secret_id, stage, version_id, refs, deadline)
            groups.append((fetch_keys({secret_id: refs}), work))
        return self.run_groups(groups, deadline)

    # -- --watch change probes (shim.pipeline.probes) ----------------------------------------

    def probe_kind(self, reference) -> str:
        """A version id never changes; a stage moves, and DescribeSecret says where to."""
        return "pinned" if reference.option("version_id") else "stages"

    def probe_all(self, references, deadline) -> tuple[dict, int]:
        """({fetch_key: the id of the version holding the reference's stage}, calls made):
        one DescribeSecret per secret (no value, no KMS decryption), concurrently. "denied"
        where the policy allows GetSecretValue but not DescribeSecret (the caller reads)."""
        by_secret: dict[tuple, list] = {}
        for reference in first_of_each(references):
            by_secret.setdefault((self.region_of(reference), reference.locator),
                                 []).append(reference)
        groups = [(fetch_keys({secret_id: refs}),
                   bind(self._describe, region, secret_id, refs, deadline))
                  for (region, secret_id), refs in by_secret.items()]
        return self.run_groups(groups, deadline), len(groups)

    def _describe(self, region, secret_id, refs, deadline) -> dict:
        client = self.client(region, deadline)
        try:
            answer = self.call(client, "DescribeSecret", {"SecretId": secret_id}, refs[0],
                               deadline)
        except ClientError as error:
            if is_denial(error):
                return {reference.fetch_key: "denied" for reference in refs}
            raise
        except ODD_ANSWER:
            return {reference.fetch_key: None for reference in refs}    # read, as without probes
        stages = answer.get("VersionIdsToStages")
        if answer.get("DeletedDate") is not None:
            stages = None   # scheduled for deletion: the read refuses it, and says so each tick
        outcomes = {}
        for reference in refs:
            stage = reference.option("version_stage") or "AWSCURRENT"
            holders = sorted(version for version, labels in stages.items()
                             if isinstance(version, str) and isinstance(labels, list)
                             and stage in labels) if isinstance(stages, dict) else []
            # Exactly one version holds a stage; anything else is not an answer: read.
            outcomes[reference.fetch_key] = holders[0] if len(holders) == 1 else None
        return outcomes

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
            code = error_code(error)
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
        meta = SecretMeta(version=entry.get("VersionId"), created=as_utc(entry.get("CreatedDate")))
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
        return self._failure_for_code(error_code(error), error_status(error), error_message(error), reference)

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
