"""Names of /proc/vmstat counters that changed across kernels, resolved in one place.

Before 4.8, reclaim counters were per zone (pgscan_kswapd_normal, pgsteal_direct_dma32,
allocstall with no suffix, then allocstall_normal...). From 4.8 they are per node and printed
once (pgscan_kswapd). Summing every name that merely *starts* with the base name is a known
trap (sysstat once counted pgsteal twice that way, and pgscan_direct_throttle is not a page
count at all), so we sum only the zone-suffixed variants. Every view and rule asks here.
"""

from __future__ import annotations

ZONE_SUFFIXES = ("dma", "dma32", "normal", "movable", "high", "device")


def vm_total(counters: dict[str, int] | None, base: str) -> int | None:
    """The counter `base` on this kernel: the plain name if printed, else the sum of its
    per-zone variants; None when the kernel has neither (absent, not zero)."""
    if counters is None:
        return None
    if base in counters:
        return counters[base]
    vals = [counters[f"{base}_{z}"] for z in ZONE_SUFFIXES if f"{base}_{z}" in counters]
    return sum(vals) if vals else None


def vm_sum(counters: dict[str, int] | None, *bases: str) -> int | None:
    """Sum of several counters resolved with vm_total; None only if all are absent."""
    vals = [v for v in (vm_total(counters, b) for b in bases) if v is not None]
    return sum(vals) if vals else None


# Derived counters used by sar -B, the reclaim rules and reports.
PGSCAN_KSWAPD = ("pgscan_kswapd",)
PGSCAN_DIRECT = ("pgscan_direct",)
PGSTEAL = ("pgsteal_kswapd", "pgsteal_direct")
ALLOCSTALL = ("allocstall",)
WORKINGSET_REFAULT = ("workingset_refault_file", "workingset_refault")  # split in 5.9
