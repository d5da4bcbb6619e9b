"""The one units formatter: sizes, counts and rates as every view and renderer prints them.

Sizes are binary (KiB, MiB, GiB), as free(1), top and the kernel's own documentation print
them. A value the kernel did not give is None and prints as "-"; "unlimited" cgroup limits
(page-counter max, 2^63 rounded down to a page) print as "max", as cgroup v2 writes them.
Negative sizes are printed with their sign (a delta can shrink), never silently dropped.
"""

from __future__ import annotations

import math

# cgroup v2 "max" and v1's 9223372036854771712: anything this large is "no limit"
UNLIMITED_FLOOR = 2**62

_BIN = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def size(b: float | None, *, unlimited: bool = False, digits: int = 1) -> str:
    """Bytes for people: '1.5 GiB', '512 B', '-' for None; 'max' when unlimited=True and the
    value is a cgroup's no-limit value."""
    if b is None:
        return "-"
    if isinstance(b, float) and not math.isfinite(b):
        return "?"
    if unlimited and b >= UNLIMITED_FLOOR:
        return "max"
    sign = "-" if b < 0 else ""
    a = abs(b)
    for unit, n in _BIN:
        if a >= n:
            return f"{sign}{a / n:.{digits}f} {unit}"
    return f"{sign}{a:.0f} B"


def size_kb(kb: float | None, **kw) -> str:
    """A size given in kB (meminfo's unit, which is KiB) for people."""
    return size(None if kb is None else kb * 1024, **kw)


def size_pages(pages: float | None, page_size: int, **kw) -> str:
    return size(None if pages is None else pages * page_size, **kw)


def number(v) -> str:
    """A count or measurement with thousands separators; floats keep 2 decimals below 100."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "?"
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def rate(v: float | None, unit: str = "/s") -> str:
    return "-" if v is None else f"{number(v)} {unit}".rstrip()


def pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f} %"


def duration(seconds: float | None) -> str:
    """'850 ms', '3.1 s', '2 min 5 s', '1 h 02 min'."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


__all__ = ["size", "size_kb", "size_pages", "number", "rate", "pct", "duration", "UNLIMITED_FLOOR"]
