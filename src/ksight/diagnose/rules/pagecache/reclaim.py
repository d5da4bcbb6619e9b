"""Reclaim: tasks reclaiming memory themselves (machine-wide and in memory cgroups), reclaim that
scans much to free little, NUMA zone reclaim, and compaction stalls."""

from __future__ import annotations

import math

from ....render.units import size
from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule
from .common import cgroup_dir, fmt_kb, psi_memory_some10, toward, watermark_evidence
from .counters import (ALLOCSTALL, CG_STAT_RATES, COMPACT_FAIL, COMPACT_STALL, PGSCAN,
                       PGSCAN_DIRECT, PGSTEAL, PGSTEAL_DIRECT, ZONE_RECLAIM_FAILED)

GIB_KB = 1024 * 1024


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
        wsf = ctx.sysctl("vm.watermark_scale_factor")
        if wsf is None:
            return None
        return Action.sysctl(
            "vm.watermark_scale_factor", ctx.sysctl_text("vm.watermark_scale_factor"),
            toward(wsf, 100, "up"),
            why="vm.min_free_kbytes is already generous; widening the gap between the low and "
                "high watermarks (default 10 = 0.1% of memory) wakes kswapd earlier and lets it "
                "reclaim more before allocations stall")
    return Action.sysctl(
        "vm.min_free_kbytes", cur, rec,
        why=f"kswapd wakes when free memory falls to the low watermark, which is derived from "
            f"vm.min_free_kbytes; a larger reserve ({fmt_kb(rec)} for {fmt_kb(mi.mem_total_kb)} "
            f"of RAM) makes it start earlier, so allocations find free pages instead of "
            f"reclaiming themselves. Cost: that memory is no longer available to applications "
            f"or the page cache.")


@rule("pagecache.direct-reclaim", title="Processes reclaim memory themselves (direct reclaim)",
      needs=("vmstat", "meminfo"), counters=(ALLOCSTALL, PGSCAN_DIRECT),
      uses=("zoneinfo", "pressure", "cgroup_memory", "sysctl"),
      cgroup_files=("usage", "failcnt", "max", "stat", "events", "events_local", "pressure", "oom"),
      thresholds={
          "min_allocstalls": Threshold(1, "stalls in the window",
                                       "any allocation stall means a task waited for reclaim"),
          "min_direct_scan_pages": Threshold(32, "pages in the window",
                                             "SWAP_CLUSTER_MAX: one reclaim batch"),
          "critical_allocstall_per_s": Threshold(100, "stalls/s in an interval",
                                                 "hundreds of stalls a second are felt as latency"),
          "critical_psi_some_avg10": Threshold(10, "%", "tasks stalled on memory 10% of the time"),
          "cgroup_near_limit_pct": Threshold(95, "% of limit",
                                             "a group this close to its limit reclaims on most charges"),
      })
def direct_reclaim(ctx: Context, r: Rule):
    """Machine-wide direct reclaim from vmstat, and reclaim inside memory cgroups at their limit
    (which the machine-wide counters do not show)."""
    findings = []
    stalls, scan, steal = ctx.counter(ALLOCSTALL), ctx.counter(PGSCAN_DIRECT), ctx.counter(PGSTEAL_DIRECT)
    if (stalls.total or 0) >= r.t("min_allocstalls") or (scan.total or 0) >= r.t("min_direct_scan_pages"):
        some10 = psi_memory_some10(ctx)
        peak = stalls.peak
        critical = (peak is not None and peak.rate >= r.t("critical_allocstall_per_s")) or (
            some10 is not None and some10 >= r.t("critical_psi_some_avg10"))
        ev = [
            ctx.ev("allocstall", stalls.peak_rate, "stalls/s", "vmstat",
                   threshold=r.t("critical_allocstall_per_s"),
                   note=ctx.peak_note(peak, stalls.mean_rate)),
            ctx.ev("allocstall in the window", stalls.total, "stalls", "vmstat"),
            ctx.ev("pgscan_direct", scan.peak_rate, "pages/s", "vmstat",
                   note=ctx.peak_note(scan.peak, scan.mean_rate)),
            ctx.ev("pgsteal_direct", steal.mean_rate, "pages/s", "vmstat"),
        ]
        if steal.total is not None and scan.total:
            ev.append(ctx.ev("direct reclaim efficiency", 100.0 * steal.total / scan.total, "%", "vmstat"))
        if some10 is not None:
            ev.append(ctx.ev("memory pressure some avg10", some10, "%", "/proc/pressure/memory",
                             threshold=r.t("critical_psi_some_avg10")))
        mi = ctx.get("meminfo")
        ev.append(ctx.ev("MemAvailable", mi.mem_available_kb, "kB", "meminfo"))
        ev.extend(watermark_evidence(ctx))
        mf = ctx.sysctl("vm.min_free_kbytes")
        if mf is not None:
            ev.append(ctx.ev("vm.min_free_kbytes", mf, "kB", "/proc/sys/vm/min_free_kbytes"))
        actions = [a for a in [_min_free_action(ctx)] if a]
        actions.append(Action.command("ksight trace reclaim --seconds 10  "
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


def _round_mib_up(b: float) -> int:
    return int(math.ceil(b / 2**20)) * 2**20


def _limit_hits(ctx: Context, groups_last) -> dict:
    """(path, id) -> [(file label, CounterSeries)] of the counters that move when a group
    reclaims at its own limit: v1 memory.failcnt; v2 memory.events.local max/high (5.2+), or,
    without .local, memory.events of a group that has a limit of its own (memory.events is
    hierarchical: a parent counts its children's hits)."""
    from ....sources.cgroup_memory import UNLIMITED

    s = ctx.series
    failcnt = s.entity_counters("cgroups", lambda g: g.failcnt, "memory.failcnt")
    out: dict = {}
    for key, cs in failcnt.items():
        if cs.total:
            out.setdefault(key, []).append(("memory.failcnt", cs))
    for ev_key in ("max", "high"):
        local = s.entity_counters("cgroups", lambda g, k=ev_key: (g.events_local or {}).get(k),
                                  f"memory.events.local {ev_key}")
        hier = s.entity_counters("cgroups", lambda g, k=ev_key: (g.events or {}).get(k),
                                 f"memory.events {ev_key}")
        for key, g in groups_last.items():
            if g.version != 2:
                continue
            if key in local and local[key].present:
                if local[key].total:
                    out.setdefault(key, []).append((f"memory.events.local {ev_key}", local[key]))
                continue
            own = g.max_bytes if ev_key == "max" else g.high_bytes
            if own is not None and own < UNLIMITED and key in hier and hier[key].total:
                out.setdefault(key, []).append((f"memory.events {ev_key}", hier[key]))
    return out


def _cgroup_reclaim(ctx: Context, r: Rule) -> list:
    cm = ctx.get("cgroup_memory")
    if cm is None or ctx.series.intervals == 0:
        return []
    from ....sources.cgroup_memory import UNLIMITED

    last = ctx.series.entities("cgroups")[-1]
    hits = _limit_hits(ctx, last)
    if not hits:
        return []
    stat_rates = {c.name: ctx.series.entity_counters("cgroups", c) for c in CG_STAT_RATES}
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
        for name, table in stat_rates.items():
            cs = table.get(key)
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
        if some10 is not None:
            ev.append(ctx.ev("memory.pressure some avg10", some10, "%", f"{d}/memory.pressure"))
        oom = ooms.get(key)
        oom_n = oom.total if oom is not None else None
        if oom_n:
            ev.append(ctx.ev("oom kills", oom_n, "in the window", d))
        critical = bool(oom_n) or (some10 is not None and some10 >= r.t("critical_psi_some_avg10"))
        out.append(r.finding(
            "critical" if critical else "warning", ev,
            "The memory cgroup hit its limit and its tasks reclaimed memory synchronously on "
            "every charge: their page cache is evicted and re-read, and each allocation waits. "
            "Machine-wide counters do not show this: the machine may have plenty of free memory.",
            _cgroup_actions(g, d, limit), subject=Subject(cgroup=path),
            title=f"Memory cgroup {path} reclaims at its limit"))
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


@rule("pagecache.reclaim-efficiency", title="Reclaim scans many pages to free few (%vmeff)",
      needs=("vmstat",), counters=(PGSCAN, PGSTEAL),
      thresholds={
          "min_scan_pages_per_s": Threshold(1000, "pages/s in an interval",
                                            "below this little reclaim happens and the ratio is noise"),
          "warn_vmeff_pct": Threshold(30, "%", "sar(1): below 30% the VM struggles to find pages"),
          "critical_vmeff_pct": Threshold(10, "%", "reclaim is mostly wasted work"),
      })
def reclaim_efficiency(ctx: Context, r: Rule):
    """%vmeff = pgsteal / pgscan, as sar -B computes it (kswapd and direct together), judged in
    each interval where reclaim scanned enough for the ratio to mean something."""
    scan, steal = ctx.counter(PGSCAN), ctx.counter(PGSTEAL)
    worst = None
    for i, (sc, st, secs) in enumerate(zip(scan.deltas, steal.deltas, ctx.series.seconds_per_interval)):
        if sc is None or st is None or secs is None or sc / secs < r.t("min_scan_pages_per_s"):
            continue
        vmeff = min(100.0 * st / sc, 100.0)
        if worst is None or vmeff < worst[0]:
            worst = (vmeff, i, sc / secs, st / secs)
    if worst is None or worst[0] >= r.t("warn_vmeff_pct"):
        return None
    vmeff, i, scan_rate, steal_rate = worst
    n = ctx.series.intervals
    where = f"interval {i + 1} of {n}" if n > 1 else "the window"
    ev = [ctx.ev("%vmeff", vmeff, "%", "vmstat", threshold=r.t("warn_vmeff_pct"),
                 note=f"lowest in an interval with reclaim: {where}"),
          ctx.ev("pages scanned", scan_rate, "pages/s", "vmstat", note="pgscan_kswapd + pgscan_direct"),
          ctx.ev("pages stolen", steal_rate, "pages/s", "vmstat", note="pgsteal_kswapd + pgsteal_direct")]
    return r.finding(
        "critical" if vmeff < r.t("critical_vmeff_pct") else "warning", ev,
        "Reclaim scans many pages for each one it frees: most pages it finds are in use, dirty, "
        "or pinned. Memory pressure is high and reclaim itself burns CPU.",
        [Action.command("ksight sar -B 1 10  # watch pgscank/pgscand/pgsteal and %vmeff"),
         Action.command("ksight pagecache  # dirty pages and watermarks behind it")])


@rule("pagecache.numa-zone-reclaim", title="vm.zone_reclaim_mode is on on a NUMA machine",
      needs=("numa",), sysctls=("vm.zone_reclaim_mode",), uses=("vmstat", "meminfo"), window=False,
      thresholds={"plenty_free_pct": Threshold(20, "% of MemTotal available",
                                               "reclaiming with this much free elsewhere is waste")})
def numa_zone_reclaim(ctx: Context, r: Rule):
    """zone_reclaim_mode != 0 makes a node reclaim its own cache rather than allocate from a
    remote node; on most workloads the cache loss costs far more than remote access."""
    mode = ctx.sysctl("vm.zone_reclaim_mode")
    numa = ctx.get("numa")
    if not mode or len(numa.nodes) < 2:
        return None
    ev = [ctx.ev("vm.zone_reclaim_mode", mode, "", "/proc/sys/vm/zone_reclaim_mode", threshold=0),
          ctx.ev("NUMA nodes", len(numa.nodes), "", "/sys/devices/system/node")]
    critical = False
    if ctx.series.intervals and ctx.series.has_clock and ctx.get("vmstat") is not None:
        stalls = ctx.delta(ALLOCSTALL)
        failed = ctx.delta(ZONE_RECLAIM_FAILED)
        mi = ctx.get("meminfo")
        if mi and mi.mem_total_kb and mi.mem_available_kb is not None:
            avail_pct = 100.0 * mi.mem_available_kb / mi.mem_total_kb
            ev.append(ctx.ev("MemAvailable", avail_pct, "% of MemTotal", "meminfo",
                             threshold=r.t("plenty_free_pct")))
            if (stalls or failed) and avail_pct >= r.t("plenty_free_pct"):
                critical = True
        ev.append(ctx.ev("allocstall", stalls, "in the window", "vmstat"))
        ev.append(ctx.ev("zone_reclaim_failed", failed, "in the window", "vmstat"))
    return r.finding(
        "critical" if critical else "warning", ev,
        "With zone_reclaim_mode on, an allocation that does not fit on the local node reclaims "
        "that node's page cache (and may write it out or swap) instead of using free memory on "
        "another node. Caches shrink and processes stall in reclaim while memory sits free.",
        [Action.sysctl("vm.zone_reclaim_mode", mode, 0,
                       why="allocate from remote nodes before reclaiming local cache; the default "
                           "since Linux 3.16")])


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
