"""Run the rules of the selected areas over a series of snapshots and collect a Report.

Honest verdicts: before a rule runs, the engine checks what it declared it cannot look without
(a window with a clock, sources, counters by name, sysctls, entity tables). A rule that could
not look is listed in `not_evaluated` with the reason, and only rules that looked count in
`rules_run`. A series that crosses a reboot or mixes hosts is cut there: the last unbroken part
is diagnosed and the report says where it was cut and why.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from ..collect.plan import Needs, Plan
from ..model.series import Series
from ..model.snapshot import Snapshot
from .finding import NotEvaluated, Report, severity_rank
from .rule import RULES, CannotLook, Context, Rule

# area -> module under ksight.diagnose.rules. A new area is one line here plus its module.
AREAS = {
    "pagecache": "pagecache",
    "memory": "memory",
    "tcp": "tcp",
    "net": "net",
    "cpu": "cpu",
}


def load_rules(areas: Iterable[str] | None = None) -> list[Rule]:
    wanted = list(AREAS) if not areas else list(areas)
    for a in wanted:
        if a not in AREAS:
            from ..errors import UsageError

            raise UsageError(f"unknown area {a!r}; areas: {', '.join(AREAS)}")
        importlib.import_module(f"ksight.diagnose.rules.{AREAS[a]}")
    return [r for r in RULES.values() if r.area in wanted]


def plan_for(areas: Iterable[str] | None = None, seconds: float | None = None, *,
             owners_later: bool = False) -> Plan:
    """What the collector must read for the selected areas' rules. With `seconds` (the window
    about to be sampled), rules that need a longer window are left out of the plan: they could
    not look anyway (the engine says so), and their entity tables are the costly part.
    `owners_later`: sockets are sampled without their owners, which `diagnose(owners=...)` asks
    for only for the rules that found something (Plan.owners_later)."""
    rules = load_rules(areas)
    if seconds is not None:
        rules = [r for r in rules if not (r.needs.window and r.needs.min_seconds > seconds)]
    return Plan.of((r.needs for r in rules), owners_later=owners_later)


def longest_window_needed(areas: Iterable[str] | None = None) -> float:
    return max((r.needs.min_seconds for r in load_rules(areas)), default=0.0)


def sources_needed(areas: Iterable[str] | None = None) -> list[str]:
    """Every system source the selected rules read."""
    return list(plan_for(areas).sources)


def _source_reason(snaps: Iterable[Snapshot], source: str) -> str | None:
    for s in snaps:
        if s.get(source) is None:
            m = s.missing(source)
            return f"{source}: {m.reason}" if m else f"{source}: not collected"
    return None


def why_cannot_look(needs: Needs, series: Series) -> str | None:
    """The first thing a rule needs that this series does not have, in words; None if all."""
    if needs.window:
        if series.intervals == 0:
            return "needs two snapshots (a window); this has one"
        if not series.has_clock:
            return ("no clock: the snapshots carry no monotonic time, uptime or timestamp (or "
                    "they are under 1 ms apart), so no rate can be computed")
        if needs.min_seconds and series.seconds < needs.min_seconds:
            return (f"needs a window of at least {needs.min_seconds:g} s to judge; this one covers "
                    f"{series.seconds:.3g} s (check --interval {needs.min_seconds:g})")
    ends = [series.first, series.last] if needs.window else [series.last]
    for s in needs.sources:
        why = _source_reason(ends, s)
        if why:
            return why
    for c in needs.counters:
        why = _source_reason(ends, c.source)
        if why:
            return why
        if not any(c.read(s.get(c.source)) is not None for s in ends):
            return c.absent_reason()
    if needs.sysctls:
        sc = series.last.get("sysctl")
        if sc is None:
            return _source_reason([series.last], "sysctl")
        for name in needs.sysctls:
            if sc.text(name) is None:
                why = sc.missing.get(name) if isinstance(getattr(sc, "missing", None), dict) else None
                return f"sysctl {name}: {why or 'not readable or not captured'}"
    if needs.processes and series.last.processes is None:
        return "the process table was not collected"
    if needs.sockets and series.last.sockets is None and series.last.get("socket_summary") is None:
        # a recording holds the socket summary instead: the rule says what it cannot judge on it
        return "the socket table was not collected"
    return None


def _run(r: Rule, ctx: Context, series: Series) -> tuple[list, NotEvaluated | None]:
    """(findings, None) when the rule looked, ([], why) when it could not."""
    reason = why_cannot_look(r.needs, series)
    if reason:
        return [], NotEvaluated(r.id, reason)
    try:
        out = r.func(ctx, r)
    except CannotLook as c:
        return [], NotEvaluated(r.id, c.reason)
    except Exception as exc:  # a bug in one rule must not hide the others' findings
        import traceback  # a rule that crashed: rare (~0.9 ms of every check otherwise)

        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return [], NotEvaluated(
            r.id, f"internal error: {type(exc).__name__}: {exc} at {tb.filename}:{tb.lineno}")
    if out is None:
        return [], None
    return (out if isinstance(out, list) else [out]), None


def diagnose(snapshots: list[Snapshot], areas: Iterable[str] | None = None, *,
             owners: Callable[[list[Snapshot], tuple[str, ...]], list[Snapshot]] | None = None
             ) -> Report:
    """`owners(snapshots, states)`: for snapshots sampled without socket owners
    (Plan.owners_later), the same snapshots with the owners of their sockets in `states` (live:
    collect.sockets.add_owners). Asked once, after the rules looked, for the states the rules
    that found something name owners in (Needs.socket_owners); those rules then look again, at
    the snapshots with owners, and their second verdict is the one reported."""
    if not snapshots:
        raise ValueError("diagnose needs at least one snapshot")
    rules = load_rules(areas)
    series = Series.of(snapshots)
    ctx = Context(series)
    first, last = series.first, series.last
    h = last.host
    window = {"start": first.taken_at, "end": last.taken_at, "seconds": round(series.seconds, 3),
              "snapshots": len(series.snapshots), "intervals": series.intervals,
              "intervals_without_clock": series.clock_missing}
    report = Report(
        host={"hostname": h.hostname, "page_size": h.page_size, "cpus": h.cpus},
        kernel=h.kernel,
        window=window,
        unavailable=_unavailable(series.snapshots),
    )
    report.window_missing = series.intervals == 0 and any(r.window for r in rules)
    report.series_breaks = [{"after_snapshot": b.after, "kind": b.kind, "reason": b.reason}
                            for b in series.breaks]
    report.snapshots_left_out = series.dropped
    results = {r.id: _run(r, ctx, series) for r in rules}
    again = [r for r in rules if r.needs.socket_owners and results[r.id][0]]
    if owners is not None and again:
        states = tuple(dict.fromkeys(s for r in again for s in r.needs.socket_owners))
        snaps = owners(list(series.snapshots), states)
        if any(a is not b for a, b in zip(snaps, series.snapshots)):  # some owner was found
            series2 = Series.of(snaps)
            ctx2 = Context(series2)
            for r in again:
                results[r.id] = _run(r, ctx2, series2)
            report.unavailable = _unavailable(series2.snapshots)  # fds that could not be read
    for r in rules:
        out, why = results[r.id]
        if why is not None:
            report.not_evaluated.append(why)
            continue
        report.rules_run += 1
        report.findings.extend(out)
    report.rules_selected = len(rules)
    report.findings.sort(key=lambda f: (-severity_rank(f.severity), f.id))
    report.counter_resets = ctx.resets()
    return report


def _unavailable(snapshots: Iterable[Snapshot]) -> list[dict]:
    seen: dict[str, str] = {}
    for s in snapshots:
        for m in s.unavailable:
            seen.setdefault(m.source, m.reason)
    return [{"source": k, "reason": v} for k, v in seen.items()]
