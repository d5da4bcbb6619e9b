"""Text of `ksight pagecache`: the cache, dirty limits, zone watermarks, swap, --protect.

Sizes through render.units (the one units formatter); the zone table through rich (imported
only here); --protect's advice is typed actions (diagnose.finding.Action), printed as the
command that applies each one and why.
"""

from __future__ import annotations

import shlex
import sys
import textwrap

from . import units

WIDTH = 96


def _kb(v) -> str:
    return units.size_kb(v)


def _pg(pages, page_size) -> str:
    return units.size_pages(pages, page_size)


def _wrap(text: str, first: str, rest: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first,
                         subsequent_indent=rest if rest is not None else " " * len(first))


def action_lines(a) -> list[str]:
    """An Action as the line that applies it, then why (wrapped)."""
    if a.kind == "cgroup":
        now = "" if a.current in (None, "None") else f"   (now {units.size(int(a.current), unlimited=True)})" \
            if a.current.isdigit() else f"   (now {a.current})"
        rec = units.size(int(a.recommended), unlimited=True) if a.recommended.isdigit() \
            else a.recommended
        head = f"{a.name} = {rec}: echo {a.recommended} > {shlex.quote(a.path)}{now}"
    elif a.kind == "sysctl":
        # a sysctl this kernel does not have: say so, never "(now None)"
        now = "   (not set on this kernel)" if a.current in (None, "None") else f"   (now {a.current})"
        head = f"sysctl -w {a.name}={a.recommended}{now}"
    elif a.kind == "command":
        head = f"$ {a.text}"
    else:
        head = a.text or ""
    # a line to paste into a shell stays one line, however long; prose is wrapped
    out = [f"  - {head}"] if a.kind != "code" else _wrap(head, "  - ", "    ")
    if a.why:
        out += _wrap(a.why, "      ")
    return out


def _zones(rep, out) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 0, 0, 2), header_style="",
              expand=False)
    t.add_column("node zone", justify="left", no_wrap=True)
    for name in ("free", "min", "low", "high", "managed"):
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("state", justify="left", no_wrap=True)
    for z in rep.zones:
        if z.state == "empty":
            continue
        t.add_row(Text(f"{z.node} {z.name}"), *(Text(units.number(v)) for v in (
            z.free_pages, z.min_pages, z.low_pages, z.high_pages)),
            Text(units.number(z.managed_pages) if z.managed_pages is not None else "?"),
            Text(z.state))
    import io

    buf = io.StringIO()
    Console(file=buf, width=WIDTH, highlight=False, markup=False, emoji=False,
            color_system=None).print(t)
    for line in buf.getvalue().splitlines():
        out.write(f"  {line}".rstrip() + "\n")


def render(rep, out=None) -> None:
    out = out or sys.stdout
    w = out.write
    c = rep.cache
    w("Page cache (from /proc/meminfo)\n")
    if c is None:
        w("  unavailable\n")
    else:
        w(f"  Buffers {_kb(c.buffers_kb)}   Cached {_kb(c.cached_kb)}   SwapCached "
          f"{_kb(c.swap_cached_kb)}   = {_kb(c.page_cache_kb)}\n")
        w(f"  Active(file) {_kb(c.active_file_kb)} + Inactive(file) {_kb(c.inactive_file_kb)} + "
          f"Shmem {_kb(c.shmem_kb)} + SwapCached = {_kb(c.lru_side_kb)}\n")
        w(f"  gap {c.gap_kb if c.gap_kb is not None else '-'} kB   (Unevictable "
          f"{_kb(c.unevictable_kb)}, Mlocked {_kb(c.mlocked_kb)})\n")
        if c.gap_why:
            for line in _wrap(c.gap_why, "  ! "):
                w(line + "\n")
        for line in _wrap(c.why, "    "):
            w(line + "\n")
        w(f"  free(1) buff/cache = Buffers + Cached + SReclaimable = {_kb(c.buff_cache_kb)}\n")
    d = rep.dirty
    w("\nDirty pages and writeback limits (mm/page-writeback.c)\n")
    if d is None:
        w("  unavailable (needs meminfo or vmstat, and the vm.dirty_* sysctls)\n")
    else:
        ps = d.page_size
        unst = f"   NFS unstable {_pg(d.unstable_pages, ps)}" if d.unstable_pages else ""
        w(f"  dirty {_pg(d.dirty_pages, ps)}   writeback {_pg(d.writeback_pages, ps)}{unst}   "
          f"state: {d.state}\n")
        if d.thresholds_from == "kernel":
            src = bsrc = "the kernel's own, from /proc/vmstat: vm.dirty_* not in the capture"
        else:
            src = (f"dirty_bytes={d.dirty_bytes}" if d.dirty_bytes else f"dirty_ratio={d.dirty_ratio}%")
            bsrc = (f"dirty_background_bytes={d.background_bytes}" if d.background_bytes
                    else f"dirty_background_ratio={d.background_ratio}%")
        w(f"  background writeback above {_pg(d.bg_thresh_pages, ps)} ({bsrc})\n")
        w(f"  writers throttled above {_pg(d.freerun_pages, ps)}, hard limit "
          f"{_pg(d.thresh_pages, ps)} ({src})\n")
        kern = ("-" if d.kernel_thresh_pages is None else
                f"{d.kernel_bg_thresh_pages} / {d.kernel_thresh_pages} pages")
        w(f"  in pages: background / limit {d.bg_thresh_pages} / {d.thresh_pages};  kernel's own "
          f"(vmstat): {kern}\n")
        w(f"  dirtyable {_pg(d.dirtyable_pages, ps)} = free {_pg(d.free_pages, ps)} ({d.free_source}) - "
          f"reserve {_pg(d.totalreserve_pages, ps)} + file LRU {_pg(d.file_lru_pages, ps)}\n")
        if d.vmstat_free_pages is not None:
            w(f"  MemFree {d.memfree_pages} pages, vmstat nr_free_pages {d.vmstat_free_pages} pages\n")
        for n in d.notes:
            for line in _wrap(n, "  ! "):
                w(line + "\n")
    w("\nZone watermarks (pages, from /proc/zoneinfo)\n")
    if not rep.zones:
        w("  unavailable\n")
    else:
        out.flush()
        _zones(rep, out)
    s = rep.swap
    w("\nSwap\n")
    if s is None:
        w("  unavailable\n")
    elif not s.total_kb:
        w("  no swap configured\n")
    else:
        w(f"  total {_kb(s.total_kb)}   used {_kb(s.used_kb)}   SwapCached {_kb(s.cached_kb)}\n")
        for dev in s.devices:
            w(f"  {dev.filename} ({dev.type}, prio {dev.priority}): {_kb(dev.used_kb)} of "
              f"{_kb(dev.size_kb)}\n")
    p = rep.protect
    if p is not None:
        _protect(p, w)
    for n in rep.notes:
        w(f"# {n}\n")
    if rep.unavailable:
        w("\nMissing (shown as unavailable above):\n")
        for m in rep.unavailable:
            w(f"  {m.source}: {m.reason}\n")


def _protect(p, w) -> None:
    size = lambda b: units.size(b, unlimited=True)  # noqa: E731
    w(f"\nProtecting {'PID ' + str(p.pid) if p.pid is not None else p.target}\n")
    if p.cgroup is not None:
        where = f"  at {p.cgroup_dir}" if p.cgroup_dir else ""
        w(f"  memory cgroup {p.cgroup} (v{p.version}){where}\n")
    if p.version == 2:
        w(f"  memory.min {size(p.min_bytes)}   memory.low {size(p.low_bytes)}   memory.high "
          f"{size(p.high_bytes)}   memory.max {size(p.max_bytes)}\n")
    elif p.version == 1:
        w(f"  memory.limit_in_bytes {size(p.max_bytes)}   memory.soft_limit_in_bytes "
          f"{size(p.soft_limit_bytes)}   (v1 has no memory.min / memory.low)\n")
    if p.current_bytes is not None or p.file_bytes is not None:
        w(f"  usage {size(p.current_bytes)}   page cache {size(p.file_bytes)} (active "
          f"{size(p.active_file_bytes)})   anon {size(p.anon_bytes)}\n")
    for n in p.notes:
        for line in _wrap(n, "  ! ", "    "):
            w(line + "\n")
    w("  what to do:\n")
    for a in p.actions:
        for line in action_lines(a):
            w(line + "\n")


__all__ = ["render", "action_lines"]
