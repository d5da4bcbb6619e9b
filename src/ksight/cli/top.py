"""`ksight top`: processes by memory with top's VIRT/RES/SHR/CODE/DATA, swap, VMAs, oom_score."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json

HELP = "processes by memory: VIRT RES SHR CODE DATA, share of RAM, swap, VMAs, oom_score, as top computes them"
DESCRIPTION = """\
One look at the processes that hold the most memory, with top's memory columns computed as top
computes them (KiB):

  VIRT  address space (statm size): reserved, not necessarily used
  RES   resident memory (statm resident = RssAnon + RssFile + RssShmem)
  SHR   resident memory that could be shared: file pages and shmem (statm shared)
  CODE  the program's text segment (statm text); DATA  data + stack (statm data), including
        memory reserved but never touched
  %MEM  RES / MemTotal
  SWAP  swapped out (status VmSwap)
  VMAs  number of mappings (lines of /proc/PID/maps); vm.max_map_count is the ceiling
  OOM   oom_score: the OOM killer takes the highest first; ADJ  oom_score_adj (-1000: never)

-s picks the sort: rss (default), virt, shr, swap or oom. With --from, the last snapshot of the
capture (which must hold the processes' statm, status and oom files; VMAs need proc/PID/maps).
"""
EPILOG = """\
examples:
  ksight top                       # the 20 processes with the most resident memory
  ksight top -s swap -n 5          # who is swapped out
  ksight top -s oom                # the OOM killer's pick order
  ksight top -s virt --json        # for scripts
  ksight top --from cap.tar.zst    # the last snapshot of a capture
overhead: reads stat, statm, status, oom_score and oom_score_adj of every process (about
25 us per process: ~25 ms on 1,000 processes) and /proc/PID/maps of the N shown (the kernel walks
their mappings: ~1 us each, under each process's mmap lock in read mode).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..views.top import SORT_KEYS

    p.add_argument("-s", "--sort", choices=tuple(SORT_KEYS), default="rss",
                   help="sort by (default rss)")
    p.add_argument("-n", type=int, default=20, metavar="N", help="show N processes (default 20)")
    add_from(p, db=True)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Plan
    from ..errors import UsageError
    from ..views import top

    if args.n < 1:
        raise UsageError("-n must be at least 1")
    col = Collector.open(args.from_)
    plan = Plan.of([top.needs(args.sort, args.n)])
    snap = col.one(plan)
    if snap.processes is None:
        m = snap.missing("processes")
        raise UsageError(f"no process table: {m.reason if m else 'not collected'}")
    rep = top.build(snap, sort=args.sort, n=args.n)
    if args.json:
        print_json({"version": 1, "sort": rep.sort, "processes": rep.processes,
                    "mem_total_kb": rep.mem_total_kb, "rows": rep.rows, "notes": rep.notes,
                    "unavailable": snap.unavailable})
    else:
        from ..render.top_text import render

        render(rep, sys.stdout)
    return 0
