"""`ksight pagecache`: where the page cache is, dirty limits, watermarks, swap; --protect."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json

HELP = "where the page cache is, dirty pages vs writeback limits, watermarks, swap; --protect"
DESCRIPTION = """\
One look at the page cache, from /proc/meminfo, /proc/vmstat, /proc/zoneinfo, /proc/swaps and
the vm.dirty_* sysctls:

  cache     Buffers, Cached, SwapCached against the LRU lists (Active/Inactive(file) + Shmem),
            with the gap between the two and why it is there; free(1)'s buff/cache
            (Buffers + Cached + SReclaimable).
  dirty     Dirty and Writeback pages against the thresholds the kernel computes from vm.dirty_*
            and its dirtyable memory (free - reserves + file LRU), as mm/page-writeback.c does:
            above "background" the flusher writes back; above "throttle" (halfway between) the
            writers themselves are slowed down in balance_dirty_pages. The kernel's own numbers
            (vmstat nr_dirty_threshold) are shown beside ours.
  zones     free pages per zone against the min / low / high watermarks: below low wakes kswapd,
            below min makes allocating tasks reclaim themselves (direct reclaim).
  swap      devices, size, used, SwapCached.

--protect PID|CGROUP shows that workload's memory cgroup (memory.min/low/high/max or the v1
limit and soft limit, usage, page cache charged to it) and how to keep its cache, as actions:
the cgroup file to write (its absolute path under wherever the memory controller is mounted)
and the value, for memory.low / memory.min sized from its current cache and its parents (v2),
the v1 soft limit, systemd's set-property; mlock for data that must stay, and fadvise/madvise
DONTNEED for cache not worth keeping. --json lists them under report.protect.actions.
"""
EPILOG = """\
examples:
  ksight pagecache                      # this machine, now
  ksight pagecache --json               # the same for scripts
  ksight pagecache --from cap.tar.zst   # the last snapshot of a capture
  ksight pagecache --protect 1234       # the cgroup of PID 1234 and how to protect its cache
  ksight pagecache --protect /system.slice/postgresql.service
  ksight pagecache --protect 1234 --json | jq '.report.protect.actions[] | select(.kind=="cgroup")'
overhead: reads a handful of /proc files once; --protect also walks the memory cgroup tree
and, for a PID, that process's /proc/PID/cgroup.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protect", metavar="PID|CGROUP",
                   help="show a workload's memory cgroup and how to protect its page cache")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..views import pagecache as pc

    pid = int(args.protect) if args.protect and args.protect.isdigit() else None
    needs = Needs(sources=tuple(pc.PROTECT_SOURCES if args.protect else pc.SOURCES),
                  # a PID's memory cgroup comes from its /proc/PID/cgroup
                  processes=("cgroup",) if pid is not None else (),
                  pids=(pid,) if pid is not None else (),
                  cgroup_files=("usage", "max", "protection", "stat", "idle"), window=False)
    snap = Collector.open(args.from_).one(Plan.of([needs]))
    process = (snap.processes or {}).get(pid) if pid is not None else None
    rep = pc.report(snap, protect_target=args.protect, process=process)
    # --protect of a PID or cgroup that does not exist: the report says why; exit 3
    not_found = args.protect and (rep.protect is None or rep.protect.version is None
                                  or rep.protect.current_bytes is None and rep.protect.max_bytes is None)
    status = 3 if not_found or (rep.cache is None and rep.protect is None) else 0
    if args.json:
        print_json({"version": 1, "taken_at": snap.taken_at, "report": rep})
        return status
    from ..render.pagecache_text import render

    render(rep, sys.stdout)
    return status
