"""`ksight top`: processes by memory, with top's memory columns as top computes them.

  VIRT RES SHR CODE DATA  /proc/PID/statm (size, resident, shared, text, data) x page size, in
                          KiB: what top (procps library, PIDS_MEM_*) reads. statm is asked for
                          in the plan (the default scan gets the same counters from status).
  %MEM                    RES / MemTotal (meminfo) x 100, as top
  SWAP                    VmSwap from status (top's SWAP field since procps 3.3.x)
  VMAs                    the lines of /proc/PID/maps: the number of mappings (vm.max_map_count
                          is the ceiling): the part "maps" of the process table, read only for
                          the processes shown (a plan.Few ranked by the sort key)
  OOM ADJ                 oom_score and oom_score_adj: the OOM killer's pick order

Sorted by one of SORT_KEYS, largest first; ties by PID. Views return data (render/top_text.py).
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..model.snapshot import Snapshot

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


def needs(sort: str = "rss", n: int = 20):
    """What top asks the collector for: the parts of every process, and maps (the VMA count)
    for the n it shows, picked by the same order (collect.plan.Few ranks as build sorts)."""
    from ..collect.plan import Few, Needs

    return Needs(sources=SOURCES, processes=PARTS, few=(Few(("maps",), n, sort),), window=False)


def build(snap: Snapshot, *, sort: str = "rss", n: int = 20) -> TopReport:
    """The N processes with the most `sort`, with the VMA count of those whose maps the snapshot
    holds (the plan of `needs`; None: not read, with a note saying for how many and why)."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}")
    mi = snap.get("meminfo")
    total = mi.mem_total_kb if mi is not None else None
    procs = snap.processes or {}
    rows = [row(p, total) for p in procs.values()]
    attr = SORT_KEYS[sort]
    rows.sort(key=lambda r: (-(getattr(r, attr) if getattr(r, attr) is not None else -1), r.pid))
    shown = rows[:n]
    notes = []
    out = []
    why: dict[str, int] = {}
    for r in shown:
        p = procs[r.pid]
        if p.maps is not None:
            v = len(p.maps.regions)
        else:
            v = None
            reason = next((m.partition(": ")[2] for m in p.missing if m.startswith("maps:")),
                          "not read")
            why[reason] = why.get(reason, 0) + 1
        out.append(_replace(r, vmas=v))
    shown = out
    for reason, k in why.items():
        notes.append(f"VMAs: proc/PID/maps unreadable for {k} of {len(shown)} processes ({reason})")
    if total is None:
        notes.append("%MEM: no MemTotal (meminfo unavailable)")
    return TopReport(sort, tuple(shown), len(rows), total, tuple(notes))


def _replace(r: TopRow, **kw) -> TopRow:
    import dataclasses

    return dataclasses.replace(r, **kw)


__all__ = ["TopRow", "TopReport", "build", "needs", "row", "PARTS", "SOURCES", "SORT_KEYS"]
