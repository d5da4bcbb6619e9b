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
    rows = [(f"{m.start:016x}", str(m.kbytes), _n(m.rss_kb), _n(m.dirty_kb), m.mode,
             class_cell(m), m.name) for m in pm.mappings]
    totals = (str(pm.total_kbytes), str(pm.total_rss_kb), str(pm.total_dirty_kb))
    w = [ADDR_WIDTH, NUM_WIDTH, NUM_WIDTH, NUM_WIDTH, MODE_WIDTH, 7]
    for i in range(1, 4):
        w[i] = max(w[i], len(totals[i - 1]), max((len(r[i]) for r in rows), default=0))
    w[5] = max(w[5], max((len(r[5]) for r in rows), default=0))
    a, k, r_, d, mo, c = w
    lines = [f"{pm.pid}:   {pm.command}".rstrip(),
             f"{'Address':<{a}} {'Kbytes':>{k}} {'RSS':>{r_}} {'Dirty':>{d}} {'Mode':<{mo}} "
             f"{'Class':<{c}} Mapping"]
    fmt = f"{{:<{a}}} {{:>{k}}} {{:>{r_}}} {{:>{d}}} {{:<{mo}}} {{:<{c}}} {{}}".format
    lines += [fmt(*r).rstrip() for r in rows]
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
