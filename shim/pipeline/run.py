"""The pipeline every command shares: Plan -> Resolution -> Environment, once per run.

A command parses its options into `shim.pipeline.options.Options`, builds one `Pipeline`, and
chooses the ending: exec the program, print the plan, write files, supervise. The command
takes the steps of delivery that are not about values (who the program runs as, --as-files,
the program's start) itself, through shim.delivery. The Pipeline reads the starting environment once, owns the log and the provider
pool (so `--watch` re-resolutions reuse each store's login), and reports failures.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from shim.delivery.audit import Log, record_resolution
from shim.tools.deadline import Deadline
from shim.pipeline.environment import child_environment, starting_environment
from shim.tools.errors import NotFound, PermissionDenied, ShimError, UsageError
from shim.pipeline.options import Options
from shim.pipeline.plan import Plan, Settings, build_plan
from shim.providers.base import ProviderContext
from shim.tools.records import record
from shim.pipeline.resolve import ProviderPool, Resolution, resolve_plan, select

TYPE_CHECKING = False   # typing is not imported at start-up (shim.tools.records)
if TYPE_CHECKING:
    from typing import NoReturn


@record
class Resolved:
    plan: Plan
    resolution: Resolution
    errors: list[ShimError]      # plan, fetch and rotation failures, sorted by variable

    def secret_values(self) -> dict[str, str]:
        """The resolved variables that have a value (render's output)."""
        return {name: result.value for name, result in self.resolution.variables.items()
                if result.value is not None}


class Pipeline:
    """One run of a command: its options, log, starting environment and provider pool."""

    def __init__(self, options: Options):
        self.options = options
        self.log = open_log(options)
        self.settings = Settings(env_files=options.env_files, secrets_dirs=options.secrets_dirs,
                                 file_vars=options.file_vars,
                                 placeholder_source=options.placeholder_source,
                                 allow_placeholders=options.allow_placeholders, skip=options.skip,
                                 imports=options.imports)
        self.environ = starting_environment()
        # --as-files: the AsFiles delivery the command prepared (shim.commands.execute), or None:
        # its variables may hold bytes, and they become stand-ins in the child's environment.
        self.as_files = None
        # check reads without changing any store (no lease minted, no single-use id spent).
        self.pool = ProviderPool(ProviderContext(self.environ, self.log,
                                                 read_only=options.command == "check"))
        self._remote = None
        self.fallback = None   # --fallback-cache, once prepare_fallback() ran
        self._fallback_ready = False
        self.templates = None  # --template, once prepare_templates() ran
        self._templates_ready = False
        self.metrics = None    # --metrics: shim.delivery.metrics.Metrics, once open_metrics() ran

    def resolve(self, reuse=None) -> Resolved:
        """Plan and Resolution, with every failure collected (sorted by variable)."""
        plan = build_plan(self.environ, self.settings)
        for file_var in plan.left_as_is:
            # Not the path: a variable named *_FILE may hold anything, a secret included.
            self.log.event("file_var.left_as_is", "info",
                           f"{file_var}: its path is outside every secrets dir; left as is "
                           f"(add the directory with --secrets-dir, or the name to --file-vars)",
                           variable=file_var)
        binary_ok = self.as_files.delivers if self.as_files else None  # files may hold bytes
        rotation_policy = bool(self.options.max_age) or any(
            ref.option("max_age") for ref in plan.references() + list(plan.imports))
        # What reads a secret's dates: check's ages, a rotation policy, record_resolution below,
        # --metrics' shim_secret_age_seconds.
        self.pool.context.wants_dates = (self.options.command == "check" or rotation_policy
                                         or self.log.wants("info")
                                         or self.options.metrics is not None)
        fallback = self.prepare_fallback()
        templates = self.prepare_templates()
        extra = tuple(templates.references()) if templates else ()
        resolution = resolve_plan(plan, self.pool, Deadline(self.options.deadline), reuse,
                                  binary_ok=binary_ok, fallback=fallback, extra=extra)
        record_resolution(self.log, resolution)
        if resolution.stale:
            record_stale(self.log, resolution)
        rotation_errors = []
        if rotation_policy:
            from shim.pipeline.rotation import check_rotation  # lazy: only with a rotation policy
            rotation_errors = check_rotation(resolution, max_age=self.options.max_age,
                                             enforce=self.options.enforce_max_age, log=self.log)
        errors = plan.errors + resolution.errors + rotation_errors
        if templates and not errors:
            errors += self._render_templates(templates, resolved_plan=plan, resolution=resolution)
        errors.sort(key=lambda error: (error.variable or "", error.line()))
        if fallback is not None and not errors and not resolution.stale \
                and self.options.command != "check":   # check changes nothing, not even this
            self._save_fallback(fallback, resolution)
        for entry in plan.entries.values():
            for token in entry.kept_placeholders:
                self.log.warning(f"{entry.name}: placeholder {token} left in place (--allow-placeholders)",
                                 event="placeholder.kept", variable=entry.name)
        return Resolved(plan, resolution, errors)

    def child_environment(self, resolved: Resolved, identity=None) -> dict[str, str]:
        env = child_environment(resolved.plan, resolved.resolution,
                                keep_file_vars=self.options.keep_file_vars,
                                passthrough=self.options.passthrough)
        if identity is not None:
            env["HOME"] = identity.home
        if self.as_files:  # --as-files: the values become stand-ins until delivered()
            env = self.as_files.stage(resolved.resolution, env)
        return env

    def prepare_fallback(self, identity=None):
        """--fallback-cache: DIR and the key checked (against `identity`, who the program or
        the files will belong to) before anything is resolved; None when not asked for."""
        if not self._fallback_ready:
            self._fallback_ready = True
            if self.options.fallback_cache:
                from shim.pipeline import fallback  # lazy: only with --fallback-cache
                self.fallback = fallback.from_options(self.options, identity)
        return self.fallback

    def prepare_templates(self):
        """--template: every SRC read and parsed, every DEST's directory checked, before
        anything is resolved; None when not asked for."""
        if not self._templates_ready:
            self._templates_ready = True
            if self.options.templates:
                from shim.delivery import templates  # lazy: only with --template
                self.templates = templates.from_options(self.options)
        return self.templates

    def _render_templates(self, templates, *, resolved_plan, resolution) -> list[ShimError]:
        """Render every template in memory (resolution.rendered); the errors, if any."""
        values, errors = {}, []
        for template in templates.templates:
            for text, reference in template.references.items():
                try:
                    values[text] = template_value(reference, resolution.outcomes)
                except ShimError as error:
                    errors.append(error.with_context(variable=f"template {template.spec.source}",
                                                     reference=reference.shown))
        if errors:
            return errors
        environment = child_environment(resolved_plan, resolution,
                                        keep_file_vars=self.options.keep_file_vars,
                                        passthrough=self.options.passthrough)
        try:
            resolution.rendered = templates.render(values, environment)
        except ShimError as error:
            return [error]
        return []

    def write_templates(self, files: dict[str, bytes], identity=None) -> list[str]:
        """Write what --template rendered (`files`: DEST -> content, a resolution's `rendered`
        or a --watch helper's), owned by `identity` (the program's user): only the DESTs whose
        content changed since this run last wrote them. The DESTs written."""
        if not self.templates or not files:
            return []
        uid = identity.uid if identity is not None else None
        gid = identity.gid if identity is not None else None
        written = self.templates.write(files, uid, gid)
        if written:
            self.log.event("template.written", "info", f"wrote {', '.join(written)}",
                           files=written)
        return written

    def _save_fallback(self, fallback, resolution) -> None:
        # A cache that cannot be written must not stop a start whose store answered: say so.
        try:
            fallback.save(resolution)
        except ShimError as error:
            self.log.warning(error.line(), event="fallback.not_written")
        else:
            self.log.event("fallback.written", "debug", "fallback cache written",
                           directory=fallback.directory)

    def report(self, errors) -> int:
        """Log every error (in text, alike ones once: shim.delivery.repeated_failures); the exit code of the first."""
        if self.log.format == "text" and not self.log.keeps_audit:
            from shim.delivery.repeated_failures import said_once  # lazy: only when something failed
            errors = said_once(errors)
        for error in errors:
            self.log.error(error, event="secret.failed" if error.variable else "error")
        return errors[0].exit_code

    def fail(self, errors) -> NoReturn:
        sys.exit(self.report(errors))

    def open_metrics(self) -> None:
        """--metrics: check the address and listen now, before anything is resolved or started
        (64 for a bad or non-loopback address, 78 when it cannot listen), then serve the page
        from a thread (shim.delivery.metrics)."""
        if self.options.metrics is None:
            return
        if self.options.watch is None:
            raise UsageError("--metrics needs --watch: without it nothing is re-read to report",
                             hint="add --watch DURATION, or drop --metrics")
        from shim.delivery.metrics import Metrics, MetricsServer, parse_address  # lazy: only with --metrics
        host, port = parse_address(self.options.metrics, self.options.metrics_allow_remote)
        self.metrics = Metrics()
        MetricsServer(self.metrics, host, port, self.log).start()

    def first_resolution_done(self, resolved: Resolved) -> None:
        """--watch --as-files resolved here the first time: count it as a helper's would be."""
        if self.metrics is not None:
            self._record_resolution(resolved.resolution)
            self.metrics.resolution_succeeded()

    def _record_resolution(self, resolution, reuse=None) -> None:
        """--metrics: the counts and dates of a resolution made in this process."""
        if self.metrics is not None:
            from shim.delivery.metrics import resolution_stats  # lazy: only with --metrics
            self._record(resolution_stats(resolution, reuse))

    def _record(self, stats: dict) -> None:
        if self.metrics is not None:
            self.metrics.record_stats(stats)

    def resolve_elsewhere(self, output: str):
        """--watch: (snapshot, errors, lease metas) of a resolution made in a short-lived
        helper process (shim.pipeline.helper), so this long-lived process never imports a store
        SDK. The snapshot's values are `output`: "environment" (the child's, without HOME) or
        "values" (render's); its files are what --template rendered."""
        snapshot, errors, metas = self.remote.resolve(output, on_stats=self._record)
        if self.metrics is not None and not errors:
            self.metrics.resolution_succeeded()
        return snapshot, errors, metas

    @property
    def remote(self):
        if self._remote is None:
            from shim.pipeline.helper import RemotePool  # lazy: only with --watch
            self._remote = RemotePool(self.options, self.log, new_run=self._helper_pipeline)
        return self._remote

    def _helper_pipeline(self, options: Options) -> "Pipeline":
        """The Pipeline a --watch helper runs. The templates come from this one: loaded before
        the program started, they are in the forked helper's memory, so no helper reads a SRC
        again (by then the program might have changed it) or imports Jinja2 again."""
        run = Pipeline(options)
        run.templates, run._templates_ready = self.prepare_templates(), True
        return run

    def close_helpers(self) -> None:
        """Kill --watch helpers still running (shim is exiting)."""
        if self._remote is not None:
            self._remote.close()

    def watcher(self, output: str, finish: Callable[[dict], dict], current, apply, leases):
        """A Watcher that re-resolves (in helpers) every --watch interval and keeps `leases`;
        `finish` turns a helper's values into what the program gets."""
        def resolve(reuse):
            snapshot, errors, metas = self.remote.resolve(output, reuse, on_stats=self._record)
            if snapshot is not None:
                snapshot = snapshot._replace(values=finish(snapshot.values))
            return snapshot, errors, metas

        return self._watcher(resolve, self.remote, current, apply, leases)

    def watcher_in_process(self, finish: Callable[[Resolved], dict], current, apply, resolved):
        """--watch with --as-files: re-resolve in this process. The files' stand-ins are made
        from the resolution itself (binary values included), which a helper does not hand
        back, so here the store SDK stays loaded (docs/as-files.md)."""
        from shim.delivery.watch import Snapshot  # lazy: only with --watch

        def resolve(reuse):
            again = self.resolve(reuse)
            self._record_resolution(again.resolution, reuse)
            if again.errors:
                return None, again.errors, []
            return (Snapshot(finish(again), dict(again.resolution.rendered)), [],
                    again.resolution.lease_metas())

        return self._watcher(resolve, self.pool, current, apply, resolved.resolution.lease_metas())

    def _watcher(self, resolve, pool, current, apply, leases):
        from shim.delivery.watch import Watcher  # lazy: only with --watch

        watcher = Watcher(resolve=resolve, current=current, interval=self.options.watch,
                          apply=apply, log=self.log, pool=pool,
                          deadline_seconds=self.options.deadline, metrics=self.metrics)
        watcher.track(leases)
        return watcher


def open_log(options: Options) -> Log:
    try:
        return Log(options.log_format, options.log_level, audit_file=options.audit_file)
    except OSError as error:
        raise PermissionDenied(f"--audit-file {options.audit_file}: cannot open it ({error.strerror})",
                               hint="point it at a writable location") from None


def record_stale(log: Log, resolution) -> None:
    """One `secret.stale` per variable that got a value from the fallback cache."""
    for name in sorted(resolution.variables):
        result = resolution.variables[name]
        for reference, _ in result.metas:
            served = resolution.stale.get(reference.fetch_key)
            if served is None:
                continue
            age, error = served
            log.event("secret.stale", "warning",
                      f"{name}: served from the fallback cache ({int(age)}s old); the store "
                      f"failed: {error.message}", variable=name, reference=reference.shown,
                      age_seconds=int(age), error=error.message, exit_code=error.exit_code)


def template_value(reference, outcomes) -> str:
    """The text a template's secret("REF") stands for, or the ShimError of its read."""
    outcome = outcomes.get(reference.fetch_key)
    if outcome is None:
        raise NotFound("nothing was fetched for this reference")
    if isinstance(outcome, ShimError):
        raise outcome
    return select(reference, outcome)


def secret_values(resolved: Resolved) -> dict[str, str]:
    """The resolved variables that have a value (render's output)."""
    return resolved.secret_values()
