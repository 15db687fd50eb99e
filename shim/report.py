"""`shim check`: the plan, one row per variable the shim produces, never a value."""

from __future__ import annotations

import json
import sys

import click

from shim.cli import command_options, pipeline_for
from shim.deadline import Deadline
from shim.errors import ConfigError, ShimError
from shim.resolve import age_seconds
from shim.rotation import overdue


def plan_rows(plan, resolution, *, max_age: float | None = None, enforce: bool = False) -> list[dict]:
    """One row per variable; an overdue secret says so (with its limit) whether or not it is refused."""
    rows = []
    for name in sorted(plan.entries):
        entry = plan.entries[name]
        result = resolution.variables.get(name)
        references = [part.reference.canonical for part in entry.secret_parts]
        row = {"variable": name, "source": entry.source,
               "references": references, "origin": entry.origin}
        if result is None:
            row["status"] = "error"
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
        _mark_overdue(row, metas, max_age, enforce)
        rows.append(row)
    for error in plan.errors:
        if error.variable and error.variable not in plan.entries:
            rows.append({"variable": error.variable, "source": "-", "references": [],
                         "origin": None, "status": error.kind, "exit_code": error.exit_code,
                         "message": error.message, "version": None, "age_seconds": None})
    for file_var in plan.left_as_is:
        rows.append({"variable": file_var, "source": "file-var", "references": [], "origin": None,
                     "status": "left as is (outside every secrets dir)", "version": None,
                     "age_seconds": None})
    rows.sort(key=lambda row: row["variable"])
    return rows


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
    probe, a lease renewal, or a read on every tick (shim/probes.py)."""
    from shim.probes import watch_kind  # lazy: only for check -v
    deadline = Deadline(run.options.deadline)
    for row in rows:
        entry = plan.entries.get(row["variable"])
        result = resolution.variables.get(row["variable"])
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
        line = (row["variable"], row["source"], " ".join(row["references"]) or "-",
                row["status"], row["version"] or "-", _age(row["age_seconds"]))
        line += (row.get("delivery", "env"),) * files
        table.append(line + ("; ".join(row.get("watch") or ()) or "-",) * watch)
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n")


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
    """Resolve exactly as exec would and print the plan; never a value."""
    run = pipeline_for("check", raw)
    identity_errors = []
    try:
        run.target_identity()
    except ShimError as error:
        identity_errors.append(error)
    try:
        as_files = run.prepare_as_files()  # --as-files: which variables become files
    except ShimError as error:
        identity_errors.append(error)
        as_files = None
    plan, resolution, errors = run.resolve()
    errors = identity_errors + errors
    rows = plan_rows(plan, resolution, max_age=run.options.max_age,
                     enforce=run.options.enforce_max_age)
    if as_files:
        _mark_files(rows, as_files, resolution, errors)
    if run.options.verbose:
        _mark_watch(rows, plan, resolution, run)
    if run.options.as_json:
        print_json(rows, errors)
    else:
        print_table(rows)
    if errors:
        run.fail(errors)
