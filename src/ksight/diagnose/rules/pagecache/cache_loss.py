"""Page cache thrown away: drop_caches, inode reclaim, and thrashing (refaults)."""

from __future__ import annotations

from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule
from .common import cgroup_dir, toward
from .counters import (ACTIVATE_FILE, CG_ACTIVATE_FILE, CG_REFAULT_LOCAL, DROP_PAGECACHE,
                       DROP_SLAB, INODESTEAL, KSWAPD_INODESTEAL, PGINODESTEAL, PGMAJFAULT,
                       PSWPIN, REFAULT_FILE, RESTORE_FILE)


@rule("pagecache.drop-caches", title="Someone dropped the caches (drop_caches)",
      needs=("vmstat",), counters=(DROP_PAGECACHE,), uses=("meminfo",),
      thresholds={"min_drops": Threshold(1, "writes to drop_caches in the window",
                                         "each write throws away the whole clean cache")})
def drop_caches(ctx: Context, r: Rule):
    """vmstat's drop_pagecache / drop_slab count writes to /proc/sys/vm/drop_caches
    (mm/vmstat.c DROP_PAGECACHE / DROP_SLAB, counted in fs/drop_caches.c). Not "4.15+": real
    captures of older kernels carry them -- pcp's meminfo-root-001/002 and node_exporter's host
    (pre-4.8 per-zone pgsteal layout) and a 4.2.3 vmstat (collectd issue #1307). On a kernel
    without them the engine reports not_evaluated with that reason, never "healthy"."""
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


@rule("pagecache.thrashing", title="Page cache thrashing (working-set refaults)",
      needs=("vmstat", "meminfo"), counters=(REFAULT_FILE, ACTIVATE_FILE), uses=("cgroup_memory",),
      cgroup_files=("stat",),
      thresholds={
          "warn_refault_pages_per_s": Threshold(256, "pages/s in an interval",
                                                "1 MiB/s of evicted cache read back"),
          "warn_refault_pct_of_cache_per_s": Threshold(
              1, "% of the file LRU per second, in an interval",
              "at this pace the whole file cache is read back within 100 s; divided by the "
              "interval length, so a longer capture does not make the same load look worse"),
          "critical_refault_pages_per_s": Threshold(25600, "pages/s in an interval",
                                                    "100 MiB/s of working-set pages read back"),
          "cgroup_share_pct": Threshold(50, "% of the machine's refaults",
                                        "one memory cgroup causing most of them is named as the subject"),
      })
def thrashing(ctx: Context, r: Rule):
    """Working-set refaults: pages read back soon enough after eviction that they belonged to
    the working set. Checked in mm/workingset.c (torvalds/linux, workingset_refault()):
    WORKINGSET_REFAULT is counted for every refault *before* workingset_test_recent() compares
    the refault distance with the working-set size; WORKINGSET_ACTIVATE only for the refaults
    within that distance (put straight back on the active list), and WORKINGSET_RESTORE
    (workingset_restore 5.8, _file 5.9+) for pages that were in the active working set when
    evicted. So the verdict keys on activations:
      - activations high, and a large share of the file LRU per second: warning (critical at
        100 MiB/s) -- the cache is too small for the working set;
      - refaults high without activations: info -- data evicted long ago is read again (a
        cyclic or streaming read larger than the cache); no cache size short of the whole
        data set would keep it, so it is not the working set being pushed out.
    Rates and the %-of-cache share are per second of each interval (the peak interval counts).
    Kernels: vmstat of 4.x (node_exporter's host, workingset_refault/activate), 4.12-5.8 (pcp
    meminfo-root-005), 5.9+ (meminfo-root-007, *_file/_anon split with restore). Before 3.15 the
    counters do not exist: the engine reports not_evaluated with that reason (never healthy).
    With MGLRU (6.1+) lru_gen_refault() counts the same three events by its own tiers.
    Memory cgroups: v2 memory.stat keys are hierarchical (ties go to the deepest group); v1 has
    a local workingset_refault(_file) and a hierarchical total_workingset_refault(_file): the
    local key is used, so the leaf-most group that refaults is named."""
    refault, activate = ctx.counter(REFAULT_FILE), ctx.counter(ACTIVATE_FILE)
    restore = ctx.counter(RESTORE_FILE)
    mi = ctx.get("meminfo")
    if mi.active_file_kb is None or mi.inactive_file_kb is None:
        raise ctx.cannot_look("meminfo has no Active(file)/Inactive(file) (kernel before 2.6.28)")
    apeak, rpeak = activate.peak, refault.peak
    if rpeak is None:
        return None
    ws = apeak is not None and apeak.rate >= r.t("warn_refault_pages_per_s") and \
        _pct_per_s(ctx, apeak) >= r.t("warn_refault_pct_of_cache_per_s")
    peak = apeak if ws else rpeak
    pct = _pct_per_s(ctx, peak)
    if peak.rate < r.t("warn_refault_pages_per_s") or pct < r.t("warn_refault_pct_of_cache_per_s"):
        return None
    i = peak.interval
    ref_rate, act_rate = refault.rates[i], activate.rates[i]
    res_rate = restore.rates[i] if restore.present else None
    mi_i = _meminfo_at(ctx, i)
    ev = [ctx.ev("workingset activations" if ws else "workingset refaults", peak.rate, "pages/s",
                 "vmstat", threshold=r.t("warn_refault_pages_per_s"),
                 note=ctx.peak_note(peak, (activate if ws else refault).mean_rate)),
          ctx.ev("read back per second", pct, "% of file LRU per second", "vmstat",
                 threshold=r.t("warn_refault_pct_of_cache_per_s"),
                 note="pages of that interval / file LRU pages / interval seconds"),
          ctx.ev("file LRU", mi_i.active_file_kb + mi_i.inactive_file_kb, "kB", "meminfo")]
    if ws:
        ev.append(ctx.ev("workingset refaults", ref_rate, "pages/s", "vmstat",
                         note="every refault, including pages evicted too long ago to count"))
    else:
        ev.append(ctx.ev("workingset activations", act_rate, "pages/s", "vmstat",
                         note="refaults within the working-set distance (none or few here)"))
    if res_rate is not None:
        ev.append(ctx.ev("workingset restores", res_rate, "pages/s", "vmstat",
                         note="refaulted pages that were in the active working set when evicted"))
    subject, title = None, None
    delta = (activate if ws else refault).deltas[i]
    top = _top_refaulting_cgroup(ctx, i, CG_ACTIVATE_FILE if ws else CG_REFAULT_LOCAL)
    if top is not None and delta and 100.0 * top[1] / delta >= r.t("cgroup_share_pct"):
        path, d, src, secs = top
        subject = Subject(cgroup=path)
        title = (f"Page cache thrashing in memory cgroup {path}" if ws
                 else f"Evicted page cache re-read in memory cgroup {path}")
        ev.append(ctx.ev("activations in this cgroup" if ws else "refaults in this cgroup",
                         d / secs, "pages/s", src + "/memory.stat",
                         note=f"{100.0 * d / delta:.0f}% of the machine's"))
    acts = [Action.command("ksight pagecache --protect CGROUP_OR_PID  # if the workload runs in a "
                           "memory cgroup: its limit and how much cache memory.low should protect"),
            Action.command("ksight show cgroup_memory  # which group's workingset counters move")]
    if not ws:
        return r.finding(
            "info", ev,
            "Evicted file pages are read back, but the kernel did not activate them: they were "
            "evicted too long ago to belong to the working set (mm/workingset.c refault distance). "
            "This is a cyclic or streaming read of more data than the cache holds; the reads are "
            "real disk I/O, but a somewhat larger cache would not keep them.",
            acts + [Action.code("stream large one-off reads with posix_fadvise(POSIX_FADV_DONTNEED) "
                                "or O_DIRECT so they do not push other data out")],
            subject=subject, title=title or "Evicted page cache re-read (not the working set)")
    return r.finding(
        "critical" if peak.rate >= r.t("critical_refault_pages_per_s") else "warning", ev,
        "Pages of the working set are read back from disk soon after being evicted (the kernel "
        "activated them on refault): the working set does not fit in the page cache available "
        "to it (machine-wide, or in its memory cgroup). Each such refault is a read the "
        "workload waits for.",
        acts + [Action.code("stream large one-off reads with posix_fadvise(POSIX_FADV_DONTNEED) "
                            "so they do not push the hot data out")],
        subject=subject, title=title)


def _meminfo_at(ctx: Context, interval: int):
    """meminfo at the end of an interval (the file LRU the pages came back into)."""
    s = ctx.snapshots[interval + 1].get("meminfo")
    return s if s is not None and s.active_file_kb is not None and s.inactive_file_kb is not None \
        else ctx.get("meminfo")


def _pct_per_s(ctx: Context, peak) -> float:
    """Pages of the peak interval as % of the file LRU, per second of that interval."""
    mi = _meminfo_at(ctx, peak.interval)
    cache_pages = (mi.active_file_kb + mi.inactive_file_kb) * 1024 // ctx.page_size
    return 100.0 * peak.rate / max(cache_pages, 1)


def _top_refaulting_cgroup(ctx: Context, interval: int, counter=CG_REFAULT_LOCAL):
    """(path, pages in that interval, its directory, seconds) of the leaf-most memory cgroup
    with the most of `counter`, or None. v2 memory.stat is hierarchical (a parent includes its
    children), so among equal counts the deepest path wins; v1 is read by its local key (the
    group's own pages, not total_*), so the group with the most is itself the leaf-most."""
    cm = ctx.get("cgroup_memory")
    secs = ctx.series.seconds_per_interval[interval]
    if cm is None or not secs:
        return None
    best = None
    for (path, _id), cs in ctx.cgroup_counters(counter).items():
        if path == "/":
            continue
        d = cs.deltas[interval]
        if not d:
            continue
        if best is None or d > best[1] or (d == best[1] and path.count("/") > best[0].count("/")):
            best = (path, d, cgroup_dir(cm, path), secs)
    return best


@rule("pagecache.major-fault-storm", title="Major-fault storm without swap (file pages re-read)",
      needs=("vmstat",), counters=(PGMAJFAULT, PSWPIN), uses=("meminfo",),
      thresholds={
          "warn_majfault_per_s": Threshold(500, "major faults/s in an interval",
                                           "each one is a task blocked on a read of a mapped "
                                           "page (~2 MiB/s of 4 KiB pages): a busy server at rest "
                                           "stays well under it (node_exporter's host: 0.3/s "
                                           "over its uptime)"),
          "critical_majfault_per_s": Threshold(5000, "major faults/s in an interval",
                                               "~20 MiB/s of mapped file pages read on demand"),
          "max_swapin_share_pct": Threshold(10, "% of major faults",
                                            "above it swap-in explains the faults: swap-io's case"),
      })
def major_fault_storm(ctx: Context, r: Rule):
    """pgmajfault counts faults that had to read the page (mm/memory.c and mm/filemap.c:
    filemap_fault counts PGMAJFAULT when the page was not in the page cache; do_swap_page when
    it was not in the swap cache, then swap_read_folio counts PSWPIN per page read). A storm of
    major faults with pswpin about 0 is mapped *file* pages (executables, libraries, mmap'd data)
    evicted and read back on demand: tasks stall on reads even though nothing swaps.
    Kernels: pgmajfault and pswpin are in every vmstat (2.6 to 6.x; node_exporter's host, pcp
    meminfo-root-001..007). Missing counters: not_evaluated with the reason, never healthy."""
    maj, sin = ctx.counter(PGMAJFAULT), ctx.counter(PSWPIN)
    peak = maj.peak
    if peak is None or peak.rate < r.t("warn_majfault_per_s"):
        return None
    i = peak.interval
    swapin = sin.rates[i] or 0.0
    share = 100.0 * swapin / peak.rate
    if share > r.t("max_swapin_share_pct"):
        return None  # swap-in explains them: pagecache.swap-io judges that
    ev = [ctx.ev("pgmajfault", peak.rate, "faults/s", "vmstat", threshold=r.t("warn_majfault_per_s"),
                 note=ctx.peak_note(peak, maj.mean_rate)),
          ctx.ev("pswpin", swapin, "pages/s", "vmstat", threshold=r.t("max_swapin_share_pct"),
                 note=f"{share:.1f}% of the major faults: not swap")]
    mi = ctx.snapshots[i + 1].get("meminfo") or ctx.get("meminfo")
    if mi is not None and mi.active_file_kb is not None and mi.inactive_file_kb is not None:
        ev.append(ctx.ev("file LRU", mi.active_file_kb + mi.inactive_file_kb, "kB", "meminfo",
                         note="the cache the mapped pages are re-read into"))
    if mi is not None and getattr(mi, "mapped_kb", None) is not None:
        ev.append(ctx.ev("Mapped", mi.mapped_kb, "kB", "meminfo", note="file pages mapped by tasks"))
    return r.finding(
        "critical" if peak.rate >= r.t("critical_majfault_per_s") else "warning", ev,
        "Tasks fault on mapped file pages that are no longer in memory and wait while each is "
        "read from disk (executables, shared libraries, mmap'd data). Nothing is swapped: the "
        "page cache holding these mappings is being reclaimed under memory pressure, machine-"
        "wide or in the tasks' memory cgroup.",
        [Action.command("ksight show --processes --json  # majflt per process: who faults"),
         Action.command("ksight pagecache --protect CGROUP_OR_PID  # protect the group's cache "
                        "with memory.low"),
         Action.code("mlock the hot part of large mappings, or MADV_WILLNEED them, so they are "
                     "read ahead instead of page by page")])
