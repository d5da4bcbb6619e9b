"""Run the rules of the selected areas over a list of snapshots and collect a Report."""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Iterable

from ..model.snapshot import Snapshot
from .finding import NotEvaluated, Report, severity_rank
from .rule import RULES, Context, Rule

# area -> module under ksight.diagnose.rules. A new area is one line here plus its module.
AREAS = {
    "pagecache": "pagecache",
}


def load_rules(areas: Iterable[str] | None = None) -> list[Rule]:
    wanted = list(AREAS) if not areas else list(areas)
    for a in wanted:
        if a not in AREAS:
            from ..errors import UsageError

            raise UsageError(f"unknown area {a!r}; areas: {', '.join(AREAS)}")
        importlib.import_module(f"ksight.diagnose.rules.{AREAS[a]}")
    return [r for r in RULES.values() if r.area in wanted]


def sources_needed(areas: Iterable[str] | None = None) -> list[str]:
    """Every system source the selected rules read (so check collects only those)."""
    need: list[str] = []
    for r in load_rules(areas):
        for s in r.needs + r.uses:
            if s not in need:
                need.append(s)
    return need


def _why_missing(snaps: list[Snapshot], source: str) -> str | None:
    for s in snaps:
        if s.get(source) is None:
            m = s.missing(source)
            return f"{source}: {m.reason}" if m else f"{source}: not collected"
    return None


def diagnose(snapshots: list[Snapshot], areas: Iterable[str] | None = None) -> Report:
    if not snapshots:
        raise ValueError("diagnose needs at least one snapshot")
    rules = load_rules(areas)
    ctx = Context(list(snapshots))
    first, last = ctx.first, ctx.last
    h = last.host
    report = Report(
        host={"hostname": h.hostname, "page_size": h.page_size, "cpus": h.cpus},
        kernel=h.kernel,
        window={"start": first.taken_at, "end": last.taken_at, "seconds": round(ctx.seconds, 3),
                "snapshots": len(snapshots)},
        unavailable=_unavailable(snapshots),
    )
    report.window_missing = ctx.window is None and any(r.window for r in rules)
    for r in rules:
        if r.window and ctx.window is None:
            report.not_evaluated.append(NotEvaluated(r.id, "needs two snapshots (a window)"))
            continue
        reason = next((w for w in (_why_missing([first, last] if r.window else [last], s)
                                   for s in r.needs) if w), None)
        if reason:
            report.not_evaluated.append(NotEvaluated(r.id, reason))
            continue
        try:
            out = r.func(ctx, r)
        except Exception as exc:  # a bug in one rule must not hide the others' findings
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            report.not_evaluated.append(NotEvaluated(
                r.id, f"internal error: {type(exc).__name__}: {exc} at {tb.filename}:{tb.lineno}"))
            continue
        report.rules_run += 1
        if out is None:
            continue
        report.findings.extend(out if isinstance(out, list) else [out])
    report.findings.sort(key=lambda f: (-severity_rank(f.severity), f.id))
    if ctx.window is not None:
        report.counter_resets = [f"{s}:{p}" for s, p in ctx.window.resets]
    return report


def _unavailable(snapshots: list[Snapshot]) -> list[dict]:
    seen: dict[str, str] = {}
    for s in snapshots:
        for m in s.unavailable:
            seen.setdefault(m.source, m.reason)
    return [{"source": k, "reason": v} for k, v in seen.items()]
