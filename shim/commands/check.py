"""`shim check`: the plan, one row per variable the shim produces, never a value."""

from __future__ import annotations

import json
import sys

import click

from shim.commands.cli import command_options, ignored_given, pipeline_for
from shim.commands.execute import prepare_as_files
from shim.delivery import privileges
from shim.tools.deadline import Deadline
from shim.tools.errors import ConfigError, NotRead, ShimError
from shim.pipeline.run import template_value
from shim.providers.base import age_seconds
from shim.pipeline.rotation import overdue


def plan_rows(plan, resolution, *, max_age: float | None = None, enforce: bool = False,
              templates=None, left_as_is: bool = True) -> list[dict]:
    """One row per variable; an overdue secret says so (with its limit) whether or not it is refused.

    `left_as_is`: also a row per *_FILE variable outside every secrets dir. On a workstation
    those are mostly the host's own (NIX_SSL_CERT_FILE...), so the table lists them only at -v.
    """
    rows = []
    for name in sorted(plan.entries):
        entry = plan.entries[name]
        result = resolution.variables.get(name)
        references = [part.reference.canonical for part in entry.secret_parts]
        row = {"variable": name, "source": entry.source,
               "references": references, "origin": entry.origin}
        if result is None:
            row["status"] = "error"
        elif isinstance(result.error, NotRead):
            row.update(status="not read", effect=result.error.effect, reason=result.error.line())
        elif result.error is not None:
            row["status"] = result.error.kind
            row["exit_code"] = result.error.exit_code
            row["message"] = result.error.message
        elif result.value is None:
            row["status"] = "unset (optional, missing)"
        elif entry.kept_placeholders:
            row["status"] = "placeholder kept"
        else:
            row["status"] = "ok"
        metas = result.metas if result is not None else []
        versions = [m.version for _, m in metas if m.version]
        ages = [a for a in (age_seconds(m) for _, m in metas) if a is not None]
        row["version"] = ",".join(versions) or None
        row["age_seconds"] = int(max(ages)) if ages else None
        stale = [resolution.stale[ref.fetch_key][0] for ref, _ in metas
                 if ref.fetch_key in resolution.stale]
        if stale and row["status"] == "ok":
            # --fallback-cache: the store was unavailable; AGE is how old the cached copy is
            row["status"] = "stale"
            row["stale_seconds"] = row["age_seconds"] = int(max(stale))
        _mark_overdue(row, metas, max_age, enforce)
        rows.append(row)
    for error in resolution.errors:
        if isinstance(error, NotRead) and error.variable is None:    # an --import
            rows.append({"variable": "-", "source": "import", "references": [error.reference],
                         "origin": None, "status": "not read", "effect": error.effect,
                         "reason": error.line(), "version": None, "age_seconds": None})
    for error in plan.errors:
        if error.variable and error.variable not in plan.entries:
            rows.append({"variable": error.variable, "source": "-", "references": [],
                         "origin": None, "status": error.kind, "exit_code": error.exit_code,
                         "message": error.message, "version": None, "age_seconds": None})
    for file_var in (plan.left_as_is if left_as_is else ()):
        rows.append({"variable": file_var, "source": "file-var", "references": [], "origin": None,
                     "status": "left as is (outside every secrets dir)", "version": None,
                     "age_seconds": None})
    if templates:
        rows.extend(template_rows(templates, resolution))
    rows.sort(key=lambda row: row["variable"])
    return rows


def template_rows(templates, resolution) -> list[dict]:
    """--template: one row per reference of each template (SOURCE template, its file's name)."""
    rows = []
    for template in templates.templates:
        for text, reference in sorted(template.references.items()):
            row = {"variable": template.spec.name, "source": "template",
                   "references": [reference.canonical], "origin": template.spec.source,
                   "version": None, "age_seconds": None}
            try:
                template_value(reference, resolution.outcomes)
            except ShimError as error:
                row.update(status=error.kind, exit_code=error.exit_code, message=error.message)
            else:
                row["status"] = "ok"
                fetched = resolution.outcomes[reference.fetch_key]
                row["version"] = fetched.meta.version
                age = age_seconds(fetched.meta)
                row["age_seconds"] = int(age) if age is not None else None
            rows.append(row)
    return rows


def _say_what_redaction_skips(run, resolution) -> None:
    """-v: the values --redact would leave in the output, being shorter than its minimum."""
    from shim.delivery.redact import MIN_LENGTH  # lazy: only for check -v
    for name in sorted(resolution.variables):
        value = resolution.variables[name].value
        if value is not None and len(value) < MIN_LENGTH:
            run.log.event("redact.too_short", "info",
                          f"{name}: shorter than {MIN_LENGTH} characters, --redact leaves it in "
                          "the output", variable=name)


def _mark_files(rows, as_files, resolution, errors) -> None:
    """--as-files: the file each variable would be delivered as (DELIVERY / "delivery")."""
    try:
        names = set(as_files.names(resolution))
    except ShimError as error:
        errors.append(error)
        names = set()
    for row in rows:
        row["delivery"] = as_files.path(row["variable"]) if row["variable"] in names else "env"


def _mark_watch(rows, plan, resolution, run) -> None:
    """check -v: what --watch would do for each reference (WATCH / "watch"): a cheap change
    probe, a lease renewal, or a read on every tick (shim/pipeline/probes.py)."""
    from shim.pipeline.probes import watch_kind  # lazy: only for check -v
    deadline = Deadline(run.options.deadline)
    for row in rows:
        entry = plan.entries.get(row["variable"])
        result = resolution.variables.get(row["variable"])
        if result is not None and isinstance(result.error, NotRead):
            # check did not read it because a read mints a lease: --watch renews that lease
            row["watch"] = ["lease renewal" if "mint" in result.error.effect
                            else "read every tick"]
            continue
        metas = dict((ref.fetch_key, meta) for ref, meta in result.metas) if result else {}
        row["watch"] = [watch_kind(part.reference, metas.get(part.reference.fetch_key), run.pool,
                                   deadline) for part in entry.secret_parts] if entry else []


def _mark_overdue(row: dict, metas, max_age, enforce: bool) -> None:
    verdicts = [v for v in (overdue(ref, meta, max_age) for ref, meta in metas) if v is not None]
    if not verdicts:
        return
    age, limit = max(verdicts, key=lambda verdict: verdict[0] - verdict[1])
    row["max_age_seconds"] = int(limit)
    row["overdue_seconds"] = int(age - limit)
    if row["status"] == "ok":
        row["status"] = "overdue (refused)" if enforce else "overdue"
        if enforce:
            row["exit_code"] = ConfigError.exit_code


def print_json(rows, errors) -> None:
    document = {"ok": not errors, "variables": rows,
                "errors": [{"variable": e.variable, "reference": e.reference,
                            "exit_code": e.exit_code, "message": e.line()} for e in errors]}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def print_table(rows) -> None:
    header = ("VARIABLE", "SOURCE", "REFERENCE", "STATUS", "VERSION", "AGE")
    files = any("delivery" in row for row in rows)
    watch = any("watch" in row for row in rows)     # check -v
    table = [header + ("DELIVERY",) * files + ("WATCH",) * watch]
    for row in rows:
        status = row["status"] + (f" ({row['effect']})" if "effect" in row else "")
        line = (row["variable"], row["source"], " ".join(row["references"]) or "-",
                status, row["version"] or "-", _age(row["age_seconds"]))
        line += (row.get("delivery", "env"),) * files
        table.append(line + ("; ".join(row.get("watch") or ()) or "-",) * watch)
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n")


def left_as_is_summary(plan) -> str | None:
    """The one line that stands for the *_FILE variables the table leaves out (without -v)."""
    count = len(plan.left_as_is)
    if not count:
        return None
    names = "variable" if count == 1 else "variables"
    return (f"({count} more *_FILE {names} outside every secrets dir, left as is: "
            f"-v lists {'it' if count == 1 else 'them'})")


def warn_ignored(log, flags) -> None:
    """exec's options that cannot apply to check, named once (check accepts them: people copy
    the ENTRYPOINT's line)."""
    if flags:
        log.warning(f"check ignores {', '.join(flags)}: only a running program is affected "
                    f"(exec)", event="check.ignored_options", options=flags)


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@click.command("check")
@command_options("check")
def check_command(**raw):
    """Resolve exactly as exec would and print the plan; never a value.

    Takes exec's options too; those that only change the running program are ignored and
    named once on stderr."""
    run = pipeline_for("check", raw)
    warn_ignored(run.log, ignored_given())
    identity_errors = []
    identity = None
    try:
        identity = privileges.target_identity(run.options, run.log)
    except ShimError as error:
        identity_errors.append(error)
    try:
        run.prepare_fallback(identity)
    except ShimError as error:
        identity_errors.append(error)
        run.fallback = None
    try:
        run.prepare_templates()
    except ShimError as error:
        identity_errors.append(error)
    try:
        as_files = run.as_files = prepare_as_files(run.options)  # --as-files: which variables become files
    except ShimError as error:
        identity_errors.append(error)
        as_files = None
    plan, resolution, errors = run.resolve()
    # Not read on purpose (a dynamic secret, a single-use secret id): listed, not failures.
    errors = identity_errors + [error for error in errors if not isinstance(error, NotRead)]
    listed = run.options.as_json or run.options.verbose > 0
    rows = plan_rows(plan, resolution, max_age=run.options.max_age,
                     enforce=run.options.enforce_max_age, templates=run.templates,
                     left_as_is=listed)
    if as_files:
        _mark_files(rows, as_files, resolution, errors)
    if run.options.verbose:
        _say_what_redaction_skips(run, resolution)
        _mark_watch(rows, plan, resolution, run)
    if run.options.as_json:
        print_json(rows, errors)
    else:
        print_table(rows)
        summary = None if listed else left_as_is_summary(plan)
        if summary:
            sys.stdout.write(summary + "\n")
    _discard_logins(run)
    if errors:
        run.fail(errors)


def _discard_logins(run) -> None:
    """A login made for check is revoked: check leaves no token behind in any store."""
    for provider in run.pool.loaded().values():
        discard = getattr(provider, "discard_login", None)
        if discard is not None:
            discard(Deadline(run.options.deadline))
