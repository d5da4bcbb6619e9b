"""Text of `ksight sar -B / -r`: sysstat's columns, names, order and number formats.

sysstat prints a rate as %9.2f and a kB value as %9llu, each after one space: a rate of 10^7
(10000000.00, 11 characters) then runs into the column before it. Here every column is at
least as wide as sysstat's (or its header, or MemTotal's digits for kB columns) and grows to its
content, always after one space, so columns never run together.

Two ways to print, one table code (rich, imported only here):
- streaming (live): the header, then each row as its snapshot arrives, as sar does; a column
  that grows pushes the later rows right, never into the next column;
- whole tables (a capture, read at once): every column sized to its widest cell.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from ..views.sar import MEMORY_COLUMNS, PAGING_COLUMNS, SarReport, SarRow, clock, header_line
from ..views.sar import mem_total_kb

TIME_WIDTH = 8  # "HH:MM:SS", "Average:"
RATE_WIDTH = 9  # sysstat's %9.2f
PCT_WIDTH = 6


def cell(col: str, v, reset: bool = False) -> str:
    """One value as sysstat prints it: kB columns as integers, everything else with 2 decimals;
    a gap is "reset" (the counter went backwards) or "-" (absent)."""
    if v is None:
        return "reset" if reset else "-"
    if col.startswith("kb"):
        return str(int(round(v)))
    return f"{v:.2f}"


def min_widths(columns: Sequence[str], mem_total: int | None) -> list[int]:
    """The narrowest widths (without the separating space) that hold the header and sysstat's
    usual values: -B stays under 100 columns, -r as close as the names allow."""
    kb_digits = len(str(int(mem_total))) if mem_total else 9
    out = []
    for c in columns:
        need = kb_digits if c.startswith("kb") else RATE_WIDTH if c.endswith("/s") else PCT_WIDTH
        out.append(max(len(c), need))
    return out


def row_cells(columns: Sequence[str], row: SarRow) -> list[str]:
    return [cell(c, row.values.get(c), bool(row.resets)) for c in columns]


def _console(out):
    from rich.console import Console

    return Console(file=out, width=100_000, highlight=False, markup=False, emoji=False,
                   color_system=None, soft_wrap=False)


def _lines(label_width: int, widths: Sequence[int], lines: Sequence[Sequence[str]]):
    """A borderless rich table: a left-justified time column, then right-justified columns
    each after one space, at least `widths` wide and as wide as their content."""
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, show_header=False, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1),
              expand=False)
    t.add_column(justify="left", min_width=label_width, no_wrap=True)
    for w in widths:
        t.add_column(justify="right", min_width=w, no_wrap=True)
    for ln in lines:
        t.add_row(*(Text(c) for c in ln))
    return t


class TablePrinter:
    """One sar table: its header line and rows, printed through rich with growing widths."""

    def __init__(self, out, columns: Sequence[str], widths: Sequence[int]):
        self.out, self.columns = out, tuple(columns)
        self.widths = list(widths)
        self.console = _console(out)

    def _print(self, lines: Sequence[Sequence[str]]) -> None:
        label = max([TIME_WIDTH] + [len(ln[0]) for ln in lines])
        for ln in lines:
            for i, c in enumerate(ln[1:]):
                self.widths[i] = max(self.widths[i], len(c))
        self.console.print(_lines(label, self.widths, lines), crop=False, overflow="ignore")
        self.out.flush()

    def head(self, time_label: str) -> None:
        self._print([[time_label, *self.columns]])

    def row(self, r: SarRow) -> None:
        self._print([[r.time, *row_cells(self.columns, r)]])
        for n in r.notes:
            self.out.write(f"# {r.time}: {n}\n")

    def table(self, time_label: str, rows: Sequence[SarRow]) -> None:
        """The header and every row at once, each column as wide as its widest cell."""
        lines = [[time_label, *self.columns]] + [[r.time, *row_cells(self.columns, r)] for r in rows]
        self._print(lines)
        for r in rows:
            for n in r.notes:
                self.out.write(f"# {r.time}: {n}\n")


def _columns(mode: str) -> tuple[str, ...]:
    return PAGING_COLUMNS if mode == "B" else MEMORY_COLUMNS


class SarText:
    """The text of one `ksight sar` run, fed as snapshots arrive (sar's own layout).

    stream=True prints each row as it comes (a person watching a live machine); stream=False
    prints whole tables at the end, each column sized to its content (a capture)."""

    def __init__(self, modes: Sequence[str], out=None, *, stream: bool, hint: str | None = None):
        self.modes = tuple(modes)
        self.out = out or sys.stdout
        self.stream = stream
        self.hint = hint
        self.printers: dict[str, TablePrinter] = {}
        self.n = 0

    def start(self, first) -> None:
        """The first snapshot: sar's first line, and widths for -r from MemTotal."""
        self.out.write(header_line(first) + "\n")
        if self.hint:
            self.out.write(f"# {self.hint}\n")
        total = mem_total_kb(first)
        for m in self.modes:
            cols = _columns(m)
            self.printers[m] = TablePrinter(self.out, cols, min_widths(cols, total))

    def rows(self, prev, new: Mapping[str, SarRow]) -> None:
        """Rows completed by one snapshot (prev: the snapshot before it)."""
        if not new or not self.stream:
            return
        self.n += 1
        for m in self.modes:
            p = self.printers[m]
            if self.n == 1 or len(self.modes) > 1:
                self.out.write("\n")
                p.head(clock(prev))
            p.row(new[m])

    def finish(self, reports: Sequence[SarReport]) -> None:
        if not self.printers:  # not even one snapshot
            for r in reports:
                self.out.write(f"\n{r.header}\n" if r.header else "")
        for r in reports:
            p = self.printers.get(r.mode)
            if p is not None:
                if self.stream:
                    if len(self.modes) > 1:
                        self.out.write("\n")
                        p.head("")
                    if r.average:
                        p.row(r.average)
                else:
                    self.out.write("\n")
                    rows = list(r.rows) + ([r.average] if r.average else [])
                    p.table(r.rows[0].time if r.rows else "", rows)
            for n in r.notes:
                self.out.write(f"# {n}\n")
            for m in r.unavailable:
                self.out.write(f"# unavailable: {m.source}: {m.reason}\n")
        self.out.flush()


def render_reports(reports: Sequence[SarReport], first, out=None) -> None:
    """Whole tables for snapshots already taken (tests, and anything holding a report)."""
    t = SarText([r.mode for r in reports], out, stream=False)
    if first is not None:
        t.start(first)
    t.finish(reports)


__all__ = ["SarText", "TablePrinter", "cell", "min_widths", "render_reports"]
