"""`ksight check`: look at the machine for a short window, find what is wrong, say what to do."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, seconds_between

# check looks for a while; a day or more is the recorder's job (and nonsense as one window)
MAX_WINDOW_S = 86400.0
DEFAULT_WINDOW_S = 3.0
# the console script runs check with the cyclic garbage collector off (cli/main.py FAST_EXIT):
# a window of more snapshots than this, or any capture or recording, turns it back on, so what a long window makes and drops
# (check keeps at most Collector.MAX_KEPT snapshots) is collected as usual
GC_OFF_SNAPSHOTS = 30

HELP = "diagnose this machine (or a capture): findings with evidence and actions"
DESCRIPTION = """\
Sample the kernel's counters for a short window (default 3 s, 5 s when the memory area is
selected: its growth rules judge trends; one snapshot a second), run every
rule of the selected areas, and print what is wrong, most severe first: the evidence (numbers
with their source file), why it matters, and what to do (sysctl lines, commands).

Areas: pagecache (reclaim, dirty pages, swap, caches thrown away), memory (processes that grow,
shmem/tmpfs and orphan SysV segments, slab and vmalloc growth, OOM kills, unexplained memory),
cpu (system, softirq, iowait, hard-irq and steal time per CPU, load against the CPU count; live,
cpu.high-system adds the top kernel functions from a 1 s perf profile when perf runs as root),
tcp (retransmits, listen/SYN overflows, CLOSE_WAIT leaks, TIME_WAIT, memory, buffers; per netns),
net (transmit drops per interface, softnet drops and time squeezes per CPU against netdev_budget).

Exit status: 0 every rule looked and found nothing at warning or above, 1 warning, 2 critical,
3 could not diagnose (a rule could not look and nothing worse was found: -v says which and why).
"""
EPILOG = """\
examples:
  ksight check                        # a 5 s window on this machine, every area
  ksight check --interval 10          # a longer window catches slower problems
  ksight check --area pagecache       # only these rules (3 s)
  ksight check --area memory -i 30    # watch 30 s for processes that grow
  ksight check --json | jq '.findings[].id'
  ksight check --from cap.tar.zst     # a capture from `ksight capture`, on any machine
  ksight check --rules                # every rule, its thresholds and why

overhead: reads ~20 small /proc and /sys files per snapshot (about 5-15 ms of CPU each);
no tracing, nothing is changed on the machine.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interval", type=seconds_between(0.01, MAX_WINDOW_S, "the window"),
                   default=None, metavar="S",
                   help="length of the observation window in seconds (default 3, or longer when "
                        "a selected rule needs it: the memory growth rules judge trends over 5 s)")
    p.add_argument("--step", type=seconds_between(0.01, MAX_WINDOW_S, "the step"), default=1.0,
                   metavar="S",
                   help="seconds between snapshots inside the window (default 1)")
    p.add_argument("-a", "--area", action="append", metavar="AREA",
                   help="only rules of this area (repeatable)")
    p.add_argument("--rules", action="store_true", help="list the rules and their thresholds, then exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show rules that could not run and why, and unavailable sources")
    add_from(p, db=True)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector, stderr_progress
    from ..diagnose.engine import diagnose, load_rules, longest_window_needed, plan_for
    from ..errors import UsageError

    if args.rules:
        return _list_rules(load_rules(args.area))
    if args.interval is None:  # long enough for every selected rule (typed needs: min_seconds)
        args.interval = max(DEFAULT_WINDOW_S, longest_window_needed(args.area))
    if args.step > args.interval:
        raise UsageError(f"--step {args.step:g} is longer than the window (--interval {args.interval:g})")
    col = Collector.open(args.from_)
    if not col.live or args.interval / args.step > GC_OFF_SNAPSHOTS:
        import gc  # a capture or a recording may hold any number of snapshots

        gc.enable()
    # live: collect nothing for rules this window is too short for; a capture is what it is
    # live, sockets are sampled without their owners: the few a finding names are looked up
    # once the rules have found something (a capture holds its owners already)
    plan = plan_for(args.area, args.interval if col.live else None, owners_later=col.live)
    snaps = col.window(plan, seconds=args.interval, step=args.step,
                       progress=stderr_progress(args.json))
    report = diagnose(snaps, args.area, owners=col.add_owners if plan.owners_later else None)
    from ..diagnose.enrich import enrich  # live-only extra evidence (a short profile, ...)

    enrich(report, live=col.live, progress=stderr_progress(args.json))
    if col.step_used and col.step_used > args.step:
        report.notes.append(
            f"long window: kept one snapshot every {col.step_used:g} s (at most {col.MAX_KEPT} "
            f"snapshots are held), so peaks are judged over {col.step_used:g} s intervals")
    if args.json:
        from ..render.check_json import report_json
        from .common import print_json

        print_json(report_json(report))
    else:
        from ..render.check_text import render_report

        render_report(report, verbose=args.verbose)
    return report.exit_status()


def _list_rules(rules) -> int:
    for r in rules:
        print(f"{r.id}  [{r.area}] {r.title}")
        if r.doc:
            print(f"    {r.doc.splitlines()[0]}")
        n = r.needs
        reads = ", ".join(n.sources + tuple(c.name for c in n.counters) + n.sysctls) or "-"
        print(f"    reads: {reads}{'' if r.window else '  (one snapshot is enough)'}")
        if n.uses:
            print(f"    also uses when present: {', '.join(n.uses)}")
        for name, t in r.thresholds.items():
            print(f"    {name} = {t.value:g} {t.unit}: {t.why}")
    return 0
