"""The dirty page thresholds, computed as mm/page-writeback.c does (one place for every view
and rule).

Dirty thresholds, as mm/page-writeback.c computes them (global_dirty_limits / domain_dirty_limits):
  dirtyable = NR_FREE_PAGES - min(NR_FREE_PAGES, totalreserve_pages)
              + NR_INACTIVE_FILE + NR_ACTIVE_FILE + 1
  totalreserve_pages = sum over zones of min(max(lowmem_reserve[]) + high watermark, managed)
                       (calculate_totalreserve_pages; zoneinfo's "protection" is lowmem_reserve
                       and its "high" includes the current boost, which we take off)
  thresh    = ceil(vm.dirty_bytes / PAGE_SIZE)            if vm.dirty_bytes
            = (vm.dirty_ratio * PAGE_SIZE / 100) * dirtyable / PAGE_SIZE   otherwise (integers)
  bg_thresh = the same from vm.dirty_background_bytes / _ratio
  if bg_thresh >= thresh: bg_thresh = thresh / 2
  (real-time tasks get +1/4; HighMem is left out unless vm.highmem_is_dirtyable, 32-bit only.)
The flusher starts background writeback when nr_dirty > bg_thresh (wb_over_bg_thresh); writers
are throttled in balance_dirty_pages once nr_dirty + nr_writeback passes the "freerun" ceiling
(thresh + bg_thresh) / 2, ever harder up to thresh. The kernel prints its own result as
nr_dirty_threshold / nr_dirty_background_threshold in /proc/vmstat; ksight shows both.

NR_FREE_PAGES: on some kernels (memory initialised lazily at boot, or handed over late by the
hypervisor) /proc/vmstat nr_free_pages and zoneinfo's free pages are far below MemFree. The
kernel's dirty limits then follow MemFree (checked on this project's 6.18 VM: MemFree reproduces
nr_dirty_threshold to a few pages; nr_free_pages is 5x too small). We therefore use MemFree and
show nr_free_pages beside it.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .snapshot import Snapshot


@dataclass(frozen=True)
class DirtyLimits:
    """The kernel's dirty page thresholds, as it computes them."""

    page_size: int
    dirty_pages: int | None
    writeback_pages: int | None
    free_pages: int  # NR_FREE_PAGES as used (from MemFree when known)
    free_source: str  # "MemFree" or "vmstat nr_free_pages"
    memfree_pages: int | None
    vmstat_free_pages: int | None
    totalreserve_pages: int | None  # None when zoneinfo is missing (then taken as 0)
    file_lru_pages: int
    dirtyable_pages: int
    dirty_ratio: int | None
    dirty_bytes: int | None
    background_ratio: int | None
    background_bytes: int | None
    thresh_pages: int
    bg_thresh_pages: int
    freerun_pages: int
    background_halved: bool  # bg >= thresh, so the kernel used thresh / 2
    kernel_thresh_pages: int | None  # vmstat nr_dirty_threshold
    kernel_bg_thresh_pages: int | None  # vmstat nr_dirty_background_threshold
    state: str  # "idle", "background writeback", "throttled", "at the hard limit"
    notes: tuple[str, ...] = ()
    unstable_pages: int | None = None  # vmstat nr_unstable (NFS unstable): in the dirty total before 5.8
    thresholds_from: str = "sysctls"  # "sysctls", or "kernel" (vm.dirty_* absent: vmstat's own)

    # The kernel's own numbers when it printed them (vmstat), else ours: rules compare with these.
    @property
    def effective_thresh(self) -> int:
        return self.kernel_thresh_pages if self.kernel_thresh_pages is not None else self.thresh_pages

    @property
    def effective_bg_thresh(self) -> int:
        return self.kernel_bg_thresh_pages if self.kernel_bg_thresh_pages is not None else self.bg_thresh_pages

    @property
    def effective_freerun(self) -> int:
        return (self.effective_thresh + self.effective_bg_thresh) // 2

    @property
    def dirty_total_pages(self) -> int | None:
        """nr_dirty + nr_unstable + nr_writeback: what balance_dirty_pages compares with the
        limits. Before 5.8 (mm/page-writeback.c, balance_dirty_pages: nr_reclaimable =
        NR_FILE_DIRTY + NR_UNSTABLE_NFS; dirty = nr_reclaimable + NR_WRITEBACK) NFS pages
        written but not committed count as dirty; 5.8 removed NR_UNSTABLE_NFS (NFS accounts them
        as writeback) and vmstat prints nr_unstable as a constant 0, so adding it is always right."""
        if self.dirty_pages is None:
            return None
        return self.dirty_pages + (self.unstable_pages or 0) + (self.writeback_pages or 0)


def totalreserve_pages(zoneinfo) -> int:
    """calculate_totalreserve_pages(): per zone min(max(lowmem_reserve) + high wmark, managed)."""
    total = 0
    for z in zoneinfo.zones:
        managed = z.managed_pages or 0
        high = (z.high_pages or 0) - (z.boost_pages or 0)
        reserve = max(z.protection or (0,)) + max(high, 0)
        total += min(reserve, managed)
    return total


def dirty_limits(snap: Snapshot) -> DirtyLimits | None:
    """The limits from the vm.dirty_* sysctls as the kernel computes them; when the sysctls are
    not in the snapshot, the kernel's own nr_dirty_threshold / nr_dirty_background_threshold
    from /proc/vmstat (thresholds_from="kernel"); None when neither is there."""
    mi, vm, zi, sc = (snap.get(n) for n in ("meminfo", "vmstat", "zoneinfo", "sysctl"))
    if mi is None and vm is None:
        return None
    ps = snap.host.page_size or 4096
    notes: list[str] = []
    vget = (lambda n: vm.get(n)) if vm is not None else (lambda n: None)
    memfree = mi.mem_free_kb * 1024 // ps if mi is not None and mi.mem_free_kb is not None else None
    vfree = vget("nr_free_pages")
    free = memfree if memfree is not None else vfree
    if free is None:
        return None
    src = "MemFree" if memfree is not None else "vmstat nr_free_pages"
    if memfree is not None and vfree is not None and vfree < 0.8 * memfree:
        notes.append(f"vmstat nr_free_pages ({vfree} pages) is far below MemFree ({memfree} pages): "
                     "memory initialised lazily at boot or added late; the kernel's dirty limits "
                     "follow MemFree, as here")
    active = vget("nr_active_file")
    inactive = vget("nr_inactive_file")
    if active is None or inactive is None:
        if mi is None or mi.active_file_kb is None or mi.inactive_file_kb is None:
            return None
        active, inactive = mi.active_file_kb * 1024 // ps, mi.inactive_file_kb * 1024 // ps
    reserve = totalreserve_pages(zi) if zi is not None else None
    if reserve is None:
        notes.append("zoneinfo unavailable: totalreserve_pages taken as 0 (thresholds slightly high)")
    x = free - min(free, reserve or 0)
    x += active + inactive
    dirtyable = x + 1
    if zi is not None and any(z.name == "HighMem" for z in zi.zones):
        notes.append("HighMem zone present (32-bit): the kernel leaves highmem out unless "
                     "vm.highmem_is_dirtyable; not modelled here")

    def limit(bytes_name, ratio_name):
        if sc is None:
            return None, None, None
        b = sc.int(bytes_name)
        r = sc.int(ratio_name)
        if b:
            return -(-b // ps), b, r
        if r is None:
            return None, b, r
        return (r * ps // 100) * dirtyable // ps, b, r

    thresh, db, dr = limit("vm.dirty_bytes", "vm.dirty_ratio")
    bg, bb, br = limit("vm.dirty_background_bytes", "vm.dirty_background_ratio")
    kt, kbg = vget("nr_dirty_threshold"), vget("nr_dirty_background_threshold")
    source = "sysctls"
    if thresh is None or bg is None:
        if kt is None or kbg is None:
            return None
        # no vm.dirty_* in the snapshot: the kernel printed its own result (mm/vmstat.c,
        # vmstat_start: global_dirty_limits()) -- judge with that
        thresh, bg, source = kt, kbg, "kernel"
        notes.append("vm.dirty_* sysctls not in the capture: limits are the kernel's own "
                     "nr_dirty_threshold / nr_dirty_background_threshold from /proc/vmstat")
    halved = bg >= thresh and source == "sysctls"
    if halved:
        bg = thresh // 2
        notes.append("background limit >= dirty limit: the kernel uses half the dirty limit")
    freerun = (thresh + bg) // 2
    dirty = vget("nr_dirty")
    wb = vget("nr_writeback")
    unstable = vget("nr_unstable")
    if unstable is None and mi is not None and getattr(mi, "nfs_unstable_kb", None) is not None:
        unstable = mi.nfs_unstable_kb * 1024 // ps
    if dirty is None and mi is not None and mi.dirty_kb is not None:
        dirty = mi.dirty_kb * 1024 // ps
    if wb is None and mi is not None and mi.writeback_kb is not None:
        wb = mi.writeback_kb * 1024 // ps
    state = "unknown"
    if dirty is not None:
        total = dirty + (unstable or 0) + (wb or 0)
        if total >= thresh:
            state = "at the hard limit"
        elif total > freerun:
            state = "throttled"
        elif dirty + (unstable or 0) > bg:
            state = "background writeback"
        else:
            state = "idle"
    if source == "sysctls" and kt is not None and thresh and abs(kt - thresh) > max(64, 0.01 * thresh):
        notes.append(f"the kernel's nr_dirty_threshold ({kt}) differs from ours ({thresh}) by more "
                     "than 1%: free memory moved between reads, or a kernel variant")
    return DirtyLimits(ps, dirty, wb, free, src, memfree, vfree, reserve, active + inactive,
                       dirtyable, dr, db, br, bb, thresh, bg, freerun, halved, kt, kbg, state,
                       tuple(notes), unstable, source)


@dataclass(frozen=True)
class MemcgDirty:
    """One cgroup v2 group's dirty pages against its share of the dirty limit (the kernel's
    `mdtc` domain in balance_dirty_pages, mm/page-writeback.c with cgroup writeback)."""

    path: str
    dirty_pages: int  # memory.stat file_dirty + file_writeback (bytes / page size)
    filepages: int  # active_file + inactive_file
    headroom_pages: int  # min over the group and its ancestors of min(max, high) - usage
    avail_pages: int  # filepages + min(headroom, other clean file pages)
    thresh_pages: int
    bg_thresh_pages: int

    @property
    def freerun_pages(self) -> int:
        return (self.thresh_pages + self.bg_thresh_pages) // 2


def memcg_dirty_limits(cgm, glob: DirtyLimits) -> list[MemcgDirty]:
    """Per memory cgroup (v2, with a finite memory.max or memory.high on itself or an ancestor),
    as balance_dirty_pages does for the memcg domain (checked in torvalds/linux
    mm/page-writeback.c mdtc_calc_avail / domain_dirty_limits and mm/memcontrol.c
    mem_cgroup_wb_stats):
      filepages = active_file + inactive_file;  dirty = file_dirty + file_writeback
      headroom  = min over the group and its ancestors of min(max, high) - usage
      clean = filepages - min(filepages, dirty); global_clean = dirtyable - min(dirtyable, global dirty)
      avail = filepages + min(headroom, global_clean - min(global_clean, clean))
      thresh = ratio * avail (ratio = vm.dirty_ratio, or for vm.dirty_bytes / the kernel-only
      case the global thresh / dirtyable), bg likewise.
    v1 has no per-cgroup writeback domain: nothing is returned for it."""
    out: list[MemcgDirty] = []
    if cgm is None or getattr(cgm, "version", None) != 2 or glob is None:
        return out
    ps = glob.page_size
    gdirty = glob.dirty_total_pages or 0
    gavail = glob.dirtyable_pages
    ratio = glob.thresh_pages / max(gavail, 1)
    bg_ratio = glob.bg_thresh_pages / max(gavail, 1)
    if glob.thresholds_from == "sysctls" and not glob.dirty_bytes and glob.dirty_ratio is not None:
        ratio = glob.dirty_ratio / 100
    if glob.thresholds_from == "sysctls" and not glob.background_bytes and glob.background_ratio is not None \
            and not glob.background_halved:
        bg_ratio = glob.background_ratio / 100
    for path, g in cgm.groups.items():
        st = g.stat or {}
        if path == "/" or "file_dirty" not in st:
            continue
        dirty = (st.get("file_dirty", 0) + st.get("file_writeback", 0)) // ps
        filepages = (st.get("active_file", 0) + st.get("inactive_file", 0)) // ps or st.get("file", 0) // ps
        headroom = None
        p = path
        while p and p != "/":
            a = cgm.groups.get(p)
            if a is not None and a.current_bytes is not None:
                ceil = min(x for x in (a.max_bytes, a.high_bytes, 1 << 62) if x is not None)
                if ceil < (1 << 62):
                    room = max(ceil - a.current_bytes, 0) // ps
                    headroom = room if headroom is None else min(headroom, room)
            p = p.rsplit("/", 1)[0] or "/"
        if headroom is None:
            continue  # no limit anywhere above it: the global domain decides
        clean = filepages - min(filepages, dirty)
        gclean = gavail - min(gavail, gdirty)
        avail = filepages + min(headroom, gclean - min(gclean, clean))
        thresh = int(ratio * avail)
        bg = int(bg_ratio * avail)
        if bg >= thresh:
            bg = thresh // 2
        out.append(MemcgDirty(path, dirty, filepages, headroom, avail, thresh, bg))
    return out
