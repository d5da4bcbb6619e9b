"""What to collect: typed needs, declared by rules and views, merged into one plan.

A rule says what it cannot look without (`Needs`): system sources, counters by name (checked
against what kernels print, model.counters), sysctls, entity tables (processes with chosen
parts, smaps for the largest few, sockets with tcp_info, memory cgroups) and whether it needs
a window with a clock. The collector reads exactly the union (`Plan`), so `ksight check
--area pagecache` never scans processes or sockets, and the engine can say *why* a rule could
not look (which source, counter, sysctl or clock was missing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the counter tables are imported by the rules that name counters, not here
    from ..model.counters import Counter

# process parts the scan knows (collect.processes.DETAILS). maps, smaps (one entry per mapping:
# the kernel walks every mapping, smaps its page tables too) and exe (the proc/PID/exe link) are
# meant for a few processes: those of `pids` (`ksight pmap PID`) or the few a `Few` picks.
PROCESS_PARTS = ("stat", "statm", "status", "cmdline", "oom", "cgroup", "smaps_rollup", "sockets",
                 "maps", "smaps", "exe")
# the parts a Few may ask for, and what it may rank processes by (collect.processes.RANKS)
FEW_PARTS = ("maps", "smaps", "smaps_rollup", "exe", "cmdline")
FEW_BY = ("rss", "virt", "shr", "swap", "oom")
# memory cgroup files (sources.cgroup_memory.FILES_V2/FILES_V1): what a plan may restrict the walk
# to. usage, failcnt, peak: v1 usage_in_bytes, failcnt, max_usage_in_bytes (v2 memory.current);
# max: the hard limits (v2 memory.max and memory.high, v1 limit_in_bytes); protection: v2
# memory.min/low, v1 soft_limit_in_bytes; "current" and "limits" stand for usage+failcnt+peak and
# max+protection. "idle": also read the groups nothing can charge (no task in their subtree and no
# charge), which a plan without it skips and counts (CgroupMemory.skipped_idle).
# "NAME:limited" (usage, failcnt, peak, swap, pressure): those files only in groups with a memory
# limit of their own (sources.cgroup_memory.LIMITED says why that is enough for a rule whose
# counters move only at a group's own limit); NAME alone wins when both are named.
CGROUP_FILES = ("usage", "failcnt", "peak", "max", "protection", "stat", "events", "events_local",
                "pressure", "procs", "swap", "oom", "idle", "current", "limits",
                "usage:limited", "failcnt:limited", "peak:limited", "swap:limited",
                "pressure:limited")


@dataclass(frozen=True)
class Few:
    """Parts read, after the scan, only for the n processes that rank first by `by` (largest
    first, ties by PID: the order `ksight top` shows them in), e.g. the VMA count (maps) of the
    20 processes top lists, without a walk of every process's mappings; and for the processes
    named in `pids` (those the table holds)."""

    parts: tuple[str, ...]
    n: int = 0
    by: str = "rss"
    pids: tuple[int, ...] = ()  # these processes too, by name (`ksight capture --pid PID`)

    def __post_init__(self):
        bad = [p for p in self.parts if p not in FEW_PARTS]
        if bad:
            raise ValueError(f"a Few cannot read {bad}; it reads {', '.join(FEW_PARTS)}")
        if self.by not in FEW_BY:
            raise ValueError(f"a Few ranks by one of {', '.join(FEW_BY)}, not {self.by!r}")
        if self.n < 0:
            raise ValueError("a Few of fewer than 0 processes")


@dataclass(frozen=True, eq=False)
class When:
    """An optional source worth reading only when the sources read before it say so: the
    collector reads `after` first, then `source` if wanted(those sources, by name) is true, and
    otherwise records it as not read, with `why`. Example: memory.unexplained counts vmalloc
    pages from /proc/vmallocinfo (~3 ms of kernel time at 3,000 areas) only on kernels whose
    VmallocUsed does not count them (before 5.3), which meminfo tells. A rule that cannot judge
    without the source names it in `sources` instead; then it is read every time."""

    source: str
    after: tuple[str, ...]
    wanted: Callable[[dict], bool]
    why: str  # said when it is not read: what the sources read before showed


@dataclass(frozen=True)
class Needs:
    """What one rule or view cannot look without (merged into a Plan)."""

    sources: tuple[str, ...] = ()  # required system sources (snapshot.get(name))
    uses: tuple[str, ...] = ()  # optional sources: read when there, the rule runs without them
    counters: tuple[Counter, ...] = ()  # required counters: absent on this kernel -> not evaluated
    sysctls: tuple[str, ...] = ()  # required sysctls (implies the sysctl source)
    processes: tuple[str, ...] = ()  # process parts; () = no process table
    smaps_top: int = 0  # smaps_rollup for the N largest processes by RSS
    pids: tuple[int, ...] = ()  # only these processes (() = every process), e.g. `-p PID`
    few: tuple[Few, ...] = ()  # parts for a chosen few only (needs a process table: `processes`)
    sockets: bool = False  # the socket table (every netns), tcp_info where available
    cgroup_files: tuple[str, ...] = ()  # memory cgroup files the rule reads (() = all it knows)
    window: bool = True  # needs two snapshots with a clock between them (rates)
    min_seconds: float = 0.0  # shortest window worth judging
    # /proc/PID/net/{snmp,netstat,sockstat} of one process per network namespace the socket
    # table found (collect/netns_counters.py): counters of containers' namespaces; implies sockets
    netns_counters: bool = False
    # the states of the sockets whose owner (pid, comm) the rule names in its findings ("*":
    # any state); () = it names none. With a plan made `owners_later`, these are all the owners
    # that get resolved, and only once the rule has found something (see Plan.owners_later)
    socket_owners: tuple[str, ...] = ()
    uses_when: tuple[When, ...] = ()  # optional sources read only when earlier ones say so

    def __post_init__(self):
        bad = [p for p in self.processes if p not in PROCESS_PARTS]
        if bad:
            raise ValueError(f"unknown process parts {bad}; known: {', '.join(PROCESS_PARTS)}")
        bad = [f for f in self.cgroup_files if f not in CGROUP_FILES]
        if bad:
            raise ValueError(f"unknown memory cgroup files {bad}; known: {', '.join(CGROUP_FILES)}")

    def all_sources(self) -> tuple[str, ...]:
        """The sources read every time (a When's source is not: Plan.when)."""
        out = list(self.sources) + list(self.uses) + [c.source for c in self.counters]
        out += [a for w in self.uses_when for a in w.after]
        if self.sysctls:
            out.append("sysctl")
        return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Plan:
    """The union of what the selected rules and views need: what one sample reads."""

    sources: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()
    smaps_top: int = 0
    sockets: bool = False
    pids: tuple[int, ...] | None = None  # None: every process; else only these
    cgroup_files: tuple[str, ...] | None = None  # None: every file; else only these
    min_seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())
    netns_counters: bool = False  # per-namespace snmp/netstat/sockstat (collect/netns_counters)
    few: tuple[Few, ...] = ()  # parts read for a chosen few after the scan
    # Socket owners. False (capture, views, the recorder): every socket's owner at each sample,
    # from every process's fds (15,000 readlinks at 1,000 processes). True (live `check`): no
    # owner at sample time; once the rules have looked, the engine asks for the owners of the
    # sockets in the `socket_owners` states of the rules that found something
    # (collect.sockets.add_owners: one scan of the fds, stopped when all are found) and runs
    # those rules again, so a quiet machine never pays for the fds.
    owners_later: bool = False
    socket_owners: tuple[str, ...] = ()  # the union of the rules' Needs.socket_owners
    # sources read only when the sources read before say so (Needs.uses_when); never one that
    # `sources` reads anyway
    when: tuple[When, ...] = ()

    @classmethod
    def of(cls, needs: Iterable[Needs], *, extra_sources: Iterable[str] = (),
           owners_later: bool = False) -> "Plan":
        sources: dict[str, None] = {}
        parts: dict[str, None] = {}
        top = 0
        socks = False
        cg_files: dict[str, None] = {}
        cg_all = False
        secs = 0.0
        pids: dict[int, None] = {}
        every_pid = False
        nsc = False
        few: dict[Few, None] = {}
        owned: dict[str, None] = {}
        whens: list[When] = []
        for n in needs:
            whens.extend(n.uses_when)
            owned.update(dict.fromkeys(n.socket_owners))
            nsc = nsc or n.netns_counters
            few.update(dict.fromkeys(n.few))
            if n.processes or n.sockets or n.netns_counters:
                if n.pids and not n.sockets:
                    pids.update(dict.fromkeys(n.pids))
                else:
                    every_pid = True  # sockets need every owner's fds
            sources.update(dict.fromkeys(n.all_sources()))
            parts.update(dict.fromkeys(n.processes))
            top = max(top, n.smaps_top)
            socks = socks or n.sockets or n.netns_counters
            if "cgroup_memory" in n.all_sources():
                if n.cgroup_files:
                    cg_files.update(dict.fromkeys(n.cgroup_files))
                else:
                    cg_all = True
            secs = max(secs, n.min_seconds)
        sources.update(dict.fromkeys(extra_sources))
        sources.setdefault("uptime", None)  # the clock of a capture
        later = owners_later and socks
        if socks and "sockets" not in parts and parts and not later:
            parts["sockets"] = None  # owners of sockets come from the processes' fds
        return cls(tuple(sources), tuple(parts), top, socks,
                   None if every_pid or not pids else tuple(pids),
                   None if cg_all or not cg_files else tuple(cg_files), secs,
                   netns_counters=nsc, few=tuple(few), owners_later=later,
                   socket_owners=tuple(owned), when=_whens(whens, sources))

    def merge(self, other: "Plan") -> "Plan":
        files = None if self.cgroup_files is None or other.cgroup_files is None else \
            tuple(dict.fromkeys(self.cgroup_files + other.cgroup_files))
        pids = None if self.pids is None or other.pids is None else \
            tuple(dict.fromkeys(self.pids + other.pids))
        socks = self.sockets or other.sockets
        # owners stay for later only if no side with sockets wants them at sample time
        later = socks and all(p.owners_later for p in (self, other) if p.sockets)
        return Plan(tuple(dict.fromkeys(self.sources + other.sources)),
                    tuple(dict.fromkeys(self.processes + other.processes)),
                    max(self.smaps_top, other.smaps_top), socks,
                    pids, files, max(self.min_seconds, other.min_seconds),
                    netns_counters=self.netns_counters or other.netns_counters,
                    few=tuple(dict.fromkeys(self.few + other.few)), owners_later=later,
                    socket_owners=tuple(dict.fromkeys(self.socket_owners + other.socket_owners)),
                    when=_whens(self.when + other.when, self.sources + other.sources))


def _whens(whens, sources) -> tuple[When, ...]:
    """The conditional reads left once the plain ones are known: one per source (the first
    rule's condition; another rule wanting it under its own condition reads it too: any true
    condition reads it), none for a source read anyway."""
    by: dict[str, list[When]] = {}
    for w in whens:
        if w.source not in sources:
            by.setdefault(w.source, []).append(w)
    out = []
    for name, ws in by.items():
        if len(ws) == 1:
            out.append(ws[0])
        else:
            after = tuple(dict.fromkeys(a for w in ws for a in w.after))
            out.append(When(name, after, lambda got, ws=tuple(ws): any(w.wanted(got) for w in ws),
                            "; ".join(dict.fromkeys(w.why for w in ws))))
    return tuple(out)


__all__ = ["Needs", "Plan", "Few", "When", "PROCESS_PARTS", "FEW_PARTS", "FEW_BY", "CGROUP_FILES"]
