"""`shim check`: the plan, one row per variable the shim produces, never a value."""

from __future__ import annotations

import json
import sys

import click

from shim.cli import _prepare, _report, _resolve, _shared_options, _target_identity
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
    rows.sort(key=lambda row: row["variable"])
    return rows


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
    table = [header]
    for row in rows:
        table.append((row["variable"], row["source"], " ".join(row["references"]) or "-",
                      row["status"], row["version"] or "-", _age(row["age_seconds"])))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
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
@_shared_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def check_command(as_json, **options):
    """Resolve exactly as exec would and print the plan; never a value."""
    run = _prepare(options, command="check")
    identity_errors = []
    try:
        _target_identity(run)
    except ShimError as error:
        identity_errors.append(error)
    plan, resolution, errors = _resolve(run)
    errors = identity_errors + errors
    rows = plan_rows(plan, resolution, max_age=run.options["max_age_seconds"],
                     enforce=run.options["enforce_max_age"])
    if as_json:
        print_json(rows, errors)
    else:
        print_table(rows)
    if errors:
        sys.exit(_report(run, errors))
