"""Where the CPU time goes, judged per interval and per CPU: system, softirq, iowait, hard-irq
and steal time, as mpstat computes them from /proc/stat (model/cpu.py).

Each rule fires when its column reaches the all-CPU threshold, or when some CPU reaches the
per-CPU threshold, in `min_intervals` intervals of the window (every interval of a shorter
window): one CPU pinned at 100 % softirq on an 8-CPU machine is 12 % in total, and is a finding
(its subject names the CPUs). A healthy busy machine (high %usr, normal %sys) fires nothing.
"""

from __future__ import annotations

from ....model import cpu as model
from ...finding import Action
from ...rule import Context, Rule, Threshold, rule
from .common import judge, pct_evidence, peak_interval, subject_cpus, where

_SUSTAIN = Threshold(2, "intervals",
                     "a single 1 s interval can be a start-up burst (fork/exec, page-ins); two "
                     "in a row is a state (every interval of a shorter window)")


def _procs(ctx: Context, iv: model.CpuInterval, attr: str, label: str) -> list:
    rows = iv.top_sys if attr == "sys_pct" else iv.top_usr
    out = []
    for p in rows[:5]:
        v = getattr(p, attr)
        if v < 1.0:
            continue
        out.append(ctx.ev(f"process {p.comm} (pid {p.pid}) {label}", v, "% of one CPU",
                          f"/proc/{p.pid}/stat",
                          note=f"interval {iv.index + 1}; user {p.usr_pct:.1f} %, system "
                               f"{p.sys_pct:.1f} % (state {p.state or '?'})"))
    return out


# ---- cpu.high-system -------------------------------------------------------------------------

@rule("cpu.high-system", title="High system (kernel) CPU time",
      needs=("stat",), uses=("loadavg",), processes=("stat",),
      thresholds={
          "warn_all_pct": Threshold(25, "% of all CPU time",
                                    "kernel work on behalf of processes (system calls, page "
                                    "faults, locks) is usually under 10-15 % on servers; a "
                                    "quarter of every CPU means the kernel path is the workload"),
          "warn_cpu_pct": Threshold(50, "% of one CPU",
                                    "one CPU mostly in the kernel: a thread in a system-call loop "
                                    "or spinning on a kernel lock; hidden in the total on big "
                                    "machines"),
          "critical_all_pct": Threshold(60, "% of all CPU time",
                                        "more kernel than anything else, machine-wide"),
          "min_intervals": _SUSTAIN,
      })
def high_system(ctx: Context, r: Rule):
    """System time (mpstat %sys) judged per interval, in total and per CPU.
    Evidence: the processes making the most system time in the peak interval (from the process
    table: works --from a capture too); live, `ksight check` adds the top kernel functions from
    a 1 s perf profile (enrichment `kernel-profile`, rules/cpu/profile.py)."""
    j = judge(ctx, r, "sys")
    if not j.fired:
        return None
    iv = peak_interval(ctx, j)
    ev = pct_evidence(ctx, r, j, "%sys")
    ev.append(ctx.ev("%usr in the same interval (all CPUs)", iv.all.usr, "%", "/proc/stat"))
    procs = _procs(ctx, iv, "sys_pct", "system time")
    ev += procs
    if iv.ctxt_per_s is not None:
        ev.append(ctx.ev("context switches", iv.ctxt_per_s, "/s", "/proc/stat",
                         note=f"interval {iv.index + 1}"))
    if iv.forks_per_s is not None and iv.forks_per_s >= 50:
        ev.append(ctx.ev("forks", iv.forks_per_s, "/s", "/proc/stat",
                         note="process creation is kernel work (copying page tables, exec)"))
    actions = []
    top = next((p for p in iv.top_sys if p.sys_pct >= 1.0), None)
    if top is not None:
        actions.append(Action.command(
            f"strace -c -f -p {top.pid}  # which system calls {top.comm} makes, how many, how "
            "long (stop with Ctrl-C; strace slows the process while attached)",
            why="a syscall made millions of times (read of a few bytes, gettimeofday without "
                "vDSO, poll/epoll with zero timeout, futex contention) shows up at the top"))
    actions.append(Action.command(
        "ksight profile --seconds 10 --kernel-only  # the hottest kernel functions and stacks",
        why="names the kernel path (page faults, a lock, a file system, networking)"))
    actions.append(Action.code(
        "batch the work per system call (bigger reads/writes, sendmmsg/recvmmsg, io_uring), "
        "avoid busy polling, and reuse memory instead of mapping and unmapping it",
        why="system time scales with the number of calls and faults, not the bytes moved"))
    sev = "critical" if j.critical else "warning"
    who = f" Most of it is made by {top.comm} (pid {top.pid})." if top else (
        " No process stood out in the process table: look at kernel threads and interrupts.")
    return r.finding(
        sev, ev,
        f"System time is high: {where(ctx, j)}. That is the kernel working on behalf of "
        f"processes (system calls, page faults, kernel locks).{who} Time spent there is not "
        "spent in the application; a profile of the kernel names the path.",
        actions, subject=subject_cpus(j))


# ---- cpu.high-softirq ------------------------------------------------------------------------

def _softnet(ctx: Context, field: str):
    return ctx.series.derived_counter(
        f"softnet {field}",
        lambda s: sum(getattr(c, field) for c in s.get("softnet_stat").cpus),
        per_cpu=True)


def _softnet_evidence(ctx: Context, ev: list, actions: list) -> None:
    """NET_RX's link to the network area: softnet squeeze (budget exhausted) and drops."""
    sq, dr = _softnet(ctx, "time_squeeze"), _softnet(ctx, "dropped")
    if sq.total is not None:
        ev.append(ctx.ev("softnet time_squeeze", sq.total, "events", "/proc/net/softnet_stat",
                         note="net_rx_action ran out of budget or time with packets left "
                              f"(over the window; peak {sq.peak_rate or 0:,.0f}/s)"))
    if dr.total is not None:
        ev.append(ctx.ev("softnet dropped", dr.total, "packets", "/proc/net/softnet_stat",
                         note="dropped because the per-CPU backlog was full (over the window)"))
    budget = ctx.sysctl("net.core.netdev_budget")
    if sq.total and budget is not None:
        actions.append(Action.sysctl(
            "net.core.netdev_budget", ctx.sysctl_text("net.core.netdev_budget"),
            max(600, budget * 2),
            why="more packets per NET_RX run before it yields (time_squeeze > 0); "
                "trade-off: longer softirq runs delay the tasks on that CPU"))
    backlog = ctx.sysctl("net.core.netdev_max_backlog")
    if dr.total and backlog is not None:
        actions.append(Action.sysctl(
            "net.core.netdev_max_backlog", ctx.sysctl_text("net.core.netdev_max_backlog"),
            max(2000, backlog * 2),
            why="a longer per-CPU input queue drops fewer packets in bursts; trade-off: "
                "more queueing delay"))


@rule("cpu.high-softirq", title="High softirq CPU time",
      needs=("stat",), uses=("softirqs", "softnet_stat", "sysctl"),
      thresholds={
          "warn_all_pct": Threshold(15, "% of all CPU time",
                                    "softirqs (network receive/transmit, timers, block "
                                    "completions, RCU) are normally a few %; above this the "
                                    "machine spends a sixth of its time on deferred interrupt "
                                    "work"),
          "warn_cpu_pct": Threshold(20, "% of one CPU",
                                    "a fifth of one CPU in softirqs, sustained, is several times "
                                    "the usual few %: that CPU does most of the packet or "
                                    "completion work (one receive queue, no RSS/RPS), saturates "
                                    "long before the machine does, and its softirqs delay its "
                                    "tasks"),
          "critical_all_pct": Threshold(40, "% of all CPU time", "softirqs crowd out the work"),
          "min_intervals": _SUSTAIN,
      })
def high_softirq(ctx: Context, r: Rule):
    """Softirq time (mpstat %soft) judged per interval, in total and per CPU.
    Names the softirq kinds (/proc/softirqs rates in the peak interval) and the CPUs they run
    on; NET_RX links to the network area: /proc/net/softnet_stat time_squeeze (the budget ran
    out with packets left) and drops."""
    j = judge(ctx, r, "soft")
    if not j.fired:
        return None
    iv = peak_interval(ctx, j)
    ev = pct_evidence(ctx, r, j, "%soft")
    kinds = list(iv.softirqs[:4])
    for row in kinds:
        ev.append(ctx.ev(f"softirq {row.name}", row.per_s, "/s", "/proc/softirqs",
                         note=(f"interval {iv.index + 1}; busiest CPU {row.busiest_cpu} with "
                               f"{row.busiest_share_pct:.0f} % of them"
                               if row.busiest_cpu is not None else None)))
    names = [row.name for row in kinds]
    net = [n for n in names[:2] if n in ("NET_RX", "NET_TX")]
    actions = [Action.command("ksight cpu --softirqs 1 5  # which softirq, on which CPUs")]
    extra = ""
    if net:
        if ctx.last.get("softnet_stat") is not None and ctx.first.get("softnet_stat") is not None:
            _softnet_evidence(ctx, ev, actions)
        else:
            ev.append(ctx.ev("softnet squeeze and drops", "not read", "", "/proc/net/softnet_stat",
                             note="/proc/net/softnet_stat is missing from this window"))
        actions.append(Action.command(
            "ethtool -l IFACE; ethtool -x IFACE; cat /sys/class/net/IFACE/queues/rx-*/rps_cpus",
            why="receive work lands on the CPUs of the NIC's queues: with one queue and no RPS "
                "every packet is handled on one CPU"))
        actions.append(Action.command("ksight show softnet_stat  # squeeze and drops per CPU"))
        extra = (" Network softirqs are the largest: the CPUs handling packets are the "
                 "bottleneck; spread them (RSS queues, RPS, irqbalance) or cut the packet rate.")
    elif "BLOCK" in names[:2]:
        extra = " BLOCK softirqs are I/O completions: look at the disks' request rate."
    elif iv.softirqs == ():
        extra = " /proc/softirqs was not readable, so the kind is unknown."
    kind_s = ", ".join(names) if names else "unknown kinds"
    return r.finding(
        "critical" if j.critical else "warning", ev,
        f"Softirq time is high: {where(ctx, j)}. The largest softirqs: {kind_s}. Softirqs run "
        "before the tasks of the CPU they land on, so a CPU busy with them delays its "
        f"processes.{extra}",
        actions, subject=subject_cpus(j))


# ---- cpu.high-iowait -------------------------------------------------------------------------

def _io_ms(d):
    return d.io_ms


def _weighted(d):
    return d.weighted_io_ms


def _is_partition(name: str, names) -> bool:
    import re

    m = re.match(r"^(.*?\D)(p?)\d+$", name)
    if not m:
        return False
    base = m.group(1) if m.group(2) == "" else m.group(1)
    return base != name and (base in names or base.rstrip("p") in names) and not name.startswith(
        ("dm-", "md", "loop", "ram", "zram", "nbd"))


@rule("cpu.high-iowait", title="High iowait",
      needs=("stat",), uses=("diskstats", "pressure", "loadavg"),
      thresholds={
          "warn_all_pct": Threshold(20, "% of all CPU time",
                                    "a fifth of the CPU time idle with I/O outstanding: the "
                                    "workload waits on storage"),
          "warn_cpu_pct": Threshold(60, "% of one CPU",
                                    "a CPU mostly idle for one task's I/O (a synchronous reader "
                                    "or writer): hidden in the total on big machines"),
          "critical_all_pct": Threshold(50, "% of all CPU time", "half the machine waits for I/O"),
          "min_intervals": _SUSTAIN,
      })
def high_iowait(ctx: Context, r: Rule):
    """iowait (mpstat %iowait) judged per interval, in total and per CPU.
    Names the busy disks from /proc/diskstats in the peak interval: utilisation (io_ticks,
    iostat %util) and mean queue (weighted time, iostat aqu-sz)."""
    j = judge(ctx, r, "iowait")
    if not j.fired:
        return None
    iv = peak_interval(ctx, j)
    ev = pct_evidence(ctx, r, j, "%iowait")
    ev.append(ctx.ev("%idle in the same interval (all CPUs)", iv.all.idle, "%", "/proc/stat"))
    disks = []
    if ctx.first.get("diskstats") is not None:
        ser = ctx.series
        util = ser.entity_counters("disks", _io_ms, "io_ms")
        queue = ser.entity_counters("disks", _weighted, "weighted_io_ms")
        secs = ser.seconds_per_interval[iv.index]
        names = set(k for k in util)
        for name, cs in util.items():
            d = cs.deltas[iv.index]
            if d is None or not secs or _is_partition(name, names):
                continue
            u = min(100.0, d / (secs * 1000) * 100)
            q = queue.get(name)
            qd = q.deltas[iv.index] if q is not None else None
            disks.append((u, name, None if qd is None else qd / (secs * 1000)))
        disks.sort(key=lambda t: (-t[0], t[1]))
        for u, name, q in disks[:3]:
            if u < 1.0:
                continue
            ev.append(ctx.ev(f"disk {name} utilisation", u, "%", "/proc/diskstats",
                             note=f"interval {iv.index + 1}; mean queue {q:.2f} requests (aqu-sz)"
                             if q is not None else f"interval {iv.index + 1}"))
    busy = [n for u, n, _ in disks if u >= 50]
    if iv.procs_blocked is not None:
        ev.append(ctx.ev("tasks blocked on I/O (procs_blocked)", iv.procs_blocked, "tasks",
                         "/proc/stat", note="at the end of the peak interval"))
    actions = [Action.command("iostat -x 1 5  # per-disk utilisation, latency (await), queue"),
               Action.command("ksight cpu --blocked  # which tasks wait, in which kernel path")]
    disk_s = (f" Busy disks: {', '.join(busy)}." if busy else
              " No disk was busy (>= 50 % utilised) in that interval: the wait may be on "
              "network storage (NFS), a device outside /proc/diskstats, swap, or an I/O limit "
              "of the waiting task's cgroup (blkio throttle, io.max: a throttled request waits "
              "before the disk counts it busy).")
    return r.finding(
        "critical" if j.critical else "warning", ev,
        f"iowait is high: {where(ctx, j)}. iowait is idle time: the CPU had nothing to run, "
        "and some task that last ran on it waits for I/O. It is not CPU work, and the CPUs are "
        "free for other work; what it says is that work is waiting for storage. Idle and "
        f"iowait together are the free CPU time.{disk_s}",
        actions, subject=subject_cpus(j))


# ---- cpu.high-irq ----------------------------------------------------------------------------

@rule("cpu.high-irq", title="High hard-interrupt CPU time",
      needs=("stat",), uses=("interrupts",),
      thresholds={
          "warn_all_pct": Threshold(10, "% of all CPU time",
                                    "hard interrupt handlers are meant to be short (their work "
                                    "is deferred to softirqs); a tenth of the CPU in them is a "
                                    "storm or a slow handler"),
          "warn_cpu_pct": Threshold(25, "% of one CPU",
                                    "one CPU taking a device's interrupts (no affinity spread)"),
          "critical_all_pct": Threshold(30, "% of all CPU time", "interrupts crowd out the work"),
          "min_intervals": _SUSTAIN,
      })
def high_irq(ctx: Context, r: Rule):
    """Hard-interrupt time (mpstat %irq) judged per interval, in total and per CPU.
    Kernels without IRQ time accounting sample it at the tick, which undercounts. Names the
    interrupt sources (/proc/interrupts rates in the peak interval) and the CPUs taking them."""
    j = judge(ctx, r, "irq")
    if not j.fired:
        return None
    iv = peak_interval(ctx, j)
    ev = pct_evidence(ctx, r, j, "%irq")
    if iv.intr_per_s is not None:
        ev.append(ctx.ev("interrupts", iv.intr_per_s, "/s", "/proc/stat",
                         note=f"interval {iv.index + 1}"))
    srcs = []
    for row in iv.interrupts[:4]:
        label = f"interrupt {row.name}" + (f" ({row.description})" if row.description else "")
        srcs.append(label)
        ev.append(ctx.ev(label, row.per_s, "/s", "/proc/interrupts",
                         note=(f"busiest CPU {row.busiest_cpu} with {row.busiest_share_pct:.0f} % "
                               "of them" if row.busiest_cpu is not None else None)))
    actions = [Action.command("ksight cpu --interrupts 1 5  # sources per CPU"),
               Action.command("cat /proc/irq/IRQ/smp_affinity_list; systemctl status irqbalance",
                              why="a device's interrupts on one CPU: spread them (irqbalance, or "
                                  "write a CPU list to smp_affinity_list), or enable interrupt "
                                  "coalescing on the NIC (ethtool -C)")]
    return r.finding(
        "critical" if j.critical else "warning", ev,
        f"Hard-interrupt time is high: {where(ctx, j)}. Interrupt handlers run before anything "
        "else on their CPU. Top sources: " + (", ".join(srcs) if srcs else
                                              "unknown (/proc/interrupts unavailable)") + ".",
        actions, subject=subject_cpus(j))


# ---- cpu.steal -------------------------------------------------------------------------------

@rule("cpu.steal", title="CPU steal time (the hypervisor runs someone else)",
      needs=("stat",),
      thresholds={
          "warn_all_pct": Threshold(10, "% of all CPU time",
                                    "a tenth of this VM's CPU time given to other guests: "
                                    "everything here runs that much slower, and latency jitters"),
          "warn_cpu_pct": Threshold(30, "% of one CPU",
                                    "one virtual CPU starved (its physical CPU is shared)"),
          "critical_all_pct": Threshold(30, "% of all CPU time",
                                        "the VM gets under 70 % of the CPU it was sized for"),
          "min_intervals": _SUSTAIN,
      })
def steal(ctx: Context, r: Rule):
    """Steal time (mpstat %steal) judged per interval, in total and per CPU.
    Time a virtual CPU was runnable but the hypervisor ran something else (another guest, the
    host)."""
    j = judge(ctx, r, "steal")
    if not j.fired:
        return None
    iv = peak_interval(ctx, j)
    ev = pct_evidence(ctx, r, j, "%steal")
    ev.append(ctx.ev("%idle in the same interval (all CPUs)", iv.all.idle, "%", "/proc/stat",
                     note="steal with idle near 0: this VM wants more CPU than the host gives"))
    return r.finding(
        "critical" if j.critical else "warning", ev,
        f"Steal time is high: {where(ctx, j)}. This is a virtual machine and its host gives the "
        "physical CPUs to other guests (or itself) while this one has work: nothing inside the "
        "VM can fix that. Credits of a burstable instance running out look the same.",
        [Action.command("ask the host or the cloud provider: a dedicated or larger instance, "
                        "another host, or fewer vCPUs over-committed",
                        why="steal is decided outside the VM"),
         Action.command("ksight cpu 1 10  # which vCPUs lose time, and when")],
        subject=subject_cpus(j))
