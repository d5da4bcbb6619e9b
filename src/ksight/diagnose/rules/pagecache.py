"""Page cache and disk I/O rules: reclaim, dirty pages, caches thrown away, swap.

Every rule reads the snapshot model only. Counter names that changed across kernels are
resolved by model.vmcounters; dirty thresholds are computed by model.dirty as the kernel does.
"""

from __future__ import annotations

from ...model.dirty import dirty_limits
from ...model.vmcounters import vm_total
from ..finding import Action, Subject
from ..rule import Context, Rule, Threshold, rule

GIB_KB = 1024 * 1024


def _vm(base: str):
    """A named getter for one (kernel-version-resolved) vmstat counter, for Window.delta."""
    def get(v):
        return vm_total(v.counters, base)
    get.__name__ = base
    return get


def _fmt_kb(kb: float | None) -> str:
    if kb is None:
        return "?"
    for unit, div in (("GiB", GIB_KB), ("MiB", 1024)):
        if kb >= div:
            return f"{kb / div:.1f} {unit}"
    return f"{kb:.0f} kB"


def _psi_memory(ctx: Context):
    p = ctx.get("pressure")
    return getattr(p, "memory", None) if p is not None else None


def _watermark_evidence(ctx: Context) -> list:
    """Free pages against the min/low/high watermarks of each populated zone."""
    zi = ctx.get("zoneinfo")
    out = []
    if zi is None:
        return out
    for z in zi.zones:
        if not z.managed_pages or z.free_pages is None or z.low_pages is None:
            continue
        note = f"watermarks min {z.min_pages}, low {z.low_pages}, high {z.high_pages} pages"
        if z.free_pages < (z.min_pages or 0):
            note += "; BELOW MIN: allocations enter direct reclaim"
        elif z.free_pages < z.low_pages:
            note += "; below low: kswapd is awake"
        out.append(ctx.ev(f"node{z.node} {z.name} free", z.free_pages, "pages", "zoneinfo",
                          threshold=z.low_pages, note=note))
    return out


def recommended_min_free_kb(mem_total_kb: int) -> int:
    """About 4 GiB of reserve on a machine of 128 GiB or more, proportionally less below."""
    return int(min(mem_total_kb * 4 / 128, 4 * GIB_KB))


def _min_free_action(ctx: Context) -> Action | None:
    cur = ctx.sysctl("vm.min_free_kbytes")
    mi = ctx.get("meminfo")
    if cur is None or mi is None or mi.mem_total_kb is None:
        return None
    rec = recommended_min_free_kb(mi.mem_total_kb)
    if rec <= cur:
        return Action("sysctl", name="vm.watermark_scale_factor",
                      current=ctx.sysctl_text("vm.watermark_scale_factor"),
                      recommended=str(_toward(ctx.sysctl("vm.watermark_scale_factor"), 100, "up")),
                      why="vm.min_free_kbytes is already generous; widening the gap between the "
                          "low and high watermarks (default 10 = 0.1% of memory) wakes kswapd "
                          "earlier and lets it reclaim more before allocations stall")
    return Action("sysctl", name="vm.min_free_kbytes", current=str(cur), recommended=str(rec),
                  why=f"kswapd wakes when free memory falls to the low watermark, which is derived "
                      f"from vm.min_free_kbytes; a larger reserve ({_fmt_kb(rec)} for "
                      f"{_fmt_kb(mi.mem_total_kb)} of RAM) makes it start earlier, so allocations "
                      f"find free pages instead of reclaiming themselves. Cost: that memory is no "
                      f"longer available to applications or the page cache.")


@rule("pagecache.direct-reclaim", title="Processes reclaim memory themselves (direct reclaim)",
      needs=("vmstat", "meminfo"), uses=("zoneinfo", "pressure", "cgroup_memory", "sysctl"),
      thresholds={
          "min_allocstalls": Threshold(1, "stalls in the window",
                                       "any allocation stall means a task waited for reclaim"),
          "min_direct_scan_pages": Threshold(32, "pages in the window",
                                             "SWAP_CLUSTER_MAX: one reclaim batch"),
          "critical_allocstall_per_s": Threshold(100, "stalls/s",
                                                 "hundreds of stalls a second are felt as latency"),
          "critical_psi_some_avg10": Threshold(10, "%", "tasks stalled on memory 10% of the time"),
          "cgroup_near_limit_pct": Threshold(95, "% of limit",
                                             "a group this close to its limit reclaims on most charges"),
      })
def direct_reclaim(ctx: Context, r: Rule):
    """Machine-wide direct reclaim from vmstat, and reclaim inside memory cgroups at their limit
    (which the machine-wide counters do not show)."""
    findings = []
    stalls = ctx.delta("vmstat", _vm("allocstall"))
    scan = ctx.delta("vmstat", _vm("pgscan_direct"))
    steal = ctx.delta("vmstat", _vm("pgsteal_direct"))
    if (stalls or 0) >= r.t("min_allocstalls") or (scan or 0) >= r.t("min_direct_scan_pages"):
        psi = _psi_memory(ctx)
        some10 = psi.some.avg10 if psi is not None and psi.some is not None else None
        stall_rate = ctx.rate("vmstat", _vm("allocstall")) or 0.0
        critical = stall_rate >= r.t("critical_allocstall_per_s") or (
            some10 is not None and some10 >= r.t("critical_psi_some_avg10"))
        ev = [
            ctx.ev("allocstall", ctx.rate("vmstat", _vm("allocstall")), "stalls/s", "vmstat",
                   threshold=r.t("critical_allocstall_per_s")),
            ctx.ev("pgscan_direct", ctx.rate("vmstat", _vm("pgscan_direct")), "pages/s", "vmstat"),
            ctx.ev("pgsteal_direct", ctx.rate("vmstat", _vm("pgsteal_direct")), "pages/s", "vmstat"),
        ]
        if steal is not None and scan:
            ev.append(ctx.ev("direct reclaim efficiency", 100.0 * steal / scan, "%", "vmstat"))
        if some10 is not None:
            ev.append(ctx.ev("memory pressure some avg10", some10, "%", "/proc/pressure/memory",
                             threshold=r.t("critical_psi_some_avg10")))
        mi = ctx.get("meminfo")
        ev.append(ctx.ev("MemAvailable", mi.mem_available_kb, "kB", "meminfo"))
        ev.extend(_watermark_evidence(ctx))
        mf = ctx.sysctl("vm.min_free_kbytes")
        if mf is not None:
            ev.append(ctx.ev("vm.min_free_kbytes", mf, "kB", "/proc/sys/vm/min_free_kbytes"))
        actions = [a for a in [_min_free_action(ctx)] if a]
        actions.append(Action("command", text="ksight trace reclaim --seconds 10  "
                                              "# who stalls in reclaim, and for how long"))
        findings.append(r.finding(
            "critical" if critical else "warning", ev,
            "Allocations found free memory below the zone's min watermark and reclaimed pages "
            "themselves, synchronously: each stall adds latency to the task that allocates and "
            "the load rises. kswapd, which reclaims in the background between the low and high "
            "watermarks, did not keep up.",
            actions))
    findings.extend(_cgroup_reclaim(ctx, r))
    return findings


def _cgroup_reclaim(ctx: Context, r: Rule) -> list:
    cm_last, cm_first = ctx.get("cgroup_memory"), ctx.first.get("cgroup_memory")
    if cm_last is None or cm_first is None:
        return []
    from ...sources.cgroup_memory import UNLIMITED

    out = []
    for path, g in cm_last.groups.items():
        prev = cm_first.groups.get(path)
        if prev is None:
            continue
        limit = g.max_bytes if g.max_bytes is not None and g.max_bytes < UNLIMITED else None
        ev, hit = [], False
        src = f"/{cm_last.mount.strip('/')}{path if path != '/' else ''}" if cm_last.mount \
            else f"memory cgroup {path}"
        if g.version == 1:
            d = _d(prev.failcnt, g.failcnt)
            if d:
                hit = True
                ev.append(ctx.ev("memory.failcnt", d, "charges failed at the limit in the window",
                                 src + "/memory.failcnt"))
        else:
            # v2 memory.events is hierarchical: a parent counts its children's limit hits.
            # memory.events.local (5.2+) counts this group's own; without it, only a group
            # with a limit of its own can be the one at its limit.
            local = prev.events_local is not None and g.events_local is not None
            own_high = g.high_bytes is not None and g.high_bytes < UNLIMITED
            for key in ("max", "high"):
                if local:
                    d = _d(prev.events_local.get(key), g.events_local.get(key))
                    fname = "memory.events.local"
                elif (key == "max" and limit) or (key == "high" and own_high):
                    d = _d((prev.events or {}).get(key), (g.events or {}).get(key))
                    fname = "memory.events"
                else:
                    continue
                if d:
                    hit = True
                    ev.append(ctx.ev(f"{fname} {key}", d, "events in the window",
                                     src + "/" + fname))
        for key in ("pgscan_direct", "pgsteal_direct", "pgscan", "pgsteal", "pgmajfault",
                    "total_pgmajfault", "pgpgout", "workingset_refault_file"):
            d = _d((prev.stat or {}).get(key), (g.stat or {}).get(key))
            if d:
                ev.append(ctx.ev(f"memory.stat {key}", d / max(ctx.seconds, 1e-9), "/s",
                                 src + "/memory.stat"))
        usage = g.current_bytes
        if limit and usage is not None:
            pct = 100.0 * usage / limit
            ev.append(ctx.ev("usage of limit", pct, "%", src, threshold=r.t("cgroup_near_limit_pct"),
                             note=f"{_fmt_kb(usage / 1024)} of {_fmt_kb(limit / 1024)}"))
        psi = getattr(g, "pressure", None)
        some10 = psi.some.avg10 if psi is not None and psi.some is not None else None
        if some10 is not None:
            ev.append(ctx.ev("memory.pressure some avg10", some10, "%", src + "/memory.pressure"))
        if not hit:
            continue
        oom = _d((prev.events or {}).get("oom_kill"), (g.events or {}).get("oom_kill")) or \
            _d(getattr(prev, "oom_kill", None), getattr(g, "oom_kill", None))
        critical = bool(oom) or (some10 is not None and some10 >= r.t("critical_psi_some_avg10"))
        if oom:
            ev.append(ctx.ev("oom kills", oom, "in the window", src))
        knob = "memory.limit_in_bytes" if g.version == 1 else "memory.max"
        actions = [
            Action("cgroup", text=f"raise {knob} of {path} above its working set, or shrink the "
                                  f"workload: every charge past the limit reclaims synchronously"),
        ]
        if g.version == 2:
            actions.append(Action("cgroup", text=f"set memory.high of {path} a little below "
                                                 f"memory.max: the group is throttled and reclaimed "
                                                 f"gradually instead of hitting the hard limit"))
            actions.append(Action("cgroup", text=f"protect the cache it needs with memory.low "
                                                 f"(best effort) or memory.min (hard), see "
                                                 f"`ksight pagecache --protect {path}`"))
        actions.append(Action("command", text="ksight trace reclaim --seconds 10  "
                                              "# per-cgroup reclaim latency"))
        out.append(r.finding(
            "critical" if critical else "warning", ev,
            "The memory cgroup hit its limit and its tasks reclaimed memory synchronously on "
            "every charge: their page cache is evicted and re-read, and each allocation waits. "
            "Machine-wide counters do not show this: the machine may have plenty of free memory.",
            actions, subject=Subject(cgroup=path),
            title=f"Memory cgroup {path} reclaims at its limit"))
    return out


def _toward(cur: int | None, target: int, direction: str) -> int:
    """The recommended value: `target`, but never a step the wrong way from the current value
    (a setting already past the target is kept; the engine then drops the no-op action)."""
    if cur is None:
        return target
    return max(cur, target) if direction == "up" else min(cur, target)


def _half(cur: int | None, floor: int) -> str:
    """Half the current value, not below a floor (start background writeback sooner)."""
    return str(max((cur or 0) // 2, floor))


def _d(a, b):
    if a is None or b is None or b < a:
        return None
    return b - a


@rule("pagecache.dirty-backlog", title="Dirty pages at the writeback thresholds",
      needs=("vmstat", "sysctl", "meminfo"), uses=("zoneinfo",),
      thresholds={
          "warn_fraction_of_freerun": Threshold(1.0, "x freerun ceiling",
                                                "above (thresh+bg_thresh)/2 writers are throttled "
                                                "in balance_dirty_pages"),
          "critical_fraction_of_thresh": Threshold(0.95, "x dirty threshold",
                                                   "at the threshold every writer waits for writeback"),
      })
def dirty_backlog(ctx: Context, r: Rule):
    """Dirty + writeback pages compared with the thresholds the kernel computes."""
    page_kb = ctx.last.host.page_size // 1024
    worst = None
    for s in ctx.snapshots:
        lim = dirty_limits(s)
        if lim is None or lim.dirty_total_pages is None:
            continue
        if worst is None or lim.dirty_total_pages / max(lim.effective_freerun, 1) > \
                worst.dirty_total_pages / max(worst.effective_freerun, 1):
            worst = lim
    if worst is None or worst.dirty_total_pages < r.t("warn_fraction_of_freerun") * worst.effective_freerun:
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
    for name in ("nr_dirtied", "nr_written"):
        rate = ctx.rate("vmstat", f"counters.{name}")
        if rate is not None:
            ev.append(ctx.ev(name, rate * page_kb, "kB/s", "vmstat"))
    for n in ("vm.dirty_ratio", "vm.dirty_bytes", "vm.dirty_background_ratio",
              "vm.dirty_background_bytes", "vm.dirty_expire_centisecs"):
        v = ctx.sysctl(n)
        if v is not None:
            ev.append(ctx.ev(n, v, "", "/proc/sys/" + n.replace(".", "/")))
    mi = ctx.get("meminfo")
    from_bytes, bg_from_bytes = bool(worst.dirty_bytes), bool(worst.background_bytes)
    fg = "vm.dirty_bytes" if from_bytes else "vm.dirty_ratio"
    bgk = "vm.dirty_background_bytes" if bg_from_bytes else "vm.dirty_background_ratio"
    actions = [
        Action("sysctl", name=bgk, current=ctx.sysctl_text(bgk),
               recommended=_half(ctx.sysctl(bgk), 16 << 20 if bg_from_bytes else 1),
               why="start background writeback sooner so dirty data does not pile up to the "
                   "throttle point; trade-off: more, smaller writes and less write coalescing"),
        Action("sysctl", name="vm.dirty_expire_centisecs",
               current=ctx.sysctl_text("vm.dirty_expire_centisecs"),
               recommended=str(_toward(ctx.sysctl("vm.dirty_expire_centisecs"), 1000, "down")),
               why="write back data older than 10 s instead of 30 s: smoother writeback, less "
                   "lost on a crash; trade-off: short-lived files get written too"),
        Action("sysctl", name=fg, current=ctx.sysctl_text(fg),
               recommended=(str(max((ctx.sysctl(fg) or 0) * 2, 268435456)) if from_bytes
                            else str(min(max((ctx.sysctl(fg) or 20) * 3 // 2, 20), 60))),
               why="a higher foreground limit lets bursts finish without blocking writers; "
                   "trade-off: more unwritten data in memory, longer stalls when it must be flushed"
                   + (f" (MemTotal {_fmt_kb(mi.mem_total_kb)})" if mi and mi.mem_total_kb else "")),
        Action("command", text="ksight trace writeback --seconds 10  # which processes are "
                               "throttled in balance_dirty_pages, and for how long"),
    ]
    return r.finding(
        "critical" if critical else "warning", ev,
        "Dirty page cache reached the point where the kernel throttles the processes that "
        "write (balance_dirty_pages): writes that normally complete in memory now wait for the "
        "disk, so write latency follows disk latency. Writeback is slower than the rate at "
        "which pages are dirtied.",
        actions)


@rule("pagecache.numa-zone-reclaim", title="vm.zone_reclaim_mode is on on a NUMA machine",
      needs=("sysctl", "numa"), uses=("vmstat", "meminfo"), window=False,
      thresholds={"plenty_free_pct": Threshold(20, "% of MemTotal available",
                                               "reclaiming with this much free elsewhere is waste")})
def numa_zone_reclaim(ctx: Context, r: Rule):
    """zone_reclaim_mode != 0 makes a node reclaim its own cache rather than allocate from a
    remote node; on most workloads the cache loss costs far more than remote access."""
    mode = ctx.sysctl("vm.zone_reclaim_mode")
    numa = ctx.get("numa")
    if not mode or numa is None or len(numa.nodes) < 2:
        return None
    ev = [ctx.ev("vm.zone_reclaim_mode", mode, "", "/proc/sys/vm/zone_reclaim_mode", threshold=0),
          ctx.ev("NUMA nodes", len(numa.nodes), "", "/sys/devices/system/node")]
    critical = False
    if ctx.window is not None:
        stalls = ctx.delta("vmstat", _vm("allocstall")) if ctx.get("vmstat") else None
        failed = ctx.delta("vmstat", "counters.zone_reclaim_failed") if ctx.get("vmstat") else None
        mi = ctx.get("meminfo")
        if mi and mi.mem_total_kb and mi.mem_available_kb is not None:
            avail_pct = 100.0 * mi.mem_available_kb / mi.mem_total_kb
            ev.append(ctx.ev("MemAvailable", avail_pct, "% of MemTotal", "meminfo",
                             threshold=r.t("plenty_free_pct")))
            if (stalls or failed) and avail_pct >= r.t("plenty_free_pct"):
                critical = True
        if stalls is not None:
            ev.append(ctx.ev("allocstall", stalls, "in the window", "vmstat"))
        if failed is not None:
            ev.append(ctx.ev("zone_reclaim_failed", failed, "in the window", "vmstat"))
    return r.finding(
        "critical" if critical else "warning", ev,
        "With zone_reclaim_mode on, an allocation that does not fit on the local node reclaims "
        "that node's page cache (and may write it out or swap) instead of using free memory on "
        "another node. Caches shrink and processes stall in reclaim while memory sits free.",
        [Action("sysctl", name="vm.zone_reclaim_mode", current=str(mode), recommended="0",
                why="allocate from remote nodes before reclaiming local cache; the default "
                    "since Linux 3.16")])


@rule("pagecache.drop-caches", title="Someone dropped the caches (drop_caches)",
      needs=("vmstat",), uses=("meminfo",),
      thresholds={"min_drops": Threshold(1, "writes to drop_caches in the window",
                                         "each write throws away the whole clean cache")})
def drop_caches(ctx: Context, r: Rule):
    """vmstat's drop_pagecache / drop_slab count writes to /proc/sys/vm/drop_caches (4.15+)."""
    dp = ctx.delta("vmstat", "counters.drop_pagecache")
    ds = ctx.delta("vmstat", "counters.drop_slab")
    if (dp or 0) + (ds or 0) < r.t("min_drops"):
        return None
    v = ctx.get("vmstat")
    ev = [ctx.ev("drop_pagecache", dp, "in the window", "vmstat",
                 note=f"{v.get('drop_pagecache')} since boot"),
          ctx.ev("drop_slab", ds, "in the window", "vmstat", note=f"{v.get('drop_slab')} since boot")]
    m0, m1 = ctx.first.get("meminfo"), ctx.last.get("meminfo")
    if m0 and m1 and m0.cached_kb is not None and m1.cached_kb is not None:
        ev.append(ctx.ev("Cached change", m1.cached_kb - m0.cached_kb, "kB", "meminfo"))
    return r.finding(
        "warning", ev,
        "Writing to /proc/sys/vm/drop_caches throws away all clean page cache (1), dentries and "
        "inodes (2), or both (3). The workload must then re-read its files from disk: I/O and "
        "latency jump until the cache is warm again. It is a debugging aid, not a tuning knob.",
        [Action("command", text="grep -rn drop_caches /etc/cron* /etc/systemd /usr/local/bin "
                                "2>/dev/null  # find the job that does it"),
         Action("command", text="ksight trace --help  # tracing writes to drop_caches names the "
                                "process (syscalls:sys_enter_write filtered on the fd)")])


@rule("pagecache.inode-steal", title="Page cache freed by inode reclaim",
      needs=("vmstat",), uses=("sysctl",),
      thresholds={"warn_pages_per_s": Threshold(100, "pages/s",
                                                "about 400 KiB/s of cache lost with its inodes")})
def inode_steal(ctx: Context, r: Rule):
    """pginodesteal (direct) and kswapd_inodesteal count page cache pages freed because the
    inode that held them was reclaimed (slab pressure, vfs_cache_pressure)."""
    d = ctx.rate("vmstat", "counters.pginodesteal")
    k = ctx.rate("vmstat", "counters.kswapd_inodesteal")
    total = (d or 0) + (k or 0)
    if total < r.t("warn_pages_per_s"):
        return None
    vcp = ctx.sysctl("vm.vfs_cache_pressure")
    ev = [ctx.ev("pginodesteal", d, "pages/s", "vmstat", threshold=r.t("warn_pages_per_s")),
          ctx.ev("kswapd_inodesteal", k, "pages/s", "vmstat")]
    if vcp is not None:
        ev.append(ctx.ev("vm.vfs_cache_pressure", vcp, "", "/proc/sys/vm/vfs_cache_pressure"))
    return r.finding(
        "warning", ev,
        "Reclaiming inodes frees the page cache attached to them, even cache that is hot. Files "
        "whose inodes are evicted are read from disk again on their next use.",
        [Action("sysctl", name="vm.vfs_cache_pressure", current=None if vcp is None else str(vcp),
                recommended=str(_toward(vcp, 50, "down")),
                why="reclaim dentries and inodes less eagerly relative to "
                                      "the page cache (default 100); trade-off: more slab memory")])


@rule("pagecache.thrashing", title="Page cache thrashing (workingset refaults)",
      needs=("vmstat", "meminfo"), uses=("cgroup_memory",),
      thresholds={
          "warn_refault_pages_per_s": Threshold(256, "pages/s", "1 MiB/s of evicted cache read back"),
          "warn_refault_pct_of_cache": Threshold(1, "% of file cache in the window",
                                                 "a visible part of the cache comes back"),
          "critical_refault_pages_per_s": Threshold(25600, "pages/s", "100 MiB/s read back"),
          "cgroup_share_pct": Threshold(50, "% of the machine's refaults",
                                        "one memory cgroup causing most of them is named as the subject"),
      })
def thrashing(ctx: Context, r: Rule):
    """Refaults are reads of pages evicted recently enough that they belonged to the working set
    (the kernel tracks eviction 'shadow' entries): the cache is too small for the workload."""
    def refault(v):
        return vm_total(v.counters, "workingset_refault_file") if "workingset_refault_file" in \
            v.counters else v.counters.get("workingset_refault")
    refault.__name__ = "workingset_refault_file"
    rate = ctx.rate("vmstat", refault)
    delta = ctx.delta("vmstat", refault)
    mi = ctx.get("meminfo")
    if rate is None or mi.active_file_kb is None or mi.inactive_file_kb is None:
        return None
    cache_pages = (mi.active_file_kb + mi.inactive_file_kb) * 1024 // ctx.last.host.page_size
    pct = 100.0 * delta / max(cache_pages, 1)
    if rate < r.t("warn_refault_pages_per_s") or pct < r.t("warn_refault_pct_of_cache"):
        return None
    act = ctx.rate("vmstat", "counters.workingset_activate_file") or \
        ctx.rate("vmstat", "counters.workingset_activate")
    ev = [ctx.ev("workingset refaults", rate, "pages/s", "vmstat",
                 threshold=r.t("warn_refault_pages_per_s")),
          ctx.ev("refaulted in the window", pct, "% of file LRU", "vmstat",
                 threshold=r.t("warn_refault_pct_of_cache")),
          ctx.ev("file LRU", mi.active_file_kb + mi.inactive_file_kb, "kB", "meminfo")]
    if act is not None:
        ev.append(ctx.ev("workingset activations", act, "pages/s", "vmstat",
                         note="refaulted pages put straight back on the active list"))
    subject, title = None, None
    top = _top_refaulting_cgroup(ctx)
    if top is not None and delta and 100.0 * top[1] / delta >= r.t("cgroup_share_pct"):
        path, d, src = top
        subject = Subject(cgroup=path)
        title = f"Page cache thrashing in memory cgroup {path}"
        ev.append(ctx.ev("refaults in this cgroup", d / max(ctx.seconds, 1e-9), "pages/s",
                         src + "/memory.stat", note=f"{100.0 * d / delta:.0f}% of the machine's"))
    return r.finding(
        "critical" if rate >= r.t("critical_refault_pages_per_s") else "warning", ev,
        "Pages are read back from disk soon after being evicted: the working set does not fit "
        "in the page cache available to it (machine-wide, or in its memory cgroup). Each refault "
        "is a disk read the workload waits for.",
        [Action("cgroup", text="if the workload runs in a memory cgroup, raise its limit or "
                               "protect its cache with memory.low (`ksight pagecache --protect`)"),
         Action("command", text="ksight show cgroup_memory  # which group's workingset_refault moves"),
         Action("code", text="stream large one-off reads with posix_fadvise(POSIX_FADV_DONTNEED) "
                             "so they do not push the hot data out")],
        subject=subject, title=title)


def _top_refaulting_cgroup(ctx: Context):
    """(path, refaulted pages in the window, its directory) of the leaf-most memory cgroup with
    the most file refaults, or None. Parents include their children's counts (hierarchical
    memory.stat on v2; v1 'workingset_refault*' is hierarchical too), so among equal counts the
    deepest path wins."""
    a, b = ctx.first.get("cgroup_memory"), ctx.last.get("cgroup_memory")
    if a is None or b is None:
        return None
    best = None
    for path, g in b.groups.items():
        if path == "/" or path not in a.groups:
            continue
        st0, st1 = a.groups[path].stat or {}, g.stat or {}
        key = "workingset_refault_file" if "workingset_refault_file" in st1 else "workingset_refault"
        d = _d(st0.get(key), st1.get(key))
        if not d:
            continue
        if best is None or d > best[1] or (d == best[1] and path.count("/") > best[0].count("/")):
            src = f"/{b.mount.strip('/')}{path}" if b.mount else f"memory cgroup {path}"
            best = (path, d, src)
    return best


@rule("pagecache.compaction-stall", title="Allocations stall in memory compaction",
      needs=("vmstat",), uses=("buddyinfo", "sysctl"),
      thresholds={
          "warn_stalls_per_s": Threshold(1, "stalls/s", "a stalled high-order allocation is a latency spike"),
          "critical_fail_pct": Threshold(50, "% of stalls failing", "compaction mostly fails: "
                                                                    "memory is badly fragmented"),
          "scarce_order": Threshold(4, "order", "64 KiB blocks: below this THP and network buffers fall back"),
      })
def compaction_stall(ctx: Context, r: Rule):
    stall = ctx.rate("vmstat", "counters.compact_stall")
    fail = ctx.delta("vmstat", "counters.compact_fail")
    stall_d = ctx.delta("vmstat", "counters.compact_stall")
    if stall is None or stall < r.t("warn_stalls_per_s"):
        return None
    fail_pct = 100.0 * (fail or 0) / stall_d if stall_d else 0.0
    ev = [ctx.ev("compact_stall", stall, "stalls/s", "vmstat", threshold=r.t("warn_stalls_per_s")),
          ctx.ev("compact_fail", fail_pct, "% of stalls", "vmstat", threshold=r.t("critical_fail_pct"))]
    bi = ctx.get("buddyinfo")
    order = int(r.t("scarce_order"))
    if bi is not None:
        for z in bi.zones:
            high = sum(z.free_blocks[order:])
            ev.append(ctx.ev(f"node{z.node} {z.zone} free blocks of order >= {order}", high, "blocks",
                             "/proc/buddyinfo", note="free blocks by order: " +
                             " ".join(str(x) for x in z.free_blocks)))
    return r.finding(
        "critical" if fail_pct >= r.t("critical_fail_pct") else "warning", ev,
        "Allocations of physically contiguous memory (huge pages, large network or driver "
        "buffers) found no free block of their size and compacted memory synchronously.",
        [Action("sysctl", name="vm.compaction_proactiveness",
                current=ctx.sysctl_text("vm.compaction_proactiveness"),
                recommended=str(_toward(ctx.sysctl("vm.compaction_proactiveness"), 30, "up")),
                why="compact in the background before allocations need it (5.9+; default 20)"),
         Action("command", text="echo defer+madvise > /sys/kernel/mm/transparent_hugepage/defrag"
                                "  # do not stall page faults for THP"),
         Action("command", text="ksight trace compaction --seconds 10  # who stalls, how long")])


@rule("pagecache.swap-io", title="Swap I/O",
      needs=("vmstat",), uses=("meminfo", "sysctl"),
      thresholds={
          "warn_pages_per_s": Threshold(10, "pages/s", "40 KiB/s: swapping is under way, not a stray page"),
          "critical_pages_per_s": Threshold(2560, "pages/s", "10 MiB/s of swap traffic"),
      })
def swap_io(ctx: Context, r: Rule):
    """pswpin / pswpout: pages read from and written to swap."""
    sin = ctx.rate("vmstat", "counters.pswpin")
    sout = ctx.rate("vmstat", "counters.pswpout")
    total = (sin or 0) + (sout or 0)
    if total < r.t("warn_pages_per_s"):
        return None
    page_kb = ctx.last.host.page_size // 1024
    ev = [ctx.ev("pswpin", sin, "pages/s", "vmstat", note=f"{(sin or 0) * page_kb:.0f} kB/s"),
          ctx.ev("pswpout", sout, "pages/s", "vmstat", note=f"{(sout or 0) * page_kb:.0f} kB/s")]
    mi = ctx.get("meminfo")
    if mi and mi.swap_total_kb is not None and mi.swap_free_kb is not None:
        ev.append(ctx.ev("swap used", mi.swap_total_kb - mi.swap_free_kb, "kB", "meminfo",
                         note=f"of {mi.swap_total_kb} kB"))
    sw = ctx.sysctl("vm.swappiness")
    if sw is not None:
        ev.append(ctx.ev("vm.swappiness", sw, "", "/proc/sys/vm/swappiness"))
    return r.finding(
        "critical" if total >= r.t("critical_pages_per_s") else "warning", ev,
        "Anonymous memory is being written to swap and read back. A task that touches a "
        "swapped-out page waits for a disk read, which shows up as latency jitter; in "
        "production it usually means memory is overcommitted (machine-wide or in a cgroup).",
        [Action("sysctl", name="vm.swappiness", current=None if sw is None else str(sw),
                recommended=str(_toward(sw, 10, "down")),
                why="prefer dropping page cache over swapping anonymous "
                                      "memory; trade-off: less cache for file I/O"),
         Action("command", text="ksight show --processes --json  # VmSwap per process: who is swapped out"),
         Action("cgroup", text="set memory.swap.max (v2) or memory.memsw.limit_in_bytes (v1) for "
                               "latency-sensitive groups so they are not swapped")])


@rule("pagecache.reclaim-efficiency", title="Reclaim scans many pages to free few (%vmeff)",
      needs=("vmstat",),
      thresholds={
          "min_scan_pages_per_s": Threshold(1000, "pages/s", "below this little reclaim happens "
                                                             "and the ratio is noise"),
          "warn_vmeff_pct": Threshold(30, "%", "sar(1): below 30% the VM struggles to find pages"),
          "critical_vmeff_pct": Threshold(10, "%", "reclaim is mostly wasted work"),
      })
def reclaim_efficiency(ctx: Context, r: Rule):
    """%vmeff = pgsteal / pgscan, as sar -B computes it (kswapd and direct together)."""
    scan = (ctx.rate("vmstat", _vm("pgscan_kswapd")) or 0) + (ctx.rate("vmstat", _vm("pgscan_direct")) or 0)
    steal = (ctx.rate("vmstat", _vm("pgsteal_kswapd")) or 0) + (ctx.rate("vmstat", _vm("pgsteal_direct")) or 0)
    if scan < r.t("min_scan_pages_per_s"):
        return None
    vmeff = min(100.0 * steal / scan, 100.0)
    if vmeff >= r.t("warn_vmeff_pct"):
        return None
    ev = [ctx.ev("%vmeff", vmeff, "%", "vmstat", threshold=r.t("warn_vmeff_pct")),
          ctx.ev("pages scanned", scan, "pages/s", "vmstat"),
          ctx.ev("pages stolen", steal, "pages/s", "vmstat")]
    return r.finding(
        "critical" if vmeff < r.t("critical_vmeff_pct") else "warning", ev,
        "Reclaim scans many pages for each one it frees: most pages it finds are in use, dirty, "
        "or pinned. Memory pressure is high and reclaim itself burns CPU.",
        [Action("command", text="ksight sar -B 1 10  # watch pgscank/pgscand/pgsteal and %vmeff"),
         Action("command", text="ksight pagecache  # dirty pages and watermarks behind it")])
