"""sysstat's `pidstat -r`: minor and major page faults per second, VSZ, RSS and %MEM per process.

The numbers are pidstat's (sysstat pidstat.c, read_proc_pid_stat and
write_plain_pid_task_memory_*) for the same two /proc samples:
  UID        the real UID (status Uid, first field)
  minflt/s   delta of stat minflt (field 10) / the interval's seconds
  majflt/s   delta of stat majflt (field 12) / seconds
  VSZ        stat vsize (bytes) >> 10, kB, of the later sample
  RSS        stat rss (pages) x page size, kB, of the later sample
  %MEM       RSS / MemTotal x 100
  Command    comm
Which processes a row is printed for: with -p, those PIDs in every interval; without, the
"active" ones, as pidstat: minflt or majflt moved, or VSZ or RSS changed, over the interval.
Average (as pidstat's Average lines): rates over the whole span the process was seen (sum of its
deltas / sum of those intervals' seconds); VSZ and RSS the mean of the values at the end of each
interval the process existed; %MEM from that mean RSS.

Per-interval deltas and rates come from model.series, per process key (pid, start time): a PID
reused by another process between two samples is a new process (no row for that interval), never
a difference of two processes' counters. pidstat's clock is /proc/uptime; ksight's is the
snapshot clock (CLOCK_MONOTONIC live, uptime from a capture): the same interval within
a few ms.

Views return data: text lives in render/pidstat_text.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..model.series import Series
from ..model.snapshot import Snapshot

SOURCES = ("meminfo", "uptime")
PARTS = ("stat", "status")
COLUMNS = ("UID", "PID", "minflt/s", "majflt/s", "VSZ", "RSS", "%MEM", "Command")


@dataclass(frozen=True)
class PidstatRow:
    time: str
    uid: int | None
    pid: int
    minflt_per_s: float | None
    majflt_per_s: float | None
    vsz_kb: float | None
    rss_kb: float | None
    mem_pct: float | None
    command: str
    start_ticks: int | None = None  # the process key's start time (tells reused PIDs apart)


def _minflt(p):
    return p.stat.minflt_total


def _majflt(p):
    return p.stat.majflt_total


def vsz_kb(p) -> int | None:
    return p.stat.vsize_bytes >> 10 if p.stat is not None else None


def rss_kb(p) -> int | None:
    return p.stat.rss_pages * p.page_size // 1024 if p.stat is not None else None


def _uid(p) -> int | None:
    st = p.status
    return st.uid[0] if st is not None and st.uid else None


def _mem_total(s: Snapshot) -> int | None:
    mi = s.get("meminfo")
    return mi.mem_total_kb if mi is not None else None


def _pct(rss, total) -> float | None:
    return 100.0 * rss / total if rss is not None and total else None


class PidstatStream:
    """Feed snapshots one at a time; each `add` returns the rows of the new interval."""

    def __init__(self, pids: Iterable[int] | None = None, clock=None):
        self.pids = None if pids is None else frozenset(pids)
        self.prev: Snapshot | None = None
        self.clock = clock or (lambda s: "")
        # key -> accumulators for the Average lines
        self.acc: dict = {}
        self.total_kb: int | None = None
        self.intervals = 0

    def add(self, snap: Snapshot) -> list[PidstatRow]:
        prev, self.prev = self.prev, snap
        self.total_kb = _mem_total(snap) or self.total_kb
        if prev is None:
            return []
        self.intervals += 1
        ser = Series([prev, snap])
        secs = ser.seconds_per_interval[0]
        minf = ser.entity_counters("processes", _minflt, "minflt")
        majf = ser.entity_counters("processes", _majflt, "majflt")
        before, after = ser.entities("processes")
        rows = []
        for key, p in after.items():
            if self.pids is not None and key[0] not in self.pids:
                continue
            q = before.get(key)
            if q is None or p.stat is None:
                continue  # new in this interval (or a reused PID): no rate yet
            dmin = minf[key].deltas[0] if key in minf else None
            dmaj = majf[key].deltas[0] if key in majf else None
            v, r = vsz_kb(p), rss_kb(p)
            a = self.acc.setdefault(key, {"dmin": 0.0, "dmaj": 0.0, "secs": 0.0, "vsz": 0.0,
                                          "rss": 0.0, "n": 0, "active": False, "p": p})
            a["p"] = p
            a["vsz"] += v or 0
            a["rss"] += r or 0
            a["n"] += 1
            if dmin is not None and dmaj is not None and secs:
                a["dmin"] += dmin
                a["dmaj"] += dmaj
                a["secs"] += secs
            active = bool(dmin) or bool(dmaj) or v != vsz_kb(q) or r != rss_kb(q)
            a["active"] = a["active"] or active
            if self.pids is None and not active:
                continue
            rows.append(PidstatRow(
                self.clock(snap), _uid(p), key[0],
                dmin / secs if dmin is not None and secs else None,
                dmaj / secs if dmaj is not None and secs else None,
                v, r, _pct(r, self.total_kb), p.comm or "?", key[1]))
        rows.sort(key=lambda x: x.pid)
        return rows

    def average(self) -> list[PidstatRow]:
        out = []
        for key, a in sorted(self.acc.items(), key=lambda kv: kv[0][0]):
            if self.pids is None and not a["active"]:
                continue
            p, n = a["p"], a["n"]
            rss = a["rss"] / n if n else None
            out.append(PidstatRow(
                "Average:", _uid(p), key[0],
                a["dmin"] / a["secs"] if a["secs"] else None,
                a["dmaj"] / a["secs"] if a["secs"] else None,
                a["vsz"] / n if n else None, rss, _pct(rss, self.total_kb), p.comm or "?",
                key[1]))
        return out


def rows(snapshots: Iterable[Snapshot], pids: Iterable[int] | None = None):
    """Every interval's rows and the Average rows of a list of snapshots."""
    st = PidstatStream(pids)
    per = [st.add(s) for s in snapshots][1:]
    return per, st.average()


__all__ = ["PidstatRow", "PidstatStream", "rows", "COLUMNS", "SOURCES", "PARTS", "vsz_kb", "rss_kb"]
