"""--watch: each resolution and each lease or token renewal runs in a short-lived helper.

The supervisor of `exec --watch` and the loop of `render --watch` live as long as the
container. Importing a store SDK (hvac and requests, boto3, the Azure SDK) would keep its
modules, its TLS library and its caches in that process for good: Python cannot unload a
module. So the long-lived process never calls a provider. For every resolution, renewal and
revocation it forks a helper, which does the job, writes its answer as one JSON document on
a pipe and exits; the memory it used (the SDK included) goes with it.

Forked, not started afresh (issue 22 items 2 and 5). A helper used to be a new interpreter
(`python -I -c ...`) given the credentials in its environment; until Python had started and
made it non-dumpable (about 30 ms) a program sharing its uid could read them from
/proc/PID/environ, or attach to it, and each tick ran `site` (any .pth file) as root. A fork
of the supervisor inherits its non-dumpable state (the kernel copies it on fork): no moment
exists in which a helper can be read or traced by the program. It starts no interpreter, so
no `site`, no .pth, no PYTHON* variable; it reads the starting environment from the
supervisor's memory (shim.tools.environ_block), and the request is a Python object, never a pipe
the program could open. The modules it imports after the program started pass
shim.tools.program_writable's guard (armed by the caller before the program starts).

What travels between helpers through the supervisor:
- the Vault session: a token obtained by login (AppRole, Kubernetes, JWT) with its TTL, which
  login it came from, and the mounts already detected, so the next helper neither logs in
  again nor looks the mounts up again; renewals return the new TTL the same way (or a new
  token, when the old one reached its max TTL: shim.providers.vault.auth). A token the environment gives
  (VAULT_TOKEN, VAULT_TOKEN_FILE) is read again by each helper, so a rotated file is seen.
- the REST stores' sessions: Infisical's universal-auth token and Bitwarden's bearer (with the
  login's encrypted payload: the organization key is opened again in each helper, never
  carried), each with its expiry as a time.monotonic() (the machine's clock, shared by every
  helper, so the time the supervisor held it counts), and the ETags of Doppler's last
  downloads (its change probe).
- leased secrets (Vault dynamic credentials) kept across ticks: sent to each resolution so
  they are not read (and minted) again, with their metadata (dates, bytes) intact.
- --template: the helper renders the templates the supervisor loaded before the program
  started (shim.pipeline.run hands them over; a fork has them parsed, Jinja2 imported) and
  answers with each DEST's text, which the supervisor writes when it changed.

A helper that does not answer within its deadline (the run's --deadline plus an allowance for
its SDK imports) is killed; the watcher counts that as a failed re-resolution and the program
keeps its values.

Longer than our other modules on purpose: the two sides of one protocol (the supervisor's
RemotePool and the helper's serve) and its encoding sit together, so a change to what crosses
the pipe is made in one place. The helper runs the pipeline (shim.pipeline.run), which is the
module that creates the RemotePool: it hands its Pipeline class in (`new_run`), so this module
never imports shim.pipeline.run and the two do not import each other.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import sys
import threading
import time
from datetime import datetime

from shim.tools import errors as _errors
from shim.tools.errors import ShimError, Unavailable
from shim.tools.deadline import Deadline
from shim.delivery.metrics import resolution_stats
from shim.delivery.watch import Snapshot
from shim.pipeline.options import Options, parse_imports, parse_placeholder_source
from shim.pipeline.plan import build_plan
from shim.pipeline.probes import probe_plan
from shim.providers.base import Fetched, SecretMeta

# The options a resolution depends on; everything else stays with the supervisor.
RESOLUTION_OPTIONS = ("env_files", "secrets_dirs", "file_vars", "skip", "imports", "placeholder_source",
                      "allow_placeholders", "keep_file_vars", "passthrough", "deadline",
                      "max_age", "enforce_max_age", "audit_file", "log_format", "log_level",
                      "fallback_cache", "fallback_key_file", "fallback_max_age",
                      "metrics")    # only to know that ages are read (the server is the supervisor's)
# Time allowed on top of --deadline for the helper's SDK imports.
START_ALLOWANCE_SECONDS = 5.0
EXIT_GRACE_SECONDS = 2.0     # from its answer to its exit
_LONGEST_POLL_MS = 3_600_000     # poll() takes a C int of milliseconds: wait in slices
# Held from a helper's pipe to the parent's close of its write end: a helper forked meanwhile
# by another thread would otherwise hold that end open, and the answer's EOF would wait for it.
_FORKING = threading.Lock()
_ERROR_CLASSES = {cls.__name__: cls for cls in vars(_errors).values()
                  if isinstance(cls, type) and issubclass(cls, ShimError)}


# -- what crosses the pipe ----------------------------------------------------------------------

def encode_error(error: ShimError) -> dict:
    return {"class": type(error).__name__, "message": error.message, "variable": error.variable,
            "reference": error.reference, "hint": error.hint}


def decode_error(data: dict) -> ShimError:
    cls = _ERROR_CLASSES.get(data.get("class"), ShimError)
    return cls(data["message"], variable=data.get("variable"), reference=data.get("reference"),
               hint=data.get("hint"))


def _encode_value(value):
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, str):
        return {"text": value}
    return {"map": value}


def _decode_value(data: dict):
    if "bytes" in data:
        return base64.b64decode(data["bytes"])
    return data["text"] if "text" in data else data["map"]


def encode_fetched(fetched) -> dict:
    meta = {name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in fetched.meta._asdict().items()}
    return {"value": _encode_value(fetched.value), "meta": meta}


def decode_fetched(data: dict):
    dates = ("created", "updated", "expires", "not_before")
    meta = {name: datetime.fromisoformat(value) if name in dates and value else value
            for name, value in data["meta"].items()}
    return Fetched(_decode_value(data["value"]), SecretMeta(**meta))


def encode_options(options) -> dict:
    encoded = {name: _encode_option(getattr(options, name)) for name in RESOLUTION_OPTIONS}
    # Parsed references travel as their canonical text and are parsed again on the other side.
    encoded["imports"] = {"references": [ref.canonical for ref in options.imports]}
    if options.placeholder_source is not None:
        encoded["placeholder_source"] = {"reference": options.placeholder_source.canonical}
    return encoded


def _encode_option(value):
    if isinstance(value, (set, frozenset)):
        return {"set": sorted(value)}
    return value


def decode_options(data: dict) -> dict:
    decoded = {}
    for name, value in data.items():
        if isinstance(value, dict) and "references" in value:
            decoded[name] = parse_imports(value["references"]) if value["references"] else ()
        elif isinstance(value, dict) and "reference" in value:
            decoded[name] = parse_placeholder_source(value["reference"])
        elif isinstance(value, dict):
            decoded[name] = frozenset(value["set"])
        else:
            decoded[name] = _as_tuple(value)
    return decoded


def _as_tuple(item):
    """JSON turns tuples (fetch keys, option values) into lists: turn them back."""
    return tuple(_as_tuple(part) for part in item) if isinstance(item, list) else item


# -- the supervisor's side ------------------------------------------------------------------------

class HelperFailed(Unavailable):
    """The helper did not answer (killed at its deadline, crashed, or said nothing)."""


def run_helper(request: dict, timeout: float, log, running: set, serve) -> dict:
    """Fork a helper to do `request`, and return its answer; kill it after `timeout`.
    `running` holds the helper's pid while it runs (RemotePool.close() kills those); the
    forked helper answers with `serve(request)`."""
    with _FORKING:
        answer_read, answer_write = os.pipe()
        try:
            pid = os.fork()
        except OSError as error:
            os.close(answer_read)
            os.close(answer_write)
            raise HelperFailed(f"cannot start the resolution helper ({error.strerror})",
                               hint="check the container's process and memory limits") from None
        if pid == 0:
            _be_helper(request, answer_read, answer_write, serve)    # never returns
        os.close(answer_write)
    running.add(pid)
    log.event("helper.started", "debug", pid=pid, job=request["job"])
    try:
        answer = _read_answer(answer_read, time.monotonic() + timeout)
    finally:
        os.close(answer_read)
        running.discard(pid)
    if answer is None:
        _kill(pid)
        _collect(pid, time.monotonic())
        raise HelperFailed(f"the resolution helper did not answer within {timeout:g}s; "
                           f"killed it", hint="check that the stores answer within --deadline")
    _collect(pid, time.monotonic() + EXIT_GRACE_SECONDS)
    try:
        return json.loads(answer)
    except ValueError:
        raise HelperFailed("the resolution helper ended without an answer",
                           hint="run with -vv to see what it reported") from None


def _read_answer(read_fd: int, deadline: float) -> bytes | None:
    """Read the answer until EOF; None when the deadline passes."""
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if poller.poll(min(left * 1000, _LONGEST_POLL_MS)):
            chunk = os.read(read_fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _collect(pid: int, deadline: float) -> None:
    """Reap the helper, killing it if it has not exited by `deadline` (it answered, so only its
    exit is left). The --init supervisor's own reaper may have reaped it already."""
    try:
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.01)
        _kill(pid)
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class RemotePool:
    """The supervisor's stand-in for shim.pipeline.resolve.ProviderPool: every call runs a helper.

    It keeps what helpers hand back (the Vault session of each provider that has one) and
    gives it to the next helper. The Watcher uses it exactly like a ProviderPool.
    """

    def __init__(self, options, log, new_run):
        self.options = options
        self.log = log
        self.new_run = new_run      # shim.pipeline.run.Pipeline, which the helper runs
        self.timeout = options.deadline + START_ALLOWANCE_SECONDS
        self._sessions: dict[str, dict] = {}
        self._received: dict[str, float] = {}      # monotonic time each session arrived
        self._lock = threading.Lock()
        self._running: set[int] = set()
        # Change probes (shim.pipeline.probes): the digest of the last full resolution and its output,
        # which a helper that finds nothing changed does not send again; references whose
        # probe the store refused (logged once, then read).
        self._digest: str | None = None
        self._last_output: Snapshot | None = None
        self._probe_denied: set[str] = set()

    def close(self) -> None:
        """On exit: kill a helper still running (a resolution in its background thread)."""
        for pid in list(self._running):
            _kill(pid)

    def get(self, name: str) -> "RemoteProvider":
        return RemoteProvider(self, name)

    def loaded(self) -> dict:
        with self._lock:
            return {name: RemoteProvider(self, name) for name in self._sessions}

    def job(self, job: str, **fields) -> dict:
        options = encode_options(self.options)
        with self._lock:
            # ttl_at: when the TTL was measured (CLOCK_MONOTONIC is the machine's, shared by
            # every process), so the helper can count its own start-up against it.
            sessions = {name: dict(state, ttl=self._ttl_left(name), ttl_at=time.monotonic())
                        for name, state in self._sessions.items()}
        request = {"job": job, "command": self.options.command, "options": options,
                   "sessions": sessions, **fields}
        answer = run_helper(request, self.timeout, self.log, self._running,
                            lambda asked: serve(asked, self.new_run))
        with self._lock:
            now = time.monotonic()
            for name, state in (answer.get("sessions") or {}).items():
                self._sessions[name] = state
                self._received[name] = now
        if answer.get("errors"):
            raise decode_error(answer["errors"][0])
        return answer

    def resolve(self, output: str, reuse=None, on_stats=None):
        """(Snapshot, errors, lease metas) of one resolution in a helper: the snapshot's values
        are `output` ("environment" or "values"), its files what --template rendered (the helper
        renders them: they are values too); `reuse` holds the leased
        secrets kept across ticks (fetch_key -> Fetched), which the helper does not read again.
        `on_stats(stats)` gets the resolution's counts and dates (shim.delivery.metrics), failed or not."""
        kept = [[list(key), encode_fetched(fetched)] for key, fetched in (reuse or {}).items()]
        probe = {"previous": self._digest if self._last_output is not None else None,
                 "denied": sorted(self._probe_denied)}
        try:
            answer = self.job("resolve", output=output, reuse=kept, probe=probe)
        except ShimError as error:
            return None, [error], []
        if on_stats is not None and answer.get("stats"):
            on_stats(answer["stats"])
        probed = answer.get("probe") or {}
        for reference in probed.get("denied") or []:
            if reference not in self._probe_denied:
                self._probe_denied.add(reference)
                self.log.event("watch.probe_denied", "info",
                               f"{reference}: no change probe (the policy allows the read "
                               f"but not the metadata call, or the call would cost more than "
                               f"the read: docs/long-running.md); reading the value on every "
                               f"tick instead", reference=reference)
        if answer.get("unchanged") and self._last_output is not None:
            return self._last_output, [], []
        resolution_errors = [decode_error(e) for e in answer.get("resolution_errors") or []]
        if resolution_errors:
            self._digest = None
            return None, resolution_errors, []
        files = {destination: _decode_value(content)
                 for destination, content in (answer.get("rendered") or {}).items()}
        snapshot = Snapshot(dict(answer["output"]), files)
        self._digest, self._last_output = probed.get("digest"), snapshot
        leases = []
        for key, provider, data in answer.get("leases") or []:
            fetched = decode_fetched(data)
            leases.append((_as_tuple(key), provider, fetched.meta, fetched))
        return snapshot, [], leases

    def _ttl_left(self, name: str) -> float | None:
        ttl = self._sessions[name].get("ttl")
        if ttl is None:
            return None
        return max(0.0, ttl - (time.monotonic() - self._received[name]))


class RemoteProvider:
    """A provider's LeaseKeeper calls (shim.providers.base), each run in a helper."""

    def __init__(self, pool: RemotePool, name: str):
        self.pool = pool
        self.name = name

    def renew_lease(self, lease_id: str, increment: int | None, deadline) -> int:
        return self.pool.job("renew_lease", provider=self.name, lease_id=lease_id,
                             increment=increment)["result"]

    def revoke_lease(self, lease_id: str, deadline) -> None:
        self.pool.job("revoke_lease", provider=self.name, lease_id=lease_id)

    def token_ttl(self) -> int | None:
        with self.pool._lock:
            if self.name not in self.pool._sessions:
                return None
            ttl = self.pool._ttl_left(self.name)
        return None if ttl is None else int(ttl)

    def renew_token(self, deadline) -> int | None:
        return self.pool.job("renew_token", provider=self.name)["result"]

    def token_generation(self):
        """Which login the carried token is from (the helper that logged in said so)."""
        with self.pool._lock:
            return (self.pool._sessions.get(self.name) or {}).get("generation")

    def revoke_token(self, deadline) -> None:
        self.pool.job("revoke_token", provider=self.name)


# -- the helper's side ----------------------------------------------------------------------------

def _be_helper(request: dict, answer_read: int, answer_write: int, serve) -> None:
    """In the forked child: do the job, write the answer, exit. Never returns into the
    supervisor's code, whatever happens."""
    try:
        os.close(answer_read)
        # The supervisor blocks the signals it waits for; the helper takes them as any process.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        # Fresh stdio objects: another thread of the supervisor may have held their locks at
        # the moment of the fork, and a held lock is never released in the child.
        for name, fd in (("stdout", 1), ("stderr", 2)):
            old = getattr(sys, name)
            setattr(sys, name, open(fd, "w", buffering=1, closefd=False,  # noqa: SIM115
                                    encoding=old.encoding, errors=old.errors))
        try:
            answer = serve(request)
        except ShimError as error:
            answer = {"errors": [encode_error(error)]}
        except Exception as error:  # noqa: BLE001 - a bug: say so without a traceback (values)
            answer = {"errors": [encode_error(ShimError(f"internal error in the resolution "
                                                        f"helper ({type(error).__name__})"))]}
        data = json.dumps(answer).encode()
        with open(answer_write, "wb", closefd=False) as stream:
            stream.write(data)
        sys.stderr.flush()
    except BaseException as error:  # noqa: BLE001 - never return into the supervisor's code
        try:    # the type only: a message or a traceback may hold a value
            os.write(2, f"shim: internal error in the resolution helper "
                        f"({type(error).__name__})\n".encode())
        except OSError:
            pass
    finally:
        os._exit(0)     # no interpreter teardown: nothing is left to flush, and it takes time


def _probe(run, probe: dict, reuse: dict, deadline):
    """The change probes of this run's plan (shim.pipeline.probes): built from the same environment,
    so the same references a resolution would read."""
    plan = build_plan(run.environ, run.settings)
    templates = run.prepare_templates()
    return probe_plan(plan, run.pool, deadline, reuse, frozenset(probe.get("denied") or ()),
                      extra=tuple(templates.references()) if templates else ())


def serve(request: dict, new_run) -> dict:
    """In the helper: run the pipeline (`new_run(options)`: shim.pipeline.run.Pipeline) for the
    request's job, and return the answer."""
    run = new_run(Options(request["command"], **decode_options(request["options"])))
    run.log.event("helper.ran", "debug", pid=os.getpid(), job=request["job"])
    for name, state in (request.get("sessions") or {}).items():
        run.pool.get(name).resume_session(state)
    answer: dict = {}
    job = request["job"]
    deadline = Deadline(run.options.deadline)
    try:
        if job == "resolve":
            reuse = {_as_tuple(key): decode_fetched(data) for key, data in request["reuse"]}
            if request.get("probe") is not None:
                probed = _probe(run, request["probe"], reuse, deadline)
                answer["probe"] = {"digest": probed.digest, "denied": probed.denied}
                answer["stats"] = {"probes": probed.probes}
                if probed.error is not None:
                    answer["resolution_errors"] = [encode_error(probed.error)]
                    return answer
                if probed.digest is not None and probed.digest == request["probe"]["previous"]:
                    answer["unchanged"] = True
                    return answer
            resolved = run.resolve(reuse)
            if request.get("probe") is not None:
                probed.kept(key for key, *_ in resolved.resolution.lease_metas())
                answer["probe"]["digest"] = probed.digest
            answer["stats"] = dict(answer.get("stats") or {},
                                   **resolution_stats(resolved.resolution, reuse))
            if resolved.errors:
                answer["resolution_errors"] = [encode_error(e) for e in resolved.errors]
            else:
                answer["output"] = (run.child_environment(resolved) if request["output"] == "environment"
                                    else resolved.secret_values())
                answer["rendered"] = {destination: _encode_value(content) for destination, content
                                      in resolved.resolution.rendered.items()}
                answer["leases"] = [[list(key), provider, encode_fetched(fetched)]
                                    for key, provider, _, fetched in resolved.resolution.lease_metas()]
        else:
            provider = run.pool.get(request["provider"])
            if job == "renew_lease":
                answer["result"] = provider.renew_lease(request["lease_id"], request["increment"], deadline)
            elif job == "revoke_lease":
                provider.revoke_lease(request["lease_id"], deadline)
            elif job == "renew_token":
                answer["result"] = provider.renew_token(deadline)
            elif job == "revoke_token":
                provider.revoke_token(deadline)
            else:
                raise ShimError(f"unknown helper job {job}")
    finally:
        answer["sessions"] = {name: provider.export_session()
                              for name, provider in run.pool.loaded().items()
                              if hasattr(provider, "export_session")}
    return answer
