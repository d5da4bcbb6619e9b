"""Swap I/O."""

from __future__ import annotations

from ...finding import Action
from ...rule import Context, Rule, Threshold, rule
from .common import toward
from .counters import PSWPIN, PSWPOUT, SWAP_IO


@rule("pagecache.swap-io", title="Swap I/O",
      needs=("vmstat",), counters=(PSWPIN, PSWPOUT), uses=("meminfo", "sysctl"),
      thresholds={
          "warn_pages_per_s": Threshold(10, "pages/s in an interval",
                                        "40 KiB/s: swapping is under way, not a stray page"),
          "critical_pages_per_s": Threshold(2560, "pages/s in an interval", "10 MiB/s of swap traffic"),
      })
def swap_io(ctx: Context, r: Rule):
    """pswpin / pswpout: pages read from and written to swap, judged per interval."""
    sin, sout = ctx.counter(PSWPIN), ctx.counter(PSWPOUT)
    both = ctx.counter(SWAP_IO)
    peak = both.peak
    if peak is None or peak.rate < r.t("warn_pages_per_s"):
        return None
    page_kb = ctx.page_size // 1024
    i = peak.interval
    rin = sin.rates[i] if sin.rates[i] is not None else None
    rout = sout.rates[i] if sout.rates[i] is not None else None
    ev = [ctx.ev("swap traffic (peak interval)", peak.rate, "pages/s", "vmstat",
                 threshold=r.t("warn_pages_per_s"), note=ctx.peak_note(peak, both.mean_rate)),
          ctx.ev("pswpin", rin, "pages/s", "vmstat",
                 note=f"{(rin or 0) * page_kb:.0f} kB/s"),
          ctx.ev("pswpout", rout, "pages/s", "vmstat",
                 note=f"{(rout or 0) * page_kb:.0f} kB/s")]
    mi = ctx.get("meminfo")
    if mi and mi.swap_total_kb is not None and mi.swap_free_kb is not None:
        ev.append(ctx.ev("swap used", mi.swap_total_kb - mi.swap_free_kb, "kB", "meminfo",
                         note=f"of {mi.swap_total_kb} kB"))
    sw = ctx.sysctl("vm.swappiness")
    acts = []
    if sw is not None:
        ev.append(ctx.ev("vm.swappiness", sw, "", "/proc/sys/vm/swappiness"))
        acts.append(Action.sysctl("vm.swappiness", sw, toward(sw, 10, "down"),
                                  why="prefer dropping page cache over swapping anonymous memory; "
                                      "trade-off: less cache for file I/O"))
    acts += [Action.command("ksight show --processes --json  # VmSwap per process: who is swapped out"),
             Action.code("set memory.swap.max (v2) or memory.memsw.limit_in_bytes (v1) for "
                         "latency-sensitive groups so they are not swapped")]
    return r.finding(
        "critical" if peak.rate >= r.t("critical_pages_per_s") else "warning", ev,
        "Anonymous memory is being written to swap and read back. A task that touches a "
        "swapped-out page waits for a disk read, which shows up as latency jitter; in "
        "production it usually means memory is overcommitted (machine-wide or in a cgroup).",
        acts)

