"""Page cache thrown away: drop_caches, inode reclaim, and thrashing (refaults)."""

from __future__ import annotations

from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule
from .common import cgroup_dir, toward
from .counters import (ACTIVATE_FILE, CG_REFAULT_FILE, DROP_PAGECACHE, DROP_SLAB, INODESTEAL,
                       KSWAPD_INODESTEAL, PGINODESTEAL, REFAULT_FILE)


@rule("pagecache.drop-caches", title="Someone dropped the caches (drop_caches)",
      needs=("vmstat",), counters=(DROP_PAGECACHE,), uses=("meminfo",),
      thresholds={"min_drops": Threshold(1, "writes to drop_caches in the window",
                                         "each write throws away the whole clean cache")})
def drop_caches(ctx: Context, r: Rule):
    """vmstat's drop_pagecache / drop_slab count writes to /proc/sys/vm/drop_caches (4.15+)."""
    dp, ds = ctx.counter(DROP_PAGECACHE), ctx.counter(DROP_SLAB)
    if (dp.total or 0) + (ds.total or 0) < r.t("min_drops"):
        return None
    v = ctx.get("vmstat")
    when = dp.peak if dp.total else ds.peak
    ev = [ctx.ev("drop_pagecache", dp.total, "in the window", "vmstat",
                 note=f"{v.get('drop_pagecache')} since boot"),
          ctx.ev("drop_slab", ds.total, "in the window", "vmstat", note=f"{v.get('drop_slab')} since boot")]
    if when is not None and ctx.series.intervals > 1:
        ev.append(ctx.ev("when", when.interval + 1, f"interval of {ctx.series.intervals}", "vmstat",
                         note=ctx.peak_note(when)))
    cached = ctx.series.gauge("Cached", lambda s: s.get("meminfo").cached_kb)
    if cached.present:
        lo, hi = cached.low, cached.peak
        tr = cached.trend()
        if tr is not None:
            ev.append(ctx.ev("Cached change", tr.growth, "kB", "meminfo",
                             note=f"from {tr.first:,.0f} to {tr.last:,.0f} kB; lowest {lo[0]:,.0f}, "
                                  f"highest {hi[0]:,.0f} kB in the window"))
    return r.finding(
        "warning", ev,
        "Writing to /proc/sys/vm/drop_caches throws away all clean page cache (1), dentries and "
        "inodes (2), or both (3). The workload must then re-read its files from disk: I/O and "
        "latency jump until the cache is warm again. It is a debugging aid, not a tuning knob.",
        [Action.command("grep -rn drop_caches /etc/cron* /etc/systemd /usr/local/bin "
                        "2>/dev/null  # find the job that does it"),
         Action.command("ksight trace --help  # tracing writes to drop_caches names the "
                        "process (syscalls:sys_enter_write filtered on the fd)")])


@rule("pagecache.inode-steal", title="Page cache freed by inode reclaim",
      needs=("vmstat",), counters=(INODESTEAL,), uses=("sysctl",),
      thresholds={"warn_pages_per_s": Threshold(100, "pages/s in an interval",
                                                "about 400 KiB/s of cache lost with its inodes")})
def inode_steal(ctx: Context, r: Rule):
    """pginodesteal (direct) and kswapd_inodesteal count page cache pages freed because the
    inode that held them was reclaimed (slab pressure, vfs_cache_pressure)."""
    both = ctx.counter(INODESTEAL)
    peak = both.peak
    if peak is None or peak.rate < r.t("warn_pages_per_s"):
        return None
    i = peak.interval
    d, k = ctx.counter(PGINODESTEAL).rates[i], ctx.counter(KSWAPD_INODESTEAL).rates[i]
    vcp = ctx.sysctl("vm.vfs_cache_pressure")
    ev = [ctx.ev("inode steal (peak interval)", peak.rate, "pages/s", "vmstat",
                 threshold=r.t("warn_pages_per_s"), note=ctx.peak_note(peak, both.mean_rate)),
          ctx.ev("pginodesteal", d, "pages/s", "vmstat"),
          ctx.ev("kswapd_inodesteal", k, "pages/s", "vmstat")]
    acts = []
    if vcp is not None:
        ev.append(ctx.ev("vm.vfs_cache_pressure", vcp, "", "/proc/sys/vm/vfs_cache_pressure"))
        acts.append(Action.sysctl("vm.vfs_cache_pressure", vcp, toward(vcp, 50, "down"),
                                  why="reclaim dentries and inodes less eagerly relative to the "
                                      "page cache (default 100); trade-off: more slab memory"))
    return r.finding(
        "warning", ev,
        "Reclaiming inodes frees the page cache attached to them, even cache that is hot. Files "
        "whose inodes are evicted are read from disk again on their next use.",
        acts)


@rule("pagecache.thrashing", title="Page cache thrashing (workingset refaults)",
      needs=("vmstat", "meminfo"), counters=(REFAULT_FILE,), uses=("cgroup_memory",),
      cgroup_files=("stat",),
      thresholds={
          "warn_refault_pages_per_s": Threshold(256, "pages/s in an interval",
                                                "1 MiB/s of evicted cache read back"),
          "warn_refault_pct_of_cache": Threshold(1, "% of file cache per interval",
                                                 "a visible part of the cache comes back"),
          "critical_refault_pages_per_s": Threshold(25600, "pages/s in an interval",
                                                    "100 MiB/s read back"),
          "cgroup_share_pct": Threshold(50, "% of the machine's refaults",
                                        "one memory cgroup causing most of them is named as the subject"),
      })
def thrashing(ctx: Context, r: Rule):
    """Refaults are reads of pages evicted recently enough that they belonged to the working set
    (the kernel tracks eviction 'shadow' entries): the cache is too small for the workload."""
    refault = ctx.counter(REFAULT_FILE)
    peak = refault.peak
    mi = ctx.get("meminfo")
    if mi.active_file_kb is None or mi.inactive_file_kb is None:
        raise ctx.cannot_look("meminfo has no Active(file)/Inactive(file) (kernel before 2.6.28)")
    if peak is None:
        return None
    cache_pages = (mi.active_file_kb + mi.inactive_file_kb) * 1024 // ctx.page_size
    delta = refault.deltas[peak.interval]
    pct = 100.0 * delta / max(cache_pages, 1)
    if peak.rate < r.t("warn_refault_pages_per_s") or pct < r.t("warn_refault_pct_of_cache"):
        return None
    act = ctx.counter(ACTIVATE_FILE).rates[peak.interval]
    ev = [ctx.ev("workingset refaults", peak.rate, "pages/s", "vmstat",
                 threshold=r.t("warn_refault_pages_per_s"), note=ctx.peak_note(peak, refault.mean_rate)),
          ctx.ev("refaulted in the peak interval", pct, "% of file LRU", "vmstat",
                 threshold=r.t("warn_refault_pct_of_cache")),
          ctx.ev("file LRU", mi.active_file_kb + mi.inactive_file_kb, "kB", "meminfo")]
    if act is not None:
        ev.append(ctx.ev("workingset activations", act, "pages/s", "vmstat",
                         note="refaulted pages put straight back on the active list"))
    subject, title = None, None
    top = _top_refaulting_cgroup(ctx, peak.interval)
    if top is not None and delta and 100.0 * top[1] / delta >= r.t("cgroup_share_pct"):
        path, d, src, secs = top
        subject = Subject(cgroup=path)
        title = f"Page cache thrashing in memory cgroup {path}"
        ev.append(ctx.ev("refaults in this cgroup", d / secs, "pages/s",
                         src + "/memory.stat", note=f"{100.0 * d / delta:.0f}% of the machine's"))
    return r.finding(
        "critical" if peak.rate >= r.t("critical_refault_pages_per_s") else "warning", ev,
        "Pages are read back from disk soon after being evicted: the working set does not fit "
        "in the page cache available to it (machine-wide, or in its memory cgroup). Each refault "
        "is a disk read the workload waits for.",
        [Action.command("ksight pagecache --protect CGROUP_OR_PID  # if the workload runs in a "
                        "memory cgroup: its limit and how much cache memory.low should protect"),
         Action.command("ksight show cgroup_memory  # which group's workingset_refault moves"),
         Action.code("stream large one-off reads with posix_fadvise(POSIX_FADV_DONTNEED) so they "
                     "do not push the hot data out")],
        subject=subject, title=title)


def _top_refaulting_cgroup(ctx: Context, interval: int):
    """(path, refaulted pages in that interval, its directory, seconds) of the leaf-most memory
    cgroup with the most file refaults, or None. Parents include their children's counts
    (hierarchical memory.stat on v2; v1 'workingset_refault*' is hierarchical too), so among
    equal counts the deepest path wins."""
    cm = ctx.get("cgroup_memory")
    secs = ctx.series.seconds_per_interval[interval]
    if cm is None or not secs:
        return None
    best = None
    for (path, _id), cs in ctx.cgroup_counters(CG_REFAULT_FILE).items():
        if path == "/":
            continue
        d = cs.deltas[interval]
        if not d:
            continue
        if best is None or d > best[1] or (d == best[1] and path.count("/") > best[0].count("/")):
            best = (path, d, cgroup_dir(cm, path), secs)
    return best
