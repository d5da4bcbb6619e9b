"""The `ksight check --json` document (contract: docs/check-json.md, version 1)."""

from __future__ import annotations

from ..diagnose.finding import Report
from .jsonable import jsonable

VERSION = 1


def report_json(report: Report) -> dict:
    verdict = report.worst or "ok"
    if report.exit_status() == 3:
        verdict = "unknown"
    return {
        "version": VERSION,
        "verdict": verdict,
        "exit_status": report.exit_status(),
        "host": report.host,
        "kernel": report.kernel,
        "window": report.window,
        "findings": [jsonable(f) for f in report.findings],
        "unavailable": report.unavailable,
        "not_evaluated": [jsonable(n) for n in report.not_evaluated],
        "counter_resets": report.counter_resets,
    }
