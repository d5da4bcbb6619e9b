"""`ksight oom`: who the OOM killer would pick, the OOM kills that happened, how to protect a
service, and whether the console would make a large OOM report slow. Data only (text in
render/oom_text.py).

The order (mm/oom_kill.c, oom_badness): for each killable task (not a kernel thread, not init,
oom_score_adj != -1000)
    points = get_mm_rss(mm) + get_mm_counter(mm, MM_SWAPENTS) + mm_pgtables_bytes(mm) / PAGE_SIZE
    points += oom_score_adj * (totalpages / 1000)
and select_bad_process kills the task with the most points (a memcg OOM looks only inside the
group, with totalpages = the group's limit). /proc/PID/oom_score shows it scaled, fs/proc/base.c
proc_oom_score (5.9+): (1000 + points * 1000 / totalpages) * 2 / 3, with totalpages = RAM + swap.
So "the size behind it" is RSS + swap + page tables (status VmRSS + VmSwap + VmPTE), and we
recompute the score from it (`estimate`) beside the kernel's, so a reader sees why a process
ranks where it does.

Kills: vmstat oom_kill (4.13+, since boot), memory cgroups' memory.events oom_kill (v2) or
memory.oom_control oom_kill (v1, 4.13+), and the kernel log (/dev/kmsg, live only; a capture has
it only if `ksight capture` named the kmsg_oom source) for the victim, its cgroup, and whether a
cgroup limit (constraint=CONSTRAINT_MEMCG, "Memory cgroup out of memory") or the whole machine
("Out of memory:", CONSTRAINT_NONE) ran out.

Console: printk writes every message whose level is below the console log level (kernel.printk's
first field) to every enabled console. An OOM report is the allocation's stack and memory state
at KERN_WARNING/default level, then one KERN_INFO line per task (dump_tasks, vm.oom_dump_tasks=1).
On a serial console (115200 baud ~ 11.5 KB/s) with console_loglevel >= 7 the task list alone is
~100 bytes x tasks: seconds with interrupts off on kernels without threaded consoles.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..diagnose.finding import Action
from ..model.snapshot import Missing, Snapshot

SOURCES = ("meminfo",)
USES = ("vmstat", "cgroup_memory", "kmsg_oom", "consoles", "sysctl")
PARTS = ("stat", "status", "cmdline", "oom", "cgroup")
CGROUP_FILES = ("events", "oom", "usage", "max", "protection", "idle")
TOP = 15
KERN_INFO = 6
SERIAL_BYTES_PER_S = 11_520  # 115200 baud, 8N1
TASK_LINE_BYTES = 100


@dataclass(frozen=True)
class Candidate:
    pid: int
    comm: str | None
    cmdline: str | None
    oom_score: int  # the kernel's (/proc/PID/oom_score)
    oom_score_adj: int
    rss_kb: int | None
    swap_kb: int | None
    pte_kb: int | None
    size_kb: int | None  # rss + swap + page tables: the badness before oom_score_adj
    estimate: int | None  # our (1000 + points*1000/totalpages)*2/3 from size_kb and adj
    cgroup: str | None  # memory cgroup path


@dataclass(frozen=True)
class CgroupOom:
    path: str
    version: int
    oom_kill: int | None  # kills inside the group (and below it for v2 memory.events)
    oom: int | None  # v2: times the group hit its limit and the OOM killer ran
    max_bytes: int | None
    current_bytes: int | None
    under_oom: int | None = None  # v1


@dataclass(frozen=True)
class KillEvent:
    seconds_ago: float | None  # from the log timestamp and the snapshot's uptime
    scope: str | None  # "cgroup" | "system" | None (not said)
    constraint: str | None
    pid: int | None
    comm: str | None
    oom_memcg: str | None
    task_memcg: str | None
    anon_rss_kb: int | None
    invoker: str | None


@dataclass(frozen=True)
class ConsoleCheck:
    console_loglevel: int | None
    serial: tuple[str, ...]  # enabled serial/hypervisor consoles
    oom_dump_tasks: int | None
    slow: bool  # the task list of an OOM report would go to a serial console
    estimate_s: float | None  # seconds to print the task list at 115200 baud
    note: str
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class OomReport:
    candidates: tuple[Candidate, ...]
    immune: tuple[Candidate, ...]  # oom_score_adj -1000
    total_pages: int | None  # RAM + swap, in pages (oom_score's denominator)
    vmstat_oom_kill: int | None
    cgroups: tuple[CgroupOom, ...]  # groups with an OOM kill or event
    kills: tuple[KillEvent, ...] | None  # None: the kernel log was not readable
    console: ConsoleCheck | None
    protect: tuple[Action, ...]
    protect_target: str | None = None
    unavailable: tuple[Missing, ...] = ()
    notes: tuple[str, ...] = ()


def estimate(size_kb: int, adj: int, total_pages: int, page_size: int = 4096) -> int:
    """proc_oom_score's value from oom_badness's inputs (integer arithmetic as the kernel's)."""
    points = size_kb * 1024 // page_size + adj * (total_pages // 1000)
    v = (1000 + points * 1000 // total_pages) * 2 // 3 if points > -1000 * total_pages else 0
    return max(v, 0)


def _size(st) -> tuple:
    if st is None:
        return None, None, None, None
    rss, swap, pte = st.vm_rss_kb, st.vm_swap_kb, st.vm_pte_kb
    parts = [v for v in (rss, swap, pte) if v is not None]
    return rss, swap, pte, (sum(parts) if rss is not None else None)


def candidates(procs: dict, total_pages: int | None, page_size: int) -> tuple[list, list]:
    out, immune = [], []
    for p in procs.values():
        if p.oom is None or p.kernel_thread or p.pid == 1:
            continue  # kernel threads and init are never chosen (oom_unkillable_task)
        rss, swap, pte, size = _size(p.status)
        est = estimate(size, p.oom.score_adj, total_pages, page_size) \
            if size is not None and total_pages else None
        cg = p.cgroup.path_for("memory") if p.cgroup is not None else None
        cmd = " ".join(p.cmdline)[:120] if p.cmdline else None
        c = Candidate(p.pid, p.comm, cmd, p.oom.score, p.oom.score_adj, rss, swap, pte, size,
                      est, cg)
        (immune if p.oom.score_adj == -1000 else out).append(c)
    out.sort(key=lambda c: (-c.oom_score, -(c.size_kb or 0), c.pid))
    immune.sort(key=lambda c: (-(c.size_kb or 0), c.pid))
    return out, immune


def cgroup_ooms(cgm) -> tuple[CgroupOom, ...]:
    out = []
    for g in cgm.groups.values():
        if g.version == 2:
            ev = g.events or {}
            kill, oom = ev.get("oom_kill"), ev.get("oom")
        else:
            kill, oom = g.oom_kill, None
        if kill or oom or g.under_oom:
            out.append(CgroupOom(g.path, g.version, kill, oom, g.max_bytes, g.current_bytes,
                                 g.under_oom))
    # deepest first among equals: the group whose own limit was hit, not its parents
    out.sort(key=lambda c: (-(c.oom_kill or 0), -c.path.count("/"), c.path))
    return tuple(out)


def kill_events(km, uptime_s: float | None) -> tuple[KillEvent, ...]:
    out = []
    for e in km.events:
        ago = None
        if uptime_s is not None and e.ts_usec is not None:
            ago = max(uptime_s - e.ts_usec / 1e6, 0.0)
        out.append(KillEvent(ago, e.scope, e.constraint, e.pid, e.comm, e.oom_memcg, e.task_memcg,
                             e.anon_rss_kb, e.invoker))
    return tuple(reversed(out))  # newest first


def console_check(sysctls, consoles, nprocs: int | None) -> ConsoleCheck | None:
    if sysctls is None and consoles is None:
        return None
    levels = sysctls.ints("kernel.printk") if sysctls is not None else None
    lvl = levels[0] if levels else None
    dump = sysctls.int("vm.oom_dump_tasks") if sysctls is not None else None
    serial = tuple(c.name for c in consoles.serial_enabled()) if consoles is not None else ()
    actions: list[Action] = []
    est = None
    if consoles is None or lvl is None:
        note = ("cannot tell: " + ("/proc/consoles" if consoles is None else "kernel.printk")
                + " unavailable")
        return ConsoleCheck(lvl, serial, dump, False, None, note)
    if not serial:
        return ConsoleCheck(lvl, serial, dump, False, None,
                            "no serial console enabled: an OOM report goes to the log buffer and "
                            "fast consoles only")
    slow = lvl > KERN_INFO and dump != 0
    if slow:
        n = nprocs or 0
        est = n * TASK_LINE_BYTES / SERIAL_BYTES_PER_S
        rest = "\t".join(str(v) for v in levels[1:]) if len(levels) > 1 else "4\t1\t7"
        actions.append(Action.sysctl(
            "kernel.printk", "\t".join(map(str, levels)), f"4\t{rest}",
            why="console log level 4: only errors and worse reach the console; the full OOM "
                "report stays in the kernel log (dmesg, journal). Persist it in /etc/sysctl.d/"))
        actions.append(Action.sysctl(
            "vm.oom_dump_tasks", dump, 0,
            why="or drop the per-task table from OOM reports (you lose the list of every task's "
                "memory at the time of the kill in the log)"))
        note = (f"console log level {lvl} > {KERN_INFO} (KERN_INFO) and serial console(s) "
                f"{', '.join(serial)} enabled: an OOM report's task list (one line per process, "
                f"~{n} lines) is printed there at ~11.5 KB/s (115200 baud), about {est:.1f} s, "
                "during which the OOM path holds up the allocating task and, on kernels without "
                "threaded consoles, the CPU")
    else:
        note = (f"serial console(s) {', '.join(serial)} enabled, console log level {lvl}: only "
                f"messages below level {lvl} reach it" + (" (the task list at KERN_INFO does not)"
                                                          if lvl <= KERN_INFO else
                                                          " (vm.oom_dump_tasks=0: no task list)"))
    return ConsoleCheck(lvl, serial, dump, slow, est, note, tuple(actions))


def _mib_up(b: int) -> int:
    return -(-b // 2**20) * 2**20


def protect_actions(snap: Snapshot, target: str | None) -> tuple[tuple[Action, ...], tuple[str, ...]]:
    """How to protect a critical service: a negative oom_score_adj, or a memory cgroup with
    memory.min/low (v2). With a PID, for that process and its group; else generic."""
    from .pagecache import cgroup_dir, find_group

    notes: list[str] = []
    if target is None or not target.isdigit():
        return (
            Action.command("choom -p PID -n -900",
                           why="oom_score_adj -900 subtracts 90 % of RAM+swap from the process's "
                               "badness: it is picked last. -1000 makes it immune, which can leave "
                               "nothing to kill (then the kernel panics or kills everything else). "
                               "Lasts for the process's life; in a systemd unit: OOMScoreAdjust=-900"),
            Action.command("systemctl set-property UNIT.service MemoryMin=SIZE MemoryLow=SIZE",
                           why="a memory cgroup with memory.min: reclaim never takes its memory "
                               "below that, so memory pressure elsewhere ends in an OOM kill "
                               "elsewhere, not in this service being swapped or starved"),
        ), ()
    pid = int(target)
    p = (snap.processes or {}).get(pid)
    if p is None:
        return (), (f"PID {pid}: not found",)
    acts = [Action.command(
        f"choom -p {pid} -n -900",
        why=f"{p.comm}: oom_score_adj {p.oom.score_adj if p.oom else '?'} -> -900: picked last "
            "(-1000 would make it immune). Lasts for the process's life; in its systemd unit: "
            "OOMScoreAdjust=-900")]
    cgm = snap.get("cgroup_memory")
    path = p.cgroup.path_for("memory") if p.cgroup is not None else None
    g = find_group(cgm, path)
    if g is None or g.path == "/":
        notes.append(f"PID {pid} is in {'the root cgroup' if g else 'no known memory cgroup'}: "
                     "move it into its own group to protect it with memory.min "
                     "(systemd-run --scope -p MemoryMin=SIZE ...)")
    elif g.version == 2:
        d = cgroup_dir(cgm, g.path)
        want = _mib_up(g.current_bytes) if g.current_bytes else None
        if d and want:
            acts.append(Action.cgroup_write(
                f"{d}/memory.min", want, g.min_bytes,
                why=f"memory.min = what the group uses now ({want // 2**20} MiB): reclaim never "
                    "takes it below that; memory.low is the best-effort version. A group over its "
                    "own memory.max is still OOM-killed inside itself"))
        unit = g.path.rstrip("/").rsplit("/", 1)[-1]
        if unit.endswith((".service", ".scope", ".slice")) and want:
            acts.append(Action.command(f"systemctl set-property {unit} MemoryMin={want // 2**20}M",
                                       why="the same, kept by systemd across restarts"))
    else:
        notes.append("cgroup v1 has no memory.min: use oom_score_adj, or a soft limit on the "
                     "others (memory.soft_limit_in_bytes)")
    return tuple(acts), tuple(notes)


def report(snap: Snapshot, protect: str | None = None) -> OomReport:
    ps = snap.host.page_size
    mi = snap.get("meminfo")
    notes: list[str] = []
    total = None
    if mi is not None and mi.mem_total_kb is not None:
        total = (mi.mem_total_kb + (mi.swap_total_kb or 0)) * 1024 // ps
    procs = snap.processes or {}
    cands, immune = candidates(procs, total, ps)
    vm = snap.get("vmstat")
    vm_kill = vm.get("oom_kill") if vm is not None else None
    if vm is not None and vm_kill is None:
        notes.append("vmstat has no oom_kill counter (added in 4.13)")
    cgm = snap.get("cgroup_memory")
    cgs = cgroup_ooms(cgm) if cgm is not None else ()
    km = snap.get("kmsg_oom")
    kills = kill_events(km, snap.uptime_s) if km is not None else None
    if km is not None and vm_kill and len(km.events) < vm_kill:
        notes.append(f"{vm_kill} OOM kills since boot, {len(km.events)} still in the kernel log "
                     "(the ring buffer dropped the older ones)")
    con = console_check(snap.get("sysctl"), snap.get("consoles"), len(procs) or None)
    acts, pnotes = protect_actions(snap, protect)
    notes.extend(pnotes)
    names = SOURCES + USES
    missing = tuple(m for n in names if snap.get(n) is None and (m := snap.missing(n)) is not None)
    missing += tuple(m for m in snap.unavailable if m.source.startswith("processes"))
    return OomReport(tuple(cands), tuple(immune), total, vm_kill, cgs, kills, con, acts, protect,
                     missing, tuple(notes))
