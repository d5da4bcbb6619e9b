"""The dirty page thresholds, computed as mm/page-writeback.c does.

    dirtyable = nr_free_pages - min(nr_free_pages, totalreserve) + nr_active_file + nr_inactive_file (+1)
    totalreserve = sum over zones of min(max(protection[j] for j >= zone) + high watermark, managed)
    thresh    = ceil(vm.dirty_bytes / PAGE_SIZE)            if vm.dirty_bytes else
                (vm.dirty_ratio * PAGE_SIZE / 100) * dirtyable / PAGE_SIZE   (integer arithmetic)
    bg_thresh = the same with the dirty_background_* pair;  if bg_thresh >= thresh: bg_thresh = thresh / 2
    freerun   = (thresh + bg_thresh) / 2: below it no writer is throttled in balance_dirty_pages

The kernel uses vmstat's nr_free_pages, not meminfo's MemFree: on kernels that initialise
memory lazily at boot (deferred struct page init) the two differ widely for a while, and the
thresholds follow nr_free_pages. The kernel also prints its own result (vmstat
nr_dirty_threshold / nr_dirty_background_threshold, recomputed whenever the kernel looks), which
we show beside ours and prefer when present.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DirtyLimits:
    dirtyable_pages: int | None
    totalreserve_pages: int | None
    thresh_pages: int | None  # foreground: writers are stopped above it
    bg_thresh_pages: int | None  # background writeback starts above it
    freerun_pages: int | None  # throttling of writers starts above it
    kernel_thresh_pages: int | None  # as the kernel printed it in /proc/vmstat
    kernel_bg_thresh_pages: int | None
    dirty_pages: int | None  # nr_dirty + nr_writeback: what the kernel compares
    from_bytes: bool  # vm.dirty_bytes set (it overrides the ratio)
    bg_from_bytes: bool

    @property
    def effective_thresh(self) -> int | None:
        return self.kernel_thresh_pages if self.kernel_thresh_pages is not None else self.thresh_pages

    @property
    def effective_bg_thresh(self) -> int | None:
        return self.kernel_bg_thresh_pages if self.kernel_bg_thresh_pages is not None else self.bg_thresh_pages

    @property
    def effective_freerun(self) -> int | None:
        t, b = self.effective_thresh, self.effective_bg_thresh
        return None if t is None or b is None else (t + b) // 2


def totalreserve_pages(zoneinfo) -> int | None:
    """calculate_totalreserve_pages(): per zone, the largest lowmem reserve plus the high
    watermark, capped at the zone's managed pages."""
    if zoneinfo is None:
        return None
    total = 0
    for z in zoneinfo.zones:
        if z.high_pages is None:
            return None
        prot = z.protection or (0,)
        # lowmem_reserve[j] for j >= this zone's index: zoneinfo prints the whole array per zone
        # and entries for lower zones are 0, so the max over the array is the same.
        reserve = max(prot) + z.high_pages - (z.boost_pages or 0)
        managed = z.managed_pages if z.managed_pages is not None else z.present_pages
        if managed is not None:
            reserve = min(reserve, managed)
        total += max(reserve, 0)
    return total


def dirty_limits(vmstat, sysctl, zoneinfo, page_size: int) -> DirtyLimits:
    c = vmstat.counters if vmstat is not None else {}
    free = c.get("nr_free_pages")
    afile, ifile = c.get("nr_active_file"), c.get("nr_inactive_file")
    reserve = totalreserve_pages(zoneinfo)
    dirtyable = None
    if free is not None and afile is not None and ifile is not None:
        x = free - min(free, reserve or 0)
        dirtyable = x + afile + ifile + 1
    get = (lambda n: sysctl.int(n)) if sysctl is not None else (lambda n: None)
    dbytes, dratio = get("vm.dirty_bytes"), get("vm.dirty_ratio")
    bbytes, bratio = get("vm.dirty_background_bytes"), get("vm.dirty_background_ratio")

    def limit(nbytes, ratio):
        if nbytes:
            return -(-nbytes // page_size)  # DIV_ROUND_UP
        if ratio is None or dirtyable is None:
            return None
        return (ratio * page_size // 100) * dirtyable // page_size

    thresh, bg = limit(dbytes, dratio), limit(bbytes, bratio)
    if thresh is not None and bg is not None and bg >= thresh:
        bg = thresh // 2
    freerun = None if thresh is None or bg is None else (thresh + bg) // 2
    dirty = None
    if "nr_dirty" in c and "nr_writeback" in c:
        dirty = c["nr_dirty"] + c["nr_writeback"] + c.get("nr_unstable", 0)
    return DirtyLimits(dirtyable, reserve, thresh, bg, freerun, c.get("nr_dirty_threshold"),
                       c.get("nr_dirty_background_threshold"), dirty, bool(dbytes), bool(bbytes))
