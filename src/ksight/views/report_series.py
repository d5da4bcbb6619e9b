"""The report's charts computed from a recording's snapshots (data only: render/report_html.py
draws them, `ksight report --json` prints them).

Charts (views/report_data.py says what each dataclass holds):
  memory     stacked: anon (AnonPages), shmem (Shmem), file cache clean (Active(file) +
             Inactive(file) - Dirty), dirty (Dirty), slab (Slab), /proc/meminfo, bytes
  reclaim    pages scanned and stolen by kswapd and by direct reclaim per second, /proc/vmstat
             pgscan_kswapd, pgscan_direct, pgsteal_kswapd, pgsteal_direct (per-zone sums on
             kernels before 4.8)
  paging     page-in/page-out (pgpgin, pgpgout: the kernel counts them in KiB) and swap-in/out
             (pswpin, pswpout, pages) per second, both in bytes/s
  retrans    TCP retransmission rate: ΔRetransSegs / ΔOutSegs x 100 per interval, /proc/net/snmp
             of ksight's own network namespace (`ksight tcp` shows every namespace); an interval
             that sent no segment is a gap
  cpu        stacked: %usr %nice %sys %irq %soft %iowait %steal of all CPUs per interval, as
             `mpstat` computes them (model/cpu.py mpstat_interval) from /proc/stat
  processes  RSS of the top processes (by their peak RSS in the window), keyed by pid and start
             time (a reused pid is another line)

Every delta and rate comes from model.series.Series (reclaim, paging, retransmissions) or
model.cpu.mpstat_interval (CPU, mpstat's arithmetic); this module subtracts gauges only (file
cache minus dirty).

Memory stays bounded on long recordings: snapshots are read from an iterator in chunks of
CHUNK (consecutive chunks share one snapshot, so no interval is lost), and every series goes
into a reducer over a common time grid that keeps, per bucket, the sample where the series is
lowest and the one where it is highest (for a stacked chart: the samples where the stack's total
is lowest and highest, so the bands stay one consistent sample). When the grid passes
MAX_BUCKETS it doubles its bucket width and merges pairs, so a 24-hour recording at 1 s ends
with ~1,350 buckets of 64 s: at most two points each, and no peak is lost. A reboot or host
change inside the recording (model.series.split) is a gap in every line, never a rate.
Process lines take the lean path (a day of 100 processes is 8.6 million readings): a reading
that cannot change its bucket's lowest or highest (the same Process object as before, or the
same RSS in the same bucket) is skipped, which draws exactly what adding it would.

Entry points: `build_charts(snapshots)` (a ChartSet), `report_view(snapshots, episodes=...,
findings=..., not_evaluated=...)` (a page's whole ReportView from episodes found elsewhere), and
`ChartBuilder` for a caller that already reads the recording in blocks (`observe(series)`): that
is how `ksight report` (views/report.report_view) fills its charts in the pass that finds the
episodes, this module being the report's one chart builder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..model.counters import vm
from ..model.series import Series, split
from ..model.snapshot import Snapshot
from ..model.tcp import OUT_SEGS, RETRANS_SEGS, pct
from .report_data import ReportChart, ReportSeries

CHUNK = 256  # snapshots held at once
MAX_BUCKETS = 2048  # time buckets per series before the grid doubles their width
BUCKET0_S = 0.25  # the first bucket width: samples every 0.25 s or more are kept one by one

PGSCAN_KSWAPD = vm("pgscan_kswapd")
PGSCAN_DIRECT = vm("pgscan_direct")
PGSTEAL_KSWAPD = vm("pgsteal_kswapd")
PGSTEAL_DIRECT = vm("pgsteal_direct")
PGPGIN = vm("pgpgin")
PGPGOUT = vm("pgpgout")
PSWPIN = vm("pswpin")
PSWPOUT = vm("pswpout")

MEMORY_PARTS = ("anon", "shmem", "file cache (clean)", "dirty", "slab")
CPU_PARTS = ("usr", "nice", "sys", "irq", "soft", "iowait", "steal")
RECLAIM = (("kswapd scanned", PGSCAN_KSWAPD), ("direct scanned", PGSCAN_DIRECT),
           ("kswapd reclaimed", PGSTEAL_KSWAPD), ("direct reclaimed", PGSTEAL_DIRECT))


# ---- the time grid and the min/max reducer -----------------------------------------------------

class _Grid:
    """Time buckets shared by every series of one report: width BUCKET0_S * 2**shift."""

    def __init__(self, max_buckets: int = MAX_BUCKETS, span: float | None = None,
                 t0: float | None = None, continued: bool = False):
        self.max_buckets = max_buckets
        self.t0: float | None = t0
        self.shift = 0
        # continued: these charts are the later part of a longer range (record/report_split.py),
        # so a line's first event may be a gap (its readings before are in the other part)
        self.continued = continued
        if span is not None and span > 0:
            # the width the doubling would end at for this span, from the start: every bucket
            # is then filled once instead of merged up through ~9 widths (the same points:
            # bucket i of width w*2**d is buckets i*2**d.. of width w merged, min and max kept)
            while span / self.width >= max_buckets:
                self.shift += 1

    @property
    def width(self) -> float:
        return BUCKET0_S * (1 << self.shift)

    def index(self, t: float) -> int:
        if self.t0 is None:
            self.t0 = t
        i = math.floor((t - self.t0) / self.width)
        while i >= self.max_buckets:
            self.shift += 1
            i = math.floor((t - self.t0) / self.width)
        return i


class _Rows:
    """Rows of n values over time, reduced per bucket to the rows of lowest and highest total
    (sum of the known values), plus gaps. Exact peaks per column are kept aside."""

    def __init__(self, grid: _Grid, n: int):
        self.grid, self.n, self.shift = grid, n, grid.shift
        self.b: dict[int, list] = {}  # idx -> [lo_t, lo_row, lo_key, hi_t, hi_row, hi_key, gap_t]
        self.peak: list[float | None] = [None] * n
        self.peak_at: list[float | None] = [None] * n
        self.merged = False

    def _sync(self) -> None:
        d = self.grid.shift - self.shift
        if d <= 0:
            return
        old, self.b = self.b, {}
        for i in sorted(old):
            self._merge(i >> d, old[i])
        self.shift = self.grid.shift

    def _merge(self, j: int, o: list) -> None:
        b = self.b.get(j)
        if b is None:
            self.b[j] = list(o)
            return
        self.merged = True
        if o[0] is not None:
            if b[0] is None or o[2] < b[2]:
                b[0:3] = o[0:3]
            if b[3] is None or o[5] > b[5]:
                b[3:6] = o[3:6]
        if o[6] is not None:
            b[6] = o[6] if b[6] is None else max(b[6], o[6])

    def add(self, t: float, row: tuple[float | None, ...], i: int | None = None) -> None:
        vals = [v for v in row if v is not None]
        peak = self.peak
        for k, v in enumerate(row):
            if v is not None and (peak[k] is None or v > peak[k]):
                peak[k], self.peak_at[k] = v, t
        if not vals:
            self.gap(t)
            return
        if i is None:
            i = self.grid.index(t)
        if self.shift != self.grid.shift:
            self._sync()
        key = sum(vals)
        b = self.b.get(i)
        if b is None:
            self.b[i] = [t, row, key, t, row, key, None]
            return
        if b[0] is None:
            b[0:6] = [t, row, key, t, row, key]
            return
        self.merged = True
        if key < b[2]:
            b[0:3] = [t, row, key]
        if key > b[5]:
            b[3:6] = [t, row, key]

    def gap(self, t: float) -> None:
        """No reading at t: a break in the line (only after a first reading)."""
        if not self.b and not self.grid.continued:
            return
        i = self.grid.index(t)
        self._sync()
        b = self.b.get(i)
        if b is None:
            self.b[i] = [None, None, None, None, None, None, t]
        else:
            b[6] = t if b[6] is None else max(b[6], t)

    @property
    def empty(self) -> bool:
        return all(b[0] is None for b in self.b.values())

    def take(self, o: "_Rows") -> None:
        """Add the rows of `o` (the same series over a later part of the range, same grid)."""
        self._sync()
        o._sync()
        for j in sorted(o.b):
            ob, b = o.b[j], self.b.get(j)
            was = self.merged  # a bucket with readings on both sides is a merged bucket
            self._merge(j, ob)
            self.merged = was or (b is not None and b[0] is not None and ob[0] is not None)
        for k, v in enumerate(o.peak):
            if v is not None and (self.peak[k] is None or v > self.peak[k]):
                self.peak[k], self.peak_at[k] = v, o.peak_at[k]
        self.merged = self.merged or o.merged

    def points(self) -> tuple[tuple[float, ...], list[tuple[float | None, ...]]]:
        """(times, rows) in time order; a gap is a row of None."""
        self._sync()
        none = (None,) * self.n
        times: list[float] = []
        rows: list[tuple] = []
        for i in sorted(self.b):
            lo_t, lo_row, _, hi_t, hi_row, _, gap_t = self.b[i]
            pts = []
            if lo_t is not None:
                pts.append((lo_t, lo_row))
                if hi_t != lo_t:
                    pts.append((hi_t, hi_row))
            if gap_t is not None:
                pts.append((gap_t, none))
            pts.sort(key=lambda p: p[0])
            for t, r in pts:
                if times and t <= times[-1]:
                    t = math.nextafter(times[-1], math.inf)  # times strictly increase
                times.append(t)
                rows.append(r)
        while rows and rows[-1] == none:  # a trailing gap says nothing
            times.pop()
            rows.pop()
        return tuple(times), rows

    def series(self, names: tuple[str, ...], sources: tuple[str, ...]) -> tuple[ReportSeries, ...]:
        times, rows = self.points()
        return tuple(
            ReportSeries(name, times, tuple(r[k] for r in rows), sources[k], self.peak[k],
                         self.peak_at[k], self.merged)
            for k, name in enumerate(names))


class _Line:
    """One series over time, reduced per bucket to its lowest and highest sample, plus gaps: the
    one-value case of _Rows, kept lean (a 24-hour recording of 100 processes feeds it 8.6
    million values). The caller gives the bucket index (one grid.index per snapshot)."""

    __slots__ = ("grid", "shift", "b", "peak", "peak_at", "merged")

    def __init__(self, grid: _Grid):
        self.grid, self.shift = grid, grid.shift
        self.b: dict[int, list] = {}  # idx -> [lo_t, lo_v, hi_t, hi_v, gap_t]
        self.peak: float | None = None
        self.peak_at: float | None = None
        self.merged = False

    def _sync(self) -> None:
        d = self.grid.shift - self.shift
        if d <= 0:
            return
        old, self.b = self.b, {}
        for i in sorted(old):
            if self._merge(i >> d, old[i]):
                self.merged = True
        self.shift = self.grid.shift

    def _merge(self, j: int, o: list) -> bool:
        """Bucket j takes o's lowest, highest and gap; False when j was empty."""
        b = self.b.get(j)
        if b is None:
            self.b[j] = o
            return False
        if o[0] is not None:
            if b[0] is None or o[1] < b[1]:
                b[0], b[1] = o[0], o[1]
            if b[2] is None or o[3] > b[3]:
                b[2], b[3] = o[2], o[3]
        if o[4] is not None:
            b[4] = o[4] if b[4] is None else max(b[4], o[4])
        return True

    def take(self, o: "_Line") -> None:
        """Add the readings of `o` (the same line over a later part of the range, same grid)."""
        self._sync()
        o._sync()
        for j in sorted(o.b):
            ob, b = o.b[j], self.b.get(j)
            both = b is not None and b[0] is not None and ob[0] is not None
            self._merge(j, list(ob))
            self.merged = self.merged or both
        if o.peak is not None and (self.peak is None or o.peak > self.peak):
            self.peak, self.peak_at = o.peak, o.peak_at
        self.merged = self.merged or o.merged

    def add(self, t: float, v: float | None, i: int | None = None) -> None:
        if v is None:
            self.gap(t, i)
            return
        if self.peak is None or v > self.peak:
            self.peak, self.peak_at = v, t
        if i is None:
            i = self.grid.index(t)
        if self.shift != self.grid.shift:
            self._sync()
        b = self.b.get(i)
        if b is None:
            self.b[i] = [t, v, t, v, None]
        elif b[0] is None:
            b[0], b[1], b[2], b[3] = t, v, t, v
        else:
            self.merged = True
            if v < b[1]:
                b[0], b[1] = t, v
            if v > b[3]:
                b[2], b[3] = t, v

    def gap(self, t: float, i: int | None = None) -> None:
        if not self.b and not self.grid.continued:
            return
        if i is None:
            i = self.grid.index(t)
        if self.shift != self.grid.shift:
            self._sync()
        b = self.b.get(i)
        if b is None:
            self.b[i] = [None, None, None, None, t]
        else:
            b[4] = t if b[4] is None else max(b[4], t)

    @property
    def empty(self) -> bool:
        return all(b[0] is None for b in self.b.values())

    def series(self, name: str, source: str) -> ReportSeries:
        self._sync()
        times: list[float] = []
        vals: list[float | None] = []
        for i in sorted(self.b):
            lo_t, lo_v, hi_t, hi_v, gap_t = self.b[i]
            pts = []
            if lo_t is not None:
                pts.append((lo_t, lo_v))
                if hi_t != lo_t:
                    pts.append((hi_t, hi_v))
            if gap_t is not None:
                pts.append((gap_t, None))
            pts.sort(key=lambda p: p[0])
            for t, v in pts:
                if times and t <= times[-1]:
                    t = math.nextafter(times[-1], math.inf)
                times.append(t)
                vals.append(v)
        while vals and vals[-1] is None:
            times.pop()
            vals.pop()
        return ReportSeries(name, tuple(times), tuple(vals), source, self.peak, self.peak_at,
                            self.merged)


# ---- what each chart reads ---------------------------------------------------------------------

def _memory_row(s: Snapshot) -> tuple[float | None, ...]:
    m = s.get("meminfo")
    if m is None:
        return (None,) * len(MEMORY_PARTS)

    def b(kb):
        return None if kb is None else kb * 1024.0

    file_kb = None
    if m.active_file_kb is not None and m.inactive_file_kb is not None:
        file_kb = m.active_file_kb + m.inactive_file_kb
    clean = None if file_kb is None else max(file_kb - (m.dirty_kb or 0), 0)
    dirty = m.dirty_kb
    if dirty is not None and file_kb is not None:
        dirty = min(dirty, file_kb)  # the stack's file part stays file_kb
    return (b(m.anon_pages_kb), b(m.shmem_kb), b(clean), b(dirty), b(m.slab_kb))


MEMORY_SOURCES = ("/proc/meminfo AnonPages", "/proc/meminfo Shmem",
                  "/proc/meminfo Active(file) + Inactive(file) - Dirty", "/proc/meminfo Dirty",
                  "/proc/meminfo Slab")


def _cpu_row(a: Snapshot, b: Snapshot) -> tuple[float | None, ...]:
    from ..model.cpu import mpstat_interval

    sa, sb = a.get("stat"), b.get("stat")
    if sa is None or sb is None:
        return (None,) * len(CPU_PARTS)
    p = mpstat_interval(sa, sb).all
    if p.ticks <= 0:
        return (None,) * len(CPU_PARTS)
    return (p.usr, p.nice, p.sys, p.irq, p.soft, p.iowait, p.steal)


def _rss_bytes(p) -> float | None:
    kb = p.res_kb
    return None if kb is None else kb * 1024.0


@dataclass(frozen=True)
class ChartSet:
    """The charts of a window, with what the page's header says about it."""

    charts: tuple[ReportChart, ...]
    start: float | None
    end: float | None
    host: str | None
    kernel: str | None
    snapshots: int
    wall_clock: bool
    notes: tuple[str, ...] = ()


class _Builder:
    def __init__(self, top: int, max_buckets: int, span: float | None = None,
                 t0: float | None = None, continued: bool = False):
        self.top = top
        self.grid = _Grid(max_buckets, span, t0, continued)
        g = self.grid
        self.memory = _Rows(g, len(MEMORY_PARTS))
        self.cpu = _Rows(g, len(CPU_PARTS))
        self.reclaim = [_Line(g) for _ in RECLAIM]
        self.paging = [_Line(g) for _ in range(4)]
        self.retrans = _Line(g)
        self.procs: dict[tuple, _Line] = {}
        self.names: dict[tuple, str] = {}
        self.wall: bool | None = None
        self.n = 0
        self.skipped = 0
        self.breaks: list[str] = []
        self.start = self.end = None
        self.host = self.kernel = None
        self.missing: dict[str, str] = {}  # source -> the last reason it was unavailable
        self.page_size = 4096
        self._chunk: list[tuple[float, Snapshot]] = []  # not drawn yet, except its first
        self._carried = False  # snapshot when True (that one starts the next intervals)
        self._pc: dict[int, list] = {}  # processes: see processes()
        self._pc_shift = 0
        self._pc_table = None
        self._pc_bucket = self._pc_marked = -1
        # continued (a later part of a range): the first snapshot fed is the last one of the
        # part before, drawn there; here it starts the first intervals and seeds the processes
        self._carried = self._seed = continued

    def clock(self, s: Snapshot) -> float | None:
        if self.wall is None:
            self.wall = s.taken_at is not None
        if self.wall:
            return s.taken_at
        return s.uptime_s if s.uptime_s is not None else s.monotonic

    def all_rows(self) -> list:
        return [self.memory, self.cpu, self.retrans, *self.reclaim, *self.paging,
                *self.procs.values()]

    def feed(self, snapshots: Iterable[Snapshot]) -> None:
        """Add snapshots in time order; may be called again with the next ones. A snapshot not
        later than the last one fed (blocks that share their edge snapshot) is skipped."""
        for s in snapshots:
            t = self.clock(s)
            if t is None:
                self.skipped += 1
                continue
            if self._chunk and t <= self._chunk[-1][0]:
                continue
            self._chunk.append((t, s))
            if len(self._chunk) >= CHUNK:
                self.chunk(self._chunk, self._carried)
                self._chunk, self._carried = [self._chunk[-1]], True

    def finish(self) -> None:
        c = self._chunk
        if c and not (self._carried and len(c) == 1):
            self.chunk(c, self._carried)
            self._chunk, self._carried = [c[-1]], True

    def chunk(self, chunk: list[tuple[float, Snapshot]], carried: bool) -> None:
        snaps = [s for _, s in chunk]
        times = [t for t, _ in chunk]
        segs, breaks = split(snaps)
        pos = 0
        for k, seg in enumerate(segs):
            if k:  # a gap in every line between the two sides of a break
                br = breaks[k - 1]
                tg = (times[br.after] + times[br.after + 1]) / 2
                for r in self.all_rows():
                    r.gap(tg)
                self.breaks.append(br.reason)
            segt = times[pos:pos + len(seg)]
            pos += len(seg)
            self.segment(seg, segt, skip_first=(k == 0 and carried))

    def segment(self, seg: list[Snapshot], t: list[float], skip_first: bool) -> None:
        ser = Series(seg)
        for i, s in enumerate(seg):
            if skip_first and i == 0:
                continue
            self.n += 1
            self.start = t[i] if self.start is None else min(self.start, t[i])
            self.end = t[i] if self.end is None else max(self.end, t[i])
            self.host = s.host.hostname or self.host
            self.kernel = s.host.kernel or self.kernel
            self.page_size = s.host.page_size or self.page_size
            for m in s.unavailable:
                self.missing[m.source] = m.reason
            self.memory.add(t[i], _memory_row(s), self.grid.index(t[i]))
        # per interval, at the later snapshot's time
        rec = [ser.counter(c).rates for _, c in RECLAIM]  # (rates is computed on each call)
        pg = [ser.counter(c).rates for c in (PGPGIN, PGPGOUT, PSWPIN, PSWPOUT)]
        scale = (1024.0, 1024.0, float(self.page_size), float(self.page_size))
        rs, os_ = ser.counter(RETRANS_SEGS).deltas, ser.counter(OUT_SEGS).deltas
        index = self.grid.index
        for i in range(ser.intervals):
            te = t[i + 1]
            bi = index(te)  # one bucket index per time (every line shares the grid)
            for r, rates in zip(self.reclaim, rec):
                r.add(te, rates[i], bi)
            for r, rates, k in zip(self.paging, pg, scale):
                v = rates[i]
                r.add(te, None if v is None else v * k, bi)
            self.retrans.add(te, pct(rs[i], os_[i]), bi)
            self.cpu.add(te, _cpu_row(seg[i], seg[i + 1]), bi)
        # processes: one series per (pid, start time), the identity model.series gives them
        if any(s.processes is not None for s in seg):
            self.processes(seg, t, skip_first)
        for s in seg[-1:]:  # the name each process had last (exec changes it)
            for pid, p in (s.processes or {}).items():
                c = self._pc.get(pid)
                if c is not None and p.comm:
                    self.names[c[1]] = p.comm

    def processes(self, seg: list[Snapshot], t: list[float], skip_first: bool) -> None:
        """Each process's RSS into its line. The lean path of the report (a day at 1 s of 100
        processes is 8.6 million readings): a process read again in the bucket where it already
        had that value adds nothing to the bucket's lowest and highest (the same object: not
        even read again), so it is skipped; the lines are what adding every reading would give."""
        cache = self._pc  # pid -> [Process last seen, (pid, start), line, value, bucket]
        grid = self.grid
        for i, s in enumerate(seg):
            if skip_first and i == 0:
                if self._seed:
                    self._seed_processes(s, t[0])
                continue
            procs = s.processes or {}
            ti = t[i]
            bi = grid.index(ti)
            if grid.shift != self._pc_shift:  # wider buckets: the cached indices are stale
                self._pc_shift = grid.shift
                for c in cache.values():
                    c[4] = -1
            if procs is self._pc_table and bi == self._pc_bucket:
                if self._pc_marked != bi:  # the same table again in this bucket
                    self._pc_marked = bi
                    for c in cache.values():
                        c[2].merged = True
                continue
            self._pc_table, self._pc_bucket = procs, bi
            if len(cache) != len(procs) or cache.keys() != procs.keys():
                for pid in cache.keys() - procs.keys():  # gone (or no longer among the top)
                    c = cache.pop(pid)
                    c[2].gap(ti, bi)
            for pid, p in procs.items():
                c = cache.get(pid)
                if c is not None and c[0] is p:  # the same reading: the same value
                    if c[4] == bi:
                        c[2].merged = True
                    else:
                        c[2].add(ti, c[3], bi)
                        c[4] = bi
                    continue
                st = p.stat
                key = (pid, st.starttime_ticks if st is not None else None)
                kb = p.res_kb
                v = None if kb is None else kb * 1024.0
                if c is not None and c[1] != key:  # the pid was reused: another process
                    c[2].gap(ti, bi)
                    c = None
                if c is None:
                    r = self.procs.get(key)
                    if r is None:
                        r = self.procs[key] = _Line(grid)
                        self.names[key] = p.comm or "?"
                    c = cache[pid] = [p, key, r, None, -1]
                elif v is not None and v == c[3] and c[4] == bi:
                    c[0] = p
                    c[2].merged = True
                    continue
                c[2].add(ti, v, bi)
                c[0], c[3], c[4] = p, v, bi

    def _seed_processes(self, s: Snapshot, ti: float) -> None:
        """The process cache as it stands after `s` was drawn (by the part before this one), its
        readings not added again: the next snapshots then add and skip what they would have."""
        self._seed = False
        grid, cache = self.grid, self._pc
        procs = s.processes or {}
        bi = grid.index(ti)
        self._pc_shift = grid.shift
        self._pc_table, self._pc_bucket = procs, bi
        for pid, p in procs.items():
            st = p.stat
            key = (pid, st.starttime_ticks if st is not None else None)
            kb = p.res_kb
            r = self.procs.get(key)
            if r is None:
                r = self.procs[key] = _Line(grid)
                self.names[key] = p.comm or "?"
            cache[pid] = [p, key, r, None if kb is None else kb * 1024.0, bi]

    def take(self, o: "_Builder") -> None:
        """Add the charts of `o`, the part of the range after this one (built with the same t0
        and span, `continued`, its first snapshot this part's last)."""
        shift = max(self.grid.shift, o.grid.shift)
        self.grid.shift = o.grid.shift = shift
        for a, b in zip([self.memory, self.cpu, self.retrans, *self.reclaim, *self.paging],
                        [o.memory, o.cpu, o.retrans, *o.reclaim, *o.paging]):
            a.take(b)
        for key, line in o.procs.items():
            mine = self.procs.get(key)
            if mine is None:
                line._sync()
                line.grid, line.shift = self.grid, line.shift
                self.procs[key] = line
            else:
                mine.take(line)
        self.names.update(o.names)
        self.n += o.n
        self.skipped += o.skipped
        self.breaks += o.breaks
        if o.start is not None:
            self.start = o.start if self.start is None else min(self.start, o.start)
            self.end = o.end if self.end is None else max(self.end, o.end)
        self.host = o.host or self.host
        self.kernel = o.kernel or self.kernel
        self.page_size = o.page_size or self.page_size
        self.missing.update(o.missing)
        if self.wall is None:
            self.wall = o.wall

    def _why(self, *sources: str) -> str:
        for s in sources:
            if s in self.missing:
                return f"{s}: {self.missing[s]}"
        return f"no {' or '.join(sources)} in the recording"

    def charts(self) -> tuple[ReportChart, ...]:
        out = []
        mem = self.memory.series(MEMORY_PARTS, MEMORY_SOURCES)
        out.append(ReportChart(
            "memory", "Memory composition", "bytes", () if self.memory.empty else mem,
            stacked=True,
            note="anon + shmem + file cache + slab, stacked; dirty is the part of the file cache "
                 "waiting for writeback (/proc/meminfo)",
            missing=self._why("meminfo") if self.memory.empty else None))
        rec = tuple(r.series(name, f"/proc/vmstat {c.name}")
                    for r, (name, c) in zip(self.reclaim, RECLAIM) if not r.empty)
        out.append(ReportChart(
            "reclaim", "Page reclaim", "pages/s", rec,
            note="pages scanned and reclaimed (stolen) per second, by kswapd (background) and by "
                 "allocating tasks (direct reclaim, which stalls them)",
            missing=None if rec else self._why("vmstat")))
        pnames = (("page-in", PGPGIN, "KiB"), ("page-out", PGPGOUT, "KiB"),
                  ("swap-in", PSWPIN, "pages"), ("swap-out", PSWPOUT, "pages"))
        pag = tuple(r.series(name, f"/proc/vmstat {c.name} ({u})")
                    for r, (name, c, u) in zip(self.paging, pnames) if not r.empty)
        out.append(ReportChart(
            "paging", "Paging and swap I/O", "bytes/s", pag,
            note="page-in/out: block I/O of the page cache and swap (pgpgin/pgpgout); "
                 "swap-in/out: pages read from and written to swap (pswpin/pswpout)",
            missing=None if pag else self._why("vmstat")))
        ret = () if self.retrans.empty else (self.retrans.series(
            "retransmitted", "/proc/net/snmp Tcp RetransSegs / OutSegs"),)
        out.append(ReportChart(
            "retrans", "TCP retransmissions", "%", ret,
            note="ΔRetransSegs / ΔOutSegs x 100 per interval (ksight's network namespace); "
                 "no line where nothing was sent",
            missing=None if ret else (self._why("snmp") if "snmp" in self.missing
                                      else "no TCP segment sent in the window, or no /proc/net/snmp")))
        cpu = () if self.cpu.empty else self.cpu.series(
            CPU_PARTS, tuple(f"/proc/stat ({p})" for p in CPU_PARTS))
        out.append(ReportChart(
            "cpu", "CPU time (all CPUs)", "%", cpu, stacked=True, y_max=100.0,
            note="share of all CPUs' time, as mpstat computes it; the rest is idle",
            missing=None if cpu else self._why("stat")))
        ranked = sorted(((r.peak, k) for k, r in self.procs.items() if r.peak is not None),
                        key=lambda x: (-x[0], x[1][0]))[:self.top]
        procs = tuple(self.procs[k].series(f"{self.names.get(k, '?')} ({k[0]})",
                                           f"/proc/{k[0]}/statm or status VmRSS")
                      for _, k in ranked)
        out.append(ReportChart(
            "processes", f"RSS of the top {len(procs) or self.top} processes", "bytes", procs,
            note="resident memory of the processes with the highest peak RSS in the window; "
                 "a process is its pid and start time",
            missing=None if procs else "no process table in the recording"))
        return tuple(out)

    def notes(self) -> tuple[str, ...]:
        out = []
        for reason in self.breaks:
            out.append(f"the recording is cut by a reboot or host change ({reason}): a gap in "
                       "every chart, no rate across it")
        if self.skipped:
            out.append(f"{self.skipped} snapshot(s) without a clock left out")
        if any(r.merged for r in self.all_rows()):
            out.append(f"long window: each chart keeps the lowest and highest sample of every "
                       f"{self.grid.width:g} s (peaks kept)")
        return tuple(out)


def build_charts(snapshots: Iterable[Snapshot], *, top: int = 5,
                 max_buckets: int = MAX_BUCKETS) -> ChartSet:
    """The report's charts from snapshots in time order (a list, or an iterator over a
    recording: at most CHUNK snapshots are held at once)."""
    b = ChartBuilder(top=top, max_buckets=max_buckets)
    b.feed(snapshots)
    return b.result()


class ChartBuilder:
    """The charts built piece by piece, for a caller that already streams the recording in
    blocks (e.g. the episode finder's `observe(series)`):

        charts = ChartBuilder(top=5)
        find_episodes(snapshots, observe=charts.observe)   # or charts.feed(snapshots) per block
        view = charts.view(episodes=..., not_evaluated=...)

    Blocks may share their edge snapshot (it is seen once); they must come in time order.
    span: the seconds between the first and the last snapshot, when known beforehand (a
    recording's range): the buckets get their final width from the start (the same points,
    cheaper); a span too short only costs the doublings it would have saved."""

    def __init__(self, *, top: int = 5, max_buckets: int = MAX_BUCKETS,
                 span: float | None = None, t0: float | None = None, continued: bool = False):
        # t0 (the time of the range's first snapshot) and continued: the charts of a part of a
        # range, added to the part before with take() (record/report_split.py)
        self._b = _Builder(top, max_buckets, span, t0, continued)

    def finish(self) -> None:
        """Draw what is fed so far (before take(), or before handing the builder on)."""
        self._b.finish()
        self._b._chunk = []
        self._b._pc.clear()
        self._b._pc_table = None

    def take(self, later: "ChartBuilder") -> None:
        """Add the charts of the part of the range after this one (both finished)."""
        self._b.take(later._b)

    def feed(self, snapshots: Iterable[Snapshot]) -> None:
        self._b.feed(snapshots)

    def observe(self, series) -> None:
        """Feed a model.series.Series (or anything with `.snapshots`)."""
        self._b.feed(series.snapshots)

    def result(self) -> ChartSet:
        b = self._b
        b.finish()
        return ChartSet(b.charts(), b.start, b.end, b.host, b.kernel, b.n, bool(b.wall),
                        b.notes())

    def view(self, *, episodes=(), findings=(), not_evaluated=(), notes: Iterable[str] = (),
             title: str = "ksight report"):
        from .report_data import ReportView

        cs = self.result()
        return ReportView(cs.host, cs.kernel, cs.start, cs.end, cs.charts,
                          episodes=tuple(episodes), findings=tuple(findings),
                          not_evaluated=tuple(not_evaluated), notes=tuple(notes) + cs.notes,
                          wall_clock=cs.wall_clock, snapshots=cs.snapshots, title=title)


def report_view(snapshots: Iterable[Snapshot], *, episodes=(), findings=(), not_evaluated=(),
                top: int = 5, notes: Iterable[str] = (), title: str = "ksight report",
                max_buckets: int = MAX_BUCKETS):
    """The whole page's data in one call (views/report.py passes what the rules found): the
    charts of `snapshots` and the episodes, findings and rules that could not judge."""
    b = ChartBuilder(top=top, max_buckets=max_buckets)
    b.feed(snapshots)
    return b.view(episodes=episodes, findings=findings, not_evaluated=not_evaluated,
                  notes=notes, title=title)


__all__ = ["build_charts", "report_view", "ChartBuilder", "ChartSet", "CHUNK", "MAX_BUCKETS",
           "MEMORY_PARTS", "CPU_PARTS"]
