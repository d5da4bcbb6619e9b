"""Text of `ksight top`: top's memory columns (KiB integers, as `top -b` prints them without
scaling), one row per process, columns at least top's widths and growing with their content."""

from __future__ import annotations

from ..views.top import TopReport
from . import units
from .pmap_text import console, table

HEADER = ("PID", "UID", "VIRT", "RES", "SHR", "CODE", "DATA", "%MEM", "SWAP", "VMAs", "OOM", "ADJ",
          "COMMAND")
WIDTHS = (7, 5, 7, 6, 6, 6, 7, 5, 6, 5, 4, 5, 0)


def _i(v) -> str:
    return "-" if v is None else str(v)


def render(rep: TopReport, out) -> None:
    con = console(out)
    total = units.size_kb(rep.mem_total_kb) if rep.mem_total_kb else "-"
    con.print(f"{len(rep.rows)} of {rep.processes} processes by {rep.sort.upper()} "
              f"(KiB; %MEM of MemTotal {total})")
    rows = [[str(r.pid), _i(r.uid), _i(r.virt_kb), _i(r.res_kb), _i(r.shr_kb), _i(r.code_kb),
             _i(r.data_kb), "-" if r.mem_pct is None else f"{r.mem_pct:.1f}", _i(r.swap_kb),
             _i(r.vmas), _i(r.oom_score), _i(r.oom_score_adj), r.command] for r in rep.rows]
    con.print(table(HEADER, WIDTHS, "rrrrrrrrrrrrl", rows))
    for n in rep.notes:
        con.print(f"note: {n}")
