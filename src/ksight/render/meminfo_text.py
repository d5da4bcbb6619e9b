"""Text of `ksight meminfo`: one screen of system memory triage (sizes through render.units)."""

from __future__ import annotations

import textwrap

from . import units

WIDTH = 96


def _kb(v) -> str:
    return units.size_kb(v)


def _b(v) -> str:
    return units.size(v)


def _wrap(text: str, indent: str = "    ") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def _pct(part, whole) -> str:
    if part is None or not whole:
        return ""
    return f"  ({100.0 * part / whole:.1f} %)"


def render(rep, out) -> None:
    w = out.write
    if rep.mem_total_kb is None:
        w("meminfo: /proc/meminfo unavailable\n")
        for m in rep.unavailable:
            w(f"  {m.source}: {m.reason}\n")
        return
    tot = rep.mem_total_kb
    w(f"Memory  total {_kb(tot)}   free {_kb(rep.mem_free_kb)}   available {_kb(rep.mem_available_kb)}\n")
    lr = rep.lru
    w("\nLRU lists                 anon          file\n")
    w(f"  active        {_kb(lr.active_anon_kb):>12}  {_kb(lr.active_file_kb):>12}\n")
    w(f"  inactive      {_kb(lr.inactive_anon_kb):>12}  {_kb(lr.inactive_file_kb):>12}\n")
    w(f"  AnonPages {_kb(lr.anon_pages_kb)}   Mapped {_kb(lr.mapped_kb)}   "
      f"Unevictable {_kb(lr.unevictable_kb)} (Mlocked {_kb(lr.mlocked_kb)})\n")

    sh = rep.shmem
    w(f"\nShmem {_kb(sh.shmem_kb)}{_pct(sh.shmem_kb, tot)}  (tmpfs, SysV, shared anonymous mappings)\n")
    if sh.tmpfs is None:
        w("  tmpfs mounts: unavailable" + _why(rep, "tmpfs") + "\n")
    else:
        w(f"  tmpfs mounts ({len(sh.tmpfs)}), used {_b(sh.tmpfs_used_bytes)} (swapped-out pages included):\n")
        for t in sh.tmpfs:
            if t.used_bytes is None:
                w(f"    {t.mount_point}  {t.fstype}: use unknown ({t.reason})\n")
            else:
                w(f"    {_b(t.used_bytes):>10} of {_b(t.size_bytes):>10} {units.pct(t.used_pct):>8}  "
                  f"{t.mount_point} ({t.fstype})\n")
    if sh.orphans is None:
        w("  SysV segments: unavailable" + _why(rep, "sysvipc_shm") + "\n")
    else:
        w(f"  SysV segments: {sh.sysv_segments}, resident {_b(sh.sysv_rss_bytes)}; "
          f"with no process attached (nattch 0): {len(sh.orphans)}, {_b(sh.orphan_bytes)}\n")
        for o in sh.orphans[:10]:
            rm = "  marked for removal" if o.marked_for_removal else ""
            w(f"    shmid {o.shmid} key {o.key:#x}  size {_b(o.size_bytes)}  resident "
              f"{_b(o.rss_bytes)}  swap {_b(o.swap_bytes)}  uid {o.uid}  creator pid {o.cpid}{rm}\n")
        if sh.orphans:
            w("    remove one with: ipcrm -m SHMID (after checking nobody will attach it again)\n")

    sl = rep.slab
    w(f"\nSlab {_kb(sl.slab_kb)}{_pct(sl.slab_kb, tot)}: reclaimable {_kb(sl.sreclaimable_kb)}, "
      f"unreclaimable {_kb(sl.sunreclaim_kb)}\n")
    if sl.top is None:
        w("  caches: unavailable" + _why(rep, "slabinfo") + "\n")
    else:
        w(f"  top caches by CACHE SIZE (slabtop -s c: slabs x pages per slab x page size), of {sl.caches}:\n")
        w(f"  {'OBJS':>9} {'ACTIVE':>9} {'USE':>4} {'OBJ SIZE':>8} {'SLABS':>7} {'OBJ/SLAB':>8} "
          f"{'CACHE SIZE':>11}  NAME\n")
        for c in sl.top:
            w(f"  {c.objs:>9} {c.active:>9} {c.use_pct:>3}% {c.obj_size / 1024:>7.2f}K {c.slabs:>7} "
              f"{'-' if c.obj_per_slab is None else c.obj_per_slab:>8} {c.cache_size_bytes // 1024:>10}K  {c.name}\n")

    vm = rep.vmalloc
    w(f"\nVmallocUsed {_kb(vm.used_kb)}{_pct(vm.used_kb, tot)}\n")
    if vm.note:
        w("\n".join(_wrap(vm.note, "  ")) + "\n")
    if vm.top is None:
        w("  callers: unavailable" + _why(rep, "vmallocinfo") + "\n")
    else:
        w("  top callers by pages (RAM behind the areas), from /proc/vmallocinfo:\n")
        for v in vm.top:
            mod = f" [{v.module}]" if v.module else ""
            w(f"    {_b(v.pages_bytes):>10}  {v.areas:>5} areas  {_b(v.size_bytes):>10} space  "
              f"{v.caller}{mod}  ({','.join(v.kinds)})\n")

    k = rep.kernel
    w(f"\nKernelStack {_kb(k.kernel_stack_kb)}   PageTables {_kb(k.page_tables_kb)}"
      + (f"   SecPageTables {_kb(k.sec_page_tables_kb)}" if k.sec_page_tables_kb is not None else "")
      + f"   Percpu {_kb(k.percpu_kb)}\n")
    w(f"Hugepages: {units.number(k.huge_pages_total)} x {_kb(k.hugepage_size_kb)} "
      f"(free {units.number(k.huge_pages_free)}, reserved {units.number(k.huge_pages_rsvd)}, "
      f"surplus {units.number(k.huge_pages_surp)}), hugetlb {_kb(k.hugetlb_kb)}; "
      f"THP: anon {_kb(k.anon_huge_pages_kb)}, shmem {_kb(k.shmem_huge_pages_kb)}\n")

    u = rep.unexplained
    if u is None:
        w("\nUnexplained: cannot compute (MemTotal, MemFree, Active or Inactive missing)\n")
    else:
        w(f"\nUnexplained (no counter accounts for it): {_kb(u.unexplained_kb)} = {u.pct:.1f} % of MemTotal\n")
        w("\n".join(_wrap("= " + u.formula, "  ")) + "\n")
        w("\n".join(_wrap("  ".join(f"{t.name} {t.kb:,}" for t in u.terms) + f"  -> {u.explained_kb:,} kB",
                          "  ")) + "\n")
        for lo in u.left_out:
            w(f"  left out: {lo}\n")
        w("\n".join(_wrap(u.why, "  ")) + "\n")

    if rep.kmemleak is not None:
        km = rep.kmemleak
        w("\nkmemleak: ")
        if not km.available:
            w(f"unavailable: {km.reason}\n")
        else:
            w(f"{km.objects} unreferenced objects, {_b(km.bytes)} (as of the last scan; "
              "echo scan > /sys/kernel/debug/kmemleak to scan now)\n")
            for g in km.groups:
                w(f"    {g.objects:>6} objects {_b(g.bytes):>10}  {g.caller}"
                  + (f"  (comm {g.comm})" if g.comm else "") + "\n")
            w("\n".join(_wrap(km.reason, "  ")) + "\n")
    for n in rep.notes:
        w(f"note: {n}\n")


def _why(rep, name: str) -> str:
    for m in rep.unavailable:
        if m.source == name:
            return f" ({m.reason})"
    return ""
