"""Reclaim: tasks reclaiming memory themselves (machine-wide and in memory cgroups), reclaim that
scans much to free little, NUMA zone reclaim, and compaction stalls."""

from __future__ import annotations

import math

from ....render.units import size
from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule
from .common import cgroup_dir, fmt_kb, psi_memory_some10, toward, watermark_evidence
from .counters import (ALLOCSTALL, CG_ACTIVATE_FILE, CG_PGMAJFAULT, CG_REFAULT_FILE,
                       CG_STAT_RATES, COMPACT_FAIL, COMPACT_STALL, NODE_RECLAIM_FAILED,
                       NODE_RECLAIM_SUCCESS, PGSCAN, PGSCAN_DIRECT, PGSCAN_DIRECT_THROTTLE,
                       PGSCAN_KSWAPD, PGSTEAL, PGSTEAL_DIRECT, PGSTEAL_KSWAPD)

GIB_KB = 1024 * 1024


def recommended_min_free_kb(mem_total_kb: int) -> int:
    """About 4 GiB of reserve on a machine of 128 GiB or more, proportionally less below."""
    return int(min(mem_total_kb * 4 / 128, 4 * GIB_KB))


def kernel_at_least(ctx: Context, major: int, minor: int) -> bool | None:
    """Whether the captured kernel (uname -r) is at least major.minor; None when unknown."""
    k = ctx.last.host.kernel or ""
    parts = k.split("-", 1)[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return None


def _watermark_actions(ctx: Context) -> list:
    """For the watermark gap: vm.watermark_scale_factor (4.6+, mm/page_alloc.c
    __setup_per_zone_wmarks: low = min + max(min/4, managed * factor / 10000), high = low + the
    same gap) widens the band in which kswapd works without raising the min reserve that only
    atomic and PF_MEMALLOC allocations may dip into; vm.min_free_kbytes only where the factor does
    not exist (before 4.6) or the reserve is below the recommendation and the factor is already
    raised."""
    acts = []
    wsf = ctx.sysctl("vm.watermark_scale_factor")
    if wsf is not None:
        acts.append(Action.sysctl(
            "vm.watermark_scale_factor", ctx.sysctl_text("vm.watermark_scale_factor"),
            toward(wsf, 100, "up"),
            why="widen the gap between the min, low and high watermarks (default 10 = 0.1% of "
                "each zone; 100 = 1%): kswapd wakes earlier and reclaims further before an "
                "allocation reaches the min watermark and stalls. Unlike vm.min_free_kbytes it "
                "does not grow the emergency reserve that ordinary allocations cannot use"))
        if wsf < 100:
            return acts
    cur = ctx.sysctl("vm.min_free_kbytes")
    mi = ctx.get("meminfo")
    if cur is None or mi is None or mi.mem_total_kb is None:
        return acts
    rec = recommended_min_free_kb(mi.mem_total_kb)
    if rec > cur:
        acts.append(Action.sysctl(
            "vm.min_free_kbytes", cur, rec,
            why=f"{'vm.watermark_scale_factor is already raised' if wsf is not None else 'this kernel has no vm.watermark_scale_factor (before 4.6)'}"
                f": every watermark derives from vm.min_free_kbytes; a larger reserve "
                f"({fmt_kb(rec)} for {fmt_kb(mi.mem_total_kb)} of RAM) makes kswapd start earlier. "
                f"Cost: that memory is no longer available to applications or the page cache."))
    return acts


def _zones_at(ctx: Context, interval: int | None):
    """The populated zones of the zoneinfo read at the end of an interval (else the last one)."""
    snaps = ctx.series.snapshots
    snap = snaps[interval + 1] if interval is not None and interval + 1 < len(snaps) else ctx.last
    zi = snap.get("zoneinfo")
    if zi is None:
        return None
    return [z for z in zi.zones if z.managed_pages and z.free_pages is not None
            and z.low_pages is not None and z.high_pages]


def _interval_ratio(num, den, i: int) -> float | None:
    if i is None or i >= len(den.deltas) or i >= len(num.deltas):
        return None
    d, n = den.deltas[i], num.deltas[i]
    return None if not d or n is None else min(100.0 * n / d, 100.0)


@rule("pagecache.direct-reclaim", title="Processes reclaim memory themselves (direct reclaim)",
      needs=("vmstat", "meminfo"), counters=(ALLOCSTALL, PGSCAN_DIRECT),
      uses=("zoneinfo", "pressure", "cgroup_memory", "sysctl", "buddyinfo"),
      cgroup_files=("usage:limited", "failcnt:limited", "max", "stat", "events", "events_local",
                    "pressure:limited", "oom"),
      thresholds={
          "warn_allocstall_per_s": Threshold(
              1, "stalls/s sustained", "one task a second entering try_to_free_pages(), interval "
              "after interval, is a pattern; one stall in a window is one unlucky allocation"),
          "sustain_intervals": Threshold(
              3, "consecutive intervals", "the stall rate must hold this long to count as sustained"),
          "burst_allocstall_per_s": Threshold(
              20, "stalls/s in an interval", "a burst this dense is felt even if it does not last"),
          "critical_allocstall_per_s": Threshold(100, "stalls/s in an interval",
                                                 "hundreds of stalls a second are felt as latency"),
          "critical_psi_some_avg10": Threshold(10, "%", "tasks stalled on memory 10% of the time"),
          "far_above_high": Threshold(
              5, "x the zone's high watermark", "free memory this far above every high "
              "watermark cannot fail an order-0 allocation: the stalls are high-order ones "
              "meeting fragmentation (__alloc_pages_slowpath compacts, then reclaims)"),
          "compaction_fail_pct": Threshold(
              50, "% of compaction stalls failing in the window", "stalls alongside failing "
              "compaction are high-order allocations giving up, not one unlucky allocation"),
          "kswapd_poor_efficiency_pct": Threshold(
              50, "% of kswapd's scanned pages reclaimed", "kswapd scanning hard and failing: "
              "it cannot restore the high watermark, so allocations fall to the min one"),
          "cgroup_near_limit_pct": Threshold(95, "% of limit",
                                             "a group this close to its limit reclaims on most charges"),
          "cg_refault_per_s": Threshold(
              100, "pages/s in an interval (workingset refaults or activations)", "the group "
              "re-reads about 400 KiB/s of file pages it evicted itself: reclaim at the limit is "
              "throwing away cache it still uses (mm/workingset.c workingset_refault)"),
          "cg_majfault_per_s": Threshold(50, "major faults/s in an interval",
                                         "tasks of the group wait for disk reads to fault pages back"),
          "cg_psi_some_avg10": Threshold(5, "%", "the group's tasks stalled on memory 5% of the time "
                                                 "(memory.pressure, v2)"),
      })
def direct_reclaim(ctx: Context, r: Rule):
    """Machine-wide direct reclaim from vmstat, told apart by cause, and reclaim inside memory
    cgroups at their limit (which the machine-wide counters do not show).

    Causes, checked against mm/vmscan.c and mm/page_alloc.c of torvalds/linux:
    - allocstall is counted once per do_try_to_free_pages() call, only for global reclaim
      (`if (!cgroup_reclaim(sc)) __count_zid_vm_events(ALLOCSTALL, ...)`). Older kernels tested
      global_reclaim(sc); a 4.x change counted every call, memcg reclaim included, until the test
      came back as !cgroup_reclaim() (about 5.3; both patches are on linux-mm). Memcg limit reclaim and node reclaim (node_reclaim(), with
      zone_reclaim_mode) scan without counting it; node reclaim's scans still land in
      pgscan_direct (shrink_inactive_list counts by reclaimer, not by caller). Direct scans with
      allocstall 0 are therefore node reclaim: pagecache.numa-zone-reclaim's case, not this one.
    - global watermark pressure: a zone at or below its low watermark in the zoneinfo read at the
      end of the peak interval, with kswapd's own efficiency (pgsteal_kswapd / pgscan_kswapd) in
      that interval as evidence of kswapd failing.
    - high-order allocations meeting fragmentation: stalls while every populated zone sits far
      above its high watermark (an order-0 allocation cannot fail there); compaction counters and
      buddyinfo are cited. No vm.min_free_kbytes advice: more free memory does not make it
      contiguous.
    - memory-cgroup limit reclaim: per group, gated on harm (see _cgroup_reclaim).
    Thresholds: sustained stalls (warn_allocstall_per_s over sustain_intervals) or a dense burst;
    a single stall in a window (a healthy busy server) gives nothing.
    Kernels checked: vmstat of 2.6.38 (pgscan_<reclaimer>_<zone>, no pgsteal_direct), 3.x-4.7
    (per-zone counters, summed), 4.8+ (per node), 6.18. Where zoneinfo is missing the cause is
    reported as unknown and no sysctl is advised; missing allocstall/pgscan_direct makes the rule
    not_evaluated (engine), never quiet."""
    findings = []
    stalls, scan = ctx.counter(ALLOCSTALL), ctx.counter(PGSCAN_DIRECT)
    peak = stalls.peak
    some10 = psi_memory_some10(ctx)
    sustained = stalls.sustained(r.t("warn_allocstall_per_s"), int(r.t("sustain_intervals")))
    burst = peak is not None and peak.rate >= r.t("burst_allocstall_per_s")
    # a stall with corroboration: compaction failing in the same window (high-order
    # allocations giving up) or memory PSI: harm beyond one unlucky allocation
    cstall, cfail = ctx.counter(COMPACT_STALL).total, ctx.counter(COMPACT_FAIL).total
    compaction_failing = bool(cstall) and 100.0 * (cfail or 0) / cstall >= r.t("compaction_fail_pct")
    pressured = some10 is not None and some10 >= r.t("critical_psi_some_avg10")
    if (stalls.total or 0) > 0 and (sustained or burst or compaction_failing or pressured):
        findings.append(_global_reclaim(ctx, r, stalls, scan, some10))
    findings.extend(_cgroup_reclaim(ctx, r))
    return findings


def _global_reclaim(ctx: Context, r: Rule, stalls, scan, some10):
    peak = stalls.peak
    steal = ctx.counter(PGSTEAL_DIRECT)
    kscan, ksteal = ctx.counter(PGSCAN_KSWAPD), ctx.counter(PGSTEAL_KSWAPD)
    critical = (peak.rate >= r.t("critical_allocstall_per_s")) or (
        some10 is not None and some10 >= r.t("critical_psi_some_avg10"))
    ev = [
        ctx.ev("allocstall", peak.rate, "stalls/s", "vmstat",
               threshold=r.t("burst_allocstall_per_s"), note=ctx.peak_note(peak, stalls.mean_rate)),
        ctx.ev("allocstall in the window", stalls.total, "stalls", "vmstat"),
        ctx.ev("pgscan_direct", scan.peak_rate, "pages/s", "vmstat",
               note=ctx.peak_note(scan.peak, scan.mean_rate)),
        ctx.ev("pgsteal_direct", steal.mean_rate, "pages/s", "vmstat"),
    ]
    if steal.total is not None and scan.total:
        ev.append(ctx.ev("direct reclaim efficiency", 100.0 * steal.total / scan.total, "%", "vmstat"))
    keff = _interval_ratio(ksteal, kscan, peak.interval)
    krate = kscan.rates[peak.interval] if peak.interval < len(kscan.rates) else None
    if krate is not None:
        ev.append(ctx.ev("pgscan_kswapd in the peak interval", krate, "pages/s", "vmstat"))
    if keff is not None:
        ev.append(ctx.ev("kswapd efficiency in the peak interval", keff, "%", "vmstat",
                         threshold=r.t("kswapd_poor_efficiency_pct"),
                         note="pgsteal_kswapd / pgscan_kswapd"))
    if some10 is not None:
        ev.append(ctx.ev("memory pressure some avg10", some10, "%", "/proc/pressure/memory",
                         threshold=r.t("critical_psi_some_avg10")))
    mi = ctx.get("meminfo")
    ev.append(ctx.ev("MemAvailable", mi.mem_available_kb, "kB", "meminfo"))

    zones = _zones_at(ctx, peak.interval)
    where = "at the end of the peak interval"
    cause = "unknown"
    if zones:
        for z in zones:
            ratio = z.free_pages / z.high_pages
            note = (f"{where}: {ratio:.1f}x the high watermark; watermarks min {z.min_pages}, "
                    f"low {z.low_pages}, high {z.high_pages} pages")
            if z.free_pages <= (z.min_pages or 0):
                note += "; AT OR BELOW MIN"
            elif z.free_pages <= z.low_pages:
                note += "; at or below low: kswapd is awake"
            ev.append(ctx.ev(f"node{z.node} {z.name} free", z.free_pages, "pages", "zoneinfo",
                             threshold=z.low_pages, note=note))
        if any(z.free_pages <= z.low_pages for z in zones):
            cause = "watermark"
        elif all(z.free_pages >= r.t("far_above_high") * z.high_pages for z in zones):
            cause = "high-order"
    acts: list = []
    if cause == "watermark":
        mf = ctx.sysctl("vm.min_free_kbytes")
        if mf is not None:
            ev.append(ctx.ev("vm.min_free_kbytes", mf, "kB", "/proc/sys/vm/min_free_kbytes"))
        wsf = ctx.sysctl("vm.watermark_scale_factor")
        if wsf is not None:
            ev.append(ctx.ev("vm.watermark_scale_factor", wsf, "", "/proc/sys/vm/watermark_scale_factor"))
        poor = keff is not None and keff < r.t("kswapd_poor_efficiency_pct")
        text = ("Global memory pressure: free memory in a zone fell to its low watermark, kswapd "
                "was woken to reclaim up to the high watermark and "
                + ("scanned hard while freeing little (low kswapd efficiency): it cannot keep up"
                   if poor else "did not stay ahead of the allocations")
                + "; allocations that reached the min watermark reclaimed pages themselves, "
                  "synchronously, each stall adding latency to the task that allocates.")
        acts = _watermark_actions(ctx)
    elif cause == "high-order":
        cstall, cfail = ctx.counter(COMPACT_STALL), ctx.counter(COMPACT_FAIL)
        if cstall.present:
            ev.append(ctx.ev("compact_stall", cstall.total, "in the window", "vmstat"))
            ev.append(ctx.ev("compact_fail", cfail.total, "in the window", "vmstat"))
        ev.extend(_buddy_evidence(ctx))
        text = ("Allocations stalled in reclaim while every zone had free memory far above its "
                "high watermark: an order-0 allocation cannot fail there, so these are "
                "high-order allocations (huge pages, large kernel buffers) that found no free "
                "block of their size, compacted, and reclaimed to make contiguous room. kswapd "
                "and the watermarks are not the problem; raising vm.min_free_kbytes would not help.")
        cp = ctx.sysctl("vm.compaction_proactiveness")
        if cp is not None:
            acts.append(Action.sysctl("vm.compaction_proactiveness", cp, toward(cp, 30, "up"),
                                      why="compact in the background before allocations need "
                                          "it (5.9+; default 20)"))
        acts.append(Action.command("cat /sys/kernel/mm/transparent_hugepage/defrag  "
                                   "# 'always' makes THP faults stall; defer+madvise does not"))
        acts.append(Action.command("ksight trace compaction --seconds 10  # who stalls, at what order"))
    else:
        text = ("Allocations reclaimed pages themselves, synchronously (direct reclaim). "
                + ("No zoneinfo was read, so the cause (watermark pressure or high-order "
                   "fragmentation) cannot be told apart here."
                   if not zones else
                   "Free memory sat above the low watermarks yet not far above the high ones: "
                   "the cause is not clear from counters alone (a burst that kswapd caught up "
                   "with, or high-order allocations)."))
    acts.append(Action.command("ksight trace reclaim --seconds 10  "
                               "# who stalls in reclaim, at what order, and for how long"))
    return r.finding("critical" if critical else "warning", ev, text, acts,
                     title={"watermark": "Direct reclaim: free memory at the watermarks, kswapd behind",
                            "high-order": "Direct reclaim: high-order allocations meet fragmentation",
                            }.get(cause, r.title))


def _buddy_evidence(ctx: Context, order: int = 4) -> list:
    bi = ctx.get("buddyinfo")
    if bi is None:
        return []
    return [ctx.ev(f"node{z.node} {z.zone} free blocks of order >= {order}", sum(z.free_blocks[order:]),
                   "blocks", "/proc/buddyinfo",
                   note="free blocks by order: " + " ".join(str(x) for x in z.free_blocks))
            for z in bi.zones]


def _round_mib_up(b: float) -> int:
    return int(math.ceil(b / 2**20)) * 2**20


def _limit_hits(ctx: Context, groups_last) -> dict:
    """(path, id) -> [(file label, CounterSeries)] of the counters that move when a group
    reclaims at its own limit: v1 memory.failcnt; v2 memory.events.local max/high (5.2+), or,
    without .local, memory.events of a group that has a limit of its own (memory.events is
    hierarchical: a parent counts its children's hits)."""
    from ....sources.cgroup_memory import UNLIMITED

    s = ctx.series
    # a hit is a counter that moved: series only for the groups whose counter moved (a host
    # with hundreds of groups would build five series per group on every check otherwise)
    failcnt = s.entity_counters("cgroups", lambda g: g.failcnt, "memory.failcnt", moved_only=True)
    out: dict = {}
    for key, cs in failcnt.items():
        if cs.total:
            out.setdefault(key, []).append(("memory.failcnt", cs))
    tables = s.entities("cgroups")
    v2 = any(g.version == 2 for g in groups_last.values())  # v1 has no memory.events
    for ev_key in ("max", "high") if v2 else ():
        local = s.entity_counters("cgroups", lambda g, k=ev_key: (g.events_local or {}).get(k),
                                  f"memory.events.local {ev_key}", moved_only=True)
        hier = s.entity_counters("cgroups", lambda g, k=ev_key: (g.events or {}).get(k),
                                 f"memory.events {ev_key}", moved_only=True)
        for key, g in groups_last.items():
            if g.version != 2:
                continue
            if key in local:
                if local[key].total:
                    out.setdefault(key, []).append((f"memory.events.local {ev_key}", local[key]))
                continue
            if _has_local(tables, key, ev_key):
                continue  # memory.events.local says this group's own limit was not hit
            own = g.max_bytes if ev_key == "max" else g.high_bytes
            if own is not None and own < UNLIMITED and key in hier and hier[key].total:
                out.setdefault(key, []).append((f"memory.events {ev_key}", hier[key]))
    return out


def _has_local(tables, key, ev_key: str) -> bool:
    """Whether the group has memory.events.local `ev_key` in a snapshot, and is in two or more
    (what a series of it would call present)."""
    seen = [t.get(key) for t in tables]
    if sum(e is not None for e in seen) < 2:
        return False
    return any(e is not None and e.events_local and e.events_local.get(ev_key) is not None
               for e in seen)


def _cgroup_reclaim(ctx: Context, r: Rule) -> list:
    """A group reclaiming at its limit, judged by harm.

    memory.failcnt (v1) and memory.events max/high (v2) move on every charge that had to reclaim
    at the limit (mm/memcontrol.c try_charge_memcg: memcg_memory_event(mem_over_limit,
    MEMCG_MAX) before try_to_free_mem_cgroup_pages): a cache-heavy container that streams files
    recycles its cache this way all day, harmlessly. A warning needs harm: the group's memory PSI
    (v2 memory.pressure), its workingset refaults or activations (memory.stat; v1 prints
    workingset_refault_* locally and total_* hierarchically on recent kernels), its major faults,
    or OOM kills. Without any of these the finding is info; where the group has none of these
    counters (old v1 kernels) the info finding says harm could not be judged."""
    cm = ctx.get("cgroup_memory")
    if cm is None or ctx.series.intervals == 0:
        return []
    from ....sources.cgroup_memory import UNLIMITED

    last = ctx.series.entities("cgroups")[-1]
    hits = _limit_hits(ctx, last)
    if not hits:
        return []
    stat_rates = {c.name: ctx.series.entity_counters("cgroups", c) for c in CG_STAT_RATES}
    refaults = ctx.series.entity_counters("cgroups", CG_REFAULT_FILE)
    activations = ctx.series.entity_counters("cgroups", CG_ACTIVATE_FILE)
    majfaults = ctx.series.entity_counters("cgroups", CG_PGMAJFAULT)
    psi_total = ctx.series.entity_counters(
        "cgroups", lambda g: g.pressure.some.total_usec
        if g.pressure is not None and g.pressure.some is not None else None, "memory.pressure some")
    ooms = ctx.series.entity_counters(
        "cgroups", lambda g: (g.events or {}).get("oom_kill") if g.events else g.oom_kill, "oom_kill")
    out = []
    for key, moved in hits.items():
        g = last.get(key)
        if g is None:
            continue
        path = g.path
        d = cgroup_dir(cm, path)
        ev = [ctx.ev(label, cs.total, "events in the window" if "events" in label
                     else "charges failed at the limit in the window", f"{d}/{label.split()[0]}",
                     note=ctx.peak_note(cs.peak, cs.mean_rate)) for label, cs in moved]
        harm: list[str] = []
        judged = False
        for label, table, thr in (
                ("memory.stat " + CG_REFAULT_FILE.name + " (refaults)", refaults, "cg_refault_per_s"),
                ("memory.stat " + CG_ACTIVATE_FILE.name + " (working-set refaults)", activations,
                 "cg_refault_per_s"),
                ("memory.stat pgmajfault", majfaults, "cg_majfault_per_s")):
            cs = table.get(key)
            if cs is None or not cs.present:
                continue
            judged = True
            pr = cs.peak_rate
            if pr is not None and pr >= r.t(thr):
                harm.append(label.split(" (")[0].replace("memory.stat ", ""))
            if cs.total:
                ev.append(ctx.ev(label, pr, "/s", f"{d}/memory.stat", threshold=r.t(thr),
                                 note=ctx.peak_note(cs.peak, cs.mean_rate)))
        for name, table in stat_rates.items():
            cs = table.get(key)
            if name in (CG_REFAULT_FILE.name, "pgmajfault", "total_pgmajfault"):
                continue
            if cs is not None and cs.total:
                ev.append(ctx.ev(f"memory.stat {name}", cs.mean_rate, "/s", f"{d}/memory.stat",
                                 note=ctx.peak_note(cs.peak)))
        limit = g.max_bytes if g.max_bytes is not None and g.max_bytes < UNLIMITED else None
        if limit and g.current_bytes is not None:
            ev.append(ctx.ev("usage of limit", 100.0 * g.current_bytes / limit, "%", d,
                             threshold=r.t("cgroup_near_limit_pct"),
                             note=f"{size(g.current_bytes)} of {size(limit)}"))
        psi = g.pressure
        some10 = psi.some.avg10 if psi is not None and psi.some is not None else None
        pt = psi_total.get(key)
        psi_peak = pt.peak_rate / 10_000 if pt is not None and pt.peak_rate is not None else None
        psi_pct = max(x for x in (some10, psi_peak) if x is not None) if (
            some10 is not None or psi_peak is not None) else None
        if psi_pct is not None:
            judged = True
            ev.append(ctx.ev("memory.pressure some", psi_pct, "% of time", f"{d}/memory.pressure",
                             threshold=r.t("cg_psi_some_avg10"),
                             note="the higher of avg10 and the peak interval's share of stalled time"))
            if psi_pct >= r.t("cg_psi_some_avg10"):
                harm.append("memory.pressure")
        oom = ooms.get(key)
        oom_n = oom.total if oom is not None else None
        if oom_n:
            ev.append(ctx.ev("oom kills", oom_n, "in the window", d))
            harm.append("oom kills")
        if harm:
            critical = bool(oom_n) or (psi_pct is not None and psi_pct >= r.t("critical_psi_some_avg10"))
            out.append(r.finding(
                "critical" if critical else "warning", ev,
                f"The memory cgroup reclaims at its limit and it hurts ({', '.join(harm)}): "
                "reclaim at the limit evicts page cache the group reads again, and its tasks "
                "wait for those reads and for reclaim itself. Machine-wide counters do not show "
                "this: the machine may have plenty of free memory.",
                _cgroup_actions(g, d, limit), subject=Subject(cgroup=path),
                title=f"Memory cgroup {path} reclaims at its limit, with harm"))
        else:
            out.append(r.finding(
                "info", ev,
                "The memory cgroup reaches its limit and reclaims its own page cache to make "
                "room: that is how a cache-heavy group recycles cache it will not read again. "
                + ("No sign of harm: no refaults, major faults or memory pressure above the "
                   "thresholds." if judged else
                   "Harm could not be judged: this group has no memory.pressure and no "
                   "workingset or major-fault counters in memory.stat."),
                [Action.command("ksight trace reclaim --seconds 10  # per-cgroup reclaim latency")],
                subject=Subject(cgroup=path),
                title=f"Memory cgroup {path} recycles its cache at its limit"))
    return out


def _cgroup_actions(g, d: str, limit: int | None) -> list:
    knob = "memory.limit_in_bytes" if g.version == 1 else "memory.max"
    acts = []
    if limit:
        acts.append(Action.cgroup_write(
            f"{d}/{knob}", _round_mib_up(limit * 1.25), current=limit,
            why="25% more room as a first step: every charge past the limit reclaims "
                "synchronously; size it to the working set (or shrink the workload)"))
    if g.version == 2 and limit and (g.high_bytes is None or g.high_bytes >= limit):
        acts.append(Action.cgroup_write(
            f"{d}/memory.high", _round_mib_up(limit * 0.9),
            current="max" if g.high_bytes is None or g.high_bytes >= 2**62 else g.high_bytes,
            why="a soft limit a little below memory.max: the group is throttled and reclaimed "
                "gradually instead of hitting the hard limit"))
    if g.version == 2:
        acts.append(Action.command(f"ksight pagecache --protect {g.path}  "
                                   "# how much cache memory.low / memory.min should protect"))
    acts.append(Action.command("ksight trace reclaim --seconds 10  # per-cgroup reclaim latency"))
    return acts


def _mglru(ctx: Context) -> bool | None:
    """MGLRU on (True), off or not built (False), or unknown (None: a 6.1+ capture that did not
    record /sys/kernel/mm/lru_gen/enabled)."""
    lg = ctx.get("lru_gen")
    if lg is not None:
        return lg.on
    if ctx.last.missing("lru_gen") is not None:
        return False  # read and absent: no CONFIG_LRU_GEN
    newer = kernel_at_least(ctx, 6, 1)
    return False if newer is False else None


@rule("pagecache.reclaim-efficiency", title="Reclaim scans many pages to free few (%vmeff)",
      needs=("vmstat",), counters=(PGSCAN, PGSTEAL), uses=("lru_gen",),
      thresholds={
          "min_scan_pages_per_s": Threshold(1000, "pages/s in an interval",
                                            "below this little reclaim happens and the ratio is noise"),
          "warn_vmeff_pct": Threshold(30, "%", "sar(1): below 30% the VM struggles to find pages"),
          "critical_vmeff_pct": Threshold(10, "%", "reclaim is mostly wasted work"),
      })
def reclaim_efficiency(ctx: Context, r: Rule):
    """%vmeff = pgsteal / pgscan, as sar -B computes it (kswapd and direct together), judged in
    each interval where reclaim scanned enough for the ratio to mean something.

    Kernels: 4.8+ pgsteal_kswapd + pgsteal_direct (per node); 3.4-4.7 the same names per zone,
    summed; before 3.4 (checked on a 2.6.38 /proc/vmstat) there is no pgsteal_kswapd/_direct:
    pgsteal_<zone> counted every reclaimed page (kswapd and direct; kswapd_steal is kswapd's
    share, not added), and counters.PGSTEAL falls back to their sum, so the ratio is the one
    `ksight sar -B` shows. A capture with neither is not_evaluated (engine), never 0 %.
    MGLRU (6.1+, lru_gen/enabled bit 0): scan_folios() counts only isolated folios in pgscan, so
    a high %vmeff says nothing there; a low one still means isolated pages could not be freed.
    With MGLRU on (or unknown on a 6.1+ capture that did not record lru_gen) and %vmeff not low,
    the rule reports not_evaluated with that reason instead of "healthy"."""
    scan, steal = ctx.counter(PGSCAN), ctx.counter(PGSTEAL)
    worst = None
    for i, (sc, st, secs) in enumerate(zip(scan.deltas, steal.deltas, ctx.series.seconds_per_interval)):
        if sc is None or st is None or secs is None or sc / secs < r.t("min_scan_pages_per_s"):
            continue
        vmeff = min(100.0 * st / sc, 100.0)
        if worst is None or vmeff < worst[0]:
            worst = (vmeff, i, sc / secs, st / secs)
    if worst is None:
        return None
    mglru = _mglru(ctx)
    if worst[0] >= r.t("warn_vmeff_pct"):
        if mglru:
            raise ctx.cannot_look(
                "MGLRU is on (/sys/kernel/mm/lru_gen/enabled): pgscan counts only the pages "
                "reclaim isolated, so %vmeff stays high however hard it works; judge reclaim by "
                "refaults (pagecache.thrashing) and stalls instead")
        if mglru is None:
            raise ctx.cannot_look(
                "kernel 6.1+ and the capture did not record /sys/kernel/mm/lru_gen/enabled: with "
                "MGLRU on, a high %vmeff means nothing, so this one cannot be read as healthy")
        return None
    vmeff, i, scan_rate, steal_rate = worst
    n = ctx.series.intervals
    where = f"interval {i + 1} of {n}" if n > 1 else "the window"
    ev = [ctx.ev("%vmeff", vmeff, "%", "vmstat", threshold=r.t("warn_vmeff_pct"),
                 note=f"lowest in an interval with reclaim: {where}"),
          ctx.ev("pages scanned", scan_rate, "pages/s", "vmstat", note="pgscan_kswapd + pgscan_direct"),
          ctx.ev("pages stolen", steal_rate, "pages/s", "vmstat",
                 note="pgsteal_kswapd + pgsteal_direct" if ctx.counter(PGSTEAL_KSWAPD).present
                 else "pgsteal_<zone> (before 3.4: every reclaimed page, kswapd and direct)")]
    if mglru:
        ev.append(ctx.ev("MGLRU", "on", "", "/sys/kernel/mm/lru_gen/enabled",
                         note="pgscan counts isolated pages only: the true ratio is lower still"))
    return r.finding(
        "critical" if vmeff < r.t("critical_vmeff_pct") else "warning", ev,
        "Reclaim scans many pages for each one it frees: most pages it finds are in use, dirty, "
        "or pinned. Memory pressure is high and reclaim itself burns CPU.",
        [Action.command("ksight sar -B 1 10  # watch pgscank/pgscand/pgsteal and %vmeff"),
         Action.command("ksight pagecache  # dirty pages and watermarks behind it")])


@rule("pagecache.numa-zone-reclaim", title="vm.zone_reclaim_mode is on on a NUMA machine",
      needs=("numa",), sysctls=("vm.zone_reclaim_mode",), uses=("vmstat", "meminfo"), window=False,
      thresholds={"plenty_free_pct": Threshold(20, "% of MemTotal available",
                                               "reclaiming with this much free elsewhere is waste"),
                  "min_direct_scan_pages": Threshold(32, "pages in the window",
                                                     "SWAP_CLUSTER_MAX: one reclaim batch")})
def numa_zone_reclaim(ctx: Context, r: Rule):
    """zone_reclaim_mode != 0 makes a node reclaim its own cache rather than allocate from a
    remote node; on most workloads the cache loss costs far more than remote access.

    What node reclaim moves (mm/vmscan.c node_reclaim/__node_reclaim of torvalds/linux): it
    scans through shrink_node(), so its scans count in pgscan_direct, but it never goes through
    do_try_to_free_pages(), so allocstall does not move; node_reclaim() counts
    zone_reclaim_failed when it freed too little (CONFIG_NUMA kernels since 2.6.30, first
    printed as pgscan_zone_reclaim_failed) and zone_reclaim_success on recent 6.x kernels.
    Evidence is therefore direct scans without stalls and those two counters where printed;
    allocstall is never cited. With one snapshot (or no vmstat) the setting alone is reported."""
    mode = ctx.sysctl("vm.zone_reclaim_mode")
    numa = ctx.get("numa")
    if not mode or len(numa.nodes) < 2:
        return None
    ev = [ctx.ev("vm.zone_reclaim_mode", mode, "", "/proc/sys/vm/zone_reclaim_mode", threshold=0),
          ctx.ev("NUMA nodes", len(numa.nodes), "", "/sys/devices/system/node")]
    critical = False
    if ctx.series.intervals and ctx.series.has_clock and ctx.get("vmstat") is not None:
        stalls = ctx.delta(ALLOCSTALL)
        dscan = ctx.counter(PGSCAN_DIRECT)
        failed = ctx.delta(NODE_RECLAIM_FAILED)
        success = ctx.delta(NODE_RECLAIM_SUCCESS)
        # direct scans in intervals without an allocation stall: node reclaim's own
        st = ctx.counter(ALLOCSTALL).deltas
        node_scans = sum(d for d, a in zip(dscan.deltas, st) if d and not a) if dscan.present else None
        if node_scans is not None:
            ev.append(ctx.ev("pgscan_direct without allocstall", node_scans, "pages in the window",
                             "vmstat", threshold=r.t("min_direct_scan_pages"),
                             note="node reclaim scans count as direct but never as allocstall"))
        ev.append(ctx.ev("zone_reclaim_failed", failed, "in the window", "vmstat"))
        ev.append(ctx.ev("zone_reclaim_success", success, "in the window", "vmstat"))
        active = bool(failed) or bool(success) or (
            node_scans is not None and node_scans >= r.t("min_direct_scan_pages"))
        mi = ctx.get("meminfo")
        if mi and mi.mem_total_kb and mi.mem_available_kb is not None:
            avail_pct = 100.0 * mi.mem_available_kb / mi.mem_total_kb
            ev.append(ctx.ev("MemAvailable", avail_pct, "% of MemTotal", "meminfo",
                             threshold=r.t("plenty_free_pct")))
            if active and avail_pct >= r.t("plenty_free_pct"):
                critical = True
        if stalls:
            ev.append(ctx.ev("allocstall (not node reclaim)", stalls, "in the window", "vmstat",
                             note="global direct reclaim: see pagecache.direct-reclaim"))
    return r.finding(
        "critical" if critical else "warning", ev,
        "With zone_reclaim_mode on, an allocation that does not fit on the local node reclaims "
        "that node's page cache (and may write it out or swap) instead of using free memory on "
        "another node. Caches shrink and processes stall in reclaim while memory sits free.",
        [Action.sysctl("vm.zone_reclaim_mode", mode, 0,
                       why="allocate from remote nodes before reclaiming local cache; the default "
                           "since Linux 3.16")])


@rule("pagecache.reclaim-throttled", title="Tasks are throttled in direct reclaim",
      needs=("vmstat",), counters=(PGSCAN_DIRECT_THROTTLE,), uses=("zoneinfo",),
      thresholds={
          "warn_throttled": Threshold(1, "throttled tasks in the window", "each one slept (up "
                                      "to a second, or until killed) waiting for kswapd to restore "
                                      "the node's pfmemalloc reserve: free memory was near zero"),
          "critical_throttled_per_s": Threshold(10, "throttled tasks/s in an interval",
                                                "the node is starved of free pages, continuously"),
      })
def reclaim_throttled(ctx: Context, r: Rule):
    """pgscan_direct_throttle (3.6+): throttle_direct_reclaim() in mm/vmscan.c counts a task each
    time allow_direct_reclaim() says the node's free pages fell to half its pfmemalloc reserve
    (the sum of the zones' min watermarks), then puts it to sleep on pfmemalloc_wait until kswapd
    restores it (a 1 s timeout without __GFP_FS, else until it is killed). Not a page count.
    Checked on vmstat of 3.x-4.7 (PCP meminfo-root-001) and 4.8+; before 3.6 the counter does not
    exist and the rule is not_evaluated (engine)."""
    thr = ctx.counter(PGSCAN_DIRECT_THROTTLE)
    if (thr.total or 0) < r.t("warn_throttled"):
        return None
    peak = thr.peak
    ev = [ctx.ev("pgscan_direct_throttle", thr.total, "tasks throttled in the window", "vmstat",
                 threshold=r.t("warn_throttled")),
          ctx.ev("pgscan_direct_throttle rate", peak.rate if peak else None, "tasks/s", "vmstat",
                 threshold=r.t("critical_throttled_per_s"), note=ctx.peak_note(peak, thr.mean_rate))]
    ev.extend(watermark_evidence(ctx))
    critical = peak is not None and peak.rate >= r.t("critical_throttled_per_s")
    return r.finding(
        "critical" if critical else "warning", ev,
        "Tasks entering direct reclaim were put to sleep because free memory on their node fell "
        "below half the emergency reserve kept for the kernel's own reclaim (PF_MEMALLOC): the "
        "machine was out of free pages, and these tasks waited for kswapd before they could "
        "even try to reclaim.",
        [Action.command("ksight trace reclaim --seconds 10  # who stalls, and for how long"),
         Action.command("ksight pagecache  # watermarks and what fills memory")])


def _psi_full(ctx: Context):
    p = ctx.get("pressure")
    m = getattr(p, "memory", None) if p is not None else None
    return m.full if m is not None else None


@rule("pagecache.memory-psi-full", title="All non-idle tasks stall on memory at once (PSI full)",
      needs=("pressure",), window=False,
      thresholds={
          "warn_full_pct": Threshold(5, "% of an interval (or avg10)", "for one second in "
                                     "twenty no task made progress: every runnable task was "
                                     "waiting on reclaim, refaults or swap-in"),
          "critical_full_pct": Threshold(20, "% of an interval (or avg10)",
                                         "a fifth of wall-clock time lost to memory stalls"),
      })
def memory_psi_full(ctx: Context, r: Rule):
    """PSI memory "full" (4.20+, CONFIG_PSI; kernel/sched/psi.c): the share of time in which
    every non-idle task was stalled on memory at once (reclaim, refaults of the working set,
    swap-in, compaction) - lost throughput for the whole machine, where "some" is only
    someone's latency. Judged on the peak interval's share of the cumulative full total when
    there are two snapshots with a clock, else on avg10. A kernel without PSI, or a memory file
    without a full line, is not_evaluated with the reason; never "no pressure"."""
    full = _psi_full(ctx)
    if full is None:
        raise ctx.cannot_look("/proc/pressure/memory has no 'full' line")
    share = note = None
    if ctx.series.intervals and ctx.series.has_clock:
        cs = ctx.derived("pressure memory full total",
                         lambda s: (_full.total_usec if (_full := _psi_full_of(s)) else None))
        if cs.peak is not None:
            share = cs.peak.rate / 10_000  # usec per second -> % of time
            note = ctx.peak_note(cs.peak, cs.mean_rate / 10_000 if cs.mean_rate is not None else None,
                                 unit="%")
    basis = "peak interval"
    if share is None:
        share, basis = full.avg10, "avg10"
    if share < r.t("warn_full_pct"):
        return None
    ev = [ctx.ev("memory full stall", share, "% of time", "/proc/pressure/memory",
                 threshold=r.t("warn_full_pct"), note=note or basis),
          ctx.ev("memory full avg10", full.avg10, "%", "/proc/pressure/memory"),
          ctx.ev("memory full avg60", full.avg60, "%", "/proc/pressure/memory")]
    some10 = psi_memory_some10(ctx)
    if some10 is not None:
        ev.append(ctx.ev("memory some avg10", some10, "%", "/proc/pressure/memory"))
    return r.finding(
        "critical" if share >= r.t("critical_full_pct") else "warning", ev,
        "For this share of time every task that had work to do was stalled on memory at the "
        "same time - in reclaim, waiting for refaulted pages or swap-in: the machine did no "
        "useful work then. Look at what the memory rules say about why (direct reclaim, "
        "thrashing, swap-in).",
        [Action.command("ksight check --area pagecache  # the cause: reclaim, refaults, swap"),
         Action.command("ksight trace reclaim --seconds 10  # who stalls, and for how long")])


def _psi_full_of(snap):
    p = snap.get("pressure")
    m = getattr(p, "memory", None) if p is not None else None
    return m.full if m is not None else None


@rule("pagecache.compaction-stall", title="Allocations stall in memory compaction",
      needs=("vmstat",), counters=(COMPACT_STALL,), uses=("buddyinfo", "sysctl"),
      thresholds={
          "warn_stalls_per_s": Threshold(1, "stalls/s in an interval",
                                         "a stalled high-order allocation is a latency spike"),
          "critical_fail_pct": Threshold(50, "% of stalls failing", "compaction mostly fails: "
                                                                    "memory is badly fragmented"),
          "scarce_order": Threshold(4, "order", "64 KiB blocks: below this THP and network buffers fall back"),
      })
def compaction_stall(ctx: Context, r: Rule):
    stall = ctx.counter(COMPACT_STALL)
    peak = stall.peak
    if peak is None or peak.rate < r.t("warn_stalls_per_s"):
        return None
    fail = ctx.delta(COMPACT_FAIL)
    fail_pct = 100.0 * (fail or 0) / stall.total if stall.total else 0.0
    ev = [ctx.ev("compact_stall", peak.rate, "stalls/s", "vmstat",
                 threshold=r.t("warn_stalls_per_s"), note=ctx.peak_note(peak, stall.mean_rate)),
          ctx.ev("compact_fail", fail_pct, "% of stalls", "vmstat", threshold=r.t("critical_fail_pct"))]
    bi = ctx.get("buddyinfo")
    order = int(r.t("scarce_order"))
    if bi is not None:
        for z in bi.zones:
            high = sum(z.free_blocks[order:])
            ev.append(ctx.ev(f"node{z.node} {z.zone} free blocks of order >= {order}", high, "blocks",
                             "/proc/buddyinfo", note="free blocks by order: " +
                             " ".join(str(x) for x in z.free_blocks)))
    acts = []
    cp = ctx.sysctl("vm.compaction_proactiveness")
    if cp is not None:
        acts.append(Action.sysctl("vm.compaction_proactiveness", cp, toward(cp, 30, "up"),
                                  why="compact in the background before allocations need it "
                                      "(5.9+; default 20)"))
    acts += [Action.command("echo defer+madvise > /sys/kernel/mm/transparent_hugepage/defrag"
                            "  # do not stall page faults for THP"),
             Action.command("ksight trace compaction --seconds 10  # who stalls, how long")]
    return r.finding(
        "critical" if fail_pct >= r.t("critical_fail_pct") else "warning", ev,
        "Allocations of physically contiguous memory (huge pages, large network or driver "
        "buffers) found no free block of their size and compacted memory synchronously.",
        acts)
