"""`ksight pmap PID`: procps pmap -x's columns from /proc/PID/smaps, each mapping classed."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json

HELP = "procps pmap -x's columns for one process, from smaps, each mapping classed"
DESCRIPTION = """\
Print the memory map of PID with the columns of procps `pmap -x`, computed as pmap computes
them from /proc/PID/smaps (the same numbers for the same smaps text):

  Address   start of the mapping
  Kbytes    its size (virtual, kB)
  RSS       resident kB (smaps Rss)
  Dirty     dirty kB (Shared_Dirty + Private_Dirty): written and not yet clean on disk/swap
  Mode      r/w/x, then s for a shared mapping (- when private), then - (pmap's column for
            swap reservation, always - on Linux)
  Class     (ksight) p private / s shared, and the kind: heap ([heap], brk), stack, anon
            (anonymous mmap), vdso (kernel pages), shm (/dev/shm, SysV, memfd, shared anonymous:
            tmpfs memory), exe (the program file), lib (a .so), file (any other mapped file)
  Mapping   as pmap: the file's base name, [ anon ], [ stack ], [ shmid=0x... ]

then the totals, and the memory summed by kind. With --from, the capture must hold this
process's /proc/PID/smaps (the last snapshot is used); captures made by `ksight capture` hold
smaps_rollup (per-process totals) only, and then ksight pmap says so and prints nothing.
"""
EPILOG = """\
examples:
  ksight pmap 1234                 # the map of process 1234, as pmap -x 1234 prints it
  ksight pmap $$ --json            # the same for scripts, with shared/anonymous/kind per mapping
  ksight pmap 1234 | sort -k3 -n | tail   # the 10 largest mappings by RSS
  ksight pmap 1234 --from cap/     # from a capture that holds proc/1234/smaps
overhead: one read of /proc/PID/smaps: the kernel walks the page tables of every mapping while
it prints them (like pmap -x; about 1 us per mapping plus 1 us per MiB resident, more on huge
processes), under the process's mmap lock in read mode: the process can page-fault meanwhile
but its mmap/munmap calls wait.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pid", type=int, metavar="PID", help="the process")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..errors import Unavailable, UsageError
    from ..views import pmap

    if args.pid <= 0:
        raise UsageError("PID must be a positive number")
    col = Collector.open(args.from_)
    plan = Plan.of([Needs(processes=("stat", "status", "cmdline"), pids=(args.pid,), window=False)])
    snap = col.one(plan)
    proc = (snap.processes or {}).get(args.pid)
    root = col.root if col.live else col.capture.roots[-1]
    where = "live" if col.live else f"capture {col.label} (last snapshot)"
    if proc is None and not root.exists(f"proc/{args.pid}"):
        raise UsageError(f"no process {args.pid} ({where})")
    try:
        pm = pmap.build(root, args.pid, pmap.command_of(proc))
    except Unavailable as u:
        if col.live:
            raise UsageError(f"cannot read proc/{args.pid}/smaps: {u.reason}") from None
        raise UsageError(f"the capture holds no proc/{args.pid}/smaps ({u.reason}): pmap needs "
                         "per-mapping smaps, which `ksight capture` does not record (it keeps "
                         "smaps_rollup totals); run ksight pmap on the live machine") from None
    if args.json:
        print_json({"version": 1, "pid": pm.pid, "command": pm.command, "exe": pm.exe,
                    "columns": list(pmap.COLUMNS), "mappings": pmap.mapping_dicts(pm),
                    "total": {"kbytes": pm.total_kbytes, "rss_kb": pm.total_rss_kb,
                              "dirty_kb": pm.total_dirty_kb},
                    "by_kind": pm.by_kind(), "notes": pm.notes})
    else:
        from ..render.pmap_text import render

        render(pm, sys.stdout)
    return 0
