"""reclaim: who stalls in direct and memory-cgroup reclaim, for how long, in which cgroup.

tracefs: begin/end pairs per thread give the stall; the memory cgroup of each thread is the
one it was in at its first stall. A thread that exits before the reader looks at it (the
reader polls every 0.1 s; a process reading through a small cgroup can be done in less) is
found through the kernel's own record: cgroup:cgroup_attach_task (a process moved into the
cgroup, kernel-side filter on the memory hierarchy) and sched:sched_process_fork (a child
starts in its parent's cgroup).
bpftrace: the same stalls aggregated in the kernel (histograms per kind and thread).
"""

from __future__ import annotations

import os
from collections import Counter
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .base import BpftraceBackend, Lineage, Recipe, RecipeResult, log2_bucket, memory_hierarchy

KINDS = ("direct", "memcg")
_ATTACH = "cgroup:cgroup_attach_task"
_FORK = "sched:sched_process_fork"


@dataclass(frozen=True)
class ReclaimStalls:
    """Stalls of one thread in one kind of reclaim."""
    pid: int
    comm: str
    kind: str                     # direct | memcg
    cgroup: str | None            # memory cgroup path; None: not found
    stalls: int
    total_usec: float
    max_usec: float
    reclaimed_pages: int
    hist: dict[int, int]          # log2 bucket upper bound (usec) -> stalls


@dataclass(frozen=True)
class CgroupReclaim:
    cgroup: str | None
    kind: str
    stalls: int
    total_usec: float
    max_usec: float
    reclaimed_pages: int
    hist: dict[int, int]


@dataclass(frozen=True)
class KswapdWaker:
    pid: int
    comm: str
    wakeups: int


@dataclass(frozen=True, kw_only=True)
class ReclaimResult(RecipeResult):
    histogram_usec: dict[str, dict[int, int]]     # kind -> log2 bucket upper bound -> stalls
    processes: tuple[ReclaimStalls, ...]
    cgroups: tuple[CgroupReclaim, ...]
    kswapd_wakeups: tuple[KswapdWaker, ...]
    in_progress_at_end: int
    histogram: dict[str, list] | None = None      # bpftrace: its own buckets (min, max, count)
    histogram_unit: str | None = None
    program: str | None = None                    # bpftrace: the program that ran


class _Acc:
    __slots__ = ("stalls", "total_usec", "max_usec", "reclaimed_pages", "hist", "first_ts")

    def __init__(self, first_ts=None):
        self.stalls, self.total_usec, self.max_usec, self.reclaimed_pages = 0, 0.0, 0.0, 0
        self.hist: Counter = Counter()
        self.first_ts = first_ts


def by_cgroup(procs: list[ReclaimStalls]) -> tuple[CgroupReclaim, ...]:
    """Per (cgroup, kind): the sum of its threads' stalls (histograms added bucket by bucket)."""
    cgs: dict = {}
    for p in procs:
        c = cgs.setdefault((p.cgroup, p.kind), _Acc())
        c.stalls += p.stalls
        c.total_usec += p.total_usec
        c.max_usec = max(c.max_usec, p.max_usec)
        c.reclaimed_pages += p.reclaimed_pages
        c.hist.update(p.hist)
    out = [CgroupReclaim(cg, kind, a.stalls, a.total_usec, a.max_usec, a.reclaimed_pages,
                         dict(sorted(a.hist.items())))
           for (cg, kind), a in cgs.items()]
    return tuple(sorted(out, key=lambda c: -c.total_usec))


class Reclaim(BpftraceBackend, Recipe):
    name = "reclaim"
    question = "direct and memory-cgroup reclaim"
    events = ("vmscan:mm_vmscan_direct_reclaim_begin", "vmscan:mm_vmscan_direct_reclaim_end",
              "vmscan:mm_vmscan_memcg_reclaim_begin", "vmscan:mm_vmscan_memcg_reclaim_end",
              "vmscan:mm_vmscan_wakeup_kswapd", _ATTACH, _FORK)
    overhead = ("low: events fire only when an allocation stalls in reclaim (the stall itself "
                "costs far more than the event), plus one event per fork and per move into a "
                "memory cgroup (to name the cgroup of threads that exit quickly)")
    bpftrace_overhead = ("low: a few map updates in the kernel per reclaim stall (the stall "
                         "costs far more); only the final histograms leave the kernel, plus one "
                         "line per new thread seen stalling (to name its memory cgroup)")
    Result = ReclaimResult

    def __init__(self, root, backend: str = "tracefs", **opts):
        super().__init__(root, backend, **opts)
        self.lineage = Lineage(self.procs)
        self.begin: dict = {}
        self.acc: dict[tuple[int, str], _Acc] = {}
        self.kswapd: Counter = Counter()

    def filters(self):
        hier = memory_hierarchy(self.root, os.getpid())
        return {_ATTACH: f"dst_root == {hier}"} if hier is not None else {}

    def on_event(self, e) -> None:
        n = e.name
        if n == _FORK:
            self.lineage.on_fork(e.ts, e["parent_pid"], e["child_pid"])
            return
        if n == _ATTACH:
            self.lineage.on_attach(e.ts, e["pid"], e["dst_path"])
            return
        n = n.rsplit(":", 1)[1]
        if n == "mm_vmscan_wakeup_kswapd":
            self.kswapd[e.pid] += 1
            self.lineage.seen(e.pid)
            return
        kind = "memcg" if "memcg" in n else "direct"
        if n.endswith("_begin"):
            self.begin[(e.pid, kind)] = e.ts
            self.lineage.seen(e.pid)
            return
        t0 = self.begin.pop((e.pid, kind), None)
        if t0 is None:
            return  # began before the trace
        usec = (e.ts - t0) / 1000.0
        a = self.acc.get((e.pid, kind))
        if a is None:
            a = self.acc[(e.pid, kind)] = _Acc(t0)
        a.stalls += 1
        a.total_usec += usec
        a.max_usec = max(a.max_usec, usec)
        a.reclaimed_pages += e.get("nr_reclaimed", 0)
        a.hist[log2_bucket(usec)] += 1

    def body(self) -> dict:
        procs = []
        hist: dict[str, Counter] = {}
        for (pid, kind), a in self.acc.items():
            comm = (self.lineage.first_seen.get(pid) or self.procs.get(pid))[0]
            procs.append(ReclaimStalls(pid, comm, kind, self.lineage.memcg(pid, a.first_ts),
                                       a.stalls, a.total_usec, a.max_usec, a.reclaimed_pages,
                                       dict(sorted(a.hist.items()))))
            hist.setdefault(kind, Counter()).update(a.hist)
        procs.sort(key=lambda r: -r.total_usec)
        ksw = tuple(KswapdWaker(p, self.procs.comm(p), n) for p, n in self.kswapd.most_common(20))
        return {"histogram_usec": {k: dict(sorted(v.items())) for k, v in hist.items()},
                "processes": tuple(procs), "cgroups": by_cgroup(procs), "kswapd_wakeups": ksw,
                "in_progress_at_end": len(self.begin)}

    # -- bpftrace backend: latency histograms aggregated in the kernel --------------------
    def bpftrace_program(self) -> str:
        probes = []
        for i, kind in enumerate(KINDS):
            probes.append(f"""
tracepoint:vmscan:mm_vmscan_{kind}_reclaim_begin {{
  @start[tid, {i}] = nsecs; @events = count();
  if (@seen[tid] == 0) {{ @seen[tid] = 1; printf("tid %d\\n", tid); }}
}}
tracepoint:vmscan:mm_vmscan_{kind}_reclaim_end /@start[tid, {i}]/ {{
  $ns = nsecs - @start[tid, {i}]; delete(@start[tid, {i}]); @events = count();
  @hist["{kind}"] = hist($ns / 1000);
  @phist[tid, "{kind}", comm] = hist($ns / 1000);
  @stalls[tid, "{kind}", comm] = count();
  @ns[tid, "{kind}", comm] = sum($ns);
  @maxns[tid, "{kind}", comm] = max($ns);
  @pages[tid, "{kind}", comm] = sum(args->nr_reclaimed);
}}""")
        probes.append("""
tracepoint:vmscan:mm_vmscan_wakeup_kswapd { @events = count(); @kswapd[tid, comm] = count(); }
END { clear(@seen); }
""")
        return "".join(probes)

    def bpftrace_printf(self, msg: str) -> None:
        # a thread stalls in reclaim for the first time: name it and its memory cgroup now,
        # while it exists (it may be gone when bpftrace prints its maps)
        t = msg.split()
        if len(t) == 2 and t[0] == "tid" and t[1].isdigit():
            self.procs.get(int(t[1]))

    def bpftrace_summary(self, out) -> dict:
        from ..bpftrace import jsonable_hist, log2_upper, split_key

        m = out.maps
        hist = m.get("@hist") or {}
        procs = []
        for key, n in (m.get("@stalls") or {}).items():
            tid, kind, comm = split_key(key, 3)
            pid = int(tid)
            procs.append(ReclaimStalls(
                pid, comm, kind, self.procs.get(pid)[1], n,
                (m.get("@ns") or {}).get(key, 0) / 1000.0,
                (m.get("@maxns") or {}).get(key, 0) / 1000.0,
                (m.get("@pages") or {}).get(key, 0),
                log2_upper((m.get("@phist") or {}).get(key, []))))
        procs.sort(key=lambda r: -r.total_usec)
        ksw = []
        for key, n in sorted((m.get("@kswapd") or {}).items(), key=lambda kv: -kv[1])[:20]:
            tid, comm = split_key(key, 2)
            ksw.append(KswapdWaker(int(tid), comm, n))
        return {"histogram_usec": {k: log2_upper(v) for k, v in hist.items()},
                "processes": tuple(procs), "cgroups": by_cgroup(procs),
                "kswapd_wakeups": tuple(ksw), "in_progress_at_end": len(m.get("@start") or {}),
                "histogram": {k: jsonable_hist(v) for k, v in hist.items()},
                "histogram_unit": "usec"}
