"""Text of `ksight pmap`: procps `pmap -x`'s layout, plus a Class column and a summary by kind.

pmap -x prints `%016lx %7lu %7llu %7llu %5s %s` under "Address Kbytes RSS Dirty Mode Mapping"
and a "total kB" line. Here the same columns in the same order, through a borderless rich table
whose columns are at least pmap's widths and grow with their content (never run together), and
one more column before Mapping: Class, "p" (private) or "s" (shared) and the kind of memory
(heap, stack, anon, vdso, shm, exe, lib, file: views/pmap.py says how each is told apart).
"""

from __future__ import annotations

from . import units

# Imported where used, not here: views/pmap.py (dataclasses, ~6 ms) by render() only, and no
# typing or collections.abc for the annotations (Pmap, FastPmap, Sequence: strings under the
# __future__ import, ~2.5 ms): render_fast() is on `ksight pmap PID`'s fast path, which must
# finish before procps pmap -x does

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


def table(header: Sequence[str] | None, widths: Sequence[int], justify: str,  # noqa: F821
          rows: Sequence[Sequence[str]]):  # noqa: F821
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


def render(pm: Pmap, out) -> None:  # noqa: F821
    """The map table is formatted here, not through rich: rich lays out a 5,000-row table in
    ~2 s (and importing it costs ~20 ms of a run pmap -x finishes in ~35 ms); pmap -x prints it
    in 30 ms. Same rule as the rich tables: each column at least pmap's width, wider when a value
    needs it (never run together); no line ends in spaces."""
    from ..views.pmap import KINDS

    maps = pm.mappings
    totals = (pm.total_kbytes, pm.total_rss_kb, pm.total_dirty_kb)
    # widths from the largest value (the digits of a non-negative int grow with it; "-" for an
    # absent value is narrower than any column): one pass over the rows, not one per column
    tops = (max((m.kbytes for m in maps), default=0), max((m.rss_kb or 0 for m in maps), default=0),
            max((m.dirty_kb or 0 for m in maps), default=0))
    cells = {(m.shared, m.kind) for m in maps}
    w = widths(totals, tops, cells)
    a, k, r_, d, mo, c = w
    lines = head(pm.pid, pm.command, w)
    # printf-style: ~0.35 us a row where str.format took ~0.6 us (5,000 rows: 1.7 vs 2.8 ms)
    fmt = f"%0{a}x %{k}s %{r_}s %{d}s %-{mo}s %-{c}s %s"
    cls = {key: ("s " if key[0] else "p ") + key[1] for key in cells}
    lines += [(fmt % (m.start, m.kbytes, "-" if m.rss_kb is None else m.rss_kb,
                      "-" if m.dirty_kb is None else m.dirty_kb, m.mode, cls[m.shared, m.kind],
                      m.name)).rstrip() for m in maps]
    kinds = pm.by_kind()
    lines += tail(w, totals, [(k, kinds[k]) for k in KINDS if k in kinds], pm.notes)
    out.write("\n".join(lines) + "\n")


def render_fast(pm: FastPmap, out) -> None:  # noqa: F821
    """render() for the fast path's view (views/pmap_fast.FastPmap): the same text, its rows
    formatted by the view's C table with the widths chosen here, written at once."""
    w = widths((pm.total_kbytes, pm.total_rss_kb, pm.total_dirty_kb), pm.tops, pm.cells)
    rows = pm.rows(*w)  # ASCII bytes
    first = "\n".join(head(pm.pid, pm.command, w)) + "\n"
    last = "\n".join(tail(w, (pm.total_kbytes, pm.total_rss_kb, pm.total_dirty_kb),
                          list(pm.kinds.items()), pm.notes)) + "\n"
    buf = getattr(out, "buffer", None)
    if buf is None or (getattr(out, "encoding", "") or "").lower().replace("-", "") not in (
            "utf8", "ascii"):
        out.write(first + rows.decode("ascii") + last)
        return
    # the rows (~70 bytes a mapping) straight to the binary layer: not decoded, joined and
    # encoded again, each a copy of ~350 kB for 5,000 mappings (page faults included)
    out.write(first)
    out.flush()
    buf.write(rows)
    buf.flush()
    out.write(last)


def widths(totals, tops, cells) -> list[int]:
    """Address, Kbytes, RSS, Dirty, Mode and Class widths: pmap's, wider for the largest value
    or total, and for the longest class ("p " or "s " and the kind) present."""
    w = [ADDR_WIDTH, NUM_WIDTH, NUM_WIDTH, NUM_WIDTH, MODE_WIDTH, 7]
    for i in range(1, 4):
        w[i] = max(w[i], len(str(totals[i - 1])), len(str(tops[i - 1])))
    w[5] = max(w[5], max((len(k) + 2 for _, k in cells), default=0))
    return w


def head(pid: int, command: str, w) -> list[str]:
    """pmap's first line and the column header."""
    a, k, r_, d, mo, c = w
    return [f"{pid}:   {command}".rstrip(),
            f"{'Address':<{a}} {'Kbytes':>{k}} {'RSS':>{r_}} {'Dirty':>{d}} {'Mode':<{mo}} "
            f"{'Class':<{c}} Mapping"]


def tail(w, totals, kinds, notes) -> list[str]:
    """The totals line, the memory by kind (`kinds`: (kind, sums) in views/pmap.KINDS order),
    the notes."""
    a, k, r_, d = w[:4]
    t = [str(x) for x in totals]
    lines = [f"{'-' * a} {'-' * k} {'-' * r_} {'-' * d}",
             f"{'total kB':<{a}} {t[0]:>{k}} {t[1]:>{r_}} {t[2]:>{d}}"]
    if kinds:
        lines += ["", "by kind (Class: p private, s shared):"]
        krows = [("kind", "mappings", "size", "RSS", "dirty")]
        for kind, s in kinds:
            krows.append((kind, units.number(s["mappings"]), units.size_kb(s["kbytes"]),
                          units.size_kb(s["rss_kb"]), units.size_kb(s["dirty_kb"])))
        kw = [max(m, max(len(r[i]) for r in krows)) for i, m in enumerate((5, 8, 10, 10, 10))]
        lines += [" ".join([r[0].ljust(kw[0])] + [v.rjust(kw[i + 1]) for i, v in enumerate(r[1:])])
                  for r in krows]
    return lines + [f"note: {n}" for n in notes]


def _n(v) -> str:
    return "-" if v is None else str(v)
