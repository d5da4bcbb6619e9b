"""Dirty pages at the writeback thresholds the kernel computes."""

from __future__ import annotations

from ....model.dirty import dirty_limits, memcg_dirty_limits
from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule
from .common import cgroup_dir, fmt_kb, half, toward
from .counters import NR_DIRTIED, NR_WRITTEN


@rule("pagecache.dirty-backlog", title="Dirty pages at the writeback thresholds",
      needs=("vmstat", "meminfo"), uses=("zoneinfo", "sysctl", "cgroup_memory"), window=False,
      cgroup_files=("stat", "usage:limited", "max"),
      thresholds={
          "warn_fraction_of_freerun": Threshold(1.0, "x freerun ceiling",
                                                "above (thresh+bg_thresh)/2 writers are throttled "
                                                "in balance_dirty_pages"),
          "critical_fraction_of_thresh": Threshold(0.95, "x dirty threshold",
                                                   "at the threshold every writer waits for writeback"),
      })
def dirty_backlog(ctx: Context, r: Rule):
    """Dirty + NFS-unstable + writeback pages against the thresholds the kernel computes, in
    every snapshot of the window (the peak counts; one snapshot is enough: window=False).
    Checked in torvalds/linux mm/page-writeback.c: balance_dirty_pages throttles above the
    freerun ceiling (thresh + bg_thresh) / 2; before 5.8 its dirty count is NR_FILE_DIRTY +
    NR_UNSTABLE_NFS + NR_WRITEBACK (nr_unstable added here; 5.8+ prints it as 0).
    Thresholds: the kernel's own vmstat nr_dirty_threshold / nr_dirty_background_threshold when
    printed (2.6.30+), else computed from the vm.dirty_* sysctls (model.dirty); with neither,
    not_evaluated. The sysctls are only needed for the advice, so a capture without /proc/sys is
    still judged (pcp meminfo-root-005: 518,246-page threshold).
    cgroup v2 writeback: a group whose file_dirty + file_writeback passes its share of the limit
    (model.dirty.memcg_dirty_limits, as mdtc_calc_avail) is throttled while the machine-wide
    numbers look fine: reported with the group as subject. v1 has no per-group domain.
    Kernels checked: node_exporter's 4.x vmstat, pcp meminfo-root-001..007 (3.x to 5.9+)."""
    page_kb = ctx.page_size // 1024
    worst = None
    for s in ctx.snapshots:
        lim = dirty_limits(s)
        if lim is None or lim.dirty_total_pages is None:
            continue
        if worst is None or lim.dirty_total_pages / max(lim.effective_freerun, 1) > \
                worst.dirty_total_pages / max(worst.effective_freerun, 1):
            worst = lim
    if worst is None:
        raise ctx.cannot_look("no dirty thresholds: neither vmstat nr_dirty_threshold nor the "
                              "vm.dirty_* sysctls, or no dirty page counts")
    cg = _memcg_findings(ctx, r, worst, page_kb)
    if worst.dirty_total_pages < r.t("warn_fraction_of_freerun") * worst.effective_freerun:
        return cg or None
    critical = worst.dirty_total_pages >= r.t("critical_fraction_of_thresh") * worst.effective_thresh
    parts = "nr_dirty + nr_writeback" + (
        f" + nr_unstable ({worst.unstable_pages} pages: NFS, counted as dirty before 5.8)"
        if worst.unstable_pages else "")
    ev = [
        ctx.ev("dirty + writeback (peak in window)", worst.dirty_total_pages * page_kb, "kB", "vmstat",
               threshold=worst.effective_freerun * page_kb, note=parts),
        ctx.ev("background threshold", worst.effective_bg_thresh * page_kb, "kB", "vmstat",
               note="flusher threads start writeback above it"),
        ctx.ev("throttle (freerun) ceiling", worst.effective_freerun * page_kb, "kB", "vmstat",
               note="(thresh + bg_thresh) / 2: writers are throttled above it"),
        ctx.ev("dirty threshold", worst.effective_thresh * page_kb, "kB", "vmstat",
               note="writers block above it" + (
                   "; the kernel's nr_dirty_threshold (no vm.dirty_* sysctls in the capture)"
                   if worst.thresholds_from == "kernel" else "")),
    ]
    if worst.unstable_pages:
        ev.append(ctx.ev("nr_unstable", worst.unstable_pages * page_kb, "kB", "vmstat",
                         note="NFS pages written but not committed: dirty for balance_dirty_pages "
                              "before 5.8"))
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
    f = r.finding(
        "critical" if critical else "warning", ev,
        "Dirty page cache reached the point where the kernel throttles the processes that "
        "write (balance_dirty_pages): writes that normally complete in memory now wait for the "
        "disk, so write latency follows disk latency. Writeback is slower than the rate at "
        "which pages are dirtied.",
        actions)
    return [f] + cg


def _memcg_findings(ctx: Context, r: Rule, glob, page_kb: int) -> list:
    """cgroup v2 groups over their own share of the dirty limit (last snapshot)."""
    out = []
    for m in memcg_dirty_limits(ctx.get("cgroup_memory"), dirty_limits(ctx.last) or glob):
        if m.dirty_pages < r.t("warn_fraction_of_freerun") * m.freerun_pages or not m.thresh_pages:
            continue
        crit = m.dirty_pages >= r.t("critical_fraction_of_thresh") * m.thresh_pages
        src = cgroup_dir(ctx.get("cgroup_memory"), m.path)
        ev = [ctx.ev("group dirty + writeback", m.dirty_pages * page_kb, "kB", src + "/memory.stat",
                     threshold=m.freerun_pages * page_kb, note="file_dirty + file_writeback"),
              ctx.ev("group dirty threshold", m.thresh_pages * page_kb, "kB", src + "/memory.stat",
                     note=f"dirty ratio of the group's available memory ({m.avail_pages * page_kb:,} kB: "
                          f"file LRU {m.filepages * page_kb:,} kB + headroom under memory.max/high "
                          f"{m.headroom_pages * page_kb:,} kB); mm/page-writeback.c mdtc"),
              ctx.ev("machine dirty + writeback", (glob.dirty_total_pages or 0) * page_kb, "kB",
                     "vmstat", note=f"machine-wide throttle ceiling {glob.effective_freerun * page_kb:,} kB")]
        out.append(r.finding(
            "critical" if crit else "warning", ev,
            "This memory cgroup's dirty page cache passed its own share of the dirty limit "
            "(cgroup writeback: the limit scales with the memory the group may still use), so "
            "its writers are throttled in balance_dirty_pages while the machine-wide numbers "
            "look fine.",
            [Action.code(f"raise memory.max / memory.high of {m.path} (in {src}), or write less "
                         "at once from it",
                         why="the group's dirty share is a ratio of the memory it may still use: "
                             "more room raises it"),
             Action.command("ksight trace writeback --seconds 10  # which tasks are throttled")],
            subject=Subject(cgroup=m.path),
            title=f"Dirty pages at the writeback threshold of memory cgroup {m.path}"))
    return out
