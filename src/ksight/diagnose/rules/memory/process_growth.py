"""Processes that grow: memory.leak-suspect, memory.vma-growth, memory.virtual-leak.

Judged on trends, never on two points: every process (keyed by pid and start time) gives a
GaugeSeries of its anonymous memory, its VIRT, its RSS and, for the processes that grow, its
mapping count; a rule fires only when the trend is steady (model.series.Trend.steady_growth:
grew in almost every interval, no fall beyond one in ten, r2 >= 0.8), still growing at the end
of the window (the last half's slope is at least half the whole's: a warming cache that levels
off is not a leak) and large enough (kB/s and % of the process).

Which mappings grew: /proc/PID/smaps costs the kernel a page-table walk per mapping, so it is
read only for the few processes that grow (the `process_maps` source below: at most
MAPS_PROCS processes per snapshot, those whose statm size or resident set grew most since this
ksight process first saw them, by at least PICK_MIN_PAGES). The core's process parts maps and
smaps (plan.Few) pick processes by size, not by growth since a first look, so this stays its own
opt-in source (sources/process_maps.py). Its cost per snapshot: the choice from the scan's
table (no file read) plus a light read of smaps (headers, Rss, Anonymous) of the chosen few.
The diff of their mappings (new and grown, every kind: anon, heap, stack, shm, file) is
model/mappings.py's, the one `ksight leak` lists too. The first snapshot has no growth to
choose by, so mapping counts start at the second. `ksight capture` records this source too (with the PIDs it chose, maybe none, under
ksight/process_maps), so memory.vma-growth and the per-mapping evidence work --from a capture.
"""

from __future__ import annotations

import os
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ....errors import ParseError, Unavailable
from ....model.mappings import diff_of, maps_per_snapshot
from ....model.series import GaugeSeries, Trend
from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule

from ....sources.process_maps import (MAPS_PROCS, PICK_MIN_PAGES, SOURCE, Mapping,  # noqa: F401
                                     ProcessMaps, ProcMaps)

# ---- judging a trend --------------------------------------------------------------------------

def tail(g: GaugeSeries) -> Trend | None:
    """The trend of the last half of the points."""
    idx = [i for i, (t, v) in enumerate(zip(g.times, g.values)) if t is not None and v is not None]
    if len(idx) < 4:
        return None
    k = idx[len(idx) // 2 - 1]
    return GaugeSeries(g.name, g.values[k:], g.times[k:]).trend()


def steady(g: GaugeSeries, r: Rule) -> tuple[Trend, Trend] | None:
    """(whole trend, last half's trend) when g grew steadily over the window and still grows at
    its end; None otherwise."""
    t = g.trend()
    if t is None or t.points < r.t("min_points") or not t.steady_growth:
        return None
    if t.rises * 2 < t.points - 1:  # grew in fewer than half the intervals: a step, not a trend
        return None
    last = tail(g)
    if last is None or last.slope_per_s < r.t("min_tail_share") * t.slope_per_s:
        return None
    return t, last


def _trend_note(t: Trend, ctx: Context) -> str:
    return (f"{t.first:,.0f} -> {t.last:,.0f} over {ctx.seconds:.3g} s; rose in {t.rises} of "
            f"{t.points - 1} intervals, fell in {t.falls}; r2 {t.r2:.2f}")


def _live(ctx: Context) -> bool:
    return ctx.last.monotonic is not None


def _procs(ctx: Context, fn, name: str) -> dict:
    """(pid, start) -> GaugeSeries, without this ksight process when live (it keeps the
    snapshots, so it grows by design)."""
    me = os.getpid() if _live(ctx) else None
    return {k: g for k, g in ctx.series.entity_gauges("processes", fn, name).items()
            if k[0] != me and g.present}


def _proc(ctx: Context, key):
    return ctx.series.entities("processes")[-1].get(key) or next(
        (t[key] for t in reversed(ctx.series.entities("processes")) if key in t), None)


_GROUPS = (("anonymous", ("anon", "heap")), ("shared-memory", ("shm",)), ("file", ("file",)),
           ("stack", ("stack",)))


def _growing_mappings(ctx: Context, key, limit: int = 3):
    """Evidence for the mappings that appeared or grew between the first and the last snapshot
    that hold this process's mappings (model.mappings.diff_of): (evidence list, the diff or
    None). Every kind (anonymous and heap, shared memory, files, stack), the largest growth
    first, and for new mappings the recurring size first (the mmap call repeated)."""
    d = diff_of(ctx.series, key)
    if d is None or not (d.new or d.grown):
        return [], d
    ev = []
    for c in d.grown[:limit]:
        rss = f", Rss {c.rss_kb:,} kB" if c.rss_kb is not None else ""
        ev.append(ctx.ev(f"grown mapping {c.label()}", c.growth_kb, "kB", d.source,
                         note=f"{c.kind}: {c.old_size_kb:,} -> {c.size_kb:,} kB{rss}"))
    for word, kinds in _GROUPS:
        new = [c for c in d.new if c.kind in kinds]
        if not new:
            continue
        size, n = d.recurring(*kinds)
        total = sum(c.size_kb for c in new)
        ev.append(ctx.ev(f"new {word} mappings", len(new), "mappings", d.source,
                         note=f"{total:,} kB in all; most common size {size:,} kB ({n} of them)"))
        for c in sorted(new, key=lambda c: (c.size_kb != size, -c.size_kb, c.start))[:limit]:
            rss = f", Rss {c.rss_kb:,} kB" if c.rss_kb is not None else ""
            ev.append(ctx.ev(f"new mapping {c.label()}", c.size_kb, "kB", d.source,
                             note=f"{c.kind}: not there {ctx.seconds:.3g} s earlier{rss}"))
    return ev, d


def _subject(p, key) -> Subject:
    return Subject(pid=key[0], comm=p.comm if p is not None else None)


# ---- memory.leak-suspect ---------------------------------------------------------------------

def _anon_kb(p) -> float | None:
    s = p.status
    if s is None or s.rss_anon_kb is None:
        return None
    return s.rss_anon_kb + (s.vm_swap_kb or 0)


def _rss_kb(p) -> float | None:
    return p.res_kb


@rule("memory.leak-suspect", title="A process's memory keeps growing",
      processes=("stat", "status"), uses=("meminfo", SOURCE), window=True, min_seconds=5.0,
      thresholds={
          "min_points": Threshold(5, "snapshots", "a line through fewer points cannot tell a "
                                  "steady climb from one allocation step"),
          "min_slope_kb_per_s": Threshold(64, "kB/s", "225 MiB an hour: slower growth cannot be "
                                          "told from allocator and stack churn in a window of "
                                          "seconds (watch longer: ksight check --interval 600)"),
          "min_growth_kb": Threshold(1024, "kB over the window", "less than 1 MiB is an arena "
                                     "or a buffer being filled, not a trend"),
          "min_growth_pct": Threshold(0.5, "% of the process's memory at the start", "a large "
                                      "process churns more than a small one; 0.5 % keeps its "
                                      "normal breathing out while a leak of MBs/s still shows"),
          "min_tail_share": Threshold(0.5, "last half's slope / whole window's slope", "a cache "
                                      "warming up or a process reaching its working set slows "
                                      "down; a leak keeps its pace to the end"),
          "critical_minutes_left": Threshold(30, "minutes until MemAvailable is gone at this "
                                             "pace", "the OOM killer is then minutes away"),
      })
def leak_suspect(ctx: Context, r: Rule):
    """Anonymous memory (RssAnon + VmSwap from /proc/PID/status: swapped-out anonymous pages
    are still the process's; kernels before 4.5 have no RssAnon and RSS is judged instead) that
    grows steadily over the window. File-backed RSS is left out: mapped files being read in are
    a cache warming up, reclaimable, not a leak. The growing mappings come from smaps of the
    growing processes only (the process_maps source: see the module doc)."""
    out = []
    anon = _procs(ctx, _anon_kb, "RssAnon+VmSwap")
    rss = _procs(ctx, _rss_kb, "VmRSS")
    for key in dict.fromkeys(list(anon) + list(rss)):
        g, what = anon.get(key), "RssAnon+VmSwap"
        if g is None or g.last is None:
            g, what = rss.get(key), "VmRSS"
        if g is None:
            continue
        got = steady(g, r)
        if got is None:
            continue
        t, tl = got
        base = max(t.first, 1.0)
        if (t.slope_per_s < r.t("min_slope_kb_per_s") or t.growth < r.t("min_growth_kb")
                or 100 * t.growth / base < r.t("min_growth_pct")):
            continue
        p = _proc(ctx, key)
        ev = [ctx.ev(f"{what} growth", t.growth, "kB", f"/proc/{key[0]}/status",
                     threshold=r.t("min_growth_kb"), note=_trend_note(t, ctx)),
              ctx.ev(f"{what} slope", t.slope_per_s, "kB/s", f"/proc/{key[0]}/status",
                     threshold=r.t("min_slope_kb_per_s"),
                     note=f"last half of the window {tl.slope_per_s:,.0f} kB/s; "
                          f"{100 * t.growth / base:.1f} % of the start"),
              ]
        if what != "VmRSS" and key in rss and rss[key].last is not None:
            ev.append(ctx.ev("VmRSS", rss[key].last, "kB", f"/proc/{key[0]}/status"))
        maps_ev, _ = _growing_mappings(ctx, key)
        ev += maps_ev
        sev = "warning"
        mi = ctx.get("meminfo")
        avail = getattr(mi, "mem_available_kb", None) if mi is not None else None
        left = ""
        if avail is not None and t.slope_per_s > 0:
            mins = avail / t.slope_per_s / 60
            ev.append(ctx.ev("MemAvailable", avail, "kB", "meminfo",
                             note=f"gone in {mins:,.0f} min at this pace"))
            if mins < r.t("critical_minutes_left"):
                sev = "critical"
            left = f" At this pace MemAvailable is gone in about {mins:,.0f} minutes."
        comm = p.comm if p is not None else "?"
        where = (" The mappings that grew are listed: an anonymous mapping of a recurring size "
                 "is an mmap call repeated without munmap; a growing [heap] is malloc'ed memory "
                 "never freed." if maps_ev else
                 " Which mappings grew was not read (smaps of this process is not in the "
                 "snapshots: a capture holds none).")
        out.append(r.finding(
            sev, ev,
            f"Process {key[0]} ({comm}) grew its {what} by {t.growth:,.0f} kB in "
            f"{ctx.seconds:.3g} s ({t.slope_per_s:,.0f} kB/s), in almost every interval and "
            f"still at its pace at the end of the window: the shape of a leak, not of a cache "
            f"warming up.{left}{where}",
            [Action.command(f"pmap -x {key[0]}", "the mappings, with RSS and dirty per mapping"),
             Action.command(f"grep -A3 -E '^[0-9a-f]+-[0-9a-f]+ rw.p 00000000 00:00 0' "
                            f"/proc/{key[0]}/smaps",
                            "the anonymous mappings and their resident size"),
             Action.command(f"ksight check --area memory --interval 60",
                            "a longer window: a leak keeps growing, a warm-up levels off")],
            subject=_subject(p, key)))
    return out or None


# ---- memory.vma-growth -----------------------------------------------------------------------

@rule("memory.vma-growth", title="A process keeps adding memory mappings",
      needs=(SOURCE,), processes=("stat", "status"), uses=("sysctl",), window=True,
      min_seconds=5.0,
      thresholds={
          "min_points": Threshold(4, "snapshots with the process's mappings", "the first "
                                  "snapshot has no growth to choose processes by, so counts start "
                                  "at the second; fewer points make no trend"),
          "min_new_vmas": Threshold(5, "mappings over the window", "a thread or a library "
                                    "coming and going moves the count by 1-3"),
          "min_vmas_per_s": Threshold(0.5, "mappings/s", "a mapping every 2 s is 1,800 an hour: "
                                      "vm.max_map_count (65,530 by default) within a day and a "
                                      "half"),
          "min_tail_share": Threshold(0.5, "last half's slope / whole window's slope",
                                      "a pool being filled stops; mmap without munmap does not"),
          "critical_pct_of_max_map_count": Threshold(80, "% of vm.max_map_count", "past the "
                                                     "limit every mmap (and malloc's arenas, "
                                                     "thread stacks) fails with ENOMEM"),
      })
def vma_growth(ctx: Context, r: Rule):
    """The number of mappings (VMAs: regions in /proc/PID/smaps) of a process rising steadily:
    mmap without munmap (each mapping that cannot merge with its neighbour is one more VMA:
    thread stacks with their guard pages, mappings of different protections), or a count near
    vm.max_map_count, where mmap starts failing with ENOMEM. Read for the processes that grow
    only (the process_maps source)."""
    limit = ctx.sysctl("vm.max_map_count")
    out = []
    table = ctx.series.entities("processes")
    keys = dict.fromkeys(k for t in table for k in t)
    me = os.getpid() if _live(ctx) else None
    for key in keys:
        if key[0] == me:
            continue
        maps = maps_per_snapshot(ctx.series, key)
        if sum(1 for m in maps if m is not None) < 2:
            continue
        g = GaugeSeries("VMAs", tuple(None if m is None else m.count for m in maps),
                        ctx.series.times)
        t = g.trend()
        near = limit and g.last is not None and 100 * g.last / limit >= r.t(
            "critical_pct_of_max_map_count")
        got = steady(g, r)
        grows = (got is not None and got[0].growth >= r.t("min_new_vmas")
                 and got[0].slope_per_s >= r.t("min_vmas_per_s"))
        if not (grows or near):
            continue
        p = _proc(ctx, key)
        last = next(m for m in reversed(maps) if m is not None)
        ev = [ctx.ev("mappings (VMAs)", g.last, "mappings", last.path,
                     threshold=r.t("min_new_vmas"), note=_trend_note(t, ctx) if t else None)]
        if t is not None:
            ev.append(ctx.ev("mapping rate", t.slope_per_s, "mappings/s", last.path,
                             threshold=r.t("min_vmas_per_s")))
        if limit:
            note = f"{100 * g.last / limit:.1f} % used"
            if t is not None and t.slope_per_s > 0:
                note += f"; reached in {(limit - g.last) / t.slope_per_s / 60:,.0f} min at this pace"
            ev.append(ctx.ev("vm.max_map_count", limit, "mappings", "/proc/sys/vm/max_map_count",
                             threshold=r.t("critical_pct_of_max_map_count"), note=note))
        maps_ev, _ = _growing_mappings(ctx, key)
        ev += maps_ev
        comm = p.comm if p is not None else "?"
        what = (f"added {t.growth:,.0f} mappings in {ctx.seconds:.3g} s "
                f"({t.slope_per_s:.2f}/s, steadily)" if grows and t else
                f"holds {g.last:,.0f} mappings")
        acts = [Action.command(f"wc -l /proc/{key[0]}/maps", "the mapping count now"),
                Action.command(f"pmap -x {key[0]}", "which mappings: a recurring size points at "
                               "the mmap call that is never undone")]
        if near and limit:
            acts.append(Action.sysctl("vm.max_map_count", limit, max(limit * 2, 262144),
                                      "buys time only: the mappings are not being unmapped"))
        out.append(r.finding(
            "critical" if near else "warning", ev,
            f"Process {key[0]} ({comm}) {what}"
            + (f", {100 * g.last / limit:.0f} % of vm.max_map_count: past it mmap, malloc "
               "arenas and new thread stacks fail with ENOMEM" if near else "")
            + ". Mappings that are made and never unmapped (mmap without munmap, threads "
              "that never exit with their stacks) pile up until the limit.",
            acts, subject=_subject(p, key)))
    return out or None


# ---- memory.virtual-leak ---------------------------------------------------------------------

def _virt_kb(p) -> float | None:
    return p.virt_kb


@rule("memory.virtual-leak", title="A process reserves address space it never uses",
      processes=("stat", "status"), uses=(SOURCE,), window=True, min_seconds=5.0,
      thresholds={
          "min_points": Threshold(5, "snapshots", "a line through fewer points cannot tell a "
                                  "steady climb from one reservation"),
          "min_virt_slope_kb_per_s": Threshold(1024, "kB/s of VIRT", "1 MiB/s (3.5 GiB an "
                                               "hour); slower is threads and libraries coming "
                                               "and going"),
          "min_virt_growth_kb": Threshold(65536, "kB of VIRT over the window", "glibc reserves "
                                          "64 MiB per malloc arena: one new thread's arena is "
                                          "not a leak, more than one in a few seconds is a "
                                          "pattern"),
          "min_virt_per_res": Threshold(10, "VIRT growth / RES growth", "reserved, not used: "
                                        "a leak that touches its memory grows both alike and "
                                        "is memory.leak-suspect's"),
          "min_tail_share": Threshold(0.5, "last half's slope / whole window's slope",
                                      "a process mapping its fixed pools at start levels off"),
      })
def virtual_leak(ctx: Context, r: Rule):
    """VIRT (VmSize, /proc/PID/status) growing steadily while RES barely moves: address space
    reserved (mmap) and never touched. It costs no RAM yet, but counts against RLIMIT_AS and,
    for writable private mappings without MAP_NORESERVE, against the commit limit
    (vm.overcommit_memory=2: Committed_AS), and it runs out a 32-bit process's address space;
    it is also what a leak of mappings looks like before anything writes to them."""
    out = []
    virt = _procs(ctx, _virt_kb, "VmSize")
    rss = _procs(ctx, _rss_kb, "VmRSS")
    for key, g in virt.items():
        got = steady(g, r)
        if got is None:
            continue
        t, tl = got
        if t.slope_per_s < r.t("min_virt_slope_kb_per_s") or t.growth < r.t("min_virt_growth_kb"):
            continue
        rt = rss[key].trend() if key in rss else None
        res_growth = max(rt.growth, 0.0) if rt is not None else 0.0
        ratio = t.growth / max(res_growth, 1.0)
        if ratio < r.t("min_virt_per_res"):
            continue
        p = _proc(ctx, key)
        ev = [ctx.ev("VmSize growth", t.growth, "kB", f"/proc/{key[0]}/status",
                     threshold=r.t("min_virt_growth_kb"), note=_trend_note(t, ctx)),
              ctx.ev("VmSize slope", t.slope_per_s, "kB/s", f"/proc/{key[0]}/status",
                     threshold=r.t("min_virt_slope_kb_per_s"),
                     note=f"last half of the window {tl.slope_per_s:,.0f} kB/s"),
              ctx.ev("VmRSS growth", res_growth, "kB", f"/proc/{key[0]}/status",
                     note=f"VIRT grew {ratio:,.0f}x as much" if res_growth >= 1 else
                     "RES did not grow"),
              ctx.ev("VmSize", g.last, "kB", f"/proc/{key[0]}/status",
                     note=f"RES {rss[key].last:,.0f} kB" if key in rss and rss[key].last is not None
                     else None)]
        maps_ev, _ = _growing_mappings(ctx, key)
        ev += maps_ev
        comm = p.comm if p is not None else "?"
        out.append(r.finding(
            "warning", ev,
            f"Process {key[0]} ({comm}) reserved {t.growth / 1024:,.0f} MiB of address space in "
            f"{ctx.seconds:.3g} s ({t.slope_per_s / 1024:,.1f} MiB/s) and touched almost none of "
            "it (RES grew by "
            f"{res_growth:,.0f} kB). Reserved memory costs no RAM yet, but counts against "
            "RLIMIT_AS and, for writable private mappings, the commit limit; a steady pace is "
            "an mmap never unmapped (or threads each getting a 64 MiB malloc arena).",
            [Action.command(f"pmap -x {key[0]}", "the large mappings with RSS near 0 are the "
                            "reservations"),
             Action.command(f"grep -E '^(VmSize|VmRSS|Threads)' /proc/{key[0]}/status",
                            "VIRT against RES, and the thread count (one arena per thread)")],
            subject=_subject(p, key)))
    return out or None
