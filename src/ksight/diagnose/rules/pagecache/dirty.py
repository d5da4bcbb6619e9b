"""Dirty pages at the writeback thresholds the kernel computes."""

from __future__ import annotations

from ....model.dirty import dirty_limits
from ...finding import Action
from ...rule import Context, Rule, Threshold, rule
from .common import fmt_kb, half, toward
from .counters import NR_DIRTIED, NR_WRITTEN


@rule("pagecache.dirty-backlog", title="Dirty pages at the writeback thresholds",
      needs=("vmstat", "sysctl", "meminfo"), uses=("zoneinfo",), window=False,
      thresholds={
          "warn_fraction_of_freerun": Threshold(1.0, "x freerun ceiling",
                                                "above (thresh+bg_thresh)/2 writers are throttled "
                                                "in balance_dirty_pages"),
          "critical_fraction_of_thresh": Threshold(0.95, "x dirty threshold",
                                                   "at the threshold every writer waits for writeback"),
      })
def dirty_backlog(ctx: Context, r: Rule):
    """Dirty + writeback pages compared with the thresholds the kernel computes, in every
    snapshot of the window (the peak counts; one snapshot is enough)."""
    page_kb = ctx.page_size // 1024
    worst = None
    looked = False
    for s in ctx.snapshots:
        lim = dirty_limits(s)
        if lim is None or lim.dirty_total_pages is None:
            continue
        looked = True
        if worst is None or lim.dirty_total_pages / max(lim.effective_freerun, 1) > \
                worst.dirty_total_pages / max(worst.effective_freerun, 1):
            worst = lim
    if not looked:
        raise ctx.cannot_look("no dirty thresholds: vm.dirty_* sysctls or the dirty page "
                              "counts are missing")
    if worst.dirty_total_pages < r.t("warn_fraction_of_freerun") * worst.effective_freerun:
        return None
    critical = worst.dirty_total_pages >= r.t("critical_fraction_of_thresh") * worst.effective_thresh
    ev = [
        ctx.ev("dirty + writeback (peak in window)", worst.dirty_total_pages * page_kb, "kB", "vmstat",
               threshold=worst.effective_freerun * page_kb, note="nr_dirty + nr_writeback"),
        ctx.ev("background threshold", worst.effective_bg_thresh * page_kb, "kB", "vmstat",
               note="flusher threads start writeback above it"),
        ctx.ev("throttle (freerun) ceiling", worst.effective_freerun * page_kb, "kB", "vmstat",
               note="(thresh + bg_thresh) / 2: writers are throttled above it"),
        ctx.ev("dirty threshold", worst.effective_thresh * page_kb, "kB", "vmstat",
               note="writers block above it"),
    ]
    if ctx.series.intervals and ctx.series.has_clock:
        for c in (NR_DIRTIED, NR_WRITTEN):
            rate = ctx.rate(c)
            if rate is not None:
                ev.append(ctx.ev(c.name, rate * page_kb, "kB/s", "vmstat"))
    for n in ("vm.dirty_ratio", "vm.dirty_bytes", "vm.dirty_background_ratio",
              "vm.dirty_background_bytes", "vm.dirty_expire_centisecs"):
        v = ctx.sysctl(n)
        if v is not None:
            ev.append(ctx.ev(n, v, "", "/proc/sys/" + n.replace(".", "/")))
    mi = ctx.get("meminfo")
    from_bytes, bg_from_bytes = bool(worst.dirty_bytes), bool(worst.background_bytes)
    fg = "vm.dirty_bytes" if from_bytes else "vm.dirty_ratio"
    bgk = "vm.dirty_background_bytes" if bg_from_bytes else "vm.dirty_background_ratio"
    actions = []
    if ctx.sysctl(bgk) is not None:
        actions.append(Action.sysctl(
            bgk, ctx.sysctl_text(bgk), half(ctx.sysctl(bgk), 16 << 20 if bg_from_bytes else 1),
            why="start background writeback sooner so dirty data does not pile up to the "
                "throttle point; trade-off: more, smaller writes and less write coalescing"))
    exp = ctx.sysctl("vm.dirty_expire_centisecs")
    if exp is not None:
        actions.append(Action.sysctl(
            "vm.dirty_expire_centisecs", ctx.sysctl_text("vm.dirty_expire_centisecs"),
            toward(exp, 1000, "down"),
            why="write back data older than 10 s instead of 30 s: smoother writeback, less lost "
                "on a crash; trade-off: short-lived files get written too"))
    if ctx.sysctl(fg) is not None:
        actions.append(Action.sysctl(
            fg, ctx.sysctl_text(fg),
            (max((ctx.sysctl(fg) or 0) * 2, 268435456) if from_bytes
             else min(max((ctx.sysctl(fg) or 20) * 3 // 2, 20), 60)),
            why="a higher foreground limit lets bursts finish without blocking writers; "
                "trade-off: more unwritten data in memory, longer stalls when it must be flushed"
                + (f" (MemTotal {fmt_kb(mi.mem_total_kb)})" if mi and mi.mem_total_kb else "")))
    actions.append(Action.command("ksight trace writeback --seconds 10  # which processes are "
                                  "throttled in balance_dirty_pages, and for how long"))
    return r.finding(
        "critical" if critical else "warning", ev,
        "Dirty page cache reached the point where the kernel throttles the processes that "
        "write (balance_dirty_pages): writes that normally complete in memory now wait for the "
        "disk, so write latency follows disk latency. Writeback is slower than the rate at "
        "which pages are dirtied.",
        actions)
