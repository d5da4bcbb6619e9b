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
limit and soft limit, usage, page cache charged to it) and how to keep its cache: memory.low /
memory.min sized from its current cache (v2), what v1 can and cannot do, mlock for data that
must stay, and fadvise/madvise DONTNEED for cache not worth keeping.
"""
EPILOG = """\
examples:
  ksight pagecache                      # this machine, now
  ksight pagecache --json               # the same for scripts
  ksight pagecache --from cap.tar.zst   # the last snapshot of a capture
  ksight pagecache --protect 1234       # the cgroup of PID 1234 and how to protect its cache
  ksight pagecache --protect /system.slice/postgresql.service
overhead: reads a handful of /proc files once (and the memory cgroup tree with --protect).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protect", metavar="PID|CGROUP",
                   help="show a workload's memory cgroup and how to protect its page cache")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..views import pagecache as pc

    sources = list(pc.PROTECT_SOURCES if args.protect else pc.SOURCES)
    process = None
    if args.from_:
        from ..store.capture import open_capture

        cap = open_capture(args.from_)
        snaps = list(cap.snapshots(sources=sources))
        snap = snaps[-1]
        root = cap.roots[-1]
    else:
        from ..collect.snapshot import take
        from ..fs import LiveRoot

        root = LiveRoot()
        snap = take(root, sources=sources)
    if args.protect and args.protect.isdigit():
        from ..collect.processes import scan

        procs, _missing = scan(root, detail=("cgroup",), pids=[int(args.protect)],
                               page_size=snap.host.page_size)
        process = procs.get(int(args.protect))
    rep = pc.report(snap, protect_target=args.protect, process=process)
    # --protect of a PID or cgroup that does not exist: the report says why; exit 3
    not_found = args.protect and (rep.protect is None or rep.protect.version is None
                                  or rep.protect.current_bytes is None and rep.protect.max_bytes is None)
    status = 3 if not_found or (rep.cache is None and rep.protect is None) else 0
    if args.json:
        print_json({"version": 1, "taken_at": snap.taken_at, "report": rep})
        return status
    render(rep, sys.stdout)
    return status


def _kb(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1024:.1f} MiB" if abs(v) < 1024 * 1024 else f"{v / 1048576:.2f} GiB"


def _pg(pages, ps) -> str:
    return "-" if pages is None else _kb(pages * ps // 1024)


def render(rep, out) -> None:
    from ..views.pagecache import human

    w = out.write
    c = rep.cache
    w("Page cache (from /proc/meminfo)\n")
    if c is None:
        w("  unavailable\n")
    else:
        w(f"  Buffers {_kb(c.buffers_kb)}   Cached {_kb(c.cached_kb)}   SwapCached "
          f"{_kb(c.swap_cached_kb)}   = {_kb(c.page_cache_kb)}\n")
        w(f"  Active(file) {_kb(c.active_file_kb)} + Inactive(file) {_kb(c.inactive_file_kb)} + "
          f"Shmem {_kb(c.shmem_kb)} + SwapCached = {_kb(c.lru_side_kb)}\n")
        w(f"  gap {c.gap_kb if c.gap_kb is not None else '-'} kB   (Unevictable "
          f"{_kb(c.unevictable_kb)}, Mlocked {_kb(c.mlocked_kb)})\n")
        for line in _wrap(c.why, 96, "    "):
            w(line + "\n")
        w(f"  free(1) buff/cache = Buffers + Cached + SReclaimable = {_kb(c.buff_cache_kb)}\n")
    d = rep.dirty
    w("\nDirty pages and writeback limits (mm/page-writeback.c)\n")
    if d is None:
        w("  unavailable (needs meminfo or vmstat, and the vm.dirty_* sysctls)\n")
    else:
        ps = d.page_size
        w(f"  dirty {_pg(d.dirty_pages, ps)}   writeback {_pg(d.writeback_pages, ps)}   "
          f"state: {d.state}\n")
        src = (f"dirty_bytes={d.dirty_bytes}" if d.dirty_bytes else f"dirty_ratio={d.dirty_ratio}%")
        bsrc = (f"dirty_background_bytes={d.background_bytes}" if d.background_bytes
                else f"dirty_background_ratio={d.background_ratio}%")
        w(f"  background writeback above {_pg(d.bg_thresh_pages, ps)} ({bsrc})\n")
        w(f"  writers throttled above {_pg(d.freerun_pages, ps)}, hard limit "
          f"{_pg(d.thresh_pages, ps)} ({src})\n")
        kern = ("-" if d.kernel_thresh_pages is None else
                f"{d.kernel_bg_thresh_pages} / {d.kernel_thresh_pages} pages")
        w(f"  in pages: background / limit {d.bg_thresh_pages} / {d.thresh_pages};  kernel's own "
          f"(vmstat): {kern}\n")
        w(f"  dirtyable {_pg(d.dirtyable_pages, ps)} = free {_pg(d.free_pages, ps)} ({d.free_source}) - "
          f"reserve {_pg(d.totalreserve_pages, ps)} + file LRU {_pg(d.file_lru_pages, ps)}\n")
        if d.vmstat_free_pages is not None:
            w(f"  MemFree {d.memfree_pages} pages, vmstat nr_free_pages {d.vmstat_free_pages} pages\n")
        for n in d.notes:
            for line in _wrap(n, 96, "  ! "):
                w(line + "\n")
    w("\nZone watermarks (pages, from /proc/zoneinfo)\n")
    if not rep.zones:
        w("  unavailable\n")
    else:
        w(f"  {'node zone':<16}{'free':>10}{'min':>9}{'low':>9}{'high':>9}{'managed':>11}  state\n")
        for z in rep.zones:
            if z.state == "empty":
                continue
            w(f"  {str(z.node) + ' ' + z.name:<16}{_n(z.free_pages):>10}{_n(z.min_pages):>9}"
              f"{_n(z.low_pages):>9}{_n(z.high_pages):>9}{_n(z.managed_pages):>11}  {z.state}\n")
    s = rep.swap
    w("\nSwap\n")
    if s is None:
        w("  unavailable\n")
    elif not s.total_kb:
        w("  no swap configured\n")
    else:
        w(f"  total {_kb(s.total_kb)}   used {_kb(s.used_kb)}   SwapCached {_kb(s.cached_kb)}\n")
        for dev in s.devices:
            w(f"  {dev.filename} ({dev.type}, prio {dev.priority}): {_kb(dev.used_kb)} of "
              f"{_kb(dev.size_kb)}\n")
    p = rep.protect
    if p is not None:
        w(f"\nProtecting {'PID ' + str(p.pid) if p.pid is not None else p.target}\n")
        if p.cgroup is not None:
            w(f"  memory cgroup {p.cgroup} (v{p.version})\n")
        if p.version == 2:
            w(f"  memory.min {human(p.min_bytes)}   memory.low {human(p.low_bytes)}   memory.high "
              f"{human(p.high_bytes)}   memory.max {human(p.max_bytes)}\n")
        elif p.version == 1:
            w(f"  memory.limit_in_bytes {human(p.max_bytes)}   memory.soft_limit_in_bytes "
              f"{human(p.soft_limit_bytes)}   (v1 has no memory.min / memory.low)\n")
        if p.current_bytes is not None or p.file_bytes is not None:
            w(f"  usage {human(p.current_bytes)}   page cache {human(p.file_bytes)} (active "
              f"{human(p.active_file_bytes)})   anon {human(p.anon_bytes)}\n")
        for n in p.notes:
            w(f"  ! {n}\n")
        w("  what to do:\n")
        for a in p.advice:
            for line in _wrap(a, 96, "  - ", "    "):
                w(line + "\n")
    for n in rep.notes:
        w(f"# {n}\n")
    if rep.unavailable:
        w("\nMissing (shown as unavailable above):\n")
        for m in rep.unavailable:
            w(f"  {m.source}: {m.reason}\n")


def _n(v) -> str:
    return "-" if v is None else str(v)


def _wrap(text: str, width: int, first: str, rest: str | None = None) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, initial_indent=first,
                         subsequent_indent=rest if rest is not None else " " * len(first))
