"""The `kernel-profile` enrichment of cpu.high-system: when the rule fired on the live machine,
`ksight check` samples every CPU for 1 s with perf (kernel stacks) and adds the hottest kernel
functions to the finding as `kernel function SYMBOL` evidence (share of the work samples, %).

The profile is the one `ksight profile` takes (trace/perf.py runs perf, trace/stacks.py counts),
with the same idea of idle: the idle task outside interrupts. Softirq and interrupt work that
landed on an idle CPU is work and is ranked with the rest; the note says how many of a
function's samples ran in softirq or irq context (/proc/stat counts those as si and hi, not sy).
Never from a capture (that kernel is not this one), never leaving perf running (perf's own
workload is a 1 s sleep; it is ended and reaped before this returns); when perf is missing or
we are not root, the finding says so instead (diagnose/enrich.py)."""

from __future__ import annotations

from ...enrich import enrichment
from ...finding import Evidence

SECONDS = 1.0
TOP = 8


def _context(f) -> str:
    parts = [f"{n} in {what}" for what, n in (("softirq", f.softirq_samples),
                                               ("irq", f.irq_samples)) if n]
    return f" ({', '.join(parts)})" if parts else ""


@enrichment("kernel-profile", rules=("cpu.high-system",), what="kernel functions",
            source=f"perf record -a ({SECONDS:g} s)")
def kernel_profile(finding):
    from ....errors import Unavailable
    from ....trace import perf

    prof = perf.sample_kernel(SECONDS)
    if not prof.functions:
        raise Unavailable("perf", f"the {SECONDS:g} s profile caught no kernel samples outside "
                                  f"idle ({prof.samples} samples in all)")
    out = []
    for k, f in enumerate(prof.functions[:TOP]):
        if k >= 3 and f.share_pct < 1.0:
            break
        out.append(Evidence(f"kernel function {f.symbol}", f.share_pct, "%", prof.source, None,
                            f"{f.samples} of {prof.busy_samples} work samples (idle left out) "
                            f"had it innermost (self time){_context(f)}"))
    if prof.stacks:
        stack, n = max(prof.stacks.items(), key=lambda kv: kv[1])
        out.append(Evidence("hottest kernel stack", stack, "", prof.source, None,
                            f"{n} of {prof.busy_samples} work samples; outermost first"))
    return out
