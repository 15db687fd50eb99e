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
    DENIED_CODES, UNSUPPORTED_CODES, AwsProvider, as_utc, bind, error_code, error_message,
    error_status, fetch_keys, first_of_each,
)
from shim.providers.base import Fetched, SecretMeta
from shim.tools.errors import NotFound, PermissionDenied, ShimError, Unavailable, UnusableValue

PARAMETERS_PER_BATCH = 10       # GetParameters' Names limit
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
