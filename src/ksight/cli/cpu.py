"""`ksight cpu`: where the CPU time goes, live or from a capture."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json, seconds

HELP = "CPU time per CPU as mpstat -P ALL, load, runnable/blocked, top processes; --softirqs, " \
       "--interrupts, --topology, --blocked"
DESCRIPTION = """\
Where the CPU time goes, per interval. The table is sysstat's `mpstat -P ALL`, computed as mpstat
computes it from the same two /proc/stat readings:

  %usr %nice   user and nice time without guest time (the kernel counts guest time inside user;
               it is shown once, under %guest / %gnice)
  %sys         the kernel working for processes (system calls, page faults)
  %iowait      idle, while some task this CPU ran waits for I/O: idle time, not busy time
  %irq %soft   hard interrupts and softirqs (network receive, timers, RCU, block completions)
  %steal       time the hypervisor gave this virtual CPU's slot to someone else
  %idle        idle with nothing waiting

Below each table: the load average against the CPUs online, runnable and blocked (D state)
tasks, context switches, interrupts and forks per second, CPU pressure (PSI: the share of the
interval some runnable task waited for a CPU) and the processes making the most system and user
time (% of one CPU, as pidstat).

--softirqs / --interrupts   rates per kind (NET_RX, TIMER, ...) or source (IRQ and device) and
                           per CPU, with the busiest CPU and its share of the total: 100 % means
                           every one lands on one CPU (no RSS/RPS, irqbalance off, affinity)
--topology                 sockets, cores, threads, NUMA nodes, and which CPUs share each cache
                           level (L1d, L1i, L2, L3) with its size (sysfs; one snapshot)
--blocked                  tasks in D state with their wait channel and, as root, their kernel
                           stack, grouped by stack (live; a capture gives the processes in D)

Live: one table every INTERVAL seconds, COUNT times (one over 1 s when no interval is given;
until Ctrl-C when only INTERVAL is), then mpstat's Average. --from: one table per consecutive
pair of snapshots of the capture, then the Average.
"""
EPILOG = """\
examples:
  ksight cpu                        # one interval of 1 s, every CPU
  ksight cpu 1 5                    # five tables one second apart, then Average
  ksight cpu --softirqs 1 3         # which softirqs run where (NET_RX all on CPU 0?)
  ksight cpu --interrupts 2         # interrupt sources per CPU every 2 s until Ctrl-C
  ksight cpu --topology             # sockets, cores, SMT siblings, caches shared
  sudo ksight cpu --blocked         # D-state tasks grouped by kernel stack
  ksight cpu --from cap.tar.zst     # the same tables from a capture
  ksight cpu 1 3 --json | jq '.intervals[].mpstat.all.sys'
overhead: reads /proc/stat, loadavg, pressure, softirqs, interrupts and every process's stat
once per interval (a few ms; the process scan grows with the number of processes).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("interval", nargs="?", type=seconds, help="seconds between tables (default 1)")
    p.add_argument("count", nargs="?", type=int,
                   help="number of tables (default: until Ctrl-C; 1 when no interval is given)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--softirqs", action="store_true", help="softirq rates per kind and per CPU")
    g.add_argument("--interrupts", action="store_true", help="interrupt rates per source and per CPU")
    g.add_argument("--topology", action="store_true", help="sockets, cores, threads, NUMA, caches")
    g.add_argument("--blocked", action="store_true", help="D-state tasks, wait channels, kernel stacks")
    p.add_argument("--top", type=int, default=5, metavar="N",
                   help="processes listed by system and by user time (default 5; 0: none)")
    add_from(p, db=True)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..errors import UsageError

    if args.interval is not None and args.interval <= 0:
        raise UsageError("interval must be a positive number of seconds")
    if args.count is not None and args.count < 1:
        raise UsageError("count must be at least 1")
    if args.top < 0:
        raise UsageError("--top must be 0 or more")
    col = Collector.open(args.from_)
    if args.topology:
        return _topology(col, args)
    if args.blocked:
        return _blocked(col, args)
    if not col.live and (args.interval is not None or args.count is not None):
        raise UsageError("with --from, tables come from the capture's snapshots: drop INTERVAL/COUNT")
    return _intervals(col, args)


def _intervals(col, args) -> int:
    from ..collect.plan import Needs, Plan
    from ..render import cpu_text
    from ..views import cpu

    interval = args.interval if args.interval is not None else 1.0
    count = args.count if args.count is not None else (1 if args.interval is None else None)
    parts = cpu.PARTS if args.top else ()
    plan = Plan.of([Needs(sources=cpu.SOURCES, processes=parts)])
    mode = "softirqs" if args.softirqs else "interrupts" if args.interrupts else "cpu"
    stream = cpu.CpuStream(top=args.top, rates=mode != "cpu" or args.json)
    out = []
    unavailable: dict[str, str] = {}
    first = True
    for snap in col.stream(plan, interval=interval, count=count):
        for m in snap.unavailable:
            unavailable.setdefault(m.source, m.reason)
        if snap.get("stat") is None:
            from ..errors import Unavailable

            m = snap.missing("stat")
            raise Unavailable("/proc/stat", m.reason if m else "not in this snapshot")
        iv = stream.add(snap)
        if iv is None:
            continue
        out.append(iv)
        if not args.json:
            lines = (cpu_text.interval_text(iv, top=bool(args.top)) if mode == "cpu"
                     else cpu_text.rates_text(iv, mode))
            if not first:
                print()
            first = False
            print("\n".join(lines))
            sys.stdout.flush()
    avg = stream.average()
    if args.json:
        print_json({"version": 1, "mode": mode, "intervals": out, "average": avg,
                    "breaks": stream.breaks,
                    "unavailable": [{"source": k, "reason": v} for k, v in unavailable.items()]})
    else:
        if mode == "cpu" and len(out) > 1:
            print()
            print("\n".join(cpu_text.average_text(avg)))
        if not out:
            print("no interval: at least two snapshots of one boot are needed"
                  + (f" ({'; '.join(stream.breaks)})" if stream.breaks else ""), file=sys.stderr)
        for k, v in unavailable.items():
            if k in ("pressure", "softirqs", "interrupts") or k.startswith("processes:"):
                print(f"note: {k} unavailable: {v}", file=sys.stderr)
    return 0 if out else 3


def _topology(col, args) -> int:
    from ..collect.plan import Needs, Plan
    from ..render import cpu_text
    from ..views import cpu

    snap = col.one(Plan.of([Needs(sources=cpu.TOPOLOGY_SOURCES, window=False)]))
    t = cpu.topology(snap)
    if args.json:
        print_json({"version": 1, "topology": t})
    else:
        print("\n".join(cpu_text.topology_text(t)))
    return 0 if t.places else 3


def _blocked(col, args) -> int:
    from ..collect.plan import Needs, Plan
    from ..render import cpu_text
    from ..views import cpu

    snap = col.one(Plan.of([Needs(sources=cpu.BLOCKED_SOURCES, processes=("stat",),
                                  window=False)]))
    b = cpu.blocked(snap, live=col.live)
    if args.json:
        print_json({"version": 1, "blocked": b})
    else:
        print("\n".join(cpu_text.blocked_text(b)))
    return 0
