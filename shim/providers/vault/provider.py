"""The `vault` provider: the Provider and LeaseKeeper interfaces over http, auth, paths, leases, transit."""

from __future__ import annotations

from typing import Mapping

from shim.tools.deadline import Deadline
from shim.tools.errors import NotFound, NotRead, PermissionDenied, ShimError, Unavailable
from shim.providers.base import Fetched
from shim.providers.mechanism import by_fetch_key, run_concurrently
from shim.providers.vault import leases, transit
from shim.providers.vault.auth import FRESH_TOKEN_HINT, Authenticator
from shim.providers.vault.http import Answer, Connection, VaultHttp
from shim.providers.vault.settings import VaultSettings
from shim.providers.vault.paths import (
    DeletedVersion, MountFinder, ReadPlan, Run, combine, deleted_version, fetched_from, plans_for,
)


class VaultProvider:
    """The `vault` provider; also a LeaseKeeper (renew/revoke leases, token TTL/renew/revoke)."""

    name = "vault"

    def __init__(self, context):
        self.environ: Mapping[str, str] = VaultSettings(context.environ)
        self.log = context.log
        self.read_only = getattr(context, "read_only", False)    # shim check
        self.http = VaultHttp(Connection.from_environ(self.environ), self.log)
        self.auth = Authenticator(self.environ, self.http, self.log, read_only=self.read_only)
        self.mounts = MountFinder(self.http, self.log)

    # -- the Provider interface -------------------------------------------------------------

    def fetch_all(self, references, deadline: Deadline) -> dict:
        representatives = {key: refs[0] for key, refs in by_fetch_key(references).items()}
        try:
            self.auth.ensure(deadline)
        except ShimError as error:
            return {key: error for key in representatives}
        run = Run()

        def plan(reference) -> tuple | ShimError:
            try:
                mount = self.mounts.mount_for(reference.locator, deadline, run)
                plans = plans_for(reference, mount)
            except ShimError as error:
                return error
            if self.read_only:
                plans = leases.reads_minting_nothing(plans, mount, reference.locator)
            return plans

        def read(plans: tuple) -> Fetched | ShimError:
            try:
                return self._read_first(plans, deadline, run)
            except ShimError as error:
                return error

        # Two rounds, so that a worker never waits for a read another worker is doing: first
        # each reference's read plan (mount lookups), then each distinct plan once.
        keys = list(representatives)
        planned = dict(zip(keys, run_concurrently(
            [lambda r=representatives[k]: plan(r) for k in keys], deadline, title="Vault")))
        distinct = list(dict.fromkeys(p for p in planned.values() if isinstance(p, tuple)))
        fetched = dict(zip(distinct, run_concurrently(
            [lambda p=p: read(p) for p in distinct], deadline, title="Vault")))
        return {key: fetched.get(p, p) if isinstance(p, tuple) else p
                for key, p in planned.items()}

    # -- --watch change probes (shim.pipeline.probes) ------------------------------------------------

    def metadata_path(self, reference, deadline: Deadline) -> str | None:
        """The KV v2 metadata path whose current_version tells whether `reference` (its latest
        version) changed; None when there is none (KV v1, a dynamic secret, a pinned version,
        a mount Vault would not tell)."""
        self.auth.ensure(deadline)      # the mount lookup is a request too
        mount = self.mounts.mount_for(reference.locator, deadline, Run())
        plans = plans_for(reference, mount)
        if mount is None or len(plans) != 1 or plans[0].kv_version != 2 or plans[0].version:
            return None
        data_prefix = mount.path + "data/"
        if not plans[0].api_path.startswith(data_prefix):
            return None
        return mount.path + "metadata/" + plans[0].api_path[len(data_prefix):]

    def probe(self, reference, deadline: Deadline) -> str | None:
        """"vN" for the secret's current_version; "denied" when the policy refuses the metadata
        path (a separate ACL: the caller reads instead); None when there is nothing to ask."""
        path = self.metadata_path(reference, deadline)
        if path is None:
            return None
        answer = self.http.request("GET", path, deadline, f"the metadata of {path}")
        if answer.status in (401, 403):
            return "denied"
        data = answer.body.get("data") if answer.status == 200 and isinstance(answer.body, dict) \
            else None
        version = data.get("current_version") if isinstance(data, dict) else None
        return f"v{version}" if isinstance(version, int) and not isinstance(version, bool) else None

    # -- the LeaseKeeper interface ----------------------------------------------------------

    def renew_lease(self, lease_id: str, increment: int | None, deadline: Deadline) -> int:
        self.auth.ensure(deadline)
        return leases.renew(self.http, lease_id, increment, deadline)

    def revoke_lease(self, lease_id: str, deadline: Deadline) -> None:
        self.auth.ensure(deadline)
        leases.revoke(self.http, lease_id, deadline)

    def token_ttl(self) -> int | None:
        return self.auth.token_ttl()

    def token_generation(self) -> int:
        """Which login the token is from: a lease dies with the token that read it."""
        return self.auth.token_generation()

    def renew_token(self, deadline: Deadline) -> int | None:
        return self.auth.renew_token(deadline)

    def revoke_token(self, deadline: Deadline) -> None:
        self.auth.revoke_token(deadline)

    def discard_login(self, deadline: Deadline) -> None:
        """shim check: revoke the token a login made, so that check leaves no token behind
        (one the environment gives is never touched)."""
        self.auth.discard_login(deadline)

    # -- handing over between --watch helpers (shim.pipeline.helper) -----------------------------------

    def export_session(self) -> dict:
        """What the next helper needs to go on from here: the token obtained by login (never
        one the environment gives: that is read again, so a rotated VAULT_TOKEN_FILE is seen),
        the token's TTL, and the mounts already detected."""
        return {"mounts": self.mounts.export(), **self.auth.export_session()}

    def resume_session(self, state: Mapping) -> None:
        """Take over what export_session() handed on (before any request is made)."""
        self.mounts.resume(state.get("mounts") or ())
        self.auth.resume_session(state)

    # -- for sops files whose data key a transit key encrypted (shim.providers.sops.keys) -------------

    def transit_decrypt(self, engine_path: str, key_name: str, ciphertext: str,
                        deadline: Deadline) -> bytes:
        """The plaintext of a transit ciphertext, logged in as for any Vault reference."""
        self.auth.ensure(deadline)
        mount = self.mounts.mount_for(engine_path.strip("/"), deadline, Run())
        return transit.decrypt(self.http, engine_path, key_name, ciphertext, deadline, mount)

    # -- reading ----------------------------------------------------------------------------

    def _read_first(self, plans: tuple, deadline: Deadline, run: "Run") -> Fetched:
        outcomes: list[Fetched | ShimError] = []
        for plan in plans:
            if isinstance(plan, NotRead):
                raise plan      # check: the reads left could mint a credential
            outcome = run.once((plan.api_path, plan.version),
                               lambda plan=plan: self._read(plan, deadline))
            if isinstance(outcome, Fetched):
                return outcome
            outcomes.append(outcome)
            final = isinstance(outcome, DeletedVersion)
            if final or not isinstance(outcome, (NotFound, PermissionDenied)):
                break
        if len(outcomes) > 1 and all(isinstance(o, PermissionDenied) for o in outcomes):
            # The fallback's guesses were all denied: name the path as the reference wrote it
            # (the last plan), and every API path a policy could grant.
            tried = [plan.api_path for plan in plans[:len(outcomes)]]
            raise PermissionDenied(outcomes[-1].message, hint=denied_hint(tried))
        raise combine(outcomes)

    def _read(self, plan: "ReadPlan", deadline: Deadline) -> Fetched | ShimError:
        params = {"version": plan.version} if plan.version else None
        try:
            answer = self.http.request("GET", plan.api_path, deadline, f"the read of {plan.api_path}",
                                   params=params)
        except ShimError as error:
            return error
        self.log.event("vault.read", "debug", path=plan.api_path, version=plan.version,
                       status=answer.status)
        if answer.status == 200:
            try:
                return fetched_from(plan, answer.body)
            except (KeyError, TypeError, AttributeError, ValueError):
                return Unavailable(f"Vault answered the read of {plan.api_path} with a body "
                                   f"shim cannot read (HTTP 200)",
                                   hint="check that VAULT_ADDR points at Vault itself")
        return self._read_failure(plan, answer)

    def _read_failure(self, plan: "ReadPlan", answer: "Answer") -> ShimError:
        status = self.http.status_text(answer)
        where = plan.api_path + (f" version {plan.version}" if plan.version else "")
        if answer.status in (401, 403):
            self.auth.note_invalid_token(answer)
            if self.auth.token_expired():
                return PermissionDenied(
                    f"Vault denied reading {plan.api_path} ({status}): shim's Vault token "
                    f"expired", hint=FRESH_TOKEN_HINT)
            return PermissionDenied(f"Vault denied reading {plan.api_path} ({status})",
                                    hint=denied_hint([plan.api_path]))
        if answer.status == 404 and plan.kv_version == 2:
            deleted = deleted_version(answer.body)
            if deleted is not None:
                return DeletedVersion(f"{plan.api_path}: {deleted} ({status})",
                                       hint="pin a live version, undelete it, or write a new one")
        hint = "check the path, the mount and (for KV v2) the version"
        if plan.hint:
            hint = plan.hint
        if answer.status == 404:
            return NotFound(f"{where} does not exist in Vault ({status})", hint=hint)
        return NotFound(f"Vault could not read {where} ({status})", hint=hint)


def denied_hint(paths: list[str]) -> str:
    """What to check after a 403 on a read. Vault and OpenBao answer 403 "permission denied" for
    a token they do not know (expired, revoked, mistyped) exactly as for a policy that says no."""
    where = " or ".join(paths)
    return (f"the token's policies must allow read on {where}; if they do, the token may be "
            f"invalid or expired: check it with `bao token lookup` (or `vault token lookup`)")
