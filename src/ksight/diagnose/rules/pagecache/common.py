"""Helpers the page cache rules share: cgroup file paths, watermark evidence, sysctl steps."""

from __future__ import annotations

from ....render.units import size_kb


def cgroup_dir(cm, path: str) -> str:
    """The absolute directory of a memory cgroup, from the mount the source read."""
    if cm.mount:
        return f"/{cm.mount.strip('/')}{path if path != '/' else ''}"
    return f"memory cgroup {path}"


def psi_memory_some10(ctx) -> float | None:
    p = ctx.get("pressure")
    psi = getattr(p, "memory", None) if p is not None else None
    return psi.some.avg10 if psi is not None and psi.some is not None else None


def watermark_evidence(ctx) -> list:
    """Free pages against the min/low/high watermarks of each populated zone."""
    zi = ctx.get("zoneinfo")
    out = []
    if zi is None:
        return out
    for z in zi.zones:
        if not z.managed_pages or z.free_pages is None or z.low_pages is None:
            continue
        note = f"watermarks min {z.min_pages}, low {z.low_pages}, high {z.high_pages} pages"
        if z.free_pages < (z.min_pages or 0):
            note += "; BELOW MIN: allocations enter direct reclaim"
        elif z.free_pages < z.low_pages:
            note += "; below low: kswapd is awake"
        out.append(ctx.ev(f"node{z.node} {z.name} free", z.free_pages, "pages", "zoneinfo",
                          threshold=z.low_pages, note=note))
    return out


def toward(cur: int | None, target: int, direction: str) -> int:
    """The recommended value: `target`, but never a step the wrong way from the current value
    (a setting already past the target is kept; the engine then drops the no-op action)."""
    if cur is None:
        return target
    return max(cur, target) if direction == "up" else min(cur, target)


def half(cur: int | None, floor: int) -> str:
    """Half the current value, not below a floor (start background writeback sooner)."""
    return str(max((cur or 0) // 2, floor))


fmt_kb = size_kb


def swap_kind(swaps) -> tuple[str, tuple[str, ...]]:
    """("zram" | "disk" | "mixed" | "unknown", device names) of the active swap devices.
    zram devices are /dev/zramN in /proc/swaps (drivers/block/zram); everything else is a
    partition or a file on a disk."""
    devs = tuple(d.filename for d in getattr(swaps, "devices", ()) or ())
    if not devs:
        return "unknown", ()
    z = [d.startswith("/dev/zram") for d in devs]
    return ("zram" if all(z) else "mixed" if any(z) else "disk"), devs
