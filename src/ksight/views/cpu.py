"""`ksight cpu`: where the CPU time goes (mpstat -P ALL and more), softirqs, interrupts, topology
and blocked tasks. Data only; text in render/cpu_text.py.

- `CpuStream`: feed snapshots one at a time (live or from a capture); each `add` returns the
  CpuInterval (model/cpu.py) of the new interval: mpstat's percentages per CPU and in total,
  load against the CPUs online, runnable/blocked, cs/s, intr/s, CPU PSI, top processes by user
  and by system time, softirq and interrupt rates per kind per CPU. `average()` is mpstat's
  Average line (first and last reading).
- `topology(snapshot)`: sockets, cores, threads, NUMA nodes, and which CPUs share each cache
  (L1d, L1i, L2, L3) with its size, from sysfs (sources.cpu_topology, sources.numa).
- `blocked(root)`: tasks (threads) in state D, their wait channel and, as root, their kernel
  stack (/proc/PID/task/TID/stack), grouped by stack. Live: a capture holds no task stacks; it
  gives the processes in D from its process table (thread group leaders only).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..errors import ParseError, Unavailable
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
class BlockedTask:
    pid: int  # thread group (process)
    tid: int
    comm: str
    wchan: str | None  # the kernel function it sleeps in ("0" or absent: unknown)
    stack: tuple[str, ...] | None  # kernel stack, innermost first (root only)


@dataclass(frozen=True)
class StackGroup:
    stack: tuple[str, ...]  # innermost first; () when the stack could not be read
    wchan: str | None
    tasks: tuple[BlockedTask, ...]


@dataclass(frozen=True)
class Blocked:
    live: bool
    tasks: tuple[BlockedTask, ...]
    groups: tuple[StackGroup, ...]  # by stack (else wait channel), largest first
    procs_blocked: int | None  # /proc/stat's count, for comparison
    load1: float | None
    cpus_online: int | None
    stack_reason: str | None  # why kernel stacks are absent
    notes: tuple[str, ...] = ()


def parse_stack(text: str, path: str = "stack") -> tuple[str, ...]:
    """/proc/PID/stack: '[<0>] io_schedule+0x42/0x70' lines -> ('io_schedule', ...)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("[<"):
            _, sep, s = s.partition("] ")
            if not sep:
                raise ParseError(path, lineno, line, "expected '[<addr>] function+off/len'")
        fn = s.split("+", 1)[0].split(" ", 1)[0]
        if fn:
            out.append(fn)
    return tuple(out)


def _state_and_comm(text: str) -> tuple[str, str] | None:
    l, r = text.find("("), text.rfind(")")
    if l < 0 or r < l:
        return None
    rest = text[r + 1:].split()
    return (rest[0], text[l + 1:r]) if rest else None


def blocked(root, *, max_tasks: int = 2000) -> Blocked:
    """Every thread in state D now, with wchan and (root) kernel stack, grouped by stack."""
    from ..sources import loadavg, stat

    tasks: list[BlockedTask] = []
    stack_reason = None
    notes: list[str] = []
    try:
        pids = [int(n) for n in root.listdir("proc") if n.isdigit()]
    except Unavailable as u:
        raise Unavailable("proc", u.reason) from None
    for pid in pids:
        try:
            tids = [int(n) for n in root.listdir(f"proc/{pid}/task") if n.isdigit()]
        except Unavailable:
            continue  # exited
        for tid in tids:
            base = f"proc/{pid}/task/{tid}"
            try:
                sc = _state_and_comm(root.read_text(base + "/stat"))
            except Unavailable:
                continue
            if sc is None or sc[0] != "D":
                continue
            wchan = stack = None
            try:
                w = root.read_text(base + "/wchan").strip()
                wchan = w if w and w != "0" else None
            except Unavailable:
                pass
            try:
                stack = parse_stack(root.read_text(base + "/stack"), base + "/stack")
            except Unavailable as u:
                stack_reason = stack_reason or f"{base}/stack: {u.reason} (kernel stacks need root)"
            except ParseError as e:
                stack_reason = stack_reason or str(e)
            tasks.append(BlockedTask(pid, tid, sc[1], wchan, stack))
            if len(tasks) >= max_tasks:
                notes.append(f"stopped at {max_tasks} tasks in D state")
                break
        if len(tasks) >= max_tasks:
            break
    groups: dict[tuple, list] = defaultdict(list)
    for t in tasks:
        key = ("stack", t.stack) if t.stack else ("wchan", t.wchan)
        groups[key].append(t)
    out = [StackGroup(k[1] if k[0] == "stack" else (), ts[0].wchan, tuple(ts))
           for k, ts in groups.items()]
    out.sort(key=lambda g: (-len(g.tasks), g.stack))
    pb = la = None
    try:
        pb = stat.read(root).procs_blocked
    except (Unavailable, ParseError) as e:
        notes.append(f"/proc/stat: {e}")
    try:
        la = loadavg.read(root).load1
    except (Unavailable, ParseError) as e:
        notes.append(f"/proc/loadavg: {e}")
    ncpu = None
    try:
        ncpu = len(stat.read(root).cpus) or None
    except (Unavailable, ParseError):
        pass
    return Blocked(True, tuple(tasks), tuple(out), pb, la, ncpu, stack_reason, tuple(notes))


def blocked_in_capture(snap: Snapshot) -> Blocked:
    """From a capture: processes in D in its process table (no threads, stacks or wchan)."""
    tasks = []
    for pid, p in sorted((snap.processes or {}).items()):
        if p.stat is not None and p.stat.state == "D":
            tasks.append(BlockedTask(pid, pid, p.comm or "?", None, None))
    st = snap.get("stat")
    la = snap.get("loadavg")
    notes = ["from a capture: its process table holds thread group leaders only, and no wait "
             "channels or kernel stacks"]
    if snap.processes is None:
        notes.append("the capture has no process table")
    groups = (StackGroup((), None, tuple(tasks)),) if tasks else ()
    return Blocked(False, tuple(tasks), groups, st.procs_blocked if st else None,
                   la.load1 if la else None, model.cpus_online(snap),
                   "a capture holds no kernel stacks", tuple(notes))


__all__ = ["CpuStream", "topology", "Topology", "blocked", "blocked_in_capture", "Blocked",
           "parse_stack", "SOURCES", "PARTS", "TOPOLOGY_SOURCES"]
