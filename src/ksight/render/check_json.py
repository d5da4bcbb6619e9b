"""The `ksight check --json` document (contract: docs/check-json.md, version 1)."""

from __future__ import annotations

from ..diagnose.finding import Report
from .jsonable import jsonable

VERSION = 1


def report_json(report: Report) -> dict:
    return {
        "version": VERSION,
        "verdict": report.verdict,
        "exit_status": report.exit_status(),
        "complete": report.complete,
        "rules_run": report.rules_run,
        "rules_selected": report.rules_selected,
        "host": report.host,
        "kernel": report.kernel,
        "window": report.window,
        "findings": [jsonable(f) for f in report.findings],
        "unavailable": report.unavailable,
        "not_evaluated": [jsonable(n) for n in report.not_evaluated],
        "counter_resets": report.counter_resets,
        "series_breaks": report.series_breaks,
        "snapshots_left_out": report.snapshots_left_out,
        "notes": report.notes,
    }
