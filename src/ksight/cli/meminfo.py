"""`ksight meminfo`: system memory triage on one screen."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json

HELP = "memory triage: LRU, Shmem (tmpfs, orphan SysV), slab and vmalloc tops, unexplained memory"
DESCRIPTION = """\
Where the machine's memory is, on one screen, from /proc/meminfo plus the files that name names:

  LRU         Active/Inactive, anon and file; AnonPages; Mapped; Unevictable and Mlocked.
  Shmem       with every tmpfs/devtmpfs/ramfs mount and its use (statfs on the live machine;
              `ksight capture` records the answers as ksight/tmpfs.json) and the SysV segments
              no process has attached (/proc/sysvipc/shm nattch 0): memory nobody holds.
  Slab        SReclaimable and SUnreclaim, and the top caches from /proc/slabinfo as slabtop
              prints them: CACHE SIZE = slabs x pages per slab x page size, sorted as slabtop -s c.
  Vmalloc     VmallocUsed and the top callers of /proc/vmallocinfo by the pages behind them.
  Kernel      KernelStack, PageTables, Percpu, hugepages (hugetlb) and THP.
  Unexplained MemTotal minus the counters that partition it (the formula is printed): what
              drivers took from the page allocator without a counter, free pages in per-CPU
              lists, pages in flight. A large or growing share hints at a driver leak.

--kmemleak also shows debugfs kmemleak's report (unreferenced kernel objects, grouped by the
allocating function) where the kernel has it, or why not.
"""
EPILOG = """\
examples:
  ksight meminfo                        # this machine, now (run as root: slabinfo, vmallocinfo)
  ksight meminfo --json | jq .report.unexplained
  ksight meminfo --from cap.tar.zst     # the last snapshot of a capture
  ksight meminfo --kmemleak             # plus kmemleak's report (test machines)
overhead: reads /proc/meminfo, slabinfo, sysvipc/shm, mountinfo and /proc/vmallocinfo once,
and calls statfs on each tmpfs mount (never blocks). vmallocinfo costs the kernel a walk of
every vmalloc area (~3 ms at 3,000 areas, more with many tasks); slabinfo takes each cache's
lock briefly. --kmemleak only reads the last scan's report; kmemleak itself costs on every
allocation, which is why it belongs on test machines.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kmemleak", action="store_true",
                   help="also show debugfs kmemleak's report of unreferenced kernel objects")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..views import meminfo as mv

    uses = mv.USES + ((mv.KMEMLEAK,) if args.kmemleak else ())
    needs = Needs(sources=mv.SOURCES, uses=uses, window=False)
    snap = Collector.open(args.from_).one(Plan.of([needs]))
    rep = mv.report(snap, kmemleak=args.kmemleak)
    status = 3 if rep.mem_total_kb is None else 0
    if args.json:
        print_json({"version": 1, "taken_at": snap.taken_at, "report": rep})
        return status
    from ..render.meminfo_text import render

    render(rep, sys.stdout)
    return status
