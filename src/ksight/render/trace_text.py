"""Text for people of every `ksight trace` recipe result (the one place that formats them).

`render(res)` takes any recipe result (ksight.trace.recipes.*Result) and returns the table,
histograms, then the footer every trace has: events, lost events, missing events, notes,
errors. Numbers go through ksight.render.units; column headers carry the unit.
"""

from __future__ import annotations

import os

from ..trace.recipes.buflimit import BuflimitResult
from ..trace.recipes.compaction import CompactionResult
from ..trace.recipes.kmalloc import KmallocResult
from ..trace.recipes.mmap import MmapResult
from ..trace.recipes.oom import OomResult
from ..trace.recipes.reclaim import ReclaimResult
from ..trace.recipes.retrans import RetransResult
from ..trace.recipes.softirq import SoftirqResult
from ..trace.recipes.writeback import WritebackResult
from . import units

_W = 30  # histogram bar width
PAGE = os.sysconf("SC_PAGESIZE")  # tracing is live: this machine's page size


def hist_text(h: dict[int, int], unit: str = "usec", width: int = _W) -> list[str]:
    """A log2 histogram (bucket upper bound -> count) as bcc draws it."""
    if not h:
        return []
    top = max(h.values())
    out = [f"  {unit + ' <=':>12} : count"]
    for b in sorted(h):
        bar = "*" * max(1, int(width * h[b] / top))
        out.append(f"  {units.number(b):>12} : {units.number(h[b]):<6} |{bar}")
    return out


def _ms(usec: float) -> str:
    return units.number(round(usec / 1000, 2))


def _retrans(res) -> list[str]:
    if not res.flows:
        return []
    out = [f"{'LOCAL':<22} {'REMOTE':<22} {'STATE':<12} {'RETRANS':>7}  OWNER"]
    for f in res.flows:
        own = f"{f.owner.comm or '?'}[{f.owner.pid}]" if f.owner else "-"
        out.append(f"{f.saddr + ':' + str(f.sport):<22} {f.daddr + ':' + str(f.dport):<22} "
                   f"{(f.state or '?'):<12} {units.number(f.retransmits):>7}  {own}")
    return out


def _reclaim(res) -> list[str]:
    out = []
    for kind, h in res.histogram_usec.items():
        out.append(f"{kind} reclaim latency:")
        out += hist_text(h)
    if res.processes:
        out.append(f"{'PID':>7} {'COMM':<16} {'KIND':<6} {'STALLS':>6} {'TOTAL ms':>9} "
                   f"{'MAX ms':>8} {'RECLAIMED':>10}  CGROUP")
        for p in res.processes[:20]:
            out.append(f"{p.pid:>7} {p.comm[:16]:<16} {p.kind:<6} {units.number(p.stalls):>6} "
                       f"{_ms(p.total_usec):>9} {_ms(p.max_usec):>8} "
                       f"{units.size_pages(p.reclaimed_pages, PAGE):>10}  {p.cgroup or '-'}")
    if res.cgroups:
        out.append(f"{'CGROUP':<40} {'KIND':<6} {'STALLS':>6} {'TOTAL ms':>9} {'RECLAIMED':>10}")
        for c in res.cgroups[:20]:
            out.append(f"{str(c.cgroup or '-')[:40]:<40} {c.kind:<6} {units.number(c.stalls):>6} "
                       f"{_ms(c.total_usec):>9} {units.size_pages(c.reclaimed_pages, PAGE):>10}")
    if res.kswapd_wakeups:
        out.append("kswapd woken by: " + ", ".join(f"{k.comm}[{k.pid}] x{units.number(k.wakeups)}"
                                                   for k in res.kswapd_wakeups[:8]))
    return out


def _compaction(res) -> list[str]:
    if not res.processes:
        return []
    out = [f"{'PID':>7} {'COMM':<16} {'STALLS':>6} {'RUNS':>5} {'TOTAL ms':>9} {'MAX ms':>8}"]
    for p in res.processes[:20]:
        out.append(f"{p.pid:>7} {p.comm[:16]:<16} {units.number(p.direct_stalls):>6} "
                   f"{units.number(p.runs):>5} {_ms(p.total_usec):>9} {_ms(p.max_usec):>8}")
    out.append("end status: " + (", ".join(f"{k} {units.number(v)}" for k, v in res.end_status.items())
                                 or "-"))
    return out


def _writeback(res) -> list[str]:
    if not res.processes:
        return []
    out = [f"{'PID':>7} {'COMM':<16} {'EVENTS':>7} {'PAUSES':>7} {'PAUSE ms':>9} {'MAX ms':>7}  BDI"]
    for p in res.processes[:20]:
        out.append(f"{p.pid:>7} {p.comm[:16]:<16} {units.number(p.events):>7} "
                   f"{units.number(p.paused):>7} {units.number(p.pause_ms):>9} "
                   f"{units.number(p.max_pause_ms):>7}  {','.join(p.bdi)}")
    return out


def _buflimit(res) -> list[str]:
    if not res.sockets:
        return []
    out = [f"{'PROTO':<8} {'SIDE':<8} {'PID':>7} {'COMM':<16} {'COUNT':>7}  ALLOCATED / LIMIT"]
    for s in res.sockets[:20]:
        alloc = s.last.get("allocated")
        out.append(f"{s.proto:<8} {s.side:<8} {s.pid:>7} {s.comm[:16]:<16} {units.number(s.count):>7}  "
                   f"{units.size_pages(alloc, PAGE)} / {units.size_pages(s.limit_pages, PAGE)}")
    if any(s.side == "receive" for s in res.sockets):
        out += ["", "receive side: the kernel refuses memory while processing incoming packets, in "
                "softirq context, so PID/COMM is whatever ran on that CPU, not the socket's "
                "owner (the tracepoint carries no socket address). `ksight show --sockets` "
                "lists each socket's receive queue and owner."]
    return out


def _mmap(res) -> list[str]:
    if not res.processes:
        return []
    out = [f"{'PID':>7} {'COMM':<16} {'MMAP':>7} {'MUNMAP':>7} {'BRK':>7}"]
    for p in res.processes[:30]:
        out.append(f"{p.pid:>7} {p.comm[:16]:<16} {units.number(p.mmap):>7} "
                   f"{units.number(p.munmap):>7} {units.number(p.brk):>7}")
    for s in res.stacks[:5]:
        out.append(f"  {units.number(s.count):>5} x {s.stack}")
    return out


def _oom(res) -> list[str]:
    if not res.victims:
        return []
    out = [f"{'PID':>7} {'COMM':<16} {'ANON RSS':>10} {'ADJ':>5} {'CONSTRAINT':<18} CGROUP"]
    for v in res.victims:
        adj = "-" if v.oom_score_adj is None else str(v.oom_score_adj)
        out.append(f"{v.pid:>7} {str(v.comm)[:16]:<16} {units.size_kb(v.anon_rss_kb):>10} "
                   f"{adj:>5} {str(v.constraint or '?'):<18} {v.cgroup or '-'}")
    return out


def _kmalloc(res) -> list[str]:
    if not res.call_sites:
        return []
    out = [f"{'OUTSTANDING':>12} {'OBJECTS':>8} {'ALLOCS':>8}  CALL SITE"]
    for s in res.call_sites[:20]:
        out.append(f"{units.size(s.outstanding_bytes):>12} {units.number(s.outstanding):>8} "
                   f"{units.number(s.allocs):>8}  {s.call_site}")
    out.append(f"total outstanding {units.size(res.outstanding_bytes)} from "
               f"{units.number(res.allocs)} allocations ({units.number(res.frees_matched)} freed)")
    return out


def _softirq(res) -> list[str]:
    out = []
    for kind, h in (res.histogram_usec or {}).items():
        out.append(f"{kind} time:")
        out += hist_text(h)
    if res.softirqs:
        out.append(f"{'KIND':<9} {'CPU':>3} {'COUNT':>8} {'TOTAL ms':>9} {'AVG us':>7} {'MAX us':>8}")
        for r in res.softirqs:
            out.append(f"{r.kind:<9} {r.cpu:>3} {units.number(r.count):>8} {_ms(r.total_usec):>9} "
                       f"{units.number(round(r.total_usec / max(1, r.count), 1)):>7} "
                       f"{units.number(round(r.max_usec, 1)):>8}")
    return out


_BODY = {RetransResult: _retrans, ReclaimResult: _reclaim, CompactionResult: _compaction,
         WritebackResult: _writeback, BuflimitResult: _buflimit, MmapResult: _mmap,
         OomResult: _oom, KmallocResult: _kmalloc, SoftirqResult: _softirq}


def footer(res) -> list[str]:
    lost = ""
    if res.lost:
        lost = (", some LOST" if res.lost < 0 else f", {units.number(res.lost)} LOST")
        lost += " (ring buffer full: raise --buffer-kb)"
    out = [f"{units.number(res.events)} events in {units.duration(res.seconds)}"
           + (lost or ", none lost") + (" - stopped at --max-events" if res.truncated else "")]
    for m in res.missing:
        alt = f"; used {m.alternative} instead" if m.alternative else ""
        out.append(f"missing: {m.event}: {m.reason}{alt}")
    out += [f"note: {n}" for n in res.notes]
    out += [f"error: {e}" for e in res.errors]
    out.append(f"backend: {res.backend}" + (f" ({res.backend_why})" if res.backend_why else ""))
    return out


def render(res) -> str:
    body = _BODY[type(res)](res) or ["  (nothing found)"]
    return "\n".join(body + [""] + footer(res))


__all__ = ["render", "footer", "hist_text"]
