"""Text of `ksight pidstat -r`: sysstat's layout (time, UID %5d, PID %9d, minflt/s and majflt/s
%9.2f, VSZ and RSS %7 integers, %MEM %6.2f, two spaces and the command), through rich with
pidstat's widths as minimums (a value that outgrows its column widens it, never runs into the
next one). A header before each interval's rows, a blank line between intervals, and the
Average section, as pidstat prints them."""

from __future__ import annotations

from ..views.pidstat import PidstatRow
from .pmap_text import console, table

WIDTHS = (11, 5, 9, 9, 9, 7, 7, 6, 0)
HEADER_TAIL = ("UID", "PID", "minflt/s", "majflt/s", "VSZ", "RSS", "%MEM", "Command")


def _f(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _k(v) -> str:
    return "-" if v is None else f"{v:.0f}"  # pidstat: %7llu for a sample, %7.0f for Average


def cells(r: PidstatRow) -> list[str]:
    return [r.time, "-" if r.uid is None else str(r.uid), str(r.pid), _f(r.minflt_per_s),
            _f(r.majflt_per_s), _k(r.vsz_kb), _k(r.rss_kb), _f(r.mem_pct), " " + r.command]


def block(out, label: str, rows: list[PidstatRow]) -> None:
    """One interval: a header whose first cell is `label` (the earlier sample's time, or
    "Average:"), then the rows."""
    con = console(out)
    con.print(table((label,) + HEADER_TAIL[:-1] + (" Command",), WIDTHS, "lrrrrrrrl",
                    [cells(r) for r in rows]))
