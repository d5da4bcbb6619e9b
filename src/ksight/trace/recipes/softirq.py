"""softirq: softirq time per kind and CPU (tracefs), or per-kind histograms built in the kernel
(bpftrace). Kinds are named as /proc/softirqs names them (ksight.sources.softirqs.VECTORS)."""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...sources.softirqs import vector_name
from .base import BpftraceBackend, Recipe, RecipeResult


@dataclass(frozen=True)
class SoftirqTime:
    kind: str                     # HI, TIMER, NET_TX, NET_RX, ...
    cpu: int
    count: int
    total_usec: float
    max_usec: float


@dataclass(frozen=True, kw_only=True)
class SoftirqResult(RecipeResult):
    softirqs: tuple[SoftirqTime, ...]
    histogram_usec: dict[str, dict[int, int]] | None = None   # bpftrace: kind -> log2 buckets
    histogram: dict[str, list] | None = None                  # bpftrace: its own buckets
    histogram_unit: str | None = None
    program: str | None = None


class Softirq(BpftraceBackend, Recipe):
    name = "softirq"
    question = "softirq time per kind and CPU"
    events = ("irq:softirq_entry", "irq:softirq_exit")
    overhead = ("moderate: two events per softirq (thousands per second per CPU under network "
                "load); roughly 0.1-0.3 us each")
    bpftrace_overhead = ("low to moderate: two BPF programs per softirq (a hash-map update each, "
                         "well under 1 us); nothing per event leaves the kernel")
    Result = SoftirqResult

    def __init__(self, root, backend: str = "tracefs", **opts):
        super().__init__(root, backend, **opts)
        self.begin: dict = {}
        self.t: dict = {}  # (vec, cpu) -> [count, total_us, max_us]

    def on_event(self, e):
        vec = e.fields["vec"]
        if e.name == "irq:softirq_entry":
            self.begin[(e.cpu, vec)] = e.ts
            return
        t0 = self.begin.pop((e.cpu, vec), None)
        if t0 is None:
            return
        us = (e.ts - t0) / 1000
        a = self.t.get((vec, e.cpu))
        if a is None:
            a = self.t[(vec, e.cpu)] = [0, 0.0, 0.0]
        a[0] += 1
        a[1] += us
        if us > a[2]:
            a[2] = us

    def body(self):
        rows = [SoftirqTime(vector_name(v), c, a[0], round(a[1], 3), round(a[2], 3))
                for (v, c), a in self.t.items()]
        rows.sort(key=lambda r: -r.total_usec)
        return {"softirqs": tuple(rows)}

    # -- bpftrace backend: per-kind time histogram aggregated in the kernel ----------------
    def bpftrace_program(self) -> str:
        # softirqs do not nest on a CPU: the start time is kept per CPU
        return """
tracepoint:irq:softirq_entry { @start[cpu] = nsecs; @events = count(); }
tracepoint:irq:softirq_exit /@start[cpu]/ {
  $ns = nsecs - @start[cpu]; delete(@start[cpu]); @events = count();
  @hist[args->vec] = hist($ns / 1000);
  @n[args->vec, cpu] = count();
  @ns[args->vec, cpu] = sum($ns);
  @maxns[args->vec, cpu] = max($ns);
}
END { clear(@start); }
"""

    def bpftrace_summary(self, out) -> dict:
        from ..bpftrace import jsonable_hist, log2_upper, split_key

        m = out.maps
        rows = []
        for key, n in (m.get("@n") or {}).items():
            vec, cpu = split_key(key, 2)
            rows.append(SoftirqTime(vector_name(int(vec)), int(cpu), n,
                                    round((m.get("@ns") or {}).get(key, 0) / 1000, 3),
                                    round((m.get("@maxns") or {}).get(key, 0) / 1000, 3)))
        rows.sort(key=lambda r: -r.total_usec)
        hist = {vector_name(int(k)): v for k, v in (m.get("@hist") or {}).items()}
        return {"softirqs": tuple(rows),
                "histogram_usec": {k: log2_upper(v) for k, v in hist.items()},
                "histogram": {k: jsonable_hist(v) for k, v in hist.items()},
                "histogram_unit": "usec"}
