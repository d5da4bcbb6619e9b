"""`ksight report`: the episodes of a recorded range and the time series a page plots.

    view = report_view(recording.snapshots(since, until), areas=None, window_seconds=60)
    view.episodes            # record.episodes.EpisodeReport (episodes, not_evaluated, ...)
    view.charts              # [Chart(name, title, unit, stacked, lines=[Line(name, times, values)])]

The samples stream through once: the episodes are judged and the charts filled from the same
blocks of samples (record.episodes.find_episodes(observe=...)). Every rate is a per-interval
rate from model/series.py (Series.counter, derived_counter); gauges are read as they are. A chart
holds at most `max_points` points per line: past that, neighbouring points are merged (gauges:
their mean; rates: the mean weighted by interval length), so a day at 1 s plots as ~1,000 points;
episodes mark the peaks the merge smooths.

Charts (each only when the recording has its source):
- memory: anon, file (page cache), dirty, shmem, slab (kB, from /proc/meminfo);
- reclaim: pages scanned by kswapd and by direct reclaim, stolen, allocation stalls, swap in/out,
  major faults (/s, from /proc/vmstat);
- retrans: TCP retransmitted segments as % of segments sent, per interval (/proc/net/snmp);
- cpu: %usr, %nice, %sys, %iowait, %irq, %soft, %steal of all CPUs, per interval (/proc/stat,
  as mpstat);
- rss: RSS of the processes that were largest (VmRSS, kB; processes keyed by PID and start time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..model.counters import net, vm
from ..model.series import Series
from ..record.episodes import DEFAULT_WINDOW_S, EpisodeReport, clock, find_episodes

MAX_POINTS = 1000
TOP_PROCESSES = 5


@dataclass(frozen=True)
class Line:
    name: str
    times: tuple[float, ...]  # Unix seconds (or uptime when the recording has no wall clock)
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Chart:
    name: str  # memory, reclaim, retrans, cpu, rss
    title: str
    unit: str  # kB, /s, %
    stacked: bool  # the lines add up (memory composition, CPU breakdown)
    lines: tuple[Line, ...]
    source: str  # the kernel file the numbers come from


@dataclass
class ReportView:
    episodes: EpisodeReport
    charts: list[Chart] = field(default_factory=list)
    source: str | None = None  # the recording or capture read
    since: float | None = None  # the range asked for (None: from the start / to the end)
    until: float | None = None
    bundle_dir: str | None = None


class _Points:
    """A line that keeps at most `cap` points: past 2*cap, neighbours are merged pairwise
    (weighted mean: weights are interval seconds for rates, 1 for gauges)."""

    def __init__(self, cap: int):
        self.cap = max(cap, 2)
        self.t: list[float] = []
        self.v: list[float | None] = []
        self.w: list[float] = []
        self.last: float | None = None

    def add(self, t: float, v: float | None, w: float = 1.0) -> None:
        if self.last is not None and t <= self.last:
            return  # blocks share their edge sample: seen once
        self.last = t
        self.t.append(t)
        self.v.append(v)
        self.w.append(w)
        if len(self.t) > 2 * self.cap:
            self._halve()

    def _halve(self) -> None:
        t, v, w = [], [], []
        for i in range(0, len(self.t) - 1, 2):
            a, b = self.v[i], self.v[i + 1]
            wa, wb = self.w[i], self.w[i + 1]
            if a is None or b is None:
                m, ww = (a if b is None else b), (wa if b is None else wb)
            else:
                ww = wa + wb
                m = (a * wa + b * wb) / ww if ww > 0 else (a + b) / 2
            t.append(self.t[i + 1])
            v.append(m)
            w.append(ww)
        if len(self.t) % 2:
            t.append(self.t[-1])
            v.append(self.v[-1])
            w.append(self.w[-1])
        self.t, self.v, self.w = t, v, w

    def line(self, name: str) -> Line:
        return Line(name, tuple(round(x, 3) for x in self.t),
                    tuple(None if x is None else round(x, 3) for x in self.v))


# what is plotted ---------------------------------------------------------------------------
MEMORY = (  # (line, meminfo attribute)
    ("anon", "anon_pages_kb"), ("file", None), ("dirty", "dirty_kb"), ("shmem", "shmem_kb"),
    ("slab", "slab_kb"))
RECLAIM = (
    ("pgscan kswapd", vm("pgscan_kswapd")), ("pgscan direct", vm("pgscan_direct")),
    ("pgsteal", vm("pgsteal_kswapd", "pgsteal")), ("allocstall", vm("allocstall")),
    ("pswpin", vm("pswpin")), ("pswpout", vm("pswpout")), ("pgmajfault", vm("pgmajfault")))
RETRANS_SEGS = net("Tcp", "RetransSegs")
OUT_SEGS = net("Tcp", "OutSegs")
CPU_FIELDS = (("usr", "user_ticks"), ("nice", "nice_ticks"), ("sys", "system_ticks"),
              ("iowait", "iowait_ticks"), ("irq", "irq_ticks"), ("soft", "softirq_ticks"),
              ("steal", "steal_ticks"), ("idle", "idle_ticks"))


def _file_kb(mi) -> float | None:
    """Page cache as free(1) counts it: Cached - Shmem (shmem is in Cached) + Buffers."""
    if mi.cached_kb is None:
        return None
    return mi.cached_kb - (mi.shmem_kb or 0) + (mi.buffers_kb or 0)


def _cpu_ticks(attr: str) -> Callable:
    def read(s):
        st = s.get("stat")
        v = getattr(st.cpu_total, attr)
        if attr == "user_ticks" and st.cpu_total.guest_ticks is not None:
            v -= st.cpu_total.guest_ticks  # mpstat: guest time is shown apart from %usr
        if attr == "nice_ticks" and st.cpu_total.guest_nice_ticks is not None:
            v -= st.cpu_total.guest_nice_ticks
        return v
    return read


def _rss_kb(p) -> float | None:
    st = p.status
    if st is not None and st.vm_rss_kb is not None:
        return st.vm_rss_kb
    sm = p.statm
    if sm is not None and getattr(sm, "resident_pages", None) is not None:
        return sm.resident_pages * p.page_size / 1024
    return None


class _Charts:
    """Fills the charts' lines from each block of samples (a Series)."""

    def __init__(self, max_points: int, top: int):
        self.cap = max_points
        self.top = top
        self.lines: dict[tuple[str, str], _Points] = {}
        self.procs: dict[tuple, tuple[str, float]] = {}  # key -> (label, peak RSS)
        self.sources: set[str] = set()
        # plotting needs no more than `cap` points a line: samples are taken at least plot_dt
        # apart (0: every sample), plot_dt growing as the range does; rates between the samples
        # kept are the mean rates over the samples skipped (cumulative counters), so nothing is
        # lost that the merge of points would not have averaged anyway
        self.plot_dt = 0.0
        self.next_t: float | None = None
        self.prev = None  # the last sample kept, first of the next block's series
        self.first_t: float | None = None

    def _p(self, chart: str, name: str) -> _Points:
        k = (chart, name)
        got = self.lines.get(k)
        if got is None:
            got = self.lines[k] = _Points(self.cap)
        return got

    def __call__(self, block: Series) -> None:
        kept = [] if self.prev is None else [self.prev]
        for s in block.snapshots:
            t = clock(s)
            if self.first_t is None:
                self.first_t = t
            if kept and t <= clock(kept[-1]):
                continue
            if self.next_t is None or t >= self.next_t - 1e-6:
                kept.append(s)
                self.next_t = t + self.plot_dt
        last = block.snapshots[-1]
        if kept[-1] is not last and clock(last) > clock(kept[-1]):
            kept.append(last)  # the block's end: the next block's rates start from it
            self.next_t = clock(last) + self.plot_dt
        self.prev = kept[-1]
        if len(kept) < 2:
            return
        self._plot(Series.of(kept))
        n = max((len(p.t) for p in self.lines.values()), default=0)
        if n > self.cap:  # thin what comes next to about cap points over the range so far
            self.plot_dt = max(self.plot_dt, (clock(last) - self.first_t) / self.cap)

    def _plot(self, series: Series) -> None:
        times = [clock(s) for s in series.snapshots]
        ends = times[1:]
        secs = series.seconds_per_interval
        snaps = series.snapshots
        if any(s.get("meminfo") is not None for s in snaps):
            self.sources.add("meminfo")
            for name, attr in MEMORY:
                fn = _file_kb if attr is None else (lambda mi, a=attr: getattr(mi, a))
                g = series.gauge(name, lambda s, fn=fn: fn(s.get("meminfo")))
                pts = self._p("memory", name)
                for t, v in zip(times, g.values):
                    pts.add(t, v)
        if any(s.get("vmstat") is not None for s in snaps):
            self.sources.add("vmstat")
            for name, c in RECLAIM:
                cs = series.counter(c)
                if not cs.present:
                    continue
                pts = self._p("reclaim", name)
                for t, r, w in zip(ends, cs.rates, secs):
                    pts.add(t, r, w or 0.0)
        if any(s.get("snmp") is not None for s in snaps):
            re, out = series.counter(RETRANS_SEGS), series.counter(OUT_SEGS)
            if re.present and out.present:
                self.sources.add("snmp")
                pts = self._p("retrans", "retransmitted % of sent")
                for t, dr, do, w in zip(ends, re.deltas, out.deltas, secs):
                    pct = None if dr is None or not do else 100.0 * dr / do
                    pts.add(t, pct, w or 0.0)
        if any(s.get("stat") is not None for s in snaps):
            self.sources.add("stat")
            per = {name: series.derived_counter(f"cpu {name}", _cpu_ticks(attr), per_cpu=True)
                   for name, attr in CPU_FIELDS}
            for i, t in enumerate(ends):
                ds = {n: cs.deltas[i] for n, cs in per.items()}
                tot = sum(d for d in ds.values() if d is not None)
                for name, _ in CPU_FIELDS:
                    if name == "idle":
                        continue
                    d = ds[name]
                    self._p("cpu", name).add(t, None if d is None or tot <= 0 else 100.0 * d / tot,
                                             secs[i] or 0.0)
        if any(s.processes for s in snaps):
            self._rss(series, times)

    def _rss(self, series: Series, times: list) -> None:
        gauges = series.entity_gauges("processes", _rss_kb, "VmRSS")
        last = series.entities("processes")
        peaks = []
        for key, g in gauges.items():
            pk = g.peak
            if pk is not None:
                peaks.append((pk[0], key))
        peaks.sort(reverse=True)
        keep = {k for _, k in peaks[: self.top * 2]} | {k for k in self.procs if k in gauges}
        for key in keep:
            g = gauges[key]
            proc = next((t[key] for t in reversed(last) if key in t), None)
            label = f"{key[0]} {proc.comm if proc is not None and proc.comm else '?'}"
            pk = g.peak[0] if g.peak else 0.0
            old = self.procs.get(key)
            self.procs[key] = (label, max(pk, old[1] if old else 0.0))
            pts = self._p("rss", repr(key))
            for t, v in zip(times, g.values):
                if v is not None:
                    pts.add(t, v)

    def charts(self) -> list[Chart]:
        out = []

        def lines(chart, names):
            return tuple(self.lines[(chart, n)].line(n) for n in names if (chart, n) in self.lines)

        if "meminfo" in self.sources:
            out.append(Chart("memory", "Memory composition", "kB", True,
                             lines("memory", [n for n, _ in MEMORY]), "/proc/meminfo"))
        if "vmstat" in self.sources:
            out.append(Chart("reclaim", "Reclaim and paging", "/s", False,
                             lines("reclaim", [n for n, _ in RECLAIM]), "/proc/vmstat"))
        if "snmp" in self.sources:
            out.append(Chart("retrans", "TCP retransmission rate", "%", False,
                             lines("retrans", ["retransmitted % of sent"]), "/proc/net/snmp"))
        if "stat" in self.sources:
            out.append(Chart("cpu", "CPU time, all CPUs", "%", True,
                             lines("cpu", [n for n, _ in CPU_FIELDS if n != "idle"]), "/proc/stat"))
        if self.procs:
            top = sorted(self.procs.items(), key=lambda kv: -kv[1][1])[: self.top]
            ls = tuple(self.lines[("rss", repr(k))].line(label) for k, (label, _) in top)
            out.append(Chart("rss", f"RSS of the {len(ls)} largest processes", "kB", False, ls,
                             "/proc/PID/status"))
        return out


def report_view(snapshots: Iterable, *, areas: Iterable[str] | None = None,
                window_seconds: float = DEFAULT_WINDOW_S, step: float | None = None,
                since: float | None = None, until: float | None = None,
                bundles: Iterable[dict] = (), source: str | None = None,
                bundle_dir: str | None = None, charts: bool = True, exact: bool = False,
                max_points: int = MAX_POINTS, top: int = TOP_PROCESSES) -> ReportView:
    """Episodes (and, with charts=True, the plotted series) of the samples between since and
    until (Unix seconds; None: no bound)."""
    def ranged():
        for s in snapshots:
            t = clock(s)
            if t is None or (since is not None and t < since):
                continue
            if until is not None and t > until:
                break
            yield s

    ch = _Charts(max_points, top) if charts else None
    eps = find_episodes(ranged(), areas=areas, window_seconds=window_seconds, step=step,
                        observe=ch, bundles=bundles, exact=exact)
    return ReportView(episodes=eps, charts=ch.charts() if ch else [], source=source,
                      since=since, until=until, bundle_dir=bundle_dir)


__all__ = ["report_view", "ReportView", "Chart", "Line", "MAX_POINTS"]
