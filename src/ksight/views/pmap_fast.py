"""`ksight pmap PID`'s fast path: the view of views/pmap.py for the live text output, without a
Region, a Mapping or a dict per mapping.

The rows stay in the C table that collect/pmap_live.py read (ksight._smapspmap: pmap -x's
numbers and ksight's class of each mapping, as views/pmap.mappings_of computes them); this view
holds what the text needs besides them: the command line, the totals, the largest values (for
the column widths), the (shared, kind) classes present and the sums by kind. The rows are
formatted by the C table with the widths render/pmap_text.render_fast chose.

The reference is the ordinary path (Collector -> views/pmap.build -> render/pmap_text.render):
tests/views/test_pmap_fast.py checks that both print the same text. This module imports nothing
heavy (no dataclasses, no parsers): it is on the path that must beat procps pmap -x.
"""

from __future__ import annotations


class FastPmap:
    """pmap -x of one process, its rows in a C table (see the module doc)."""

    __slots__ = ("pid", "command", "exe", "n", "total_kbytes", "total_rss_kb", "total_dirty_kb",
                 "tops", "cells", "kinds", "notes", "_table")

    def rows(self, a: int, k: int, r: int, d: int, mo: int, c: int) -> bytes:
        """Every mapping's row (Address, Kbytes, RSS, Dirty, Mode, Class, Mapping) with these
        column widths, each line ending in a newline, as ASCII bytes."""
        from .._smapspmap import rows

        return rows(self._table, a, k, r, d, mo, c)


def command_text(args: tuple[str, ...]) -> str:
    """pmap's first line after 'PID:' for a command line: the arguments joined by spaces,
    control characters as '?' (as procps prints them); views/pmap.command_of uses it too."""
    return "".join(c if c.isprintable() else "?" for c in " ".join(args))


def from_table(pid: int, command: str, exe: str | None, got: tuple) -> FastPmap:
    """The view of one _smapspmap table (read_table or table)."""
    from .._smapspmap import KINDS

    table, n, totals, tops, cells, kinds, guessed = got
    pm = FastPmap()
    pm.pid, pm.command, pm.exe, pm.n, pm._table = pid, command, exe, n, table
    pm.total_kbytes, pm.total_rss_kb, pm.total_dirty_kb = totals
    pm.tops = tops
    # the classes present, as (shared, kind): bit kind * 2 + shared
    pm.cells = {(bool(i & 1), KINDS[i >> 1]) for i in range(2 * len(KINDS)) if cells >> i & 1}
    pm.kinds = {k: {"mappings": v[0], "kbytes": v[1], "rss_kb": v[2], "dirty_kb": v[3]}
                for k, v in zip(KINDS, kinds) if v[0]}
    pm.notes = (("proc/PID/exe unreadable: the first file mapping is taken as the executable",)
                if guessed is not None else ())
    return pm


def build(pid: int) -> FastPmap | None:
    """The map of live process `pid`, or None when the fast path cannot give exactly what the
    ordinary path would (collect/pmap_live.read says when): the caller then takes that path."""
    from ..collect.pmap_live import read

    got = read(pid)
    if got is None:
        return None
    cmdline, exe, table = got
    # sources/proc_pid/cmdline.parse, then views/pmap.command_of (importing them: ~1 ms)
    text = cmdline.decode("utf-8", "replace").rstrip("\0")
    if not text:  # a kernel thread or a zombie: [comm], which the Collector's path reads
        return None
    return from_table(pid, command_text(tuple(text.split("\0"))), exe, table)
