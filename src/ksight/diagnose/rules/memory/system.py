"""Memory held outside processes: memory.shmem-growth, memory.slab-leak, memory.vmalloc-leak,
memory.oom-kill, memory.unexplained.

Each rule judges the trend over the window (GaugeSeries.trend: least-squares slope, r2, rises
and falls), never two points: a cache warming up rises then levels off, a leak keeps rising.
A short window cannot tell a leak from a ramp that will stop: the explanations say so, and
the thresholds ask for growth a healthy machine does not sustain for seconds on end.

Kernel facts these rules rest on (torvalds/linux, fs/proc/meminfo.c and mm/):
- Cached = NR_FILE_PAGES - swap cache - Buffers, and NR_FILE_PAGES counts shmem/tmpfs pages:
  Shmem is *inside* Cached. Mapped is inside Cached too. AnonHugePages is inside AnonPages,
  ShmemHugePages inside Shmem, FileHugePages inside Cached. Mlocked is inside Unevictable, and
  Active/Inactive/Unevictable re-partition the LRU pages that AnonPages, Cached, Buffers and
  Shmem already count, so no LRU list is added. Slab = SReclaimable + SUnreclaim; KReclaimable
  (4.20+) = SReclaimable + other reclaimable kernel memory.
- VmallocUsed changed meaning twice: up to 4.3 it was the sum of vmalloc *address space*
  (ioremap included, not RAM) and VmallocChunk the largest free chunk; 4.4 ("mm: get rid of
  'vmalloc_info' from /proc/meminfo") printed both as 0; 5.3 ("mm: vmalloc: show number of
  vmalloc pages in /proc/meminfo") prints vmalloc_nr_pages(), the pages vmalloc really holds,
  while VmallocChunk stays 0. So VmallocChunk != 0 means the old address-space meaning, and a 0
  VmallocUsed with VmallocChunk 0 means 4.4-5.2: then the pages are summed from
  /proc/vmallocinfo's pages=N.
"""

from __future__ import annotations

from ....collect.plan import When
from ....model.counters import cg, vm
from ....render.units import size, size_kb
from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule
from ..pagecache.common import cgroup_dir

MiB = 1 << 20
OOM_KILL = vm("oom_kill", zoned=False, since="Linux 4.13 and later")
CG_SHMEM = cg("shmem", "total_shmem")


def _kb(mi, attr: str) -> int | None:
    return getattr(mi, attr, None) if mi is not None else None


def _steady_growth(ctx: Context, r: Rule, g):
    """The gauge's trend when it grows steadily past the rule's warn_growth_bytes and
    warn_growth_bytes_per_s (gauge in kB), None when it does not; cannot look with < 4 points."""
    tr = g.trend()
    if not _trend_ok(tr):
        raise ctx.cannot_look("a trend needs 4 snapshots or more (check --interval 3 --step 1)")
    if not (tr.steady_growth and tr.growth * 1024 >= r.t("warn_growth_bytes")
            and tr.slope_per_s * 1024 >= r.t("warn_growth_bytes_per_s")):
        return None
    return tr


def _grown_parts(ctx: Context, source: str, keys, value_of, min_growth_bytes: float) -> list:
    """(name, trend) of the parts of a source (slab caches, vmalloc callers) that grew steadily
    by at least min_growth_bytes, largest growth first."""
    names: set = set()
    for s in ctx.snapshots:
        got = s.get(source)
        if got is not None:
            names |= set(keys(got))
    grown = []
    for n in names:
        ct = ctx.series.gauge(n, value_of(n)).trend()
        if ct is not None and ct.growth >= min_growth_bytes and ct.r2 >= 0.8 and ct.rises > ct.falls:
            grown.append((n, ct))
    grown.sort(key=lambda x: x[1].growth, reverse=True)
    return grown


def _trend_ok(tr, points: int = 4) -> bool:
    return tr is not None and tr.points >= points


# ------------------------------------------------------------------------------------------
# memory.shmem-growth
def _orphans(shm) -> dict:
    """(shmid, key) -> segment, for segments no process has attached (nattch 0)."""
    if shm is None:
        return {}
    return {(s.shmid, s.key): s for s in shm.segments if s.nattch == 0}


def _seg_bytes(s) -> int:
    """What a segment holds in RAM (rss, 2.6.28+), else its size."""
    return s.rss_bytes if s.rss_bytes is not None else s.size_bytes


def _unheld_kb(snap) -> float | None:
    """Shmem that no process maps: Shmem - sum(RssShmem), a lower bound (RssShmem counts a page
    once per process mapping it, so the sum can only overstate what processes hold)."""
    mi = snap.get("meminfo")
    if mi is None or mi.shmem_kb is None:
        return None
    procs = snap.processes
    if not procs:
        return None
    held = [getattr(p.status, "rss_shmem_kb", None) for p in procs.values() if p.status is not None]
    if not any(v is not None for v in held):
        return None  # kernels before 4.5 print no RssShmem: cannot tell
    return max(0.0, mi.shmem_kb - sum(v for v in held if v))


@rule("memory.shmem-growth", title="Shared memory (tmpfs, SysV) held by no process",
      needs=("meminfo",), uses=("sysvipc_shm", "cgroup_memory"), processes=("status",),
      cgroup_files=("stat",), min_seconds=2.0,
      thresholds={
          "warn_orphan_segment_bytes": Threshold(
              32 * MiB, "bytes in SysV segments with nattch 0 in every snapshot",
              "a segment nobody attaches stays until shmctl(IPC_RMID) or reboot and is never "
              "reclaimed except to swap; small ones (a few MiB) are kept on purpose by some "
              "programs between runs, tens of MiB are a program that died without removing it"),
          "warn_unheld_share": Threshold(
              0.10, "of MemTotal in Shmem mapped by no process",
              "tmpfs files (/dev/shm, /run, a tmpfs /tmp) live in RAM or swap until deleted; "
              "a tenth of RAM nobody maps is a filling tmpfs, not a working set"),
          "min_unheld_bytes": Threshold(
              256 * MiB, "bytes", "below this a share of a small machine is /run and /dev/shm "
                                  "as every distribution uses them"),
          "warn_growth_bytes": Threshold(
              32 * MiB, "bytes of growth over the window, steady (r2 >= 0.8, no fall)",
              "Shmem no process maps that keeps rising: files written to a tmpfs and kept; a "
              "one-off copy to /dev/shm is a step, not steady growth"),
          "warn_growth_bytes_per_s": Threshold(
              1 * MiB, "bytes/s (least-squares slope)",
              "3.5 GiB an hour: a tmpfs at this rate fills RAM within hours"),
      })
def shmem_growth(ctx: Context, r: Rule):
    """Shmem (meminfo; NR_SHMEM: tmpfs, /dev/shm, SysV segments, memfd and shared anonymous
    mappings) that no process holds. Two findings, each naming what holds the memory:
    - SysV segments with nattch 0 (/proc/sysvipc/shm) in every snapshot, by shmid, key and size;
    - Shmem no process maps (Shmem - sum of RssShmem from /proc/PID/status, a lower bound) that
      is large or grows steadily: files in a tmpfs. ksight has no per-mount tmpfs usage source
      (statfs of each tmpfs mount is not a /proc file): the finding names the memory cgroup
      whose memory.stat shmem grows (tmpfs pages stay charged to the cgroup of the task that
      wrote them) and points at `df -t tmpfs` for the mount."""
    mi = ctx.get("meminfo")
    if mi is None or mi.shmem_kb is None or not mi.mem_total_kb:
        raise ctx.cannot_look("/proc/meminfo has no Shmem (Linux 2.6.32 and later)")
    out = []
    # ---- orphan SysV segments: nattch 0 in every snapshot (not between shmget and shmat) ----
    per = [_orphans(s.get("sysvipc_shm")) for s in ctx.snapshots]
    if all(s.get("sysvipc_shm") is not None for s in ctx.snapshots):
        keys = set(per[0]).intersection(*per[1:]) if per else set()
        segs = sorted((per[-1][k] for k in keys), key=_seg_bytes, reverse=True)
        total = sum(_seg_bytes(s) for s in segs)
        if segs and total >= r.t("warn_orphan_segment_bytes"):
            ev = [ctx.ev("orphan SysV segments", total, "bytes", "sysvipc_shm",
                         threshold=r.t("warn_orphan_segment_bytes"),
                         note=f"{len(segs)} segment(s) with nattch 0 in all {len(ctx.snapshots)} snapshots")]
            for s in segs[:8]:
                ev.append(ctx.ev(f"segment shmid {s.shmid} key {s.key:#x}", _seg_bytes(s), "bytes",
                                 "sysvipc_shm",
                                 note=f"size {size(s.size_bytes)}, nattch 0, creator pid {s.cpid}, "
                                      f"last attach/detach pid {s.lpid}, uid {s.uid}"
                                      + (", marked for removal" if s.marked_for_removal else "")))
            top = segs[0]
            out.append(r.finding(
                "warning", ev,
                f"{len(segs)} System V shared memory segment(s) holding {size(total)} have no "
                "process attached. The kernel keeps a segment until someone removes it "
                "(shmctl IPC_RMID, `ipcrm`) or the machine reboots; its pages count as Shmem and "
                "can only go to swap. Usually a program created it and died or exited without "
                "removing it.",
                [Action.command(f"ipcs -m -p -t  # creator pid {top.cpid}, last pid {top.lpid}"),
                 Action.command(f"ipcrm -m {top.shmid}  # only once you know its owner is gone",
                                why="frees the segment's memory; a program that still expects it "
                                    "will not find it"),
                 Action.command("sysctl kernel.shm_rmid_forced=1",
                                why="segments are destroyed when their last process detaches or "
                                    "exits; breaks programs that detach and reattach later")],
                title=f"SysV segment shmid {top.shmid} (key {top.key:#x}, {size(top.size_bytes)}) "
                      "has no process attached"))
    # ---- Shmem no process maps: tmpfs files ----
    g = ctx.series.gauge("unheld shmem", _unheld_kb)
    if g.last is None:
        return out or None  # no process table with RssShmem: the segments are all we can judge
    orphan_kb = sum(_seg_bytes(s) for s in _orphans(ctx.get("sysvipc_shm")).values()) / 1024
    unheld_kb = max(0.0, g.last - orphan_kb)  # segments are reported on their own
    tr = g.trend()
    growing = (_trend_ok(tr) and tr.steady_growth and tr.growth * 1024 >= r.t("warn_growth_bytes")
               and tr.slope_per_s * 1024 >= r.t("warn_growth_bytes_per_s"))
    large = (unheld_kb * 1024 >= r.t("min_unheld_bytes")
             and unheld_kb >= r.t("warn_unheld_share") * mi.mem_total_kb)
    if not (growing or large):
        return out or None
    ev = [ctx.ev("Shmem", mi.shmem_kb, "kB", "meminfo"),
          ctx.ev("Shmem mapped by no process", unheld_kb, "kB", "meminfo",
                 threshold=r.t("warn_unheld_share") * mi.mem_total_kb,
                 note=f"{unheld_kb / mi.mem_total_kb:.1%} of MemTotal; Shmem minus the processes' "
                      "RssShmem (/proc/PID/status) and orphan SysV segments: a lower bound")]
    if tr is not None:
        ev.append(ctx.ev("growth over the window", tr.growth, "kB", "meminfo",
                         threshold=r.t("warn_growth_bytes") / 1024,
                         note=f"slope {tr.slope_per_s:,.0f} kB/s, r2 {tr.r2:.2f}, rose in "
                              f"{tr.rises} of {tr.points - 1} intervals"))
    subject = None
    cm = ctx.get("cgroup_memory")
    if cm is not None:
        best = None
        for (path, _id), cs in ctx.series.entity_counters("cgroups", CG_SHMEM).items():
            grew = cs.total
            if grew and grew > 0 and path != "/":
                depth = path.count("/")
                if best is None or (grew, depth) > (best[1], best[2]):
                    best = (path, grew, depth)
        if best is not None:
            subject = Subject(cgroup=best[0])
            ev.append(ctx.ev(f"memory.stat shmem of {best[0]}", best[1], "bytes of growth",
                             f"{cgroup_dir(cm, best[0])}/memory.stat",
                             note="tmpfs pages stay charged to the cgroup of the task that wrote "
                                  "them, even after it exits"))
    return out + [r.finding(
        "warning", ev,
        "Shared memory that no process maps " + ("keeps growing" if growing else "is large")
        + ": files in a tmpfs (/dev/shm, /run, /tmp on tmpfs, a tmpfs a program mounted), a "
        "memfd kept open, or POSIX shm nobody unlinked. tmpfs pages stay in RAM (or swap) until "
        "the file is deleted; they are not page cache the kernel can drop. ksight cannot tell "
        "which tmpfs mount holds them (no per-mount usage in /proc): `df -t tmpfs` can.",
        [Action.command("df -h -t tmpfs  # which tmpfs mount is filling"),
         Action.command("du -xsh /dev/shm/* /run/* 2>/dev/null | sort -h | tail  # the files"),
         Action.code("bound each tmpfs with size= (mount -o remount,size=...), and delete files "
                     "in /dev/shm when the program that made them is done")],
        subject=subject,
        title="Shared memory mapped by no process "
              + ("grows (tmpfs filling up)" if growing else "is large (tmpfs files)"))]


# ------------------------------------------------------------------------------------------
# memory.slab-leak
def _cache_bytes(name: str):
    def fn(snap):
        si = snap.get("slabinfo")
        c = si.caches.get(name) if si is not None else None
        return None if c is None else c.active_objs * c.objsize
    return fn


@rule("memory.slab-leak", title="Unreclaimable slab keeps growing (a kernel object leak?)",
      needs=("meminfo", "slabinfo"), min_seconds=2.0,
      thresholds={
          "warn_growth_bytes": Threshold(
              16 * MiB, "bytes of SUnreclaim growth over the window, steady (r2 >= 0.8, no fall)",
              "unreclaimable slab is what the kernel cannot give back under pressure; a socket or "
              "fork burst moves it by a few MiB and stops"),
          "warn_growth_bytes_per_s": Threshold(
              1 * MiB, "bytes/s (least-squares slope of SUnreclaim)",
              "3.5 GiB an hour of memory the kernel cannot reclaim"),
          "cache_min_growth_bytes": Threshold(
              1 * MiB, "bytes of growth of one cache (active objects x object size)",
              "a cache is named when it grew steadily by at least this much"),
      })
def slab_leak(ctx: Context, r: Rule):
    """SUnreclaim (meminfo, 2.6.19+) grows steadily over the window; the caches that grow are
    named from /proc/slabinfo (active objects x object size per cache). slabinfo is root-only:
    without root this rule is not evaluated, with the permission reason. Caches merged by SLUB
    print under one name: the name is the cache the kernel shows, not always the caller's."""
    g = ctx.series.gauge("SUnreclaim", lambda s: s.get("meminfo").sunreclaim_kb)
    if not g.present:
        raise ctx.cannot_look("/proc/meminfo has no SUnreclaim (Linux 2.6.19 and later)")
    tr = _steady_growth(ctx, r, g)
    if tr is None:
        return None
    grown = _grown_parts(ctx, "slabinfo", lambda si: si.caches, _cache_bytes,
                         r.t("cache_min_growth_bytes"))
    ev = [ctx.ev("SUnreclaim growth", tr.growth, "kB", "meminfo",
                 threshold=r.t("warn_growth_bytes") / 1024,
                 note=f"{tr.first:,.0f} -> {tr.last:,.0f} kB; slope {tr.slope_per_s:,.0f} kB/s, "
                      f"r2 {tr.r2:.2f}, rose in {tr.rises} of {tr.points - 1} intervals")]
    last = ctx.get("slabinfo")
    for n, ct in grown[:6]:
        c = last.caches.get(n) if last is not None else None
        ev.append(ctx.ev(f"slab cache {n}", ct.growth, "bytes of growth", "slabinfo",
                         threshold=r.t("cache_min_growth_bytes"),
                         note=(f"now {c.active_objs:,} objects of {c.objsize} B = "
                               f"{size(c.active_objs * c.objsize)}; " if c else "")
                              + f"slope {ct.slope_per_s / 1024:,.0f} kB/s, r2 {ct.r2:.2f}"))
    top = grown[0][0] if grown else None
    return r.finding(
        "warning", ev,
        "Kernel memory that reclaim cannot free keeps growing"
        + (f", in slab cache{'s' if len(grown) > 1 else ''} {', '.join(n for n, _ in grown[:3])}" if grown else "")
        + ". Objects pile up: sockets or files a program opens and never closes, tasks, or a "
        "kernel or driver leak. A short window cannot tell a leak from a ramp that stops: watch "
        "it longer. The cache name says what kind of object (TCP, UDP, sock_inode_cache: "
        "sockets; task_struct: tasks; kmalloc-N: generic allocations).",
        [Action.command("slabtop -o -s c | head -20  # the caches by size"),
         Action.command(f"ksight check --area memory --interval 60  # is {top or 'it'} still growing?"),
         Action.command("ls /proc/*/fd 2>/dev/null | wc -l; ss -s  # open files and sockets, "
                        "if the cache is sockets or files"),
         Action.command("echo scan > /sys/kernel/debug/kmemleak  # on a test machine with "
                        "CONFIG_DEBUG_KMEMLEAK: who allocated what nobody references")],
        title=f"Unreclaimable slab grows{f' (cache {top})' if top else ''}")


# ------------------------------------------------------------------------------------------
# memory.vmalloc-leak
def _vmalloc_kb(snap) -> float | None:
    """The RAM vmalloc holds, in kB: VmallocUsed where it counts pages (5.3+), else the sum of
    pages=N in /proc/vmallocinfo (module doc: VmallocUsed's three meanings)."""
    mi = snap.get("meminfo")
    vi = snap.get("vmallocinfo")
    if mi is not None and mi.vmalloc_used_kb and not mi.vmalloc_chunk_kb:
        return mi.vmalloc_used_kb
    if vi is not None:
        return vi.vmalloc_pages * snap.host.page_size / 1024
    return None


def _caller_bytes(name: str):
    def fn(snap):
        vi = snap.get("vmallocinfo")
        c = vi.by_caller.get(name) if vi is not None else None
        if c is None:
            return None
        return c.pages * snap.host.page_size if c.pages else c.bytes
    return fn


@rule("memory.vmalloc-leak", title="vmalloc memory keeps growing (a kernel or module leak?)",
      needs=("meminfo", "vmallocinfo"), min_seconds=2.0,
      thresholds={
          "warn_growth_bytes": Threshold(
              16 * MiB, "bytes of vmalloc growth over the window, steady (r2 >= 0.8, no fall)",
              "vmalloc holds kernel stacks, module text, BPF programs and large driver buffers; "
              "starting a few hundred threads moves it by a few MiB and stops"),
          "warn_growth_bytes_per_s": Threshold(
              1 * MiB, "bytes/s (least-squares slope)", "3.5 GiB an hour"),
          "caller_min_growth_bytes": Threshold(
              1 * MiB, "bytes of growth of one caller", "a caller is named when it grew steadily "
                                                        "by at least this much"),
      })
def vmalloc_leak(ctx: Context, r: Rule):
    """vmalloc pages grow steadily: VmallocUsed (5.3+, vmalloc_nr_pages()), or on 4.4-5.2
    (VmallocUsed printed as 0) and before (VmallocUsed was address space, ioremap included) the
    sum of pages=N in /proc/vmallocinfo. The callers that grow are named from vmallocinfo
    (function and module). vmallocinfo is root-only and opt-in (the kernel walks every area to
    print it): this rule names it in its needs, so `check --area memory` reads it."""
    g = ctx.series.gauge("vmalloc", _vmalloc_kb)
    if not g.present:
        raise ctx.cannot_look("no vmalloc page count: VmallocUsed is 0 or address space on this "
                              "kernel and /proc/vmallocinfo was not read")
    tr = _steady_growth(ctx, r, g)
    if tr is None:
        return None
    grown = _grown_parts(ctx, "vmallocinfo", lambda vi: vi.by_caller, _caller_bytes,
                         r.t("caller_min_growth_bytes"))
    mi = ctx.get("meminfo")
    src = "meminfo" if mi is not None and mi.vmalloc_used_kb and not mi.vmalloc_chunk_kb else "vmallocinfo"
    ev = [ctx.ev("vmalloc growth", tr.growth, "kB", src, threshold=r.t("warn_growth_bytes") / 1024,
                 note=("VmallocUsed" if src == "meminfo" else "sum of pages=N")
                      + f" {tr.first:,.0f} -> {tr.last:,.0f} kB; slope {tr.slope_per_s:,.0f} kB/s, "
                        f"r2 {tr.r2:.2f}")]
    last = ctx.get("vmallocinfo")
    for n, ct in grown[:6]:
        c = last.by_caller.get(n) if last is not None else None
        mod = f" [{c.module}]" if c is not None and c.module else ""
        ev.append(ctx.ev(f"vmalloc caller {n}{mod}", ct.growth, "bytes of growth", "vmallocinfo",
                         threshold=r.t("caller_min_growth_bytes"),
                         note=(f"now {c.count:,} areas, {size(c.pages * ctx.page_size if c.pages else c.bytes)}; "
                               if c else "") + f"slope {ct.slope_per_s / 1024:,.0f} kB/s"))
    top = grown[0][0] if grown else None
    return r.finding(
        "warning", ev,
        "The memory the kernel maps with vmalloc keeps growing"
        + (f", allocated by {', '.join(n for n, _ in grown[:3])}" if grown else "")
        + ". The caller is the kernel function (and module) that asked for it: a driver or "
        "module that allocates buffers and never frees them, BPF programs or maps loaded again "
        "and again, or many new threads (their stacks are vmalloc'ed: alloc_thread_stack_node). "
        "A short window cannot tell a leak from a ramp that stops: watch it longer.",
        [Action.command("sort -k2 -n -r /proc/vmallocinfo | head -20  # the largest areas"),
         Action.command(f"ksight check --area memory --interval 60  # is {top or 'it'} still growing?"),
         Action.command("bpftool prog list | wc -l; bpftool map list | wc -l  # if the caller is bpf_*")],
        title=f"vmalloc memory grows{f' (caller {top})' if top else ''}")


# ------------------------------------------------------------------------------------------
# memory.oom-kill
def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


@rule("memory.oom-kill", title="The OOM killer killed a process",
      needs=("vmstat",), counters=(OOM_KILL,), uses=("cgroup_memory",),
      cgroup_files=("events", "events_local", "oom", "max", "failcnt:limited", "peak:limited",
                    "swap:limited", "idle"))
def oom_kill(ctx: Context, r: Rule):
    """vmstat oom_kill (4.13+) counts every OOM kill, machine-wide or inside a memory cgroup
    (mm/oom_kill.c __oom_kill_process: count_vm_event(OOM_KILL) and memcg_memory_event_mm(mm,
    MEMCG_OOM_KILL) in the victim's group). A kill in the window is a warning when a cgroup
    limit was hit, critical when the whole machine ran out; kills since boot only are info.
    The victim's group is the deepest group whose oom_kill moved: v2 memory.events.local (5.2+)
    or memory.events (hierarchical), v1 memory.oom_control oom_kill. A limit was hit when the
    v2 `oom` event of that group or an ancestor moved, or in v1 when a group on its path has a
    limit and its failcnt moved. The victim's PID and name are in the kernel log only (dmesg),
    which ksight's snapshot does not read. Groups that emptied are read too ("idle" in the
    cgroup files): a group whose only task was the victim is empty right after the kill."""
    cs = ctx.counter(OOM_KILL)
    since_boot = ctx.last.get("vmstat").counters.get("oom_kill")
    moved = cs.total or 0
    if not moved:
        if not since_boot:
            return None
        return r.finding(
            "info", [ctx.ev("oom_kill since boot", since_boot, "kills", "vmstat",
                            note="none in this window")],
            "The OOM killer has killed processes since boot, though not during this window. "
            "Context for other findings: a service that restarted may have been one of them.",
            [Action.command("dmesg -T | grep -i -E 'out of memory|oom-kill'  # victims and times")],
            title=f"{since_boot} OOM kill(s) since boot (none in this window)")
    cm = ctx.get("cgroup_memory")
    victims = []  # (path, kills in window, label)
    if cm is not None:
        def ev_key(k):
            return lambda g: (g.events_local or {}).get(k) if g.events_local else None
        local = ctx.series.entity_counters("cgroups", ev_key("oom_kill"), "memory.events.local oom_kill")
        hier = ctx.series.entity_counters(
            "cgroups", lambda g: (g.events or {}).get("oom_kill") if g.events else g.oom_kill,
            "oom_kill")
        for key, c in hier.items():
            loc = local.get(key)
            n = (loc.total if loc is not None and loc.present else None)
            label = "memory.events.local oom_kill" if n is not None else (
                "memory.events oom_kill" if cm.version == 2 else "memory.oom_control oom_kill")
            n = n if n is not None else c.total
            if n and key[0] != "/":
                victims.append((key[0], n, label))
    # the deepest group is where the victim was (hierarchical counters also move in ancestors)
    victims.sort(key=lambda v: (_depth(v[0]), v[1]), reverse=True)
    victim = victims[0] if victims else None
    limit_group = None
    if cm is not None and victim is not None:
        path = victim[0]
        chain = [path]
        while path not in ("/", ""):
            path = path.rsplit("/", 1)[0] or "/"
            chain.append(path)
        ooms = ctx.series.entity_counters(
            "cgroups", lambda g: (g.events or {}).get("oom") if g.events else None, "oom")
        fails = ctx.series.entity_counters("cgroups", lambda g: g.failcnt, "failcnt")
        swfails = ctx.series.entity_counters("cgroups", lambda g: g.memsw_failcnt, "memsw.failcnt")
        for key in ooms:
            if key[0] in chain and (ooms[key].total or 0) > 0:
                limit_group = (key[0], "memory.events oom", ooms[key].total)
                break
        if limit_group is None:
            for p in chain:  # v1: a group on the path with a limit whose failcnt moved
                grp = cm.groups.get(p)
                if grp is None:
                    continue
                for table, lim, label in ((fails, grp.max_bytes, "memory.failcnt"),
                                          (swfails, grp.memsw_limit_bytes, "memory.memsw.failcnt")):
                    if lim is None or lim >= 2 ** 62:
                        continue
                    fk = next((k for k in table if k[0] == p), None)
                    if fk is not None and (table[fk].total or 0) > 0:
                        limit_group = (p, label, table[fk].total)
                        break
                if limit_group is not None:
                    break
                # 6.x v1 may leave failcnt at 0 (page counters track it only on request): the
                # peak usage reaching the limit says the same
                peak = grp.max_usage_bytes
                if peak is not None and grp.max_bytes is not None and grp.max_bytes < 2 ** 62 \
                        and peak >= grp.max_bytes - 4 * ctx.page_size:
                    limit_group = (p, "memory.max_usage_in_bytes", peak)
                    break
    ev = [ctx.ev("oom_kill", moved, "kills in the window", "vmstat",
                 note=f"{since_boot} since boot")]
    if victim is not None:
        ev.append(ctx.ev(f"{victim[2]} of {victim[0]}", victim[1], "kills in the window",
                         f"{cgroup_dir(cm, victim[0])}/"
                         + ("memory.oom_control" if "oom_control" in victim[2] else
                            "memory.events.local" if "local" in victim[2] else "memory.events"),
                         note="the victim was in this memory cgroup"))
    if limit_group is not None:
        grp = cm.groups.get(limit_group[0])
        lim = None if grp is None else (
            grp.memsw_limit_bytes if "memsw" in limit_group[1] else grp.max_bytes)
        ev.append(ctx.ev(f"{limit_group[1]} of {limit_group[0]}", limit_group[2],
                         "bytes" if "usage" in limit_group[1] else "events in the window",
                         f"{cgroup_dir(cm, limit_group[0])}/{limit_group[1].split()[0]}",
                         note=f"the group's limit {size(lim) if lim and lim < 2 ** 62 else '(unknown)'} was hit"))
    acts = [Action.command("dmesg -T | grep -i -E 'out of memory|oom-kill|Killed process'  "
                           "# the victim's pid, name and RSS"),
            Action.command("ksight oom  # who the OOM killer would pick next, and how to protect a service")]
    if limit_group is not None:
        d = cgroup_dir(cm, limit_group[0])
        limit_file = "memory.max" if cm.version == 2 else "memory.limit_in_bytes"
        acts.append(Action.code(f"raise {d}/{limit_file} if the group's working set needs more, "
                                "or find what grew in it (ksight leak)"))
        return r.finding(
            "warning", ev,
            f"A process in memory cgroup {victim[0]} was killed because the group reached its "
            f"memory limit ({limit_group[0]}): the machine itself had memory; the group did not. "
            "The group's working set does not fit its limit, or something in it leaks.",
            acts, subject=Subject(cgroup=victim[0]),
            title=f"OOM kill in memory cgroup {victim[0]} (its limit was hit)")
    return r.finding(
        "critical", ev,
        "The OOM killer killed a process because the machine ran out of memory (no cgroup limit "
        "was hit" + ("" if cm is not None else "; no memory cgroup data to tell otherwise")
        + "): free memory, reclaimable cache and swap were exhausted. "
        + (f"The victim was in memory cgroup {victim[0]}. " if victim else "")
        + "Something grew past what the machine has, or too much is pinned (tmpfs, hugepages, "
        "mlock, kernel memory).",
        acts + [Action.code("give critical services a negative oom_score_adj or a memory.min "
                            "protection, and limit the rest with memory cgroups")],
        subject=Subject(cgroup=victim[0]) if victim else None,
        title="OOM kill: the machine ran out of memory")


# ------------------------------------------------------------------------------------------
# memory.unexplained
_REQUIRED = ("mem_total_kb", "mem_free_kb", "buffers_kb", "cached_kb", "anon_pages_kb",
             "page_tables_kb")


def vmalloc_used_counts_pages(mi) -> bool:
    """VmallocUsed is the pages vmalloc holds (5.3+), not 0 (4.4-5.2) nor address space (before
    4.4, when VmallocChunk was printed too): see the module doc."""
    return bool(mi.vmalloc_used_kb and not mi.vmalloc_chunk_kb)


def _vmallocinfo_wanted(got: dict) -> bool:
    mi = got.get("meminfo")
    return mi is None or not vmalloc_used_counts_pages(mi)


def partition(mi, vmalloc_pages_kb: float | None = None) -> tuple[float, dict[str, float], list[str]]:
    """(unexplained kB, the explained parts in kB, notes) of one meminfo. See memory.unexplained."""
    f = mi.fields
    parts: dict[str, float] = {
        "MemFree": mi.mem_free_kb, "Buffers": mi.buffers_kb, "Cached": mi.cached_kb,
        "SwapCached": mi.swap_cached_kb or 0, "AnonPages": mi.anon_pages_kb,
        "PageTables": mi.page_tables_kb, "KernelStack": mi.kernel_stack_kb or 0,
    }
    notes = []
    if mi.sunreclaim_kb is not None and mi.sreclaimable_kb is not None:
        parts["Slab"] = mi.sreclaimable_kb + mi.sunreclaim_kb
    else:
        parts["Slab"] = mi.slab_kb or 0
    if mi.kreclaimable_kb is not None and mi.sreclaimable_kb is not None:
        parts["KReclaimable - SReclaimable"] = max(0, mi.kreclaimable_kb - mi.sreclaimable_kb)
    for name in ("SecPageTables", "Percpu", "Unaccepted", "Zswap"):
        if f.get(name):
            parts[name] = f[name]
    if mi.hugetlb_kb is not None:
        parts["Hugetlb"] = mi.hugetlb_kb
    elif mi.huge_pages_total and mi.hugepage_size_kb:
        parts["HugePages_Total x Hugepagesize"] = mi.huge_pages_total * mi.hugepage_size_kb
    if vmalloc_used_counts_pages(mi):
        parts["VmallocUsed"] = mi.vmalloc_used_kb  # 5.3+: pages
    elif vmalloc_pages_kb is not None:
        parts["vmallocinfo pages"] = vmalloc_pages_kb
    else:
        notes.append("vmalloc pages not counted: VmallocUsed is 0 (4.4-5.2) or address space "
                     "(before 4.4) on this kernel, and /proc/vmallocinfo was not read")
    return mi.mem_total_kb - sum(parts.values()), parts, notes


@rule("memory.unexplained", title="Memory that no counter accounts for (a driver leak?)",
      needs=("meminfo",), uses=("zoneinfo",), window=True,
      # vmalloc pages come from meminfo's VmallocUsed since 5.3; before, from vmallocinfo, which
      # costs the kernel a walk of every area: read only where VmallocUsed does not count pages
      uses_when=(When("vmallocinfo", ("meminfo",), _vmallocinfo_wanted,
                      "/proc/meminfo's VmallocUsed counts the vmalloc pages (5.3+)"),),
      thresholds={
          "warn_share": Threshold(
              0.10, "of MemTotal, in every snapshot of the window",
              "the partition leaves 0.1-3% unexplained on healthy hosts (per-CPU free page "
              "lists, pages in flight, the SwapCached/AnonPages overlap; corpora: node_exporter, "
              "procfs, pcp meminfo-root-001..007 and this project's 6.18 VM): a tenth of RAM is "
              "pages a driver allocated with alloc_pages(), which no counter sees"),
          "min_bytes": Threshold(
              512 * MiB, "bytes", "below this, per-CPU page lists of a large machine and network "
                                  "page pools explain it"),
      })
def unexplained(ctx: Context, r: Rule):
    """One formula, from fs/proc/meminfo.c: MemTotal (totalram_pages: what the page allocator
    manages) against the counters that partition it without overlap:
        MemFree + Buffers + Cached + SwapCached + AnonPages + SReclaimable + SUnreclaim
        + (KReclaimable - SReclaimable) + KernelStack + PageTables + SecPageTables + Percpu
        + Hugetlb + vmalloc pages + Unaccepted + Zswap.
    Left out because they are counted inside another term: Shmem, Mapped, FileHugePages (in
    Cached), AnonHugePages (in AnonPages), Active/Inactive/Unevictable/Mlocked (the LRU lists
    re-partition Buffers, Cached and AnonPages; Mlocked is inside Unevictable), Dirty and
    Writeback (states of Cached pages). Overlaps that remain, both making the rule quieter:
    SwapCached pages still mapped are also in AnonPages; with CONFIG_VMAP_STACK kernel stacks
    are in both KernelStack and VmallocUsed. What no counter sees: pages drivers take straight
    from the page allocator (GPU buffers, network page pools, balloon pages on some
    hypervisors, zsmalloc for zram), and the per-CPU free lists. Judged on the lowest share of
    the window, so a moment of pages in flight is not a leak.
    MemTotal above the zones' managed pages (zoneinfo): memory the kernel has not initialised
    yet (deferred or lazy struct page init, as on this project's VM: 24 GiB MemTotal, ~5 GiB
    managed). Where MemFree counts it as free the partition balances; where the gap would
    explain the unexplained memory, the rule says it cannot tell instead of crying leak."""
    mi = ctx.get("meminfo")
    missing = [a for a in _REQUIRED if _kb(mi, a) is None]
    if mi is None or missing:
        raise ctx.cannot_look("/proc/meminfo lacks the fields of the partition: " + ", ".join(missing))
    if mi.sunreclaim_kb is None and mi.slab_kb is None:
        raise ctx.cannot_look("/proc/meminfo has no Slab")

    def unexpl(snap):
        m = snap.get("meminfo")
        vi = snap.get("vmallocinfo")
        return partition(m, vi.vmalloc_pages * snap.host.page_size / 1024 if vi else None)[0]

    g = ctx.series.gauge("unexplained", unexpl)
    low = g.low
    vi = ctx.get("vmallocinfo")
    left, parts, notes = partition(mi, vi.vmalloc_pages * ctx.page_size / 1024 if vi else None)
    worst = low[0] if low is not None else left
    total = mi.mem_total_kb
    if worst < r.t("warn_share") * total or worst * 1024 < r.t("min_bytes"):
        return None
    zi = ctx.get("zoneinfo")
    gap_kb = None
    if zi is not None:
        managed = sum(z.managed_pages or 0 for z in zi.zones)
        if managed:
            gap_kb = total - managed * ctx.page_size / 1024
    if gap_kb is not None and gap_kb > 0 and worst <= gap_kb + r.t("warn_share") * total:
        raise ctx.cannot_look(
            f"MemTotal exceeds the zones' managed pages by {size_kb(gap_kb)} (memory not yet "
            "initialised: deferred or lazy struct page init, or memory being onlined): the "
            "partition cannot tell that from memory nobody accounts for")
    ev = [ctx.ev("unexplained", worst, "kB", "meminfo",
                 threshold=r.t("warn_share") * total,
                 note=f"{worst / total:.1%} of MemTotal {size_kb(total)} (lowest in the window); "
                      "MemTotal minus the counters that partition it")]
    for name, v in sorted(parts.items(), key=lambda x: -x[1])[:6]:
        ev.append(ctx.ev(name, v, "kB", "meminfo" if "vmallocinfo" not in name else "vmallocinfo"))
    tr = g.trend()
    if tr is not None and tr.points >= 4:
        ev.append(ctx.ev("unexplained growth over the window", tr.growth, "kB", "meminfo",
                         note=f"slope {tr.slope_per_s:,.0f} kB/s, r2 {tr.r2:.2f}"
                              + ("; growing steadily: something is allocating now" if tr.steady_growth else "")))
    if gap_kb:
        ev.append(ctx.ev("MemTotal - zone managed pages", gap_kb, "kB", "zoneinfo",
                         note="memory not yet initialised by the kernel; counted as free"))
    for n in notes:
        ev.append(ctx.ev("note", n, "", "meminfo"))
    return r.finding(
        "warning", ev,
        f"{size_kb(worst)} ({worst / total:.0%} of RAM) is in use but no /proc/meminfo counter "
        "accounts for it. Pages taken straight from the page allocator by a driver (GPU "
        "buffers, RDMA, network page pools, a virtio balloon that does not adjust MemTotal, "
        "zram's zsmalloc pages) show up only here. If it grows with uptime and falls when a "
        "module is unloaded, that driver leaks.",
        [Action.command("grep -E 'nr_zspages|nr_balloon_pages|nr_iommu_pages' /proc/vmstat  "
                        "# zram, balloon, IOMMU page tables"),
         Action.command("lsmod  # the drivers loaded; unload a suspect on a test machine and compare"),
         Action.command("echo scan > /sys/kernel/debug/kmemleak  # on a test machine with "
                        "CONFIG_DEBUG_KMEMLEAK (slab and vmalloc only; its cost is high)")],
        title=f"{size_kb(worst)} of memory no counter accounts for")
