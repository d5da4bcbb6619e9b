"""Shared by the CPU rules: the window's intervals (mpstat percentages per CPU, rates) computed
once per diagnosis, and judging a column per interval and per CPU."""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ....model import cpu as model


def intervals(ctx) -> list[model.CpuInterval]:
    """Every interval of the window (cached on the context: six rules read them)."""
    got = getattr(ctx, "_cpu_intervals", None)
    if got is None:
        ser = ctx.series
        got = []
        for i in range(ser.intervals):
            if ser.seconds_per_interval[i] is None:
                continue
            a, b = ser.snapshots[i], ser.snapshots[i + 1]
            if a.get("stat") is None or b.get("stat") is None:
                continue
            # light: percentages and counts only; the peak interval's top processes and
            # softirq/interrupt rates are computed when a rule cites it (peak_interval)
            got.append(model.interval(ser, i, top=0, rates=False))
        ctx._cpu_intervals = got
    if not got:
        raise ctx.cannot_look("no interval with /proc/stat at both ends and a clock")
    return got


@dataclass(frozen=True)
class Judged:
    """Where a column crossed its thresholds, per interval and per CPU."""

    field: str
    peak: model.Peak
    need: int  # intervals it must hold for (sustained)
    fired_all: bool
    fired_cpu: bool
    critical: bool

    @property
    def fired(self) -> bool:
        return self.fired_all or self.fired_cpu


def need_intervals(n: int, wanted: float) -> int:
    """`wanted` intervals, or every interval of a shorter window (at least one)."""
    return max(1, min(int(wanted), n))


def judge(ctx, r, field: str) -> Judged:
    ivs = intervals(ctx)
    need = need_intervals(len(ivs), r.t("min_intervals"))
    p = model.peak(ivs, field, all_at=r.t("warn_all_pct"), cpu_at=r.t("warn_cpu_pct"))
    crit = sum(1 for iv in ivs if iv.all.get(field) >= r.t("critical_all_pct")) >= need
    return Judged(field, p, need, p.intervals_all >= need, p.intervals_cpu >= need, crit)


def where(ctx, j: Judged) -> str:
    n = len(intervals(ctx))
    p = j.peak
    if j.fired_cpu and not j.fired_all:
        others = (f"CPUs {model.cpulist(p.cpus_over)} were over the per-CPU threshold"
                  if len(p.cpus_over) > 1 else "only this CPU was over the per-CPU threshold")
        return (f"CPU {p.cpu} at {p.cpu_pct:.1f} % (interval {p.cpu_interval + 1} of {n}), while "
                f"all CPUs together peaked at {p.all_pct:.1f} %: {others}")
    return (f"{p.all_pct:.1f} % of all CPU time at the peak (interval {p.all_interval + 1} of "
            f"{n}); the busiest CPU, CPU {p.cpu}, {p.cpu_pct:.1f} % (interval "
            f"{p.cpu_interval + 1})")


def pct_evidence(ctx, r, j: Judged, label: str) -> list:
    ivs = intervals(ctx)
    mean_all = sum(iv.all.get(j.field) for iv in ivs) / len(ivs)
    ev = [ctx.ev(f"{label} (all CPUs, peak interval)", j.peak.all_pct, "%", "/proc/stat",
                 threshold=r.t("warn_all_pct"),
                 note=f"interval {j.peak.all_interval + 1} of {len(ivs)}; mean {mean_all:.1f} % "
                      f"over {ctx.seconds:.3g} s; at or above the threshold in "
                      f"{j.peak.intervals_all} interval(s), {j.need} needed")]
    if j.peak.cpu is not None:
        ev.append(ctx.ev(f"{label} on CPU {j.peak.cpu} (busiest, peak interval)", j.peak.cpu_pct,
                         "%", "/proc/stat", threshold=r.t("warn_cpu_pct"),
                         note=f"interval {j.peak.cpu_interval + 1}; some CPU at or above the "
                              f"per-CPU threshold in {j.peak.intervals_cpu} interval(s)"
                              + (f"; CPUs over it: {model.cpulist(j.peak.cpus_over)}"
                                 if j.peak.cpus_over else "")))
    return ev


def subject_cpus(j: Judged):
    from ...finding import Subject

    if j.fired_cpu and not j.fired_all and j.peak.cpus_over:
        return Subject(cpu=model.cpulist(j.peak.cpus_over))
    return None


def peak_interval(ctx, j: Judged) -> model.CpuInterval:
    """The interval to cite details from: the per-CPU peak when only a CPU fired, else the
    all-CPU peak."""
    ivs = intervals(ctx)
    want = j.peak.cpu_interval if (j.fired_cpu and not j.fired_all) else j.peak.all_interval
    i = next((iv.index for iv in ivs if iv.index == want), ivs[-1].index)
    cache = getattr(ctx, "_cpu_detail", None)
    if cache is None:
        cache = ctx._cpu_detail = {}
    if i not in cache:
        cache[i] = model.interval(ctx.series, i, top=5, rates=True)
    return cache[i]
