"""Text of `ksight pmap`: procps `pmap -x`'s layout, plus a Class column and a summary by kind.

pmap -x prints `%016lx %7lu %7llu %7llu %5s %s` under "Address Kbytes RSS Dirty Mode Mapping"
and a "total kB" line. Here the same columns in the same order, through a borderless rich table
whose columns are at least pmap's widths and grow with their content (never run together), and
one more column before Mapping: Class, "p" (private) or "s" (shared) and the kind of memory
(heap, stack, anon, vdso, shm, exe, lib, file: views/pmap.py says how each is told apart).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..views.pmap import KINDS, Pmap
from . import units

ADDR_WIDTH = 16
NUM_WIDTH = 7
MODE_WIDTH = 5


class _Out:
    """Prints through rich, writes lines without the padding rich leaves at their ends."""

    def __init__(self, out):
        self.out = out

    def print(self, obj) -> None:
        import io

        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=100_000, highlight=False, markup=False, emoji=False,
                color_system=None, soft_wrap=False).print(obj)
        self.out.write("".join(ln.rstrip() + "\n" for ln in buf.getvalue().splitlines()))


def console(out) -> _Out:
    return _Out(out)


def table(header: Sequence[str] | None, widths: Sequence[int], justify: str,
          rows: Sequence[Sequence[str]]):
    """A borderless rich table: column i at least widths[i] wide, justified by justify[i]
    ('l' or 'r'), each column after one space (the first after none)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, show_header=header is not None, show_edge=False, pad_edge=False,
              padding=(0, 0, 0, 1), expand=False, header_style="")
    for i, (w, j) in enumerate(zip(widths, justify)):
        t.add_column(Text(header[i]) if header else "", justify="left" if j == "l" else "right",
                     min_width=w, no_wrap=True)
    for r in rows:
        t.add_row(*(Text(c) for c in r))
    return t


def class_cell(m) -> str:
    return ("s " if m.shared else "p ") + m.kind


def render(pm: Pmap, out) -> None:
    """The map table is formatted here, not through rich: rich lays out a 5,000-row table in
    ~2 s (and importing it costs ~20 ms of a run pmap -x finishes in ~35 ms); pmap -x prints it
    in 30 ms. Same rule as the rich tables: each column at least pmap's width, wider when a value
    needs it (never run together); no line ends in spaces."""
    maps = pm.mappings
    totals = (str(pm.total_kbytes), str(pm.total_rss_kb), str(pm.total_dirty_kb))
    # widths from the largest value (the digits of a non-negative int grow with it; "-" for an
    # absent value is narrower than any column): one pass over the rows, not one per column
    w = [ADDR_WIDTH, NUM_WIDTH, NUM_WIDTH, NUM_WIDTH, MODE_WIDTH, 7]
    tops = (max((m.kbytes for m in maps), default=0), max((m.rss_kb or 0 for m in maps), default=0),
            max((m.dirty_kb or 0 for m in maps), default=0))
    for i in range(1, 4):
        w[i] = max(w[i], len(totals[i - 1]), len(str(tops[i - 1])))
    cells = {(m.shared, m.kind) for m in maps}
    w[5] = max(w[5], max((len(k) + 2 for _, k in cells), default=0))
    a, k, r_, d, mo, c = w
    lines = [f"{pm.pid}:   {pm.command}".rstrip(),
             f"{'Address':<{a}} {'Kbytes':>{k}} {'RSS':>{r_}} {'Dirty':>{d}} {'Mode':<{mo}} "
             f"{'Class':<{c}} Mapping"]
    # printf-style: ~0.35 us a row where str.format took ~0.6 us (5,000 rows: 1.7 vs 2.8 ms)
    fmt = f"%0{a}x %{k}s %{r_}s %{d}s %-{mo}s %-{c}s %s"
    cls = {key: ("s " if key[0] else "p ") + key[1] for key in cells}
    lines += [(fmt % (m.start, m.kbytes, "-" if m.rss_kb is None else m.rss_kb,
                      "-" if m.dirty_kb is None else m.dirty_kb, m.mode, cls[m.shared, m.kind],
                      m.name)).rstrip() for m in maps]
    lines.append(f"{'-' * a} {'-' * k} {'-' * r_} {'-' * d}")
    lines.append(f"{'total kB':<{a}} {totals[0]:>{k}} {totals[1]:>{r_}} {totals[2]:>{d}}")
    kinds = pm.by_kind()
    if kinds:
        lines += ["", "by kind (Class: p private, s shared):"]
        krows = [("kind", "mappings", "size", "RSS", "dirty")]
        for k in KINDS:
            d = kinds.get(k)
            if d:
                krows.append((k, units.number(d["mappings"]), units.size_kb(d["kbytes"]),
                              units.size_kb(d["rss_kb"]), units.size_kb(d["dirty_kb"])))
        kw = [max(m, max(len(r[i]) for r in krows)) for i, m in enumerate((5, 8, 10, 10, 10))]
        lines += [" ".join([r[0].ljust(kw[0])] + [v.rjust(kw[i + 1]) for i, v in enumerate(r[1:])])
                  for r in krows]
    lines += [f"note: {n}" for n in pm.notes]
    out.write("\n".join(lines) + "\n")


def _n(v) -> str:
    return "-" if v is None else str(v)
