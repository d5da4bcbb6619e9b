"""`ksight cpu`: where the CPU time goes (mpstat -P ALL and more), softirqs, interrupts, topology
and blocked tasks. Data only; text in render/cpu_text.py.

- `CpuStream`: feed snapshots one at a time (live or from a capture); each `add` returns the
  CpuInterval (model/cpu.py) of the new interval: mpstat's percentages per CPU and in total,
  load against the CPUs online, runnable/blocked, cs/s, intr/s, CPU PSI, top processes by user
  and by system time, softirq and interrupt rates per kind per CPU. `average()` is mpstat's
  Average line (first and last reading).
- `topology(snapshot)`: sockets, cores, threads, NUMA nodes, and which CPUs share each cache
  (L1d, L1i, L2, L3) with its size, from sysfs (sources.cpu_topology, sources.numa).
- `blocked(snapshot)`: tasks (threads) in state D, their wait channel and, as root, their kernel
  stack (the opt-in source blocked_tasks: /proc/PID/task/TID/stack), grouped by stack; a capture
  taken without that source gives the process table's leaders in D and says so.
"""

from __future__ import annotations

from collections import defaultdict
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..sources.blocked_tasks import BlockedTask, parse_stack  # noqa: F401 (re-exported)
from ..model import cpu as model
from ..model.series import Series
from ..model.snapshot import Snapshot

SOURCES = ("stat", "loadavg", "pressure", "softirqs", "interrupts", "uptime")
PARTS = ("stat",)
TOPOLOGY_SOURCES = ("cpu_topology", "numa")


class CpuStream:
    """Snapshots in, one CpuInterval per new interval out (None for the first snapshot, or
    when the two cross a reboot: then the row is skipped and `breaks` says why)."""

    def __init__(self, top: int = 5, rates: bool = True):
        self.top, self.rates = top, rates
        self.prev: Snapshot | None = None
        self.first: Snapshot | None = None
        self.snaps_for_average: list[Snapshot] = []
        self.n = 0
        self.breaks: list[str] = []

    def add(self, snap: Snapshot) -> model.CpuInterval | None:
        prev, self.prev = self.prev, snap
        if prev is None:
            self.snaps_for_average = [snap]
            return None
        ser = Series.of([prev, snap])
        if ser.intervals < 1:
            self.breaks.extend(b.reason for b in ser.breaks)
            self.snaps_for_average = [snap]  # the average starts again after a reboot
            return None
        iv = model.interval(ser, 0, top=self.top, rates=self.rates)
        iv = _renumber(iv, self.n)
        self.n += 1
        self.snaps_for_average = [self.snaps_for_average[0], snap]
        return iv

    def average(self) -> model.MpstatInterval | None:
        if len(self.snaps_for_average) < 2:
            return None
        return model.average(self.snaps_for_average)


def _renumber(iv: model.CpuInterval, n: int) -> model.CpuInterval:
    from dataclasses import replace

    return replace(iv, index=n)


# ---- topology ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheShare:
    name: str  # "L1d", "L1i", "L2", "L3"
    level: int
    type: str
    size_kb: int | None
    line_size: int | None
    ways: int | None
    shared_cpus: str  # cpulist
    instances: int  # how many separate caches of this kind (sharing groups)


@dataclass(frozen=True)
class CpuPlace:
    cpu: int
    socket: int | None
    die: int | None
    core: int | None
    node: int | None
    thread_siblings: str | None


@dataclass(frozen=True)
class Topology:
    cpus_online: str | None
    sockets: int | None
    cores: int | None
    threads: int  # CPUs with a topology directory (online)
    threads_per_core: int | None
    smt: bool | None
    numa_nodes: dict[int, str]  # node -> cpulist
    caches: tuple[tuple[CacheShare, ...], ...]  # per kind: the sharing groups
    places: tuple[CpuPlace, ...]
    missing: tuple[str, ...] = ()


def cache_name(level: int, ctype: str) -> str:
    suffix = {"Data": "d", "Instruction": "i"}.get(ctype, "")
    return f"L{level}{suffix}"


def topology(snap: Snapshot) -> Topology:
    topo = snap.get("cpu_topology")
    numa = snap.get("numa")
    missing = []
    if topo is None:
        m = snap.missing("cpu_topology")
        missing.append(f"cpu_topology: {m.reason if m else 'not collected'}")
        return Topology(None, None, None, 0, None, None, {}, (), (), tuple(missing))
    nodes: dict[int, str] = {}
    cpu_node: dict[int, int] = {}
    if numa is not None:
        for n, node in sorted(numa.nodes.items()):
            if node.cpus is not None:
                nodes[n] = model.cpulist(node.cpus)
                for c in node.cpus:
                    cpu_node[c] = n
    else:
        m = snap.missing("numa")
        missing.append(f"numa: {m.reason if m else 'not collected'}")
    groups: dict[tuple, list] = defaultdict(list)
    for c in topo.caches:
        groups[(c.level, c.type)].append(c)
    caches = []
    for (level, ctype), cs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "Data",
                                                                     kv[0][1])):
        caches.append(tuple(CacheShare(cache_name(level, ctype), level, ctype, c.size_kb,
                                       c.line_size, c.ways, model.cpulist(c.shared_cpus), len(cs))
                            for c in cs))
    tpc = None
    sib = [len(c.thread_siblings) for c in topo.cpus.values() if c.thread_siblings]
    if sib:
        tpc = max(sib)
    places = tuple(CpuPlace(c.cpu, c.package_id, c.die_id, c.core_id, cpu_node.get(c.cpu),
                            model.cpulist(c.thread_siblings) if c.thread_siblings else None)
                   for c in sorted(topo.cpus.values(), key=lambda c: c.cpu))
    return Topology(model.cpulist(topo.online) if topo.online else None, topo.packages,
                    topo.cores, len(topo.cpus), tpc, topo.smt, nodes, tuple(caches), places,
                    tuple(missing))


# ---- blocked (D state) tasks -------------------------------------------------------------------

@dataclass(frozen=True)
class StackGroup:
    stack: tuple[str, ...]  # innermost first; () when the stack could not be read
    wchan: str | None
    tasks: tuple[BlockedTask, ...]


@dataclass(frozen=True)
class Blocked:
    live: bool  # False: from a capture
    tasks: tuple[BlockedTask, ...]
    groups: tuple[StackGroup, ...]  # by stack (else wait channel), largest first
    procs_blocked: int | None  # /proc/stat's count, for comparison
    load1: float | None
    cpus_online: int | None
    stack_reason: str | None  # why kernel stacks are absent
    notes: tuple[str, ...] = ()


# what `blocked` reads: the D-state threads (opt-in source) and the counters to compare with
BLOCKED_SOURCES = ("blocked_tasks", "stat", "loadavg")


def blocked(snap: Snapshot, *, live: bool = True) -> Blocked:
    """Every thread in state D at the snapshot, with wchan and (root) kernel stack, grouped by
    stack. A snapshot without the blocked_tasks source (an older capture) falls back to the
    process table's leaders in D, with no wait channels or stacks, and says so."""
    bt = snap.get("blocked_tasks")
    notes: list[str] = []
    if bt is not None:
        tasks, reason = bt.tasks, bt.stack_reason
        notes.extend(bt.notes)
    else:
        m = snap.missing("blocked_tasks")
        tasks = tuple(BlockedTask(pid, pid, p.comm or "?", None, None)
                      for pid, p in sorted((snap.processes or {}).items())
                      if p.stat is not None and p.stat.state == "D")
        reason = "no task stacks in this snapshot"
        notes.append("threads in D state not read" + (f" ({m.reason})" if m else "") +
                     ": the process table's thread group leaders in D only, no wait channels or "
                     "kernel stacks")
        if snap.processes is None:
            notes.append("no process table either")
    groups: dict[tuple, list] = defaultdict(list)
    for t in tasks:
        key = ("stack", t.stack) if t.stack else ("wchan", t.wchan)
        groups[key].append(t)
    out = [StackGroup(k[1] if k[0] == "stack" else (), ts[0].wchan, tuple(ts))
           for k, ts in groups.items()]
    out.sort(key=lambda g: (-len(g.tasks), g.stack))
    st, la = snap.get("stat"), snap.get("loadavg")
    for name, v in (("stat", st), ("loadavg", la)):
        if v is None:
            m = snap.missing(name)
            notes.append(f"/proc/{name}: {m.reason if m else 'not read'}")
    return Blocked(live, tuple(tasks), tuple(out), st.procs_blocked if st else None,
                   la.load1 if la else None, model.cpus_online(snap), reason, tuple(notes))


__all__ = ["CpuStream", "topology", "Topology", "blocked", "Blocked", "BLOCKED_SOURCES",
           "parse_stack", "SOURCES", "PARTS", "TOPOLOGY_SOURCES"]
