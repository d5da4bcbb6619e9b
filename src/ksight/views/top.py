"""`ksight top`: processes by memory, with top's memory columns as top computes them.

  VIRT RES SHR CODE DATA  /proc/PID/statm (size, resident, shared, text, data) x page size, in
                          KiB: what top (procps library, PIDS_MEM_*) reads. statm is asked for
                          in the plan (the default scan gets the same counters from status).
  %MEM                    RES / MemTotal (meminfo) x 100, as top
  SWAP                    VmSwap from status (top's SWAP field since procps 3.3.x)
  VMAs                    the lines of /proc/PID/maps: the number of mappings (vm.max_map_count
                          is the ceiling): read only for the processes shown
  OOM ADJ                 oom_score and oom_score_adj: the OOM killer's pick order

Sorted by one of SORT_KEYS, largest first; ties by PID. Views return data (render/top_text.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Unavailable
from ..fs import Root
from ..model.snapshot import Snapshot
from ..sources.proc_pid import maps as _maps

PARTS = ("stat", "statm", "status", "oom")
SOURCES = ("meminfo",)
SORT_KEYS = {"rss": "res_kb", "virt": "virt_kb", "shr": "shr_kb", "swap": "swap_kb",
             "oom": "oom_score"}


@dataclass(frozen=True)
class TopRow:
    pid: int
    uid: int | None
    command: str
    state: str | None
    virt_kb: int | None
    res_kb: int | None
    shr_kb: int | None
    code_kb: int | None
    data_kb: int | None
    mem_pct: float | None
    swap_kb: int | None
    vmas: int | None
    oom_score: int | None
    oom_score_adj: int | None
    kernel_thread: bool | None


@dataclass(frozen=True)
class TopReport:
    sort: str
    rows: tuple[TopRow, ...]
    processes: int  # in the table before cutting to N
    mem_total_kb: int | None
    notes: tuple[str, ...] = ()


def row(p, mem_total_kb: int | None) -> TopRow:
    st = p.status
    res = p.res_kb
    mem = 100.0 * res / mem_total_kb if res is not None and mem_total_kb else None
    return TopRow(p.pid, st.uid[0] if st is not None and st.uid else None, p.comm or "?",
                  p.stat.state if p.stat is not None else None, p.virt_kb, res, p.shr_kb,
                  p.code_kb, p.data_kb, mem,
                  st.vm_swap_kb if st is not None else None, None,
                  p.oom.score if p.oom is not None else None,
                  p.oom.score_adj if p.oom is not None else None, p.kernel_thread)


def build(snap: Snapshot, root: Root | None, *, sort: str = "rss", n: int = 20) -> TopReport:
    """The N processes with the most `sort`, and the VMA count of those N read from root
    (None: not read; a capture that lacks proc/PID/maps leaves the column empty, with a note)."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}")
    mi = snap.get("meminfo")
    total = mi.mem_total_kb if mi is not None else None
    rows = [row(p, total) for p in (snap.processes or {}).values()]
    attr = SORT_KEYS[sort]
    rows.sort(key=lambda r: (-(getattr(r, attr) if getattr(r, attr) is not None else -1), r.pid))
    shown = rows[:n]
    notes = []
    if root is not None:
        missing = 0
        out = []
        for r in shown:
            try:
                v = 0 if r.kernel_thread else _maps.read_count(root, r.pid)
            except Unavailable:
                v = None
                missing += 1
            out.append(_replace(r, vmas=v))
        shown = out
        if missing:
            notes.append(f"VMAs: proc/PID/maps unreadable for {missing} of {len(shown)} processes")
    if total is None:
        notes.append("%MEM: no MemTotal (meminfo unavailable)")
    return TopReport(sort, tuple(shown), len(rows), total, tuple(notes))


def _replace(r: TopRow, **kw) -> TopRow:
    import dataclasses

    return dataclasses.replace(r, **kw)


__all__ = ["TopRow", "TopReport", "build", "row", "PARTS", "SOURCES", "SORT_KEYS"]
