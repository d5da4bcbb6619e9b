"""Where the CPU time goes, per interval: mpstat's percentages per CPU and in total, load against
the CPUs online, runnable and blocked tasks, context switches and interrupts per second, CPU
PSI, the processes making the most user and system time, softirq and interrupt rates per kind
and per CPU with their imbalance. Data only: text lives in render/cpu_text.py.

Percentages are sysstat's `mpstat -P ALL` (mpstat.c write_plain_cpu_stats, rd_stats.c
get_per_cpu_interval, get_global_cpu_mpstats), for the same two /proc/stat readings:
- per CPU, the interval in ticks is the sum of the deltas of user, nice, system, idle, iowait,
  irq, softirq and steal (guest and guest_nice are already inside user and nice); a field that
  went back adds 0;
- %usr is the delta of (user - guest), %nice of (nice - guest_nice): the kernel counts guest
  time inside user, and mpstat shows it once, under %guest. When the guest counter moved a
  little more than user (the kernel's accounting races), the interval grows by the difference;
- idle and iowait can go back: on NO_HZ kernels an online CPU's idle/iowait come from the
  tick-less idle clock and an offline one's from the tick counters; iowait also moves to idle
  when the waited-for I/O ends. mpstat then takes the earlier iowait as the new one when idle
  went up (iowait time reclassified as idle), else as 0, and the earlier idle as 0 (a CPU back
  online restarts both from 0);
- "all" is the sum of the CPUs (not the `cpu` line) on a machine with more than one CPU: a CPU
  offline in the later reading keeps its earlier values (adds nothing); a CPU absent from the
  earlier reading (back online) is left out of "all" and of the table for that interval;
- a CPU whose interval is 0 ticks (tickless, nothing accounted) shows 100 % idle.
These corrections are mpstat's and cannot be expressed as plain counter resets, so this module
applies them to two CpuTimes (`mpstat_interval`): the one place outside model/series.py that
differences tick counters, kept to mpstat's arithmetic. Every other rate here (ctxt, intr,
softirqs, interrupts, PSI, process times, disks) comes from model.series.Series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..sources.stat import CpuTimes
from .series import Series, make_counter
from .snapshot import Snapshot

PCT_FIELDS = ("usr", "nice", "sys", "iowait", "irq", "soft", "steal", "guest", "gnice", "idle")
ULLONG_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class CpuPct:
    """One row of `mpstat -P ALL`: percentages of the interval's ticks."""

    cpu: str  # "all" or the CPU number
    usr: float
    nice: float
    sys: float
    iowait: float
    irq: float
    soft: float
    steal: float
    guest: float
    gnice: float
    idle: float
    ticks: int  # the interval in USER_HZ ticks (summed over the CPUs for "all")

    @property
    def busy(self) -> float:
        """Everything but idle and iowait (both are idle time)."""
        return max(0.0, 100.0 - self.idle - self.iowait)

    def get(self, name: str) -> float:
        return getattr(self, name)


def _v(x: int | None) -> int:
    return x or 0


@dataclass
class _T:
    """Mutable copy of a CpuTimes with None as 0 (mpstat reads missing columns as 0)."""

    user: int
    nice: int
    sys: int
    idle: int
    iowait: int
    irq: int
    soft: int
    steal: int
    guest: int
    gnice: int

    @classmethod
    def of(cls, c: CpuTimes | None) -> "_T":
        if c is None:
            return cls(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return cls(c.user_ticks, c.nice_ticks, c.system_ticks, c.idle_ticks, _v(c.iowait_ticks),
                   _v(c.irq_ticks), _v(c.softirq_ticks), _v(c.steal_ticks), _v(c.guest_ticks),
                   _v(c.guest_nice_ticks))

    def total(self) -> int:
        return (self.user + self.nice + self.sys + self.idle + self.iowait + self.irq
                + self.steal + self.soft)

    def add(self, o: "_T") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(o, k))


def _d(prev: int, cur: int) -> int:
    return cur - prev if cur > prev else 0


def _interval(cur: _T, prev: _T) -> int:
    """rd_stats.c get_per_cpu_interval: may lower prev.idle / prev.iowait (as mpstat does)."""
    ishift = 0
    if cur.user >= prev.user and (cur.user - cur.guest) < (prev.user - prev.guest):
        ishift += (prev.user - prev.guest) - (cur.user - cur.guest)
    if cur.nice >= prev.nice and (cur.nice - cur.gnice) < (prev.nice - prev.gnice):
        ishift += (prev.nice - prev.gnice) - (cur.nice - cur.gnice)
    if cur.iowait < prev.iowait and prev.iowait < ULLONG_MAX - 0x7FFFF:
        if cur.idle > prev.idle or prev.idle >= ULLONG_MAX - 0x7FFFF:
            prev.iowait = cur.iowait
        else:
            prev.iowait = 0
    if cur.idle < prev.idle and prev.idle < ULLONG_MAX - 0x7FFFF:
        prev.idle = 0
    return (_d(prev.user, cur.user) + _d(prev.nice, cur.nice) + _d(prev.sys, cur.sys)
            + _d(prev.iowait, cur.iowait) + _d(prev.idle, cur.idle) + _d(prev.steal, cur.steal)
            + _d(prev.irq, cur.irq) + _d(prev.soft, cur.soft) + ishift)


def _sp(prev: int, cur: int, itv: int) -> float:
    """common.c ll_sp_value: 0 when the counter went back."""
    return 0.0 if cur < prev else (cur - prev) / itv * 100.0


def _pct(name: str, prev: _T, cur: _T, itv: int) -> CpuPct:
    if itv == 0:
        return CpuPct(name, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100.0, 0)
    pu, cu = prev.user - prev.guest, cur.user - cur.guest
    pn, cn = prev.nice - prev.gnice, cur.nice - cur.gnice
    return CpuPct(
        name,
        usr=0.0 if cu < pu else _sp(pu, cu, itv),
        nice=0.0 if cn < pn else _sp(pn, cn, itv),
        sys=_sp(prev.sys, cur.sys, itv), iowait=_sp(prev.iowait, cur.iowait, itv),
        irq=_sp(prev.irq, cur.irq, itv), soft=_sp(prev.soft, cur.soft, itv),
        steal=_sp(prev.steal, cur.steal, itv), guest=_sp(prev.guest, cur.guest, itv),
        gnice=_sp(prev.gnice, cur.gnice, itv),
        idle=0.0 if cur.idle < prev.idle else _sp(prev.idle, cur.idle, itv),
        ticks=itv)


def mpstat_cpu(prev: CpuTimes | None, cur: CpuTimes | None, name: str = "all") -> CpuPct:
    """One CPU's (or a uniprocessor's "all") percentages between two readings, as mpstat."""
    p, c = _T.of(prev), _T.of(cur)
    return _pct(name, p, c, _interval(c, p))


@dataclass(frozen=True)
class MpstatInterval:
    """mpstat -P ALL for one interval: all CPUs and each CPU."""

    all: CpuPct
    cpus: dict[int, CpuPct]  # the CPUs mpstat shows (online in both readings)
    offline: tuple[int, ...]  # in the earlier reading, not in the later one
    back_online: tuple[int, ...]  # not in the earlier reading: left out of this interval


def mpstat_interval(prev, cur) -> MpstatInterval:
    """`mpstat -P ALL` between two parsed /proc/stat readings (sources.stat.Stat)."""
    ids = sorted(set(prev.cpus) | set(cur.cpus))
    if len(ids) <= 1:  # a uniprocessor: mpstat keeps the `cpu` line
        allp = mpstat_cpu(prev.cpu_total, cur.cpu_total, "all")
        cpus = {}
        if ids and ids[0] in prev.cpus and ids[0] in cur.cpus:
            cpus[ids[0]] = mpstat_cpu(prev.cpus[ids[0]], cur.cpus[ids[0]], str(ids[0]))
        return MpstatInterval(allp, cpus, (), ())
    sp, sc = _T.of(None), _T.of(None)
    total = 0
    cpus: dict[int, CpuPct] = {}
    offline, back = [], []
    for i in ids:
        p = _T.of(prev.cpus.get(i))
        if i not in prev.cpus:
            back.append(i)
            continue
        if i not in cur.cpus:
            offline.append(i)
            c = _T.of(prev.cpus[i])  # mpstat: the offline CPU keeps its earlier values
        else:
            c = _T.of(cur.cpus[i])
        itv = _interval(c, p)
        total += itv
        if i in cur.cpus:
            cpus[i] = _pct(str(i), _T(**p.__dict__), c, itv)
        sp.add(p)
        sc.add(c)
    return MpstatInterval(_pct("all", sp, sc, total), cpus, tuple(offline), tuple(back))


# ---- the rest of an interval: rates from the Series --------------------------------------------

@dataclass(frozen=True)
class ProcCpu:
    """One process's CPU time over an interval."""

    pid: int
    comm: str
    usr_pct: float  # of one CPU (100 = one CPU busy for the whole interval), as pidstat %usr
    sys_pct: float
    state: str | None = None
    start_ticks: int | None = None


@dataclass(frozen=True)
class RateRow:
    """A softirq kind or an interrupt source: rate per second in total and per CPU."""

    name: str
    description: str | None
    per_s: float
    per_cpu: dict[int, float]
    busiest_cpu: int | None
    busiest_share_pct: float | None  # the busiest CPU's share of the total (imbalance)


@dataclass(frozen=True)
class CpuInterval:
    """One interval of the CPU series."""

    index: int
    seconds: float | None
    taken_at: float | None  # wall clock of the later snapshot
    mpstat: MpstatInterval
    ctxt_per_s: float | None
    intr_per_s: float | None
    forks_per_s: float | None
    procs_running: int | None  # /proc/stat, the later reading (threads, this reader included)
    procs_blocked: int | None  # /proc/stat: tasks in uninterruptible sleep (D) waiting for I/O
    d_state: int | None  # processes in state D in the process table (thread group leaders)
    load1: float | None
    load5: float | None
    load15: float | None
    cpus_online: int | None
    psi_some_pct: float | None  # share of the interval some runnable task waited for a CPU
    psi_full_pct: float | None  # (6.1+ cgroup-aware kernels print "full" for cpu too)
    top_usr: tuple[ProcCpu, ...] = ()
    top_sys: tuple[ProcCpu, ...] = ()
    softirqs: tuple[RateRow, ...] = ()
    interrupts: tuple[RateRow, ...] = ()
    resets: tuple[str, ...] = ()  # counters that went back (no rate for this interval)

    @property
    def all(self) -> CpuPct:
        return self.mpstat.all

    @property
    def cpus(self) -> dict[int, CpuPct]:
        return self.mpstat.cpus


def cpus_online(s: Snapshot) -> int | None:
    st = s.get("stat")
    if st is not None and st.cpus:
        return len(st.cpus)
    topo = s.get("cpu_topology")
    if topo is not None and topo.online:
        return len(topo.online)
    return s.host.cpus


def _rate(cs, i: int) -> float | None:
    r = cs.rates[i] if i < len(cs.rates) else None
    return r


def _rows(ser: Series, i: int, table_fn, vec_fn, names_fn, desc_fn, prefix: str,
          min_rate: float = 0.0) -> tuple[RateRow, ...]:
    """Per name per CPU rates for interval i, from cumulative per-CPU counts. `vec_fn(table,
    name)` gives (cpus, counts) in the table's column order, or None (no per-CPU counts).
    Deltas come from series.make_counter, cell by cell, for the rows whose total moved and the
    CPUs whose count changed (a count that did not change is 0/s): a 1,152-CPU machine prints
    a thousand interrupt lines of a thousand columns, mostly unchanged."""
    a, b = ser.snapshots[i], ser.snapshots[i + 1]
    ta, tb = table_fn(a), table_fn(b)
    if ta is None or tb is None:
        return ()
    secs = ser.seconds_per_interval[i]
    sub = Series([a, b])
    rows = []
    for name in names_fn(tb):
        tot = sub.derived_counter(f"{prefix} {name}", lambda s, n=name: table_fn(s).total(n))
        if not tot.deltas[0] or tot.rates[0] is None:
            continue  # did not move (or went back, or absent, or no clock)
        per: dict[int, float] = {}
        va, vb = vec_fn(ta, name), vec_fn(tb, name)
        if va is not None and vb is not None:
            before = dict(zip(*va))
            for cpu, now in zip(*vb):
                was = before.get(cpu)
                if was is None:
                    continue  # a CPU not in the earlier reading: no rate
                if was == now:
                    per[cpu] = 0.0
                    continue
                r = make_counter(f"{prefix} {name} cpu{cpu}", (was, now), (secs,)).rates[0]
                if r is not None:
                    per[cpu] = r
        total = sum(per.values()) if per else tot.rates[0]
        if total <= min_rate:
            continue
        busiest = max(per, key=lambda c: per[c]) if per else None
        share = 100.0 * per[busiest] / total if busiest is not None and total > 0 else None
        rows.append(RateRow(name, desc_fn(tb, name), total, per, busiest, share))
    rows.sort(key=lambda r: -r.per_s)
    return tuple(rows)


def softirq_rows(ser: Series, i: int) -> tuple[RateRow, ...]:
    def vec(t, n):
        c = t.counts.get(n)
        return None if c is None else (t.cpus, c)

    return _rows(ser, i, lambda s: s.get("softirqs"), vec, lambda t: list(t.counts),
                 lambda t, n: None, "softirq")


def interrupt_rows(ser: Series, i: int) -> tuple[RateRow, ...]:
    def vec(t, n):
        irq = t.irqs.get(n)
        return None if irq is None or irq.total_only else (t.cpus, irq.per_cpu)

    def desc(t, n):
        irq = t.irqs.get(n)
        if irq is None:
            return None
        parts = [x for x in (irq.chip, irq.description) if x]
        return " ".join(parts) or None

    return _rows(ser, i, lambda s: s.get("interrupts"), vec, lambda t: list(t.irqs), desc,
                 "irq")


def _utime(p):
    return p.stat.utime_ticks


def _stime(p):
    return p.stat.stime_ticks


def top_processes(ser: Series, i: int, n: int = 5) -> tuple[tuple[ProcCpu, ...], tuple[ProcCpu, ...]]:
    """(top by user time, top by system time) in interval i: % of one CPU, as pidstat."""
    a, b = ser.snapshots[i], ser.snapshots[i + 1]
    if a.processes is None or b.processes is None:
        return (), ()
    sub = Series([a, b])
    secs = sub.seconds_per_interval[0]
    if not secs:
        return (), ()
    hz = b.host.clk_tck or 100
    # only processes whose times moved can rank (both lists keep those above 0%): a series for
    # each of the hundreds that slept through the interval is work for nothing
    ut = sub.entity_counters("processes", _utime, "utime", moved_only=True)
    st = sub.entity_counters("processes", _stime, "stime", moved_only=True)
    after = sub.entities("processes")[1]
    rows = []
    for key in dict.fromkeys([*ut, *st]):
        du = ut[key].deltas[0] if key in ut else 0
        ds = st[key].deltas[0] if key in st else 0
        if du is None and ds is None:
            continue
        p = after.get(key)
        if p is None:
            continue
        rows.append(ProcCpu(key[0], p.comm or "?", 100.0 * (du or 0) / hz / secs,
                            100.0 * (ds or 0) / hz / secs,
                            p.stat.state if p.stat is not None else None, key[1]))
    by_u = tuple(r for r in sorted(rows, key=lambda r: (-r.usr_pct, r.pid)) if r.usr_pct > 0)[:n]
    by_s = tuple(r for r in sorted(rows, key=lambda r: (-r.sys_pct, r.pid)) if r.sys_pct > 0)[:n]
    return by_u, by_s


def d_state_count(s: Snapshot) -> int | None:
    if s.processes is None:
        return None
    return sum(1 for p in s.processes.values() if p.stat is not None and p.stat.state == "D")


def _psi(s: Snapshot, kind: str) -> int | None:
    pr = s.get("pressure")
    if pr is None or pr.cpu is None:
        return None
    line = getattr(pr.cpu, kind)
    return None if line is None else line.total_usec


def intervals(snapshots: Sequence[Snapshot], *, top: int = 5, rates: bool = True) -> list[CpuInterval]:
    """One CpuInterval per pair of consecutive snapshots of one boot (Series.of cuts reboots)."""
    ser = Series.of(snapshots)
    return [interval(ser, i, top=top, rates=rates) for i in range(ser.intervals)]


def interval(ser: Series, i: int, *, top: int = 5, rates: bool = True) -> CpuInterval:
    a, b = ser.snapshots[i], ser.snapshots[i + 1]
    sa, sb = a.get("stat"), b.get("stat")
    if sa is None or sb is None:
        raise ValueError("/proc/stat missing from a snapshot")
    secs = ser.seconds_per_interval[i]

    def st(f):
        return lambda s: getattr(s.get("stat"), f)

    ctxt = ser.derived_counter("ctxt", st("ctxt_total"), per_cpu=True)
    intr = ser.derived_counter("intr", st("intr_total"), per_cpu=True)
    forks = ser.derived_counter("processes", st("forks_total"))
    some = ser.derived_counter("psi cpu some", lambda s: _psi(s, "some"))
    full = ser.derived_counter("psi cpu full", lambda s: _psi(s, "full"))
    resets = tuple(c.name for c in (ctxt, intr, forks, some, full) if i in c.resets)

    def psi(cs):
        d = cs.deltas[i]
        return None if d is None or not secs else min(100.0, d / 1e4 / secs)

    la = b.get("loadavg")
    tu, ts = top_processes(ser, i, top) if top else ((), ())
    return CpuInterval(
        index=i, seconds=secs, taken_at=b.taken_at, mpstat=mpstat_interval(sa, sb),
        ctxt_per_s=_rate(ctxt, i), intr_per_s=_rate(intr, i), forks_per_s=_rate(forks, i),
        procs_running=sb.procs_running, procs_blocked=sb.procs_blocked, d_state=d_state_count(b),
        load1=la.load1 if la else None, load5=la.load5 if la else None,
        load15=la.load15 if la else None, cpus_online=cpus_online(b),
        psi_some_pct=psi(some), psi_full_pct=psi(full), top_usr=tu, top_sys=ts,
        softirqs=softirq_rows(ser, i) if rates else (),
        interrupts=interrupt_rows(ser, i) if rates else (), resets=resets)


def average(snapshots: Sequence[Snapshot]) -> MpstatInterval | None:
    """mpstat's Average line: the first and the last reading of the series."""
    ser = Series.of(snapshots)
    if ser.intervals < 1:
        return None
    a, b = ser.first.get("stat"), ser.last.get("stat")
    if a is None or b is None:
        return None
    return mpstat_interval(a, b)


@dataclass(frozen=True)
class Peak:
    """The worst interval (and CPU) of one mpstat column across a series."""

    field: str
    all_pct: float  # the highest "all" value of any interval
    all_interval: int
    cpu_pct: float  # the highest single-CPU value of any interval
    cpu: int | None
    cpu_interval: int
    intervals_all: int = 0  # intervals where "all" reached the threshold asked for
    intervals_cpu: int = 0  # intervals where some CPU reached the per-CPU threshold
    cpus_over: tuple[int, ...] = field(default=())  # CPUs at or above the per-CPU threshold


def peak(ivs: Sequence[CpuInterval], name: str, all_at: float = 101.0,
         cpu_at: float = 101.0) -> Peak | None:
    """Per interval and per CPU: where `name` (usr, sys, soft, ...) was highest."""
    if not ivs:
        return None
    best_all, bi = -1.0, 0
    best_cpu, bc, bci = -1.0, None, 0
    n_all = n_cpu = 0
    over: dict[int, None] = {}
    for iv in ivs:
        v = iv.all.get(name)
        if v > best_all:
            best_all, bi = v, iv.index
        n_all += v >= all_at
        hit = False
        for c, p in iv.cpus.items():
            x = p.get(name)
            if x > best_cpu:
                best_cpu, bc, bci = x, c, iv.index
            if x >= cpu_at:
                hit = True
                over[c] = None
        n_cpu += hit
    return Peak(name, best_all, bi, max(best_cpu, 0.0), bc, bci, n_all, n_cpu,
                tuple(sorted(over)))


def cpulist(cpus: Sequence[int]) -> str:
    """(0, 1, 2, 5) -> '0-2,5' (the kernel's cpulist format)."""
    out = []
    s = sorted(set(cpus))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(out)


__all__ = ["CpuPct", "MpstatInterval", "CpuInterval", "ProcCpu", "RateRow", "Peak",
           "mpstat_cpu", "mpstat_interval", "intervals", "interval", "average", "peak",
           "cpulist", "cpus_online", "d_state_count", "PCT_FIELDS"]
