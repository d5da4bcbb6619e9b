"""A window is a series of samples: the one place where deltas, rates, peaks and trends are made.

Every view and rule that needs "per second" asks a Series, for a system counter or per entity
(a process, a memory cgroup, a socket, a CPU, an interface, a disk). Nothing else subtracts
counters. Rates are judged **per interval**: a 5 s burst of 500 allocation stalls/s inside a
600 s capture is a peak of 500/s, not a mean of 4/s (the mean is there too).

Resets are flagged, never turned into numbers:
- a reboot (uptime going back, or another boot_id) or another host splits the series
  (`split`): counters before and after have nothing to do with each other;
- a counter going back inside a segment (a 32-bit wrap, a recreated cgroup) gives no delta for
  that interval, and the interval is listed in `resets`;
- a CPU going offline drops its share from the /proc/stat, softirqs and interrupts sums: the
  interval is flagged for those sources even when the sum happens to still go up;
- PID reuse cannot mix two processes: processes are keyed by (pid, start time).

The clock: CLOCK_MONOTONIC when sampled live, else the kernel's uptime (captures), else the wall
clock of the manifest. An interval with no clock, or one shorter than MIN_INTERVAL_S, has no
rate (None), and `has_clock` says so, so a rule reports "not evaluated: no clock" rather than
rates of 0 or 10^13.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Any

from .counters import CgroupCounter, Counter
from .snapshot import Snapshot

# Below 1 ms two reads of /proc are one read: a delta over it is noise, a rate absurd.
MIN_INTERVAL_S = 0.001
# Sources whose sums run over online CPUs: a CPU going offline removes its share.
PER_CPU_SOURCES = ("stat", "softirqs", "interrupts", "softnet_stat")


@dataclass(frozen=True)
class Break:
    """Where a series of snapshots stops being one series: between `after` and `after + 1`."""

    after: int
    kind: str  # "reboot", "host"
    reason: str


def interval_seconds(a: Snapshot, b: Snapshot) -> float | None:
    """Seconds between two snapshots of one boot, or None when no clock says (or it is < 1 ms)."""
    s = None
    if a.monotonic is not None and b.monotonic is not None:
        s = b.monotonic - a.monotonic
    elif a.uptime_s is not None and b.uptime_s is not None:
        s = b.uptime_s - a.uptime_s
    elif a.taken_at is not None and b.taken_at is not None:
        s = b.taken_at - a.taken_at
    if s is None or not math.isfinite(s) or s < MIN_INTERVAL_S:
        return None
    return s


def find_break(a: Snapshot, b: Snapshot) -> tuple[str, str] | None:
    """(kind, reason) when b is not a later look at the same boot of the same host as a."""
    ha, hb = a.host, b.host
    if ha.hostname and hb.hostname and ha.hostname != hb.hostname:
        return "host", f"hostname changed from {ha.hostname!r} to {hb.hostname!r}"
    ba, bb = getattr(ha, "boot_id", None), getattr(hb, "boot_id", None)
    if ba and bb and ba != bb:
        return "reboot", "boot_id changed: the machine rebooted"
    if ha.kernel and hb.kernel and ha.kernel != hb.kernel:
        return "reboot", f"kernel changed from {ha.kernel} to {hb.kernel}: the machine rebooted"
    if a.uptime_s is not None and b.uptime_s is not None and b.uptime_s < a.uptime_s:
        return "reboot", (f"uptime went back from {a.uptime_s:.0f} s to {b.uptime_s:.0f} s: "
                          "the machine rebooted")
    return None


def split(snapshots: Sequence[Snapshot]) -> tuple[list[list[Snapshot]], list[Break]]:
    """Cut a list of snapshots wherever the host or the boot changes."""
    if not snapshots:
        return [], []
    segs: list[list[Snapshot]] = [[snapshots[0]]]
    breaks: list[Break] = []
    for i in range(1, len(snapshots)):
        br = find_break(snapshots[i - 1], snapshots[i])
        if br is not None:
            breaks.append(Break(i - 1, *br))
            segs.append([])
        segs[-1].append(snapshots[i])
    return segs, breaks


@dataclass(frozen=True)
class Peak:
    """The highest per-interval rate of a counter, and when."""

    rate: float
    interval: int  # index of the interval (between snapshots interval and interval + 1)
    seconds: float  # length of that interval
    at: float | None  # seconds from the start of the series to the end of that interval


@dataclass(frozen=True)
class CounterSeries:
    """One cumulative counter across a series: per-interval deltas and rates, resets flagged."""

    name: str
    values: tuple[float | None, ...]  # per snapshot (None: absent there)
    seconds: tuple[float | None, ...]  # per interval
    deltas: tuple[float | None, ...]  # per interval (None: absent, or reset)
    resets: tuple[int, ...]  # intervals where the counter went back (or its CPUs changed)

    @property
    def present(self) -> bool:
        return any(v is not None for v in self.values)

    @property
    def rates(self) -> tuple[float | None, ...]:
        return tuple(None if d is None or s is None else d / s
                     for d, s in zip(self.deltas, self.seconds))

    @property
    def total(self) -> float | None:
        """The sum of the known deltas (None when no interval has one)."""
        known = [d for d in self.deltas if d is not None]
        return sum(known) if known else None

    @property
    def covered_seconds(self) -> float:
        return sum(s for d, s in zip(self.deltas, self.seconds) if d is not None and s is not None)

    @property
    def mean_rate(self) -> float | None:
        """Over the intervals that have both a delta and a clock."""
        pairs = [(d, s) for d, s in zip(self.deltas, self.seconds) if d is not None and s is not None]
        secs = sum(s for _, s in pairs)
        return sum(d for d, _ in pairs) / secs if pairs and secs > 0 else None

    @property
    def peak(self) -> Peak | None:
        """The interval with the highest rate (the first of equals), or None."""
        best = None
        at = 0.0
        for i, (d, s) in enumerate(zip(self.deltas, self.seconds)):
            at = at + s if (s is not None and at is not None) else None
            if d is None or s is None:
                continue
            r = d / s
            if best is None or r > best.rate:
                best = Peak(r, i, s, at)
        return best

    @property
    def peak_rate(self) -> float | None:
        p = self.peak
        return None if p is None else p.rate

    def longest_run(self, threshold: float) -> int:
        """The most consecutive intervals whose rate is at or above threshold."""
        best = cur = 0
        for r in self.rates:
            cur = cur + 1 if r is not None and r >= threshold else 0
            best = max(best, cur)
        return best

    def sustained(self, threshold: float, intervals: int) -> bool:
        """The rate stayed at or above threshold for `intervals` consecutive intervals."""
        return self.longest_run(threshold) >= intervals

    def intervals_above(self, threshold: float) -> int:
        return sum(1 for r in self.rates if r is not None and r >= threshold)


@dataclass(frozen=True)
class Trend:
    """How a gauge moved over the series: a least-squares slope over time, and how steady."""

    first: float
    last: float
    growth: float  # last - first
    slope_per_s: float
    r2: float  # 1.0: a straight line; near 0: noise
    rises: int  # intervals where it went up
    falls: int  # intervals where it went down
    points: int

    @property
    def steady_growth(self) -> bool:
        """Grew in (almost) every interval and fits a line: what a leak looks like."""
        return self.growth > 0 and self.falls <= max(0, (self.points - 1) // 10) and self.r2 >= 0.8


@dataclass(frozen=True)
class GaugeSeries:
    """An instantaneous value (a page count, a queue length) across a series."""

    name: str
    values: tuple[float | None, ...]
    times: tuple[float | None, ...]  # seconds from the first snapshot (None: no clock)

    @property
    def present(self) -> bool:
        return any(v is not None for v in self.values)

    @property
    def last(self) -> float | None:
        return next((v for v in reversed(self.values) if v is not None), None)

    @property
    def peak(self) -> tuple[float, int] | None:
        """(value, snapshot index) of the highest value."""
        best = None
        for i, v in enumerate(self.values):
            if v is not None and (best is None or v > best[0]):
                best = (v, i)
        return best

    @property
    def low(self) -> tuple[float, int] | None:
        best = None
        for i, v in enumerate(self.values):
            if v is not None and (best is None or v < best[0]):
                best = (v, i)
        return best

    def trend(self) -> Trend | None:
        pts = [(t, v) for t, v in zip(self.times, self.values) if t is not None and v is not None]
        if len(pts) < 2:
            return None
        n = len(pts)
        mt = sum(t for t, _ in pts) / n
        mv = sum(v for _, v in pts) / n
        stt = sum((t - mt) ** 2 for t, _ in pts)
        if stt <= 0:
            return None
        stv = sum((t - mt) * (v - mv) for t, v in pts)
        svv = sum((v - mv) ** 2 for _, v in pts)
        slope = stv / stt
        r2 = (stv * stv) / (stt * svv) if svv > 0 else 1.0
        vals = [v for _, v in pts]
        rises = sum(1 for a, b in zip(vals, vals[1:]) if b > a)
        falls = sum(1 for a, b in zip(vals, vals[1:]) if b < a)
        return Trend(vals[0], vals[-1], vals[-1] - vals[0], slope, r2, rises, falls, n)


# ---- entities ----------------------------------------------------------------------------------

def _processes(s: Snapshot) -> dict:
    """(pid, start time in ticks since boot) -> Process: a reused PID is another process."""
    procs = s.processes
    if not procs:
        return {}
    return {(pid, p.stat.starttime_ticks if p.stat is not None else None): p
            for pid, p in procs.items()}


def _cgroups(s: Snapshot) -> dict:
    cm = s.get("cgroup_memory")
    if cm is None:
        return {}
    # keyed by path; a group removed and made again under the same path restarts its counters,
    # which the series sees as a counter going back (a reset), not as negative deltas
    return {(path, getattr(g, "id", None)): g for path, g in cm.groups.items()}


def _sockets(s: Snapshot) -> dict:
    t = s.sockets
    if t is None:
        return {}
    out = {}
    for k in t.sockets:
        cookie = getattr(k, "cookie", None)
        key = ("cookie", cookie) if cookie else (
            "inode", getattr(k, "netns", None), k.inode, k.local_addr, k.local_port,
            k.remote_addr, k.remote_port)
        out[key] = k
    return out


def _cpus(s: Snapshot) -> dict:
    st = s.get("stat")
    return {} if st is None else {f"cpu{n}": c for n, c in st.cpus.items()}


def _interfaces(s: Snapshot) -> dict:
    nd = s.get("netdev")
    return {} if nd is None else dict(nd.interfaces)


def _disks(s: Snapshot) -> dict:
    ds = s.get("diskstats")
    if ds is None:
        return {}
    return dict(ds.devices)


ENTITY_KINDS: dict[str, Callable[[Snapshot], dict]] = {
    "processes": _processes, "cgroups": _cgroups, "sockets": _sockets,
    "cpus": _cpus, "interfaces": _interfaces, "disks": _disks,
}


class Series:
    """Snapshots of one boot of one host, in time order (use `Series.of` on anything else)."""

    def __init__(self, snapshots: Sequence[Snapshot], *, breaks: Iterable[Break] = (),
                 dropped: int = 0):
        if not snapshots:
            raise ValueError("a series needs at least one snapshot")
        self.snapshots: tuple[Snapshot, ...] = tuple(snapshots)
        self.breaks: tuple[Break, ...] = tuple(breaks)  # found in the input; not inside this one
        self.dropped = dropped  # snapshots of the input left out (before the last break)
        self.seconds_per_interval: tuple[float | None, ...] = tuple(
            interval_seconds(a, b) for a, b in zip(self.snapshots, self.snapshots[1:]))
        self._cache: dict = {}

    @property
    def _cpu_resets(self) -> tuple[int, ...]:
        """Intervals across which the set of CPUs changed (hotplug): per-CPU deltas are reset
        there. Computed when first asked (a series whose per-CPU counters nobody reads does
        not read /proc/stat for it), comparing the CPU dicts' keys (no set built)."""
        got = self._cache.get("cpu_resets")
        if got is None:
            cpus = [_cpu_dict(s) for s in self.snapshots]
            got = self._cache["cpu_resets"] = tuple(
                i for i, (a, b) in enumerate(zip(cpus, cpus[1:]))
                if a and b and a is not b and a.keys() != b.keys())
        return got

    @classmethod
    def of(cls, snapshots: Sequence[Snapshot]) -> "Series":
        """The last unbroken part of `snapshots` (after the last reboot or host change): the
        machine as it is now. The breaks and how many snapshots were left out are kept."""
        segs, breaks = split(snapshots)
        if not segs:
            raise ValueError("a series needs at least one snapshot")
        last = segs[-1]
        return cls(last, breaks=breaks, dropped=len(snapshots) - len(last))

    # ---- time ------------------------------------------------------------------------------
    @property
    def first(self) -> Snapshot:
        return self.snapshots[0]

    @property
    def last(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def intervals(self) -> int:
        return len(self.snapshots) - 1

    @property
    def has_clock(self) -> bool:
        """At least one interval with a known length (rates possible)."""
        return any(s is not None for s in self.seconds_per_interval)

    @property
    def clock_missing(self) -> int:
        return sum(1 for s in self.seconds_per_interval if s is None)

    @property
    def seconds(self) -> float:
        """The known length of the series (intervals without a clock count 0)."""
        return sum(s for s in self.seconds_per_interval if s is not None)

    @property
    def times(self) -> tuple[float | None, ...]:
        """Seconds from the first snapshot to each snapshot (None after an unknown interval).
        Computed once (every entity's gauge carries it: thousands of processes)."""
        got = self._cache.get("times")
        if got is None:
            out: list[float | None] = [0.0]
            for s in self.seconds_per_interval:
                out.append(None if s is None or out[-1] is None else out[-1] + s)
            got = self._cache["times"] = tuple(out)
        return got

    # ---- system counters and gauges --------------------------------------------------------
    def counter(self, c: Counter) -> CounterSeries:
        key = ("counter", c)
        got = self._cache.get(key)
        if got is None:
            vals = tuple(c.read(s.get(c.source)) for s in self.snapshots)
            extra = self._cpu_resets if c.source in PER_CPU_SOURCES else ()
            got = self._cache[key] = make_counter(c.name, vals, self.seconds_per_interval, extra)
        return got

    def values(self, fn: Callable[[Snapshot], float | None], name: str = "value") -> tuple:
        out = []
        for s in self.snapshots:
            try:
                out.append(fn(s))
            except (AttributeError, KeyError, TypeError):
                out.append(None)
        return tuple(out)

    def derived_counter(self, name: str, fn: Callable[[Snapshot], float | None],
                        per_cpu: bool = False) -> CounterSeries:
        """A cumulative value computed from each snapshot (a sum of counters, a CPU's ticks)."""
        return make_counter(name, self.values(fn), self.seconds_per_interval,
                            self._cpu_resets if per_cpu else ())

    def gauge(self, name: str, fn: Callable[[Snapshot], float | None]) -> GaugeSeries:
        return GaugeSeries(name, self.values(fn), self.times)

    # ---- entities --------------------------------------------------------------------------
    def entities(self, kind: str) -> list[dict]:
        """Per snapshot, key -> entity, for kind in ENTITY_KINDS."""
        key = ("entities", kind)
        got = self._cache.get(key)
        if got is None:
            fn = ENTITY_KINDS[kind]
            got = self._cache[key] = [fn(s) for s in self.snapshots]
        return got

    def entity_counters(self, kind: str, fn: Callable[[Any], float | None] | CgroupCounter,
                        name: str | None = None, *, moved_only: bool = False) -> dict[Any, CounterSeries]:
        """key -> CounterSeries of fn(entity) for every entity seen in at least two snapshots.
        Snapshots where the entity is absent give None (no delta across its absence).
        moved_only: only the entities whose known values are not all equal (the others' series
        have no delta other than 0 and no reset: a rule that looks for movement skips them
        without a series each; hundreds of idle cgroups or processes otherwise cost one each)."""
        read = fn.read if isinstance(fn, CgroupCounter) else fn
        label = name or getattr(fn, "name", None) or getattr(fn, "__name__", "value")
        per = self.entities(kind)
        seen: dict[Any, int] = {}
        for table in per:
            for k in table:
                seen[k] = seen.get(k, 0) + 1
        extra = self._cpu_resets if kind == "cpus" else ()
        out = {}
        for k, n in seen.items():
            if n < 2:
                continue
            vals = []
            for table in per:
                e = table.get(k)
                try:
                    vals.append(None if e is None else read(e))
                except (AttributeError, KeyError, TypeError):
                    vals.append(None)
            if moved_only:
                known = [v for v in vals if v is not None]
                if not known or known.count(known[0]) == len(known):
                    continue
            out[k] = make_counter(label, tuple(vals), self.seconds_per_interval, extra)
        return out

    def entity_gauges(self, kind: str, fn: Callable[[Any], float | None],
                      name: str = "value") -> dict[Any, GaugeSeries]:
        per = self.entities(kind)
        keys: dict[Any, None] = {}
        for table in per:
            keys.update(dict.fromkeys(table))
        out = {}
        times = self.times
        for k in keys:
            vals = []
            for table in per:
                e = table.get(k)
                try:
                    vals.append(None if e is None else fn(e))
                except (AttributeError, KeyError, TypeError):
                    vals.append(None)
            out[k] = GaugeSeries(name, tuple(vals), times)
        return out


def _cpu_set(s: Snapshot) -> frozenset | None:
    st = s.get("stat")
    return frozenset(st.cpus) if st is not None and st.cpus else None


def _cpu_dict(s: Snapshot) -> dict | None:
    st = s.get("stat")
    return st.cpus if st is not None and st.cpus else None


def make_counter(name: str, values: Sequence[float | None], seconds: Sequence[float | None],
                 extra_resets: Iterable[int] = ()) -> CounterSeries:
    """Deltas of a cumulative counter: None across an absence, a reset (going back) or an
    interval in extra_resets (its CPUs changed)."""
    extra = set(extra_resets)
    deltas: list[float | None] = []
    resets: list[int] = []
    for i in range(len(values) - 1):
        a, b = values[i], values[i + 1]
        if a is None or b is None:
            deltas.append(None)
        elif b < a or i in extra:
            deltas.append(None)
            resets.append(i)
        else:
            deltas.append(b - a)
    return CounterSeries(name, tuple(values), tuple(seconds), tuple(deltas), tuple(resets))


__all__ = ["Series", "CounterSeries", "GaugeSeries", "Trend", "Peak", "Break", "split",
           "find_break", "interval_seconds", "make_counter", "ENTITY_KINDS", "MIN_INTERVAL_S"]
