"""`ksight meminfo`: system memory triage on one screen. Data only (text in render/meminfo_text.py).

From one Snapshot: meminfo (required), and when there slabinfo, vmallocinfo (opt-in: named in
this view's plan), sysvipc_shm, tmpfs (statfs live, ksight/tmpfs.json in captures) and, with
--kmemleak, kmemleak. A part whose source is missing is None and its source is listed in
`unavailable` with the reason.

Slab caches "as slabtop shows them": procps' slabtop prints CACHE SIZE = num_slabs x pagesperslab x
page size (library slabinfo.c: `cache_size = nr_slabs * pages_per_slab * page_size`), which is the
memory the cache holds, free objects and slab overhead included (active_objs x objsize would leave
out exactly the fragmentation a leak hunt cares about). slabtop sorts by object count by default;
we sort by CACHE SIZE (`slabtop -s c`), since the question here is where the memory is.

vmalloc callers are ranked by the pages backing their areas (pages=N, what VmallocUsed counts since
5.3: vmalloc_nr_pages()), not by area size: ioremap areas span device memory and hold no RAM.

The memory no counter explains (UNEXPLAINED_FORMULA): MemTotal minus the counters that partition
it. The kernel's accounting (fs/proc/meminfo.c meminfo_proc_show, mm/show_mem.c):
- every page on an LRU list is in Active + Inactive + Unevictable: anonymous pages (AnonPages),
  page cache (Buffers and Cached, which is NR_FILE_PAGES - swap cache - buffers), SwapCached, and
  Shmem (shmem pages live on the anon LRU, or Unevictable when SHM_LOCKed / ramfs). So AnonPages,
  Buffers, Cached, SwapCached, Shmem and Mapped are all inside the LRU sum and are NOT added again;
  Mlocked is inside Unevictable; AnonHugePages inside AnonPages; ShmemHugePages inside Shmem.
- off the LRU: free pages (MemFree), slab (SReclaimable + SUnreclaim), other reclaimable kernel
  memory (KReclaimable - SReclaimable, 4.20+), KernelStack, PageTables, SecPageTables (6.1+),
  Percpu, VmallocUsed (pages backing vmalloc areas; printed as 0 on 4.4..5.2), hugetlb pages
  (Hugetlb, 5.16+, all sizes; else HugePages_Total x Hugepagesize), the zswap pool (Zswap),
  Bounce, WritebackTmp, Unaccepted (6.5+ confidential guests).
- KernelStack is double counted when stacks are vmalloc'ed (CONFIG_VMAP_STACK, the default on
  x86-64 and arm64): the stack pages are in VmallocUsed too. vmallocinfo tells (areas allocated by
  alloc_thread_stack_node / kernel_clone / copy_process): then KernelStack is left out of the sum.
What remains is memory taken straight from the page allocator by drivers and subsystems that keep
no counter (alloc_pages in a driver, GPU/DMA buffers, page_pool, ballooned-out pages), free pages
sitting in the per-CPU page lists (they are not in MemFree), pages isolated by reclaim or migration
at that instant, and the skew of reading per-CPU counters: a few MB per CPU is normal.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..model.snapshot import Missing, Snapshot

SOURCES = ("meminfo",)
USES = ("slabinfo", "vmallocinfo", "sysvipc_shm", "tmpfs")
KMEMLEAK = "kmemleak"
TOP = 10
STACK_CALLERS = frozenset({"alloc_thread_stack_node", "kernel_clone", "_do_fork", "copy_process",
                           "dup_task_struct"})

UNEXPLAINED_FORMULA = (
    "MemTotal - (MemFree + Active + Inactive + Unevictable + SReclaimable + SUnreclaim "
    "+ (KReclaimable - SReclaimable) + KernelStack [left out when the stacks are vmalloc'ed: then "
    "they are in VmallocUsed] + PageTables + SecPageTables + Percpu + VmallocUsed + Hugetlb "
    "+ Zswap + Bounce + WritebackTmp + Unaccepted)")
UNEXPLAINED_WHY = (
    "Active/Inactive/Unevictable hold every LRU page: AnonPages, Buffers, Cached, SwapCached and "
    "Shmem are inside them (Shmem is also inside Cached, Mlocked inside Unevictable), so adding "
    "them again would count them twice. What is left is memory drivers took from the page "
    "allocator without a counter, free pages in per-CPU lists (not in MemFree), and pages in "
    "flight; a few MB per CPU is normal, a large or growing share hints at a driver leak.")
KMEMLEAK_COST = (
    "kmemleak tracks every slab and vmalloc allocation and scans memory for pointers to them: "
    "it costs memory and CPU on every allocation, so it is meant for test machines, not "
    "production (CONFIG_DEBUG_KMEMLEAK; kmemleak=off at boot disables it)")


@dataclass(frozen=True)
class Lru:
    active_anon_kb: int | None
    inactive_anon_kb: int | None
    active_file_kb: int | None
    inactive_file_kb: int | None
    anon_pages_kb: int | None
    mapped_kb: int | None
    unevictable_kb: int | None
    mlocked_kb: int | None


@dataclass(frozen=True)
class OrphanSegment:
    shmid: int
    key: int
    size_bytes: int
    rss_bytes: int | None
    swap_bytes: int | None
    uid: int
    cpid: int  # the creator (may be gone)
    lpid: int  # the last to attach or detach
    marked_for_removal: bool


@dataclass(frozen=True)
class TmpfsUse:
    mount_point: str
    fstype: str
    size_bytes: int | None
    used_bytes: int | None
    used_pct: float | None
    reason: str | None


@dataclass(frozen=True)
class ShmemPart:
    shmem_kb: int | None
    tmpfs: tuple[TmpfsUse, ...] | None  # None: the tmpfs source was not available
    tmpfs_used_bytes: int | None
    sysv_segments: int | None
    sysv_rss_bytes: int | None  # resident pages of every SysV segment (None: kernel too old)
    orphans: tuple[OrphanSegment, ...] | None  # nattch 0: no process has it attached
    orphan_bytes: int | None  # their resident size (size where rss is not printed)


@dataclass(frozen=True)
class SlabTop:
    name: str
    objs: int
    active: int
    use_pct: int  # slabtop's USE: 100 * active / objs, truncated
    obj_size: int
    slabs: int
    obj_per_slab: int | None
    cache_size_bytes: int  # num_slabs * pagesperslab * page size, as slabtop


@dataclass(frozen=True)
class SlabPart:
    slab_kb: int | None
    sreclaimable_kb: int | None
    sunreclaim_kb: int | None
    top: tuple[SlabTop, ...] | None  # None: slabinfo unavailable
    caches: int | None
    slabinfo_total_bytes: int | None


@dataclass(frozen=True)
class VmallocTop:
    caller: str
    module: str | None
    areas: int
    pages_bytes: int  # RAM behind the areas (pages=N x page size)
    size_bytes: int  # address space (guard pages and ioremap included)
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class VmallocPart:
    used_kb: int | None  # VmallocUsed
    total_kb: int | None
    top: tuple[VmallocTop, ...] | None  # None: vmallocinfo unavailable
    vmallocinfo_pages_bytes: int | None
    stacks_bytes: int | None  # pages of vmalloc'ed kernel stacks (None: no vmallocinfo)
    note: str | None


@dataclass(frozen=True)
class KernelPart:
    kernel_stack_kb: int | None
    page_tables_kb: int | None
    sec_page_tables_kb: int | None
    percpu_kb: int | None
    huge_pages_total: int | None
    huge_pages_free: int | None
    huge_pages_rsvd: int | None
    huge_pages_surp: int | None
    hugepage_size_kb: int | None
    hugetlb_kb: int | None  # every hugetlb size (Hugetlb line, 5.16+), else total x size
    anon_huge_pages_kb: int | None
    shmem_huge_pages_kb: int | None


@dataclass(frozen=True)
class Term:
    name: str
    kb: int


@dataclass(frozen=True)
class Unexplained:
    mem_total_kb: int
    terms: tuple[Term, ...]  # what was summed, in the formula's order (absent lines left out)
    explained_kb: int
    unexplained_kb: int
    pct: float  # of MemTotal
    left_out: tuple[str, ...]  # terms not printed by this kernel, or left out to avoid double counting
    formula: str = UNEXPLAINED_FORMULA
    why: str = UNEXPLAINED_WHY


@dataclass(frozen=True)
class KmemleakPart:
    available: bool
    reason: str | None  # why not, or the cost note when it is
    objects: int | None = None
    bytes: int | None = None
    groups: tuple = ()


@dataclass(frozen=True)
class MeminfoReport:
    page_size: int
    mem_total_kb: int | None
    mem_free_kb: int | None
    mem_available_kb: int | None
    lru: Lru | None
    shmem: ShmemPart | None
    slab: SlabPart | None
    vmalloc: VmallocPart | None
    kernel: KernelPart | None
    unexplained: Unexplained | None
    kmemleak: KmemleakPart | None = None
    unavailable: tuple[Missing, ...] = ()
    notes: tuple[str, ...] = ()


# ---- the parts -------------------------------------------------------------------------------

def lru(mi) -> Lru:
    return Lru(mi.active_anon_kb, mi.inactive_anon_kb, mi.active_file_kb, mi.inactive_file_kb,
               mi.anon_pages_kb, mi.mapped_kb, mi.unevictable_kb, mi.mlocked_kb)


def shmem_part(mi, shm, tmpfs) -> ShmemPart:
    uses = None
    used = None
    if tmpfs is not None:
        uses = tuple(sorted((TmpfsUse(m.mount_point, m.fstype, m.size_bytes, m.used_bytes, m.used_pct,
                                      m.reason) for m in tmpfs.mounts),
                            key=lambda t: (-(t.used_bytes or 0), t.mount_point)))
        used = tmpfs.used_bytes
    orphans = obytes = nseg = srss = None
    if shm is not None:
        nseg = len(shm.segments)
        srss = shm.rss_bytes
        orphans = tuple(sorted(
            (OrphanSegment(s.shmid, s.key, s.size_bytes, s.rss_bytes, s.swap_bytes, s.uid, s.cpid,
                           s.lpid, s.marked_for_removal)
             for s in shm.segments if s.nattch == 0),
            key=lambda o: (-(o.rss_bytes if o.rss_bytes is not None else o.size_bytes), o.shmid)))
        obytes = sum(o.rss_bytes if o.rss_bytes is not None else o.size_bytes for o in orphans)
    return ShmemPart(mi.shmem_kb, uses, used, nseg, srss, orphans, obytes)


def slab_top(slabinfo, page_size: int, n: int = TOP) -> tuple[SlabTop, ...]:
    rows = []
    for c in slabinfo.caches.values():
        use = 100 * c.active_objs // c.num_objs if c.num_objs else 0
        rows.append(SlabTop(c.name, c.num_objs, c.active_objs, use, c.objsize, c.num_slabs,
                            c.objperslab, c.slab_bytes(page_size)))
    rows.sort(key=lambda r: (-r.cache_size_bytes, -r.objs, r.name))
    return tuple(rows[:n])


def slab_part(mi, slabinfo, page_size: int) -> SlabPart:
    if slabinfo is None:
        return SlabPart(mi.slab_kb, mi.sreclaimable_kb, mi.sunreclaim_kb, None, None, None)
    return SlabPart(mi.slab_kb, mi.sreclaimable_kb, mi.sunreclaim_kb, slab_top(slabinfo, page_size),
                    len(slabinfo.caches), slabinfo.total_slab_bytes(page_size))


def stack_pages(vmi) -> int:
    return sum(c.pages for c in vmi.by_caller.values()
               if c.caller in STACK_CALLERS and c.module is None and "vmalloc" in c.kinds)


def vmalloc_part(mi, vmi, page_size: int, n: int = TOP) -> VmallocPart:
    if vmi is None:
        return VmallocPart(mi.vmalloc_used_kb, mi.vmalloc_total_kb, None, None, None, None)
    rows = sorted((VmallocTop(c.caller, c.module, c.count, c.pages * page_size, c.bytes, c.kinds)
                   for c in vmi.by_caller.values()),
                  key=lambda r: (-r.pages_bytes, -r.size_bytes, r.caller))
    note = None
    if mi.vmalloc_used_kb == 0 and vmi.vmalloc_pages:
        note = ("VmallocUsed prints 0 on kernels 4.4 to 5.2 (the walk was removed for its cost); "
                "the pages= of vmallocinfo stand in for it")
    return VmallocPart(mi.vmalloc_used_kb, mi.vmalloc_total_kb, tuple(rows[:n]),
                       vmi.vmalloc_pages * page_size, stack_pages(vmi) * page_size, note)


def hugetlb_kb(mi) -> int | None:
    if mi.hugetlb_kb is not None:
        return mi.hugetlb_kb
    if mi.huge_pages_total is not None and mi.hugepage_size_kb is not None:
        return mi.huge_pages_total * mi.hugepage_size_kb
    return None


def kernel_part(mi) -> KernelPart:
    f = mi.fields or {}
    return KernelPart(mi.kernel_stack_kb, mi.page_tables_kb, f.get("SecPageTables"), mi.percpu_kb,
                      mi.huge_pages_total, mi.huge_pages_free, mi.huge_pages_rsvd,
                      mi.huge_pages_surp, mi.hugepage_size_kb, hugetlb_kb(mi),
                      mi.anon_huge_pages_kb, mi.shmem_huge_pages_kb)


def unexplained(mi, vmi=None, page_size: int = 4096) -> Unexplained | None:
    """UNEXPLAINED_FORMULA over one meminfo (and vmallocinfo when read, to tell whether kernel
    stacks are vmalloc'ed). None when MemTotal, MemFree or the LRU lines are missing."""
    f = mi.fields or {}
    need = (mi.mem_total_kb, mi.mem_free_kb, mi.active_kb, mi.inactive_kb)
    if any(v is None for v in need):
        return None
    terms: list[Term] = []
    left_out: list[str] = []

    def add(name, kb):
        if kb is None:
            left_out.append(f"{name} (not printed by this kernel)")
        else:
            terms.append(Term(name, kb))

    add("MemFree", mi.mem_free_kb)
    add("Active", mi.active_kb)
    add("Inactive", mi.inactive_kb)
    add("Unevictable", mi.unevictable_kb)
    if mi.sreclaimable_kb is not None and mi.sunreclaim_kb is not None:
        add("SReclaimable", mi.sreclaimable_kb)
        add("SUnreclaim", mi.sunreclaim_kb)
    else:
        add("Slab", mi.slab_kb)
    if mi.kreclaimable_kb is not None and mi.sreclaimable_kb is not None:
        terms.append(Term("KReclaimable - SReclaimable", max(mi.kreclaimable_kb - mi.sreclaimable_kb, 0)))
    vm_used = mi.vmalloc_used_kb
    if vm_used == 0 and vmi is not None and vmi.vmalloc_pages:
        vm_used = vmi.vmalloc_pages * page_size // 1024  # 4.4..5.2 print 0
    stacks_kb = stack_pages(vmi) * page_size // 1024 if vmi is not None else 0
    if mi.kernel_stack_kb is not None and stacks_kb and vm_used:
        left_out.append("KernelStack (the stacks are vmalloc'ed: already in VmallocUsed)")
    else:
        add("KernelStack", mi.kernel_stack_kb)
    add("PageTables", mi.page_tables_kb)
    if "SecPageTables" in f:
        terms.append(Term("SecPageTables", f["SecPageTables"]))
    add("Percpu", mi.percpu_kb)
    if vm_used is not None and vm_used != mi.vmalloc_used_kb:
        terms.append(Term("VmallocUsed (vmallocinfo pages)", vm_used))
    else:
        add("VmallocUsed", vm_used)
    add("Hugetlb", hugetlb_kb(mi))
    for name in ("Zswap", "Bounce", "WritebackTmp", "Unaccepted"):
        if name in f:
            terms.append(Term(name, f[name]))
    explained = sum(t.kb for t in terms)
    un = mi.mem_total_kb - explained
    return Unexplained(mi.mem_total_kb, tuple(terms), explained, un,
                       100.0 * un / mi.mem_total_kb if mi.mem_total_kb else 0.0, tuple(left_out))


def kmemleak_part(snap: Snapshot) -> KmemleakPart:
    km = snap.get(KMEMLEAK)
    if km is None:
        m = snap.missing(KMEMLEAK)
        reason = m.reason if m else "not read"
        if "missing" in reason or "No such file" in reason or "not found" in reason.lower():
            reason += (" (debugfs not mounted at /sys/kernel/debug, or the kernel was built without "
                       "CONFIG_DEBUG_KMEMLEAK, or booted with kmemleak=off)")
        return KmemleakPart(False, reason)
    return KmemleakPart(True, KMEMLEAK_COST, km.objects, km.bytes, km.groups[:TOP])


def report(snap: Snapshot, *, kmemleak: bool = False) -> MeminfoReport:
    ps = snap.host.page_size
    mi = snap.get("meminfo")
    names = SOURCES + USES + ((KMEMLEAK,) if kmemleak else ())
    missing = tuple(m for n in names if snap.get(n) is None and (m := snap.missing(n)) is not None)
    notes = []
    if snap.host.page_size_assumed:
        notes.append(f"the capture did not record the page size: {ps} bytes assumed")
    km = kmemleak_part(snap) if kmemleak else None
    if mi is None:
        return MeminfoReport(ps, None, None, None, None, None, None, None, None, None, km,
                             missing, tuple(notes))
    vmi = snap.get("vmallocinfo")
    return MeminfoReport(
        ps, mi.mem_total_kb, mi.mem_free_kb, mi.mem_available_kb, lru(mi),
        shmem_part(mi, snap.get("sysvipc_shm"), snap.get("tmpfs")),
        slab_part(mi, snap.get("slabinfo"), ps), vmalloc_part(mi, vmi, ps), kernel_part(mi),
        unexplained(mi, vmi, ps), km, missing, tuple(notes))
