"""Text of `ksight cpu`: mpstat -P ALL's table (its column names, order and %.2f), then load,
runnable/blocked, cs/s, intr/s, CPU PSI and the top processes; --softirqs / --interrupts rate
tables per CPU with the busiest CPU's share; --topology; --blocked."""

from __future__ import annotations

import time
from collections.abc import Sequence

from . import units

COLUMNS = ("%usr", "%nice", "%sys", "%iowait", "%irq", "%soft", "%steal", "%guest", "%gnice",
           "%idle")
FIELDS = ("usr", "nice", "sys", "iowait", "irq", "soft", "steal", "guest", "gnice", "idle")
MAX_CPU_COLUMNS = 16  # rate tables: wider machines show the busiest CPUs only


def clock(taken_at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(taken_at)) if taken_at else "--:--:--"


def _row(label: str, p) -> str:
    vals = " ".join(f"{p.get(f):7.2f}" for f in FIELDS)
    return f"{label:<11} {p.cpu:>4} {vals}"


def header(label: str) -> str:
    return f"{label:<11} {'CPU':>4} " + " ".join(f"{c:>7}" for c in COLUMNS)


def _rate(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def interval_text(iv, *, per_cpu: bool = True, top: bool = True) -> list[str]:
    t = clock(iv.taken_at)
    out = [header(t), _row(t, iv.all)]
    if per_cpu:
        out += [_row(t, iv.cpus[c]) for c in sorted(iv.cpus)]
    if iv.mpstat.offline:
        out.append(f"  offline since the last reading: CPU {','.join(map(str, iv.mpstat.offline))}")
    if iv.mpstat.back_online:
        out.append("  back online (no earlier reading, left out of 'all'): CPU "
                   + ",".join(map(str, iv.mpstat.back_online)))
    n = iv.cpus_online
    if iv.load1 is not None:
        per = f" = {iv.load1 / n:.2f} per CPU" if n else ""
        out.append(f"  load {iv.load1:.2f} {iv.load5:.2f} {iv.load15:.2f} on {n or '?'} CPUs{per}")
    rb = [f"runnable {units.number(iv.procs_running)}", f"blocked {units.number(iv.procs_blocked)}"]
    if iv.d_state is not None:
        rb.append(f"processes in D {iv.d_state}")
    out.append("  " + ", ".join(rb) + f" | cs/s {_rate(iv.ctxt_per_s)} | intr/s "
               f"{_rate(iv.intr_per_s)} | forks/s {_rate(iv.forks_per_s)}")
    if iv.psi_some_pct is not None:
        full = f", full {iv.psi_full_pct:.1f} %" if iv.psi_full_pct is not None else ""
        out.append(f"  PSI cpu: some {iv.psi_some_pct:.1f} % of the interval{full} "
                   "(tasks runnable but waiting for a CPU)")
    if top:
        for name, rows, f in (("system", iv.top_sys, "sys_pct"), ("user", iv.top_usr, "usr_pct")):
            if rows:
                cells = ", ".join(f"{r.comm}[{r.pid}] {getattr(r, f):.1f} %" for r in rows)
                out.append(f"  top by {name} time (% of one CPU): {cells}")
    if iv.resets:
        out.append(f"  counters that went back (no rate): {', '.join(iv.resets)}")
    return out


def average_text(avg) -> list[str]:
    if avg is None:
        return []
    out = [header("Average:"), _row("Average:", avg.all)]
    out += [_row("Average:", avg.cpus[c]) for c in sorted(avg.cpus)]
    return out


def _cpus_to_show(rows, cpus: Sequence[int]) -> list[int]:
    if len(cpus) <= MAX_CPU_COLUMNS:
        return list(cpus)
    load: dict[int, float] = {}
    for r in rows:
        for c, v in r.per_cpu.items():
            load[c] = load.get(c, 0.0) + v
    return sorted(sorted(load, key=lambda c: -load[c])[:MAX_CPU_COLUMNS])


def rates_text(iv, what: str, limit: int = 20) -> list[str]:
    rows = iv.softirqs if what == "softirqs" else iv.interrupts
    t = clock(iv.taken_at)
    if not rows:
        return [f"{t}  no {what} counted in this interval (or /proc/{what} unavailable)"]
    cpus = sorted({c for r in rows for c in r.per_cpu})
    show = _cpus_to_show(rows, cpus)
    name_w = max(8, max(len(r.name) for r in rows[:limit]))
    head = (f"{t:<9} {('KIND' if what == 'softirqs' else 'IRQ'):<{name_w}} {'total/s':>10} "
            + " ".join(f"{'CPU' + str(c):>9}" for c in show) + f" {'busiest':>8} {'share':>6}")
    if len(show) < len(cpus):
        head += f"  ({len(show)} busiest of {len(cpus)} CPUs shown)"
    if what == "interrupts":
        head += "  SOURCE"
    out = [head]
    for r in rows[:limit]:
        cells = " ".join(f"{r.per_cpu.get(c, 0.0):9,.0f}" if c in r.per_cpu else f"{'-':>9}"
                         for c in show)
        busiest = f"CPU{r.busiest_cpu}" if r.busiest_cpu is not None else "-"
        share = f"{r.busiest_share_pct:5.1f}%" if r.busiest_share_pct is not None else "-"
        line = f"{t:<9} {r.name:<{name_w}} {r.per_s:10,.0f} {cells} {busiest:>8} {share:>6}"
        if what == "interrupts" and r.description:
            line += f"  {r.description}"
        out.append(line)
    if len(rows) > limit:
        out.append(f"  ... {len(rows) - limit} more with a lower rate (--json lists all)")
    return out


def topology_text(t) -> list[str]:
    out = []
    if t.missing:
        out += [f"unavailable: {m}" for m in t.missing]
    if not t.places:
        return out or ["no CPU topology in sysfs"]
    out.append(f"CPUs online {t.cpus_online or '?'}: {units.number(t.sockets)} socket(s), "
               f"{units.number(t.cores)} core(s), {t.threads} thread(s)"
               + (f", {t.threads_per_core} per core (SMT {'on' if t.smt else 'off'})"
                  if t.threads_per_core else ""))
    if t.numa_nodes:
        out.append("NUMA nodes: " + "; ".join(f"node{n}: CPUs {c}" for n, c in t.numa_nodes.items()))
    if t.caches:
        out.append("caches (which CPUs share each one):")
        for kind in t.caches:
            c0 = kind[0]
            extra = [f"{c0.ways}-way" if c0.ways else None,
                     f"{c0.line_size} B lines" if c0.line_size else None]
            extra_s = ", ".join(x for x in extra if x)
            groups = " | ".join(c.shared_cpus for c in kind)
            sizes = {c.size_kb for c in kind}
            size = units.size_kb(c0.size_kb) if len(sizes) == 1 else "sizes " + "/".join(
                units.size_kb(s) for s in sorted(x for x in sizes if x is not None))
            out.append(f"  {c0.name:<4} {size:>10} x {len(kind):<3} {extra_s:<24} CPUs: {groups}")
    else:
        out.append("caches: sysfs shows none (some VMs and boards do not export them)")
    out.append(f"{'CPU':>4} {'socket':>6} {'die':>4} {'core':>5} {'node':>5}  thread siblings")
    for p in t.places:
        out.append(f"{p.cpu:>4} {units.number(p.socket):>6} {units.number(p.die):>4} "
                   f"{units.number(p.core):>5} {units.number(p.node):>5}  {p.thread_siblings or '-'}")
    return out


def blocked_text(b) -> list[str]:
    out = []
    n = len(b.tasks)
    out.append(f"tasks in D state (uninterruptible sleep): {n}"
               + (f"; /proc/stat procs_blocked {b.procs_blocked} (only those waiting for I/O: "
                  "nr_iowait)" if b.procs_blocked is not None else ""))
    if b.load1 is not None:
        out.append(f"load average (1 min) {b.load1:.2f} on {b.cpus_online or '?'} CPUs")
    out.append("Linux counts D-state tasks in the load average: a load made of them is I/O or "
               "memory reclaim (or a lock held across I/O), not a lack of CPU. Look at what "
               "they wait for (the stacks below), not at the CPUs.")
    for g in b.groups:
        who = ", ".join(f"{t.comm}[{t.pid}" + (f"/{t.tid}" if t.tid != t.pid else "") + "]"
                        for t in g.tasks[:8])
        more = f" and {len(g.tasks) - 8} more" if len(g.tasks) > 8 else ""
        out.append(f"\n{len(g.tasks)} task(s): {who}{more}")
        if g.wchan:
            out.append(f"  wait channel: {g.wchan}")
        for fn in g.stack[:16]:
            out.append(f"    {fn}")
        if len(g.stack) > 16:
            out.append(f"    ... {len(g.stack) - 16} more frames")
    if b.stack_reason and n:
        out.append(f"\nno kernel stacks: {b.stack_reason}")
    for note in b.notes:
        out.append(f"note: {note}")
    return out


__all__ = ["interval_text", "average_text", "rates_text", "topology_text", "blocked_text",
           "header", "clock"]
