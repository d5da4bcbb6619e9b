"""sysstat's `sar -B` (paging) and `sar -r` (memory) columns, computed from snapshots.

The numbers are the ones current sysstat prints for the same two /proc samples, so people can
move between the tools. What sysstat reads (rd_stats.c read_vmstat_paging / read_meminfo) and
prints (pr_stats.c), and the traps it fell into on newer kernels, decide each column:

sar -B (rates per second over the window, from /proc/vmstat):
  pgpgin/s pgpgout/s  pgpgin, pgpgout (the kernel already counts them in KiB, not pages)
  fault/s majflt/s     pgfault, pgmajfault
  pgfree/s             pgfree
  pgscank/s            pgscan_kswapd (per-zone pgscan_kswapd_<zone> before 4.8)
  pgscand/s            pgscan_direct only. sysstat matched the 13-character prefix
                       "pgscan_direct", which also took pgscan_direct_throttle (a count of
                       throttling events, not of pages); fixed upstream in sysstat PR #424.
  pgsteal/s            pgsteal_anon + pgsteal_file (kernel >= 5.x). The kernel counts every
                       reclaimed page twice: by reclaimer (pgsteal_kswapd, _direct,
                       _khugepaged, _proactive) and by type (pgsteal_anon, _file); sysstat used
                       to sum every "pgsteal_" line, doubling pgsteal/s and pushing %vmeff over
                       100 (sysstat issue #415, fixed by PR #426). Older kernels: pgsteal_kswapd
                       + pgsteal_direct (4.8..5.x), or the per-zone pgsteal_* lines (< 4.8).
  %vmeff               100 * pgsteal / (pgscank + pgscand), 0 when nothing was scanned.
                       It can still exceed 100 on current kernels: pgsteal_anon/_file also
                       count memory-cgroup limit reclaim, khugepaged and proactive reclaim,
                       which pgscan_kswapd/_direct leave out. ksight shows sysstat's value and,
                       beside it (JSON `vmeff_all_pct`), pgsteal / (pgscan_anon + pgscan_file),
                       which compares like with like.

sar -r (instant values of the later snapshot, from /proc/meminfo, kB):
  kbmemfree MemFree; kbavail MemAvailable; kbbuffers Buffers; kbcached Cached;
  kbcommit Committed_AS; kbactive Active; kbinact Inactive; kbdirty Dirty.
  kbmemused = MemTotal - MemAvailable: current sysstat (12.7.8 and later), and gopsutil.
  With legacy=True (`--sysstat-legacy`): MemTotal - (MemFree + Buffers + Cached + Slab), floored
  at 0, sysstat 12.0 to 12.7.7's definition (pr_stats.c `nousedmem`; Debian 12 ships 12.6.1).
  Neither is MemTotal - MemFree (sysstat 11 and PCP's mem.util.used). A kernel without
  MemAvailable (before 3.14) gets the legacy formula, with a note on the row.
  %memused = 100 * kbmemused / MemTotal; %commit = 100 * Committed_AS / (MemTotal + SwapTotal).

Averages, as `sar -f`: rates over the whole span (sum of deltas / sum of seconds, skipping a
pair whose counter was reset), memory columns the mean of the rows shown.

All deltas and rates come from model.series (the one place counters are subtracted), which
flags a counter that went backwards; such a column is a gap (None) with a note, never a negative
or huge rate. A reboot or another host between two snapshots (series.find_break) gives no rates.

Views return data: text lives in render/sar_text.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..model.series import CounterSeries, Series, find_break
from ..model.snapshot import Missing, Snapshot

SOURCES = ("meminfo", "vmstat", "uptime")

PAGING_COLUMNS = ("pgpgin/s", "pgpgout/s", "fault/s", "majflt/s", "pgfree/s", "pgscank/s",
                  "pgscand/s", "pgsteal/s", "%vmeff")
MEMORY_COLUMNS = ("kbmemfree", "kbavail", "kbmemused", "%memused", "kbbuffers", "kbcached",
                  "kbcommit", "%commit", "kbactive", "kbinact", "kbdirty")

# rate column -> what the delta is made of (resolved per kernel by paging_counters)
_SIMPLE = {"pgpgin/s": "pgpgin", "pgpgout/s": "pgpgout", "fault/s": "pgfault",
           "majflt/s": "pgmajfault", "pgfree/s": "pgfree"}


def paging_counters(counters: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """Which /proc/vmstat counters make each sar -B column on the kernel that wrote `counters`.

    Also "pgscan_all": pgscan_anon + pgscan_file, the scan count that matches pgsteal_anon/_file.
    A column whose counters the kernel does not have maps to () (shown as absent)."""
    names = set(counters)

    def have(*ns: str) -> tuple[str, ...]:
        return tuple(n for n in ns if n in names)

    out = {col: have(n) for col, n in _SIMPLE.items()}
    zones_k = sorted(n for n in names if n.startswith("pgscan_kswapd_"))
    zones_d = sorted(n for n in names if n.startswith("pgscan_direct_") and n != "pgscan_direct_throttle")
    out["pgscank/s"] = have("pgscan_kswapd") or tuple(zones_k)
    out["pgscand/s"] = have("pgscan_direct") or tuple(zones_d)
    if {"pgsteal_anon", "pgsteal_file"} <= names:
        out["pgsteal/s"] = ("pgsteal_anon", "pgsteal_file")
    elif "pgsteal_kswapd" in names or "pgsteal_direct" in names:
        out["pgsteal/s"] = have("pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged",
                                "pgsteal_proactive")
    else:  # < 4.8: pgsteal_kswapd_<zone>, pgsteal_direct_<zone>, or 2.6's pgsteal_<zone>
        out["pgsteal/s"] = tuple(sorted(n for n in names if n.startswith("pgsteal_")))
    out["pgscan_all"] = ("pgscan_anon", "pgscan_file") if {"pgscan_anon", "pgscan_file"} <= names else ()
    return out


@dataclass(frozen=True)
class SarRow:
    """One line of sar output: the later snapshot's time and the column values.

    values: column -> number or None (absent on this kernel, or a counter reset: see resets).
    deltas/seconds (sar -B): the counter changes behind the rates, kept for the Average line.
    raw (sar -r): the meminfo values (kB) behind the columns, kept for the Average line."""

    time: str
    taken_at: float | None
    seconds: float | None
    values: dict[str, float | None]
    deltas: dict[str, float | None] = field(default_factory=dict)
    raw: dict[str, int | None] = field(default_factory=dict)
    resets: tuple[str, ...] = ()  # vmstat counters that went backwards in this window
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SarReport:
    mode: str  # "B" or "r"
    columns: tuple[str, ...]
    header: str  # sar's first line: kernel, host, date, CPUs
    rows: tuple[SarRow, ...]
    average: SarRow | None
    notes: tuple[str, ...] = ()
    unavailable: tuple[Missing, ...] = ()


def _local(t) -> time.struct_time | None:
    """time.localtime(t), or None for a value that is not a time (NaN, inf, -1e18 from a crafted
    capture or sample: localtime raises on them). Captures are checked when opened; this guards
    every other way a timestamp arrives."""
    try:
        return time.localtime(t) if t is not None and math.isfinite(t) else None
    except (OverflowError, OSError, ValueError, TypeError):
        return None


def clock(snap: Snapshot) -> str:
    """HH:MM:SS (local time) of a snapshot, as sar prints it; uptime when no wall clock."""
    local = _local(snap.taken_at)
    if local is not None:
        return time.strftime("%H:%M:%S", local)
    if snap.uptime_s is not None and math.isfinite(snap.uptime_s):
        return f"up+{snap.uptime_s:.0f}s"
    return "--:--:--"


def header_line(snap: Snapshot) -> str:
    h = snap.host
    local = _local(snap.taken_at) if snap.taken_at else None
    date = time.strftime("%m/%d/%y", local) if local is not None else "-"
    cpus = f"({h.cpus} CPU)" if h.cpus else ""
    return f"Linux {h.kernel or '?'} ({h.hostname or '?'}) \t{date} \t{cpus}".rstrip()


def _vm_value(name: str):
    def read(s: Snapshot):
        vm = s.get("vmstat")
        return None if vm is None else vm.counters.get(name)
    read.__name__ = name
    return read


def _sum_deltas(series: dict[str, CounterSeries], names: Sequence[str], i: int) -> float | None:
    """The sum of the counters' deltas over interval i; None when any is absent or reset."""
    if not names:
        return None
    total = 0.0
    for n in names:
        d = series[n].deltas[i]
        if d is None:
            return None
        total += d
    return total


def _vmeff(steal: float | None, scan: float | None) -> float | None:
    if steal is None or scan is None:
        return None
    return 100.0 * steal / scan if scan else 0.0


def paging_rows(snapshots: Sequence[Snapshot]) -> list[SarRow]:
    """sar -B for each consecutive pair of snapshots (len(snapshots) - 1 rows).

    Deltas come from model.series, one CounterSeries per /proc/vmstat counter a column is made
    of (which counters: paging_counters, per kernel, from the later snapshot of each pair)."""
    snaps = list(snapshots)
    if len(snaps) < 2:
        return []
    ser = Series(snaps)  # not Series.of: a reboot inside is shown as a row with no rates
    comps = []
    names: dict[str, None] = {}
    for s in snaps[1:]:
        vm = s.get("vmstat")
        comp = paging_counters(vm.counters) if vm is not None else {}
        comps.append(comp)
        for ns in comp.values():
            names.update(dict.fromkeys(ns))
    series = {n: ser.derived_counter(n, _vm_value(n)) for n in names}
    rows = []
    for i, (first, last) in enumerate(zip(snaps, snaps[1:])):
        secs = ser.seconds_per_interval[i]
        values: dict[str, float | None] = {c: None for c in PAGING_COLUMNS}
        if first.get("vmstat") is None or last.get("vmstat") is None:
            rows.append(SarRow(clock(last), last.taken_at, secs, values, notes=("vmstat unavailable",)))
            continue
        comp = comps[i]
        notes: list[str] = []
        brk = find_break(first, last)
        deltas: dict[str, float | None] = {}
        resets: tuple[str, ...] = ()
        if brk is not None:
            notes.append(f"{brk[1]} between these snapshots: no rates")
            deltas = {col: None for col in comp}
        else:
            deltas = {col: _sum_deltas(series, ns, i) for col, ns in comp.items()}
            resets = tuple(n for n in dict.fromkeys(x for ns in comp.values() for x in ns)
                           if i in series[n].resets)
            if secs is None:
                notes.append("snapshots have no time between them: no rates")
            else:
                for col in PAGING_COLUMNS[:-1]:
                    d = deltas.get(col)
                    values[col] = None if d is None else d / secs
                values["%vmeff"] = _vmeff(deltas.get("pgsteal/s"),
                                          _add(deltas.get("pgscank/s"), deltas.get("pgscand/s")))
        if resets:
            notes.append("counter reset (went backwards): " + ", ".join(resets) + "; gap, no rate")
        v = values["%vmeff"]
        if v is not None and v > 100:
            notes.append(f"%vmeff {v:.0f} > 100: pgsteal_anon/_file also count cgroup-limit, "
                         "khugepaged and proactive reclaim, which pgscan_kswapd/_direct leave out")
        rows.append(SarRow(clock(last), last.taken_at, secs, values, deltas, resets=resets,
                           notes=tuple(notes)))
    return rows


def paging_row(first: Snapshot, last: Snapshot) -> SarRow:
    """sar -B for one pair of snapshots."""
    return paging_rows([first, last])[0]


def _add(a: float | None, b: float | None) -> float | None:
    if a is None and b is None:
        return None
    return (a or 0.0) + (b or 0.0)


def vmeff_all(row: SarRow) -> float | None:
    """pgsteal / (pgscan_anon + pgscan_file): like-for-like reclaim efficiency (kernel >= 5.x)."""
    return _vmeff(row.deltas.get("pgsteal/s"), row.deltas.get("pgscan_all"))


def paging_average(rows: Sequence[SarRow]) -> SarRow | None:
    """sar's Average line for -B: each rate over the whole span of the pairs that have it."""
    if not rows:
        return None
    values: dict[str, float | None] = {}
    deltas: dict[str, float | None] = {}
    for col in list(PAGING_COLUMNS[:-1]) + ["pgscan_all"]:
        pairs = [(r.deltas[col], r.seconds) for r in rows
                 if r.deltas.get(col) is not None and r.seconds]
        d = sum(p[0] for p in pairs) if pairs else None
        s = sum(p[1] for p in pairs) if pairs else 0.0
        deltas[col] = d
        if col in PAGING_COLUMNS:
            values[col] = d / s if d is not None and s > 0 else None
    values["%vmeff"] = _vmeff(deltas.get("pgsteal/s"), _add(deltas.get("pgscank/s"), deltas.get("pgscand/s")))
    secs = sum(r.seconds or 0.0 for r in rows)
    return SarRow("Average:", None, secs, values, deltas)


def memory_row(snap: Snapshot, legacy: bool = False) -> SarRow:
    """sar -r for one snapshot (sar shows the later snapshot of each interval)."""
    mi = snap.get("meminfo")
    keys = ("mem_total_kb", "mem_free_kb", "mem_available_kb", "buffers_kb", "cached_kb", "slab_kb",
            "committed_as_kb", "swap_total_kb", "active_kb", "inactive_kb", "dirty_kb")
    raw = {k: (getattr(mi, k) if mi is not None else None) for k in keys}
    notes = () if mi is not None else ("meminfo unavailable",)
    if mi is not None and not legacy and raw["mem_available_kb"] is None:
        notes = ("no MemAvailable (kernel before 3.14): kbmemused by the legacy formula",)
    return SarRow(clock(snap), snap.taken_at, None, memory_values(raw, legacy), raw=raw, notes=notes)


def memory_values(raw: dict[str, float | None], legacy: bool = False) -> dict[str, float | None]:
    """The sar -r columns from meminfo values (kB), as pr_stats.c computes them: kbmemused =
    MemTotal - MemAvailable (sysstat 12.7.8+), or with legacy MemTotal - MemFree - Buffers -
    Cached - Slab (floored at 0; sysstat 12.0-12.7.7, Debian 12's 12.6.1)."""
    total = raw.get("mem_total_kb")
    avail = raw.get("mem_available_kb")
    parts = [raw.get(k) for k in ("mem_free_kb", "buffers_kb", "cached_kb", "slab_kb")]
    used = pct_used = None
    if total is not None and not legacy and avail is not None:
        used = max(total - avail, 0)
        pct_used = 100.0 * used / total if total else 0.0
    elif total is not None and None not in parts:
        nouse = min(sum(parts), total)
        used = total - nouse
        pct_used = 100.0 * used / total if total else 0.0
    commit = raw.get("committed_as_kb")
    swap = raw.get("swap_total_kb")
    pct_commit = None
    if commit is not None and total is not None:
        denom = total + (swap or 0)
        pct_commit = 100.0 * commit / denom if denom else 0.0
    return {
        "kbmemfree": raw.get("mem_free_kb"), "kbavail": raw.get("mem_available_kb"),
        "kbmemused": used, "%memused": pct_used, "kbbuffers": raw.get("buffers_kb"),
        "kbcached": raw.get("cached_kb"), "kbcommit": commit, "%commit": pct_commit,
        "kbactive": raw.get("active_kb"), "kbinact": raw.get("inactive_kb"),
        "kbdirty": raw.get("dirty_kb"),
    }


def memory_average(rows: Sequence[SarRow], legacy: bool = False) -> SarRow | None:
    """sar's Average line for -r: the mean of each meminfo value over the rows, then the columns."""
    if not rows:
        return None
    avg: dict[str, float | None] = {}
    for k in rows[0].raw:
        vals = [r.raw.get(k) for r in rows if r.raw.get(k) is not None]
        avg[k] = sum(vals) / len(vals) if vals else None
    return SarRow("Average:", None, None, memory_values(avg, legacy), raw=avg)


class SarStream:
    """sar tables built one snapshot at a time, live or replayed: `add(snap)` returns the rows
    the new snapshot completes (mode -> row; nothing for the first snapshot), `reports()` the
    tables so far with their Average lines. Only the previous snapshot is kept, so a live run
    until Ctrl-C does not grow."""

    def __init__(self, modes: Sequence[str], legacy: bool = False):
        bad = [m for m in modes if m not in ("B", "r")]
        if bad or not modes:
            raise ValueError(f"modes must be 'B' and/or 'r', not {list(modes)!r}")
        self.modes = tuple(modes)
        self.legacy = legacy  # sar -r kbmemused by sysstat < 12.7.8's formula
        self.first: Snapshot | None = None
        self.prev: Snapshot | None = None
        self.count = 0
        self.rows: dict[str, list[SarRow]] = {m: [] for m in self.modes}
        self._missing: dict[str, dict[str, Missing]] = {m: {} for m in self.modes}

    def add(self, snap: Snapshot) -> dict[str, SarRow]:
        self.count += 1
        for m in self.modes:
            name = "vmstat" if m == "B" else "meminfo"
            miss = snap.missing(name)
            if miss is not None:
                self._missing[m].setdefault(name, miss)
        prev, self.prev = self.prev, snap
        if prev is None:
            self.first = snap
            return {}
        new = {}
        for m in self.modes:
            row = paging_row(prev, snap) if m == "B" else memory_row(snap, self.legacy)
            self.rows[m].append(row)
            new[m] = row
        return new

    def reports(self) -> list[SarReport]:
        out = []
        for m in self.modes:
            rows = self.rows[m]
            avg = paging_average(rows) if m == "B" else memory_average(rows, self.legacy)
            notes = () if self.count >= 2 else (
                f"{self.count} snapshot(s): sar needs at least two to show a row",)
            out.append(SarReport(m, PAGING_COLUMNS if m == "B" else MEMORY_COLUMNS,
                                 header_line(self.first) if self.first is not None else "",
                                 tuple(rows), avg, notes, tuple(self._missing[m].values())))
        return out


def report(snapshots: Iterable[Snapshot], mode: str, legacy: bool = False) -> SarReport:
    """The whole sar table for consecutive snapshots: one row per pair, then the Average."""
    if mode not in ("B", "r"):
        raise ValueError(f"mode must be 'B' or 'r', not {mode!r}")
    st = SarStream([mode], legacy)
    for s in snapshots:
        st.add(s)
    return st.reports()[0]


def mem_total_kb(snap: Snapshot | None) -> int | None:
    """MemTotal of a snapshot (kB): how wide sar -r's kb columns must be."""
    mi = snap.get("meminfo") if snap is not None else None
    return mi.mem_total_kb if mi is not None and mi.mem_total_kb else None


__all__ = ["PAGING_COLUMNS", "MEMORY_COLUMNS", "SOURCES", "SarRow", "SarReport", "paging_counters",
           "paging_row", "paging_rows", "paging_average", "memory_row", "memory_values",
           "memory_average", "report", "SarStream", "mem_total_kb", "vmeff_all", "clock",
           "header_line"]
