"""`ksight leak`: which processes grow over a watch, and what grows in them.

One model, many views: the judgement is the memory rules' (diagnose/rules/memory/
process_growth.py). Every trend comes from model.series (GaugeSeries.trend: slope, r2, rises and
falls), the steady-growth test is the rules' `steady` (grew in almost every interval, r2 >= 0.8,
and the last half of the window still at half the whole window's pace or more), with the rules'
own named thresholds, and the mappings that grew are the same diff the rules cite
(model.mappings.diff_of, of the `process_maps` source: smaps read only for the few processes
that grow, sources/process_maps.py).

Per process (keyed by pid and start time, as everywhere):
  RSS      VmRSS                  VSZ   VmSize              VMAs  mappings (smaps regions; only
  anon     RssAnon (+ VmSwap in the leak judgement: swapped-out anonymous memory is still the
           process's)             file  RssFile             shmem RssShmem     swap VmSwap
A process is
  growing       one of anon (RSS before 4.5 kernels), VSZ or VMAs grows steadily to the end of
                the watch, by more than the rule's floor (memory.leak-suspect: 64 kB/s, 1 MiB
                and 0.5 % of its start; memory.virtual-leak: 1 MiB/s and 64 MiB of VSZ;
                memory.vma-growth: 0.5 mappings/s and 5 mappings);
  levelled off  it grew past those floors but not to the end (the last half of the watch is
                under half the pace): a cache warming up, a pool being filled; not a leak;
  irregular     it grew past the floors but up and down (falls, r2 < 0.8): churn, not a leak;
  steady        none of that (listed only for the PIDs named on the command line);
  unjudged      it grew but was seen in fewer snapshots than a trend needs (it started or
                ended during the watch; listed only when named).
For a growing process: the mappings that appeared or grew between the first and the last
snapshot holding its smaps (range, size, growth, kind: heap, anon, shm, file or stack), heap (brk)
against anonymous mmap (and shared memory and files apart), and
the recurring size of the new mappings (the mmap call repeated: what `--trace` looks for).

Views return data; the text is render/leak_text.py.
"""

from __future__ import annotations

import os
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..model import mappings as mappings_model
from ..model.series import GaugeSeries, Series

SOURCES = ("meminfo", "uptime")
USES = ("process_maps",)
PARTS = ("stat", "status")

# the metrics a process is judged on, the rule whose thresholds judge it, its unit and the
# threshold names (minimum growth, minimum slope)
JUDGED = {
    "anon": ("memory.leak-suspect", "kB", "min_growth_kb", "min_slope_kb_per_s"),
    "rss": ("memory.leak-suspect", "kB", "min_growth_kb", "min_slope_kb_per_s"),
    "vsz": ("memory.virtual-leak", "kB", "min_virt_growth_kb", "min_virt_slope_kb_per_s"),
    "vmas": ("memory.vma-growth", "mappings", "min_new_vmas", "min_vmas_per_s"),
}
TYPES = ("anon", "file", "shmem", "swap")  # memory types, from /proc/PID/status
TYPE_FLOOR_KB = 1024  # a memory type "grows" when it grew this much, steadily (the rule's 1 MiB)


@dataclass(frozen=True)
class Growth:
    """One metric of one process over the watch (model.series.Trend, plus the tail's slope)."""

    metric: str  # rss, vsz, vmas, anon, file, shmem, swap
    unit: str  # kB or mappings
    first: float
    last: float
    growth: float
    slope_per_s: float
    r2: float
    rises: int
    falls: int
    points: int
    tail_slope_per_s: float | None  # the last half's slope (None: too few points)
    steady: bool  # the rules' steady growth: every interval (almost), a line, still at its pace


@dataclass(frozen=True)
class GrownMapping:
    start: int
    end: int
    perms: str
    kind: str  # heap, stack, anon, shm, file (sources.process_maps.KINDS)
    size_kb: int
    growth_kb: int  # size_kb for a new mapping
    rss_kb: int | None  # None when read from maps (no page-table walk)
    new: bool
    source: str  # the file read: /proc/PID/smaps
    pathname: str = ""  # '' anonymous, '[heap]', '[stack]', a file


@dataclass(frozen=True)
class ProcessGrowth:
    pid: int
    starttime_ticks: int | None
    comm: str
    verdict: str  # growing, levelled-off, irregular, steady, unjudged
    why: str  # one sentence: which metric, and why that verdict
    growths: dict  # metric -> Growth
    types_growing: tuple[str, ...]  # memory types (anon, file, shmem, swap) that grow steadily
    mappings: tuple[GrownMapping, ...] = ()
    heap_kb: int = 0  # growth of [heap] (brk) in the mapping diff
    mmap_kb: int = 0  # growth of other anonymous mappings (new or grown)
    shm_kb: int = 0  # growth of shared-memory mappings (/dev/shm, SysV, memfd)
    file_kb: int = 0  # growth of file mappings
    recurring_size_kb: int | None = None  # the most common size of the new mappings
    recurring_count: int = 0
    grown_step_kb: int | None = None  # the smallest growth between two reads of a grown
    # anonymous mapping (adjacent mmaps of one kind merge into one mapping that grows by steps)
    maps_snapshots: int = 0  # snapshots that hold this process's smaps
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeakReport:
    seconds: float
    snapshots: int
    live: bool
    processes_seen: int
    growing: tuple[ProcessGrowth, ...]
    levelled: tuple[ProcessGrowth, ...]  # grew, but not a leak: levelled off or irregular
    named: tuple[ProcessGrowth, ...]  # PIDs named on the command line that do neither
    maps_read_for: tuple[int, ...]  # the PIDs whose smaps was read (the growing few)
    maps_chosen_by: str | None
    thresholds: dict  # metric -> {"min_growth", "min_slope", "unit", "rule"}
    notes: tuple[str, ...] = ()
    trace: object | None = None  # a trace.recipes.mmap.CatchResult, with --trace
    interrupted: bool = False
    judged: bool = True  # False: too few snapshots (or no clock) for any trend
    mem_available_kb: int | None = None  # MemAvailable at the last snapshot


def _rules():
    from ..diagnose.rule import RULES
    from ..diagnose.rules.memory import process_growth  # noqa: F401  (registers the rules)

    return RULES


def _status_kb(attr: str):
    def fn(p):
        s = p.status
        return None if s is None else getattr(s, attr)
    return fn


def _anon(p):
    s = p.status
    if s is None or s.rss_anon_kb is None:
        return None
    return s.rss_anon_kb + (s.vm_swap_kb or 0)


METRICS = {  # metric -> (label, fn(process))
    "rss": ("VmRSS", lambda p: p.res_kb),
    "vsz": ("VmSize", lambda p: p.virt_kb),
    "anon": ("RssAnon+VmSwap", _anon),
    "file": ("RssFile", _status_kb("rss_file_kb")),
    "shmem": ("RssShmem", _status_kb("rss_shmem_kb")),
    "swap": ("VmSwap", _status_kb("vm_swap_kb")),
}


def growth_of(metric: str, unit: str, g: GaugeSeries, rule) -> Growth | None:
    """The trend of g (None without two points with a clock), judged with the rule's steady
    test (process_growth.steady) and min_points."""
    from ..diagnose.rules.memory.process_growth import steady, tail as tail_of

    t = g.trend()
    if t is None:
        return None
    tail = tail_of(g)
    ok = steady(g, rule) is not None
    return Growth(metric, unit, t.first, t.last, t.growth, t.slope_per_s, t.r2, t.rises,
                  t.falls, t.points, None if tail is None else tail.slope_per_s, ok)


def judge(growths: dict, rules: dict) -> tuple[str, str]:
    """(verdict, why) from a process's judged metrics (JUDGED), with the rules' thresholds."""
    big = []
    for metric in ("anon", "rss", "vsz", "vmas"):
        gr = growths.get(metric)
        if gr is None:
            continue
        if metric == "rss" and growths.get("anon") is not None:
            continue  # anonymous memory is judged where the kernel gives it (as the rule does)
        rid, _, gname, sname = JUDGED[metric]
        r = rules[rid]
        if gr.growth < r.t(gname) or gr.slope_per_s < r.t(sname):
            continue
        if metric in ("anon", "rss") and 100 * gr.growth / max(gr.first, 1.0) < r.t("min_growth_pct"):
            continue
        big.append(gr)
    if not big:
        return "steady", "no judged metric grew past the rules' floors"
    def need(gr):  # each rule's own min_points (the mapping count starts a snapshot late)
        return rules[JUDGED[gr.metric][0]].t("min_points")

    if all(gr.points < need(gr) for gr in big):
        return "unjudged", (f"grew, but seen in only {max(gr.points for gr in big)} snapshots (it "
                            f"started or ended during the watch): a trend needs "
                            f"{min(need(gr) for gr in big):g}")
    for gr in big:
        if gr.steady:
            return "growing", (f"{gr.metric} grew in {gr.rises} of {gr.points - 1} intervals "
                               f"(r2 {gr.r2:.2f}) and kept its pace to the end")
    gr = big[0]
    share = rules[JUDGED[gr.metric][0]].t("min_tail_share")
    if gr.falls > max(0, (gr.points - 1) // 10):
        return "irregular", (f"{gr.metric} went up and down (rose in {gr.rises}, fell in "
                             f"{gr.falls} of {gr.points - 1} intervals; r2 {gr.r2:.2f})")
    if gr.tail_slope_per_s is not None and gr.tail_slope_per_s < share * gr.slope_per_s:
        return "levelled-off", (f"{gr.metric} grew, then slowed down: the last half of the watch "
                                f"at {gr.tail_slope_per_s:,.1f} {gr.unit}/s against "
                                f"{gr.slope_per_s:,.1f} {gr.unit}/s over the whole")
    return "irregular", (f"{gr.metric} grew in steps, not along a line (rose in {gr.rises} of "
                         f"{gr.points - 1} intervals; r2 {gr.r2:.2f})")


def _mappings(series, key):
    """The mapping diff (model.mappings.diff_of, as the rules cite it) as the view's data:
    (mappings, heap kB, mmap kB, shm kB, file kB, recurring size kB, its count, reads of the
    process's mappings, the step of the largest grown anonymous mapping)."""
    d = mappings_model.diff_of(series, key)
    if d is None:
        reads = sum(1 for m in mappings_model.maps_per_snapshot(series, key) if m is not None)
        return [], 0, 0, 0, 0, None, 0, reads, None
    out = [GrownMapping(c.start, c.end, c.perms, c.kind, c.size_kb, c.growth_kb, c.rss_kb, c.new,
                        d.source, c.pathname) for c in d.new + d.grown]
    size, count = d.recurring("anon") or (None, 0)
    # the recurring size first (the repeated mmap), then the largest growth
    out.sort(key=lambda g: (not (g.new and g.kind == "anon" and g.size_kb == size),
                            -g.growth_kb, g.start))
    return (out, d.growth_kb("heap"), d.growth_kb("anon"), d.growth_kb("shm"),
            d.growth_kb("file"), size, count, d.reads, d.step_kb)


def _span_values(vals) -> float:
    """How far a gauge moved (max - min): at least its growth (last - first)."""
    got = [v for v in vals if v is not None]
    return max(got) - min(got) if got else 0.0


def _gauge(times, tables, key, fn, label) -> GaugeSeries:
    """One process's gauge, as Series.entity_gauges makes it, for one key."""
    vals = []
    for t in tables:
        e = t.get(key)
        try:
            vals.append(None if e is None else fn(e))
        except (AttributeError, KeyError, TypeError):
            vals.append(None)
    return GaugeSeries(label, tuple(vals), times)


def build(snapshots, *, pids: tuple[int, ...] = (), me: int | None = None) -> LeakReport:
    """The leak report of a window of snapshots (live or from a capture). `me`: this ksight's
    own PID, left out (it keeps the snapshots, so it grows by design)."""
    rules = _rules()
    series = Series.of(snapshots)
    live = series.last.monotonic is not None
    notes: list[str] = []
    if series.breaks:
        notes.append(f"the input crosses {len(series.breaks)} break(s) ({series.breaks[-1].reason}); "
                     f"the last part ({len(series.snapshots)} snapshots) is judged")
    tables = series.entities("processes")
    keys: dict = {}
    for t in tables:
        keys.update(dict.fromkeys(t))
    if me is not None:
        keys = {k: None for k in keys if k[0] != me}
    if pids:
        keys = {k: None for k in keys if k[0] in pids}
        found = {k[0] for k in keys}
        for p in pids:
            if p not in found:
                notes.append(f"PID {p}: not in any snapshot (no such process, or it exited)")
    # the judged measures for every process (model.series); the others (file, shmem, swap) only
    # for the processes that moved past a floor: at 1,000 processes a trend of each measure of
    # each process is most of the view's cost, and a process that moved less than every floor
    # cannot grow, level off or be irregular
    first = ("rss", "vsz", "anon")
    fns = [METRICS[m][1] for m in first]

    def _three(p):  # one pass over the table for the three judged measures
        return tuple(f(p) for f in fns)

    both = series.entity_gauges("processes", _three, "rss,vsz,anon")
    floors = {m: rules[JUDGED[m][0]].t(JUDGED[m][2]) for m in JUDGED}
    maps_src = [s.get("process_maps") for s in series.snapshots]
    maps_read = sorted({pid for pm in maps_src if pm is not None for pid in pm.procs})
    chosen_by = next((pm.chosen_by for pm in reversed(maps_src) if pm is not None), None)
    if chosen_by is None:
        why = next((m.reason for s in series.snapshots for m in s.unavailable
                    if m.source == "process_maps"), "not collected")
        notes.append(f"which mappings grew is not known: process_maps: {why}")
    if series.intervals == 0 or not series.has_clock:
        notes.append("one snapshot, or no clock between them: no trend can be judged")
    elif len(series.snapshots) < rules["memory.leak-suspect"].t("min_points"):
        notes.append(f"only {len(series.snapshots)} snapshots: a trend needs "
                     f"{rules['memory.leak-suspect'].t('min_points'):g} or more, so nothing can be "
                     "called growing (watch longer, or take snapshots more often: --interval)")
    growing, levelled, named = [], [], []
    times = series.times
    mapped = {pid for pm in maps_src if pm is not None for pid in pm.procs}
    for key in keys:
        counts = [None if pm is None or key not in t or key[0] not in pm.procs
                  else pm.procs[key[0]].count for pm, t in zip(maps_src, tables)] \
            if key[0] in mapped else []
        trio = both.get(key)
        cols = list(zip(*[v if v is not None else (None,) * 3 for v in trio.values])) \
            if trio is not None else [(), (), ()]
        if key[0] not in pids and not (
                any(_span_values(c) >= floors[m] for m, c in zip(first, cols))
                or _span_values(counts) >= floors["vmas"]):
            continue
        gs: dict = {}
        for metric, (label, fn) in METRICS.items():
            g = (GaugeSeries(label, tuple(cols[first.index(metric)]), times) if metric in first
                 else _gauge(times, tables, key, fn, label))
            if g is None or not g.present:
                continue
            rid = JUDGED.get(metric, ("memory.leak-suspect",))[0]
            gr = growth_of(metric, "kB", g, rules[rid])
            if gr is not None:
                gs[metric] = gr
        if not gs:
            continue
        if sum(1 for c in counts if c is not None) >= 2:
            gr = growth_of("vmas", "mappings", GaugeSeries("VMAs", tuple(counts), times),
                           rules["memory.vma-growth"])
            if gr is not None:
                gs["vmas"] = gr
        verdict, why = judge(gs, rules)
        if verdict in ("steady", "unjudged") and key[0] not in pids:
            continue
        p = next((t[key] for t in reversed(tables) if key in t), None)
        comm = (p.comm if p is not None else None) or "?"
        types = tuple(m for m in TYPES if m in gs and gs[m].steady and gs[m].growth >= TYPE_FLOOR_KB)
        maps, heap, mmap, shm, fil, size, count, nmaps, step = _mappings(series, key)
        pnotes = []
        if verdict != "steady" and nmaps < 2 and chosen_by is not None:
            pnotes.append("its smaps was read in fewer than two snapshots (it is chosen once it "
                          "grew 1 MiB past its first look): no mapping diff")
        if key not in tables[-1]:
            pnotes.append("exited before the last snapshot")
        pg = ProcessGrowth(key[0], key[1], comm, verdict, why, gs, types, tuple(maps), heap, mmap,
                           shm, fil, size, count, step, nmaps, tuple(pnotes))
        (growing if verdict == "growing" else
         levelled if verdict in ("levelled-off", "irregular") else named).append(pg)

    def speed(pg):
        g = pg.growths.get("anon") or pg.growths.get("rss")
        return -(g.slope_per_s if g else 0.0)

    growing.sort(key=speed)
    levelled.sort(key=speed)
    th = {}
    for metric, (rid, unit, gname, sname) in JUDGED.items():
        r = rules[rid]
        th[metric] = {"rule": rid, "unit": unit, "min_growth": r.t(gname), "min_slope_per_s": r.t(sname)}
    judged = (series.has_clock and
                  len(series.snapshots) >= rules["memory.leak-suspect"].t("min_points"))
    return LeakReport(round(series.seconds, 3), len(series.snapshots), live, len(keys),
                      tuple(growing), tuple(levelled), tuple(named), tuple(maps_read), chosen_by,
                      th, tuple(notes), judged=judged,
                      mem_available_kb=getattr(series.last.get("meminfo"), "mem_available_kb", None))


def own_pid(live: bool) -> int | None:
    return os.getpid() if live else None


def trace_targets(rep: LeakReport) -> list[dict]:
    """What `--trace` looks for, per growing process: an anonymous mapping of a recurring size
    (the mmap call repeated: its length is that size, or up to a few guard pages more, since a
    PROT_NONE guard page split off the end leaves the rest its own mapping); an anonymous
    mapping that grows by steps (adjacent mmaps of the same protection merge into one mapping:
    the calls are at most the smallest step long, kept for that process only); a growing [heap]
    (brk calls)."""
    out = []
    for pg in rep.growing:
        if pg.recurring_size_kb and pg.recurring_count >= 2:
            out.append({"pid": pg.pid, "comm": pg.comm, "call": "mmap",
                        "size_bytes": pg.recurring_size_kb * 1024, "count": pg.recurring_count})
        elif pg.grown_step_kb:
            out.append({"pid": pg.pid, "comm": pg.comm, "call": "mmap", "size_bytes": None,
                        "max_bytes": pg.grown_step_kb * 1024, "count": None})
        if pg.heap_kb > 0:
            out.append({"pid": pg.pid, "comm": pg.comm, "call": "brk", "size_bytes": None,
                        "count": None})
    return out


__all__ = ["build", "LeakReport", "ProcessGrowth", "Growth", "GrownMapping", "judge",
           "growth_of", "trace_targets", "SOURCES", "USES", "PARTS", "own_pid"]
