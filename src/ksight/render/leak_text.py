"""Text of `ksight leak`: the processes that grow, each with its trends, the memory types that
grow, heap against mmap and the mappings that grew; then those that grew but levelled off (not a
leak); then, with --trace, who made the calls behind the growing mappings."""

from __future__ import annotations

from ..views.leak import Growth, LeakReport, ProcessGrowth
from . import units
from .pmap_text import console, table

LABELS = {"anon": "anon", "rss": "RSS", "vsz": "VSZ", "vmas": "VMAs", "file": "file",
          "shmem": "shmem", "swap": "swap"}
LEVELLED_SHOWN = 5  # processes that grew but are not a leak: the fastest few
ORDER = ("anon", "rss", "vsz", "vmas", "file", "shmem", "swap")


def _v(g: Growth, v: float | None) -> str:
    if v is None:
        return "-"
    return units.number(round(v)) if g.unit == "mappings" else units.size_kb(v)


def _d(g: Growth, v: float | None, per_s: bool = False) -> str:
    if v is None:
        return "-"
    sign = "+" if v > 0 else ""
    if g.unit == "mappings":
        s = f"{sign}{v:,.1f}" if per_s else f"{sign}{v:,.0f}"
    else:
        s = sign + units.size_kb(v)
    return s + ("/s" if per_s else "")


def _trend_rows(pg: ProcessGrowth) -> list[list[str]]:
    rows = []
    for m in ORDER:
        g = pg.growths.get(m)
        if g is None:
            continue
        if m in ("file", "shmem", "swap") and g.growth == 0:
            continue  # a type that did not move says nothing here
        rows.append([LABELS[m], _v(g, g.first), _v(g, g.last), _d(g, g.growth),
                     _d(g, g.slope_per_s, True), _d(g, g.tail_slope_per_s, True),
                     f"{g.r2:.2f}", f"{g.rises}/{g.falls}", "yes" if g.steady else "no"])
    return rows


def _process(con, pg: ProcessGrowth, *, full: bool, avail_kb=None) -> None:
    con.print(f"PID {pg.pid} ({pg.comm}): {pg.verdict}: {pg.why}")
    con.print(table(("  metric", "start", "end", "growth", "slope", "last half", "r2",
                     "up/down", "steady"), (8, 9, 9, 10, 12, 12, 4, 7, 6), "lrrrrrrrl",
                    [["  " + r[0]] + r[1:] for r in _trend_rows(pg)]))
    if not full:
        for n in pg.notes:
            con.print(f"  note: {n}")
        return
    g = pg.growths.get("anon") or pg.growths.get("rss")
    if avail_kb and g is not None and g.steady and g.slope_per_s > 0:
        con.print(f"  at this pace MemAvailable ({units.size_kb(avail_kb)}) is gone in "
                  f"{units.duration(avail_kb / g.slope_per_s)}")
    con.print("  memory types growing: " + (", ".join(pg.types_growing) or
                                           "none steadily (of anon, file, shmem, swap)"))
    vsz, anon = pg.growths.get("vsz"), pg.growths.get("anon") or pg.growths.get("rss")
    if vsz is not None and vsz.steady and not (anon is not None and anon.steady):
        con.print("  VSZ grows, resident memory does not: address space reserved and never "
                  "touched (mmap without use; see memory.virtual-leak)")
    if pg.maps_snapshots >= 2 or pg.mappings:
        more = "".join(f", {name} +{units.size_kb(kb)}" for name, kb in
                       (("shared memory", pg.shm_kb), ("files", pg.file_kb)) if kb > 0)
        con.print(f"  heap (brk) {'+' if pg.heap_kb > 0 else ''}{units.size_kb(pg.heap_kb)}, "
                  f"mmap {'+' if pg.mmap_kb > 0 else ''}{units.size_kb(pg.mmap_kb)} "
                  f"(anonymous mappings){more}, from {pg.maps_snapshots} reads of its smaps")
    if pg.mappings:
        shown = pg.mappings[:8]
        con.print(f"  mappings that grew ({len(pg.mappings)}):")
        rows = [[f"    {m.start:x}-{m.end:x}", m.perms, m.kind, units.size_kb(m.size_kb),
                 "new" if m.new else "+" + units.size_kb(m.growth_kb),
                 units.size_kb(m.rss_kb) if m.rss_kb is not None else "-",
                 m.pathname if m.kind in ("shm", "file") else ""] for m in shown]
        con.print(table(("    address range", "perms", "kind", "size", "growth", "Rss", "file"),
                        (30, 5, 5, 10, 11, 10, 0), "llllrrl", rows))
        if len(pg.mappings) > len(shown):
            con.print(f"    ... and {len(pg.mappings) - len(shown)} more (--json lists all)")
    if pg.recurring_size_kb and pg.recurring_count >= 2:
        con.print(f"  recurring size: {pg.recurring_count} new mappings of "
                  f"{units.size_kb(pg.recurring_size_kb)} ({pg.recurring_size_kb * 1024:,} bytes): "
                  "one mmap call repeated without munmap; `ksight leak --trace` names the "
                  "thread making it")
    elif pg.grown_step_kb:
        con.print(f"  an anonymous mapping grows by steps of {units.size_kb(pg.grown_step_kb)} "
                  "or less between snapshots: adjacent mmaps of the same protection merge into "
                  "one mapping; `ksight leak --trace` shows the calls and their length")
    if pg.heap_kb > 0:
        con.print("  [heap] grows: malloc'ed memory never freed (small blocks come from brk); "
                  "`ksight leak --trace` names the thread moving the break")
    for n in pg.notes:
        con.print(f"  note: {n}")


def _trace(con, tr) -> None:
    con.print("")
    con.print(f"TRACE ({tr.backend}, {tr.seconds:g} s, {units.number(tr.events)} events"
              + (f", {tr.lost} lost" if tr.lost else "") + ")")
    for f in tr.filters.items():
        con.print(f"  filter {f[0]}: {f[1]}")
    if tr.enabled and not tr.callers:
        con.print("  no call matched in the trace (the process may have stopped growing, or "
                  "grows more slowly than the trace is long: --trace-seconds)")
    rows = [[str(c.pid), str(c.tid), c.comm, c.call, units.number(c.calls),
             ", ".join(f"{n:,}" for n in c.lengths[:3]) if c.call == "mmap" else
             ("+" + units.size(c.brk_grew_bytes) if c.brk_grew_bytes else "-"),
             "<- growing" if c.target else ""] for c in tr.callers[:20]]
    if rows:
        con.print(table(("  PID", "TID", "COMM", "call", "calls", "length / heap moved", ""),
                        (7, 7, 8, 5, 6, 20, 0), "rrlllll", rows))
    if tr.stacks:
        con.print("  user stacks (perf, innermost first):")
        for s in tr.stacks[:5]:
            con.print(f"    {s.count:>5}  {s.pid} {s.comm}: {s.stack or '[no frames]'}")
    if tr.stacks_why:
        con.print(f"  {tr.stacks_why}")
    for m in tr.missing:
        con.print(f"  missing: {m.event}: {m.reason}")
    for e in tr.errors:
        con.print(f"  error: {e}")
    for n in tr.notes:
        con.print(f"  note: {n}")


def render(rep: LeakReport, out) -> None:
    con = console(out)
    con.print(f"ksight leak: {units.number(rep.processes_seen)} processes watched for "
              f"{units.duration(rep.seconds)} ({rep.snapshots} snapshots"
              f"{', interrupted' if rep.interrupted else ''}); smaps read for "
              f"{len(rep.maps_read_for)} (only processes that grew)")
    if rep.growing:
        con.print("")
        con.print(f"GROWING: {len(rep.growing)} process(es) grew steadily to the end of the "
                  "watch (the shape of a leak)")
        for pg in rep.growing:
            _process(con, pg, full=True, avail_kb=rep.mem_available_kb)
    else:
        con.print("")
        con.print("No process grew steadily to the end of the watch.")
    if rep.levelled:
        con.print("")
        con.print(f"GREW, NOT A LEAK: {len(rep.levelled)} process(es) grew and levelled off, "
                  "or went up and down")
        for pg in rep.levelled[:LEVELLED_SHOWN]:
            _process(con, pg, full=False)
        if len(rep.levelled) > LEVELLED_SHOWN:
            con.print(f"... and {len(rep.levelled) - LEVELLED_SHOWN} more (--json lists all)")
    if rep.named:
        con.print("")
        for pg in rep.named:
            _process(con, pg, full=False)
    if rep.trace is not None:
        _trace(con, rep.trace)
    th = rep.thresholds
    con.print("")
    con.print("floors: anon/RSS " + f"{units.size_kb(th['anon']['min_growth'])} and "
              f"{units.size_kb(th['anon']['min_slope_per_s'])}/s, VSZ "
              f"{units.size_kb(th['vsz']['min_growth'])} and "
              f"{units.size_kb(th['vsz']['min_slope_per_s'])}/s, VMAs "
              f"{th['vmas']['min_growth']:g} and {th['vmas']['min_slope_per_s']:g}/s "
              "(the memory rules' thresholds: `ksight check --rules`)")
    for n in rep.notes:
        con.print(f"note: {n}")
