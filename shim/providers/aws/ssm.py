"""AWS SSM Parameter Store: `arn:aws:ssm:...:parameter/...` (ECS) and `ref+awsssm://` references.

GetParameters with WithDecryption=True, at most 10 names per call, per region; `name:3` and
`name:label` go in the name as SSM expects. A batch never holds two selectors of one parameter,
so each returned parameter maps back to exactly one request. The Secrets Manager pass-through
`/aws/reference/secretsmanager/<name>` is read with GetParameter (its answers carry the secret's
name, not the path asked for). A name ending in `/` is a path (what `--import
ref+awsssm:///app/prod/` names): GetParametersByPath, recursive, decrypted, every page
followed, read once into one map of names relative to the path. Clients, retries and the
shared error codes: shim.providers.aws.common.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from shim.providers.aws.common import (
    DENIED_CODES, ODD_ANSWER, UNSUPPORTED_CODES, AwsProvider, as_utc, bind, error_code,
    error_message, error_status, fetch_keys, first_of_each, is_denial,
)
from shim.providers.base import Fetched, SecretMeta
from shim.tools.errors import NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue

PARAMETERS_PER_BATCH = 10       # GetParameters' Names limit
NAMES_PER_PROBE = 50            # DescribeParameters' filter Values limit (and MaxResults)
PROBE_PAGES = 10                # pages of one DescribeParameters answer followed at most
PASS_THROUGH_PREFIX = "/aws/reference/secretsmanager/"


class ParameterStoreProvider(AwsProvider):
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
        for reference in first_of_each(references):
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
                groups.append((fetch_keys(chunk), bind(self._batch, region, chunk, deadline)))
        for (region, request), refs in alone.items():
            groups.append((fetch_keys({request: refs}),
                           bind(self._single, region, request, refs, deadline)))
        for reference in paths:
            groups.append(([reference.fetch_key],
                           bind(self._path, self.region_of(reference), reference, deadline)))
        return self.run_groups(groups, deadline)

    # -- --watch change probes (shim.pipeline.probes) ----------------------------------------

    def probe_kind(self, reference) -> str:
        """`name:3` never changes; a name's Version says when it did. A label can move to
        another version without the parameter's Version changing, and a path or the Secrets
        Manager pass-through has no single Version: those are read."""
        if reference.version is not None:
            return "pinned"
        if (reference.option("label") or reference.locator.endswith("/")
                or reference.locator.startswith(PASS_THROUGH_PREFIX)):
            return "read"
        return "parameters"

    def probe_all(self, references, deadline) -> tuple[dict, int]:
        """({fetch_key: "v<Version>"}, calls made): DescribeParameters with a Name filter of up
        to 50 names per region, no value. "denied" where the policy lacks ssm:DescribeParameters
        (an action on every resource, unlike the reads: the caller reads instead)."""
        by_region: dict[str | None, dict[str, list]] = {}
        for reference in first_of_each(references):
            by_region.setdefault(self.region_of(reference), {}).setdefault(
                reference.locator, []).append(reference)
        calls: list[int] = []
        groups = []
        for region, by_name in by_region.items():
            names = list(by_name)
            for start in range(0, len(names), NAMES_PER_PROBE):
                chunk = {name: by_name[name] for name in names[start:start + NAMES_PER_PROBE]}
                groups.append((fetch_keys(chunk), bind(self._describe, region, chunk, calls,
                                                       deadline)))
        return self.run_groups(groups, deadline), len(calls)

    def _describe(self, region, by_name: dict[str, list], calls: list, deadline) -> dict:
        client = self.client(region, deadline)
        first = next(iter(by_name.values()))[0]
        params = {"ParameterFilters": [{"Key": "Name", "Option": "Equals",
                                        "Values": list(by_name)}],
                  "MaxResults": NAMES_PER_PROBE}
        versions: dict[str, str] = {}
        try:
            for _ in range(PROBE_PAGES):
                calls.append(1)
                page = self.call(client, "DescribeParameters", params, first, deadline,
                                 batch=len(by_name))
                for parameter in page.get("Parameters") or []:
                    version = parameter.get("Version") if isinstance(parameter, dict) else None
                    if isinstance(version, int) and not isinstance(version, bool):
                        versions[_base_name(str(parameter.get("Name", "")))] = f"v{version}"
                token = page.get("NextToken")
                if not token:
                    break
                params = dict(params, NextToken=token)
            else:
                versions = {}   # an answer that never ends is no answer: read
        except ClientError as error:
            if is_denial(error):
                return {key: "denied" for key in fetch_keys(by_name)}
            raise
        except ODD_ANSWER:
            versions = {}   # no answer: read, as without probes
        # A name missing from the answer (deleted, another account's) gets no answer: read.
        return {reference.fetch_key: versions.get(_base_name(name))
                for name, refs in by_name.items() for reference in refs}

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
                    updated = as_utc(parameter.get("LastModifiedDate"))
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
            code = error_code(error)
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
                          updated=as_utc(parameter.get("LastModifiedDate")))
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
        code = error_code(error)
        if code in ("ParameterNotFound", "ParameterVersionNotFound"):
            if reference is None:
                return NotFound(f"{self.title}: {code}", hint="check the parameter name")
            return self._not_found(code, reference)
        if code in ("InvalidKeyId", "KMSAccessDeniedException", "KMSDisabledException"):
            return PermissionDenied(
                f"{self.title}: {code} (KMS decryption denied)",
                hint="allow kms:Decrypt on the parameter's KMS key for the role shim runs as, "
                     "and check that the key is enabled")
        common = self.common_failure(code, error_status(error), error_message(error))
        if common is not None:
            return common
        return Unavailable(f"{self.title}: {code or 'unexpected error'}",
                           hint="see the AWS documentation of this error code")


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
