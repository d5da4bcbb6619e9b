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
  kbmemused = MemTotal - (MemFree + Buffers + Cached + Slab), floored at 0. This is sysstat 12's
  definition (pr_stats.c `nousedmem`); it is neither MemTotal - MemFree (sysstat 11 and PCP's
  mem.util.used) nor MemTotal - MemAvailable (gopsutil).
  %memused = 100 * kbmemused / MemTotal; %commit = 100 * Committed_AS / (MemTotal + SwapTotal).

Averages, as `sar -f`: rates over the whole span (sum of deltas / sum of seconds, skipping a
pair whose counter was reset), memory columns the mean of the rows shown.

All rates come from model.rates.Window, which flags a counter that went backwards; such a
column is a gap (None) with a note, never a negative or huge rate.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..model.rates import Window
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


def clock(snap: Snapshot) -> str:
    """HH:MM:SS (local time) of a snapshot, as sar prints it; uptime when no wall clock."""
    if snap.taken_at is not None:
        return time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
    if snap.uptime_s is not None:
        return f"up+{snap.uptime_s:.0f}s"
    return "--:--:--"


def header_line(snap: Snapshot) -> str:
    h = snap.host
    date = time.strftime("%m/%d/%y", time.localtime(snap.taken_at)) if snap.taken_at else "-"
    cpus = f"({h.cpus} CPU)" if h.cpus else ""
    return f"Linux {h.kernel or '?'} ({h.hostname or '?'}) \t{date} \t{cpus}".rstrip()


def _sum_deltas(w: Window, names: Sequence[str]) -> float | None:
    if not names:
        return None
    total = 0.0
    for n in names:
        d = w.delta("vmstat", ("counters", n))
        if d is None:
            return None
        total += d
    return total


def _vmeff(steal: float | None, scan: float | None) -> float | None:
    if steal is None or scan is None:
        return None
    return 100.0 * steal / scan if scan else 0.0


def paging_row(first: Snapshot, last: Snapshot) -> SarRow:
    """sar -B for one pair of snapshots."""
    w = Window(first, last)
    secs = w.seconds
    vm = last.get("vmstat")
    vm0 = first.get("vmstat")
    values: dict[str, float | None] = {c: None for c in PAGING_COLUMNS}
    deltas: dict[str, float | None] = {}
    notes: list[str] = []
    if vm is None or vm0 is None:
        return SarRow(clock(last), last.taken_at, secs or None, values, notes=("vmstat unavailable",))
    comp = paging_counters(vm.counters)
    for col, names in comp.items():
        deltas[col] = _sum_deltas(w, names)
    if w.rebooted:
        notes.append("the machine rebooted between these snapshots: no rates")
    elif secs <= 0:
        notes.append("snapshots have no time between them: no rates")
    else:
        for col in PAGING_COLUMNS[:-1]:
            d = deltas.get(col)
            values[col] = None if d is None else d / secs
    scan = _add(deltas.get("pgscank/s"), deltas.get("pgscand/s"))
    values["%vmeff"] = _vmeff(deltas.get("pgsteal/s"), scan) if secs > 0 and not w.rebooted else None
    resets = tuple(p.split(".", 1)[1] if "." in p else p for s, p in w.resets if s == "vmstat")
    if resets:
        notes.append("counter reset (went backwards): " + ", ".join(resets) + "; gap, no rate")
    v = values["%vmeff"]
    if v is not None and v > 100:
        notes.append(f"%vmeff {v:.0f} > 100: pgsteal_anon/_file also count cgroup-limit, khugepaged "
                     "and proactive reclaim, which pgscan_kswapd/_direct leave out")
    return SarRow(clock(last), last.taken_at, secs, values, deltas, resets=resets, notes=tuple(notes))


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


def memory_row(snap: Snapshot) -> SarRow:
    """sar -r for one snapshot (sar shows the later snapshot of each interval)."""
    mi = snap.get("meminfo")
    keys = ("mem_total_kb", "mem_free_kb", "mem_available_kb", "buffers_kb", "cached_kb", "slab_kb",
            "committed_as_kb", "swap_total_kb", "active_kb", "inactive_kb", "dirty_kb")
    raw = {k: (getattr(mi, k) if mi is not None else None) for k in keys}
    notes = () if mi is not None else ("meminfo unavailable",)
    return SarRow(clock(snap), snap.taken_at, None, memory_values(raw), raw=raw, notes=notes)


def memory_values(raw: dict[str, float | None]) -> dict[str, float | None]:
    """The sar -r columns from meminfo values (kB), as pr_stats.c computes them."""
    total = raw.get("mem_total_kb")
    parts = [raw.get(k) for k in ("mem_free_kb", "buffers_kb", "cached_kb", "slab_kb")]
    used = pct_used = None
    if total is not None and None not in parts:
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


def memory_average(rows: Sequence[SarRow]) -> SarRow | None:
    """sar's Average line for -r: the mean of each meminfo value over the rows, then the columns."""
    if not rows:
        return None
    avg: dict[str, float | None] = {}
    for k in rows[0].raw:
        vals = [r.raw.get(k) for r in rows if r.raw.get(k) is not None]
        avg[k] = sum(vals) / len(vals) if vals else None
    return SarRow("Average:", None, None, memory_values(avg), raw=avg)


def report(snapshots: Iterable[Snapshot], mode: str) -> SarReport:
    """The whole sar table for consecutive snapshots: one row per pair, then the Average."""
    if mode not in ("B", "r"):
        raise ValueError(f"mode must be 'B' or 'r', not {mode!r}")
    snaps = list(snapshots)
    rows: list[SarRow] = []
    for a, b in zip(snaps, snaps[1:]):
        rows.append(paging_row(a, b) if mode == "B" else memory_row(b))
    avg = (paging_average if mode == "B" else memory_average)(rows)
    notes: list[str] = []
    if len(snaps) < 2:
        notes.append(f"{len(snaps)} snapshot(s): sar needs at least two to show a row")
    unavailable = _unavailable(snaps, ("vmstat",) if mode == "B" else ("meminfo",))
    return SarReport(mode, PAGING_COLUMNS if mode == "B" else MEMORY_COLUMNS,
                     header_line(snaps[-1]) if snaps else "", tuple(rows), avg, tuple(notes),
                     unavailable)


def _unavailable(snaps: Sequence[Snapshot], names: Sequence[str]) -> tuple[Missing, ...]:
    seen: dict[str, Missing] = {}
    for s in snaps:
        for n in names:
            m = s.missing(n)
            if m is not None and n not in seen:
                seen[n] = m
    return tuple(seen.values())


__all__ = ["PAGING_COLUMNS", "MEMORY_COLUMNS", "SOURCES", "SarRow", "SarReport", "paging_counters",
           "paging_row", "paging_average", "memory_row", "memory_values", "memory_average",
           "report", "vmeff_all", "clock", "header_line"]
