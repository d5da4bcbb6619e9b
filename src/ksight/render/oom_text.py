"""Text of `ksight oom`: victims in order, recent kills, console check, how to protect."""

from __future__ import annotations

import textwrap

from . import units
from .pagecache_text import action_lines

WIDTH = 96


def _wrap(text: str, indent: str = "  ") -> str:
    return "\n".join(textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)) + "\n"


def render(rep, out, top: int = 15) -> None:
    w = out.write
    w("OOM killer's order (highest oom_score first; size = RSS + swap + page tables, "
      "mm/oom_kill.c oom_badness)\n")
    if rep.total_pages:
        w(f"  oom_score = (1000 + (size + adj x total/1000) x 1000 / total) x 2/3, total = RAM + swap "
          f"= {units.number(rep.total_pages)} pages\n")
    w(f"  {'PID':>7} {'SCORE':>5} {'(est)':>5} {'ADJ':>5} {'SIZE':>10} {'RSS':>10} {'SWAP':>9} {'PTE':>8}  "
      f"{'CGROUP':<24} COMMAND\n")
    for c in rep.candidates[:top]:
        w(f"  {c.pid:>7} {c.oom_score:>5} {'-' if c.estimate is None else c.estimate:>5} "
          f"{c.oom_score_adj:>5} {units.size_kb(c.size_kb):>10} {units.size_kb(c.rss_kb):>10} "
          f"{units.size_kb(c.swap_kb):>9} {units.size_kb(c.pte_kb):>8}  {(c.cgroup or '-')[-24:]:<24} "
          f"{c.comm or '?'}\n")
    if not rep.candidates:
        w("  (no process with an oom_score was read)\n")
    if rep.immune:
        w(f"  never killed (oom_score_adj -1000): " + ", ".join(
            f"{c.comm}[{c.pid}]" for c in rep.immune[:10]) + (" ..." if len(rep.immune) > 10 else "") + "\n")

    w("\nOOM kills\n")
    w(f"  since boot (vmstat oom_kill): {units.number(rep.vmstat_oom_kill)}\n")
    if rep.cgroups:
        w("  memory cgroups with OOM events (memory.events / memory.oom_control):\n")
        for g in rep.cgroups[:10]:
            w(f"    {g.path}: oom_kill {units.number(g.oom_kill)}"
              + (f", oom {g.oom}" if g.oom is not None else "")
              + (f", under_oom {g.under_oom}" if g.under_oom else "")
              + f", limit {units.size(g.max_bytes, unlimited=True)}\n")
    else:
        w("  no memory cgroup counted an OOM kill" + _why(rep, "cgroup_memory") + "\n")
    if rep.kills is None:
        w("  kernel log: unavailable" + _why(rep, "kmsg_oom") + "\n")
    elif not rep.kills:
        w("  kernel log: no OOM report in the ring buffer\n")
    else:
        w("  kernel log (newest first):\n")
        for k in rep.kills[:10]:
            scope = {"cgroup": "a memory cgroup's limit", "system": "the whole machine"}.get(
                k.scope, "scope not said")
            ago = units.duration(k.seconds_ago) + " ago" if k.seconds_ago is not None else "?"
            grp = f" in {k.task_memcg}" if k.task_memcg else ""
            lim = f", limit of {k.oom_memcg}" if k.oom_memcg and k.scope == "cgroup" else ""
            w(f"    {ago}: killed {k.comm}[{k.pid}]{grp} ({units.size_kb(k.anon_rss_kb)} anon): "
              f"{scope}{lim}" + (f" [{k.constraint}]" if k.constraint else "") + "\n")

    w("\nConsole\n")
    if rep.console is None:
        w("  cannot tell: kernel.printk and /proc/consoles unavailable\n")
    else:
        w(("  WARNING: " if rep.console.slow else "  ") + "\n".join(
            textwrap.wrap(rep.console.note, WIDTH - 2, subsequent_indent="    ")) + "\n")
        for a in rep.console.actions:
            w("\n".join(action_lines(a)) + "\n")

    w("\nProtect a critical service" + (f" (PID {rep.protect_target})" if rep.protect_target else
                                        " (--protect PID for one process)") + "\n")
    for a in rep.protect:
        w("\n".join(action_lines(a)) + "\n")
    for n in rep.notes:
        w(_wrap("note: " + n))


def _why(rep, name: str) -> str:
    for m in rep.unavailable:
        if m.source == name:
            return f" ({m.reason})"
    return ""
