"""Swap I/O: the harm is swap-in (a task waits for its page), not swap-out."""

from __future__ import annotations

from ...finding import Action
from ...rule import Context, Rule, Threshold, rule
from .common import swap_kind, toward
from .counters import PSWPIN, PSWPOUT


@rule("pagecache.swap-io", title="Swap-in: tasks wait for pages read back from swap",
      needs=("vmstat",), counters=(PSWPIN, PSWPOUT), uses=("meminfo", "sysctl", "swaps"),
      thresholds={
          "warn_swapin_pages_per_s": Threshold(10, "pages/s swapped in, in an interval",
                                               "40 KiB/s: tasks are waiting for swapped-out pages, "
                                               "not a stray page"),
          "critical_swapin_pages_per_s": Threshold(2560, "pages/s swapped in, in an interval",
                                                   "10 MiB/s read back from swap"),
          "info_swapout_pages_per_s": Threshold(10, "pages/s swapped out, in an interval",
                                                "reported as info only: moving cold anonymous "
                                                "memory out is what swap is for"),
      })
def swap_io(ctx: Context, r: Rule):
    """pswpin / pswpout (mm/page_io.c: swap_read_folio counts PSWPIN, swap_writepage PSWPOUT,
    per page; checked in torvalds/linux mm/page_io.c and mm/swap_state.c, where a swap-cache
    hit does no read and counts nothing). The harm is swap-in: the faulting task waits for the
    read (or, on zram, for a decompression in the faulting task: no disk involved). Swap-out
    alone is kswapd or reclaim moving cold anonymous memory out, healthy by itself: info only,
    never a warning. zram is told from disk swap by /proc/swaps device names (/dev/zram*).
    zswap loads (zswpin) are not in pswpin: they never reach the device.
    Kernels: every kernel since 2.6 prints both counters (node_exporter's host, pcp meminfo
    roots 001-007); a capture without them is not_evaluated with that reason."""
    sin, sout = ctx.counter(PSWPIN), ctx.counter(PSWPOUT)
    page_kb = ctx.page_size // 1024
    ipeak, opeak = sin.peak, sout.peak
    harmful = ipeak is not None and ipeak.rate >= r.t("warn_swapin_pages_per_s")
    if not harmful and (opeak is None or opeak.rate < r.t("info_swapout_pages_per_s")):
        return None
    kind, devices = swap_kind(ctx.get("swaps"))
    i = (ipeak if harmful else opeak).interval
    rin, rout = sin.rates[i], sout.rates[i]
    ev = []
    if harmful:
        ev.append(ctx.ev("pswpin", rin, "pages/s", "vmstat", threshold=r.t("warn_swapin_pages_per_s"),
                         note=f"{(rin or 0) * page_kb:,.0f} kB/s; " + (ctx.peak_note(ipeak, sin.mean_rate) or "")))
        ev.append(ctx.ev("pswpout", rout, "pages/s", "vmstat",
                         note=f"{(rout or 0) * page_kb:,.0f} kB/s in the same interval"))
    else:
        ev.append(ctx.ev("pswpout", rout, "pages/s", "vmstat", threshold=r.t("info_swapout_pages_per_s"),
                         note=f"{(rout or 0) * page_kb:,.0f} kB/s; " + (ctx.peak_note(opeak, sout.mean_rate) or "")))
        ev.append(ctx.ev("pswpin", rin, "pages/s", "vmstat", note="nothing read back"))
    if devices:
        ev.append(ctx.ev("swap devices", ", ".join(devices), "", "swaps",
                         note={"zram": "compressed RAM (zram): swap-in is a decompression, not a disk read",
                               "disk": "disk or file swap: swap-in is a read from the device",
                               "mixed": "zram and disk swap both in use"}[kind]))
    mi = ctx.get("meminfo")
    if mi and mi.swap_total_kb is not None and mi.swap_free_kb is not None:
        ev.append(ctx.ev("swap used", mi.swap_total_kb - mi.swap_free_kb, "kB", "meminfo",
                         note=f"of {mi.swap_total_kb} kB"))
    if not harmful:
        return r.finding(
            "info", ev,
            "Anonymous memory is being written to swap and none comes back in: reclaim is "
            "moving memory nobody touches out of RAM, which is what swap is for. It becomes harm "
            "only when those pages are needed again (swap-in, pswpin).",
            [Action.command("ksight show --processes --json  # VmSwap per process: who is swapped out")],
            title="Swap-out only (cold anonymous memory moved out)")
    wait = {"zram": "for its page to be decompressed from zram (CPU time in the faulting task, "
                    "no disk read)",
            "disk": "for a read from the swap device",
            "mixed": "for a read from the swap device, or a zram decompression",
            "unknown": "for a read from swap (a disk read, or a decompression if swap is zram)"}[kind]
    sw = ctx.sysctl("vm.swappiness")
    acts = []
    if sw is not None:
        ev.append(ctx.ev("vm.swappiness", sw, "", "/proc/sys/vm/swappiness"))
        if kind != "zram":
            acts.append(Action.sysctl("vm.swappiness", sw, toward(sw, 10, "down"),
                                      why="prefer dropping page cache over swapping anonymous memory; "
                                          "trade-off: less cache for file I/O"))
    acts += [Action.command("ksight show --processes --json  # VmSwap per process: who is swapped out"),
             Action.code("set memory.swap.max (v2) or memory.memsw.limit_in_bytes (v1) for "
                         "latency-sensitive groups so they are not swapped")]
    return r.finding(
        "critical" if ipeak.rate >= r.t("critical_swapin_pages_per_s") else "warning", ev,
        f"Pages that were swapped out are needed again and read back: a task that touches one "
        f"waits {wait}. It shows up as latency jitter; sustained, it means the anonymous working "
        f"set does not fit in memory (machine-wide or in a memory cgroup).",
        acts)
