"""Text for `ksight profile` (views.profile.Profile)."""

from __future__ import annotations

from . import units


def _pct(n: int, total: int) -> str:
    return units.pct(100.0 * n / total) if total else "-"


def _funcs(title: str, funcs, total: int, with_dso: bool) -> list[str]:
    if not funcs:
        return []
    out = ["", title, f"{'SELF':>7} {'%':>7} {'TOTAL':>7} {'%':>7}  FUNCTION"]
    for f in funcs:
        where = ""
        if with_dso and f.dso and not f.kernel:
            where = f"  ({f.dso})"
        elif with_dso and f.kernel:
            where = "  [kernel]" if f.dso in ("[kernel.kallsyms]", "") else f"  {f.dso}"
        ctx = [f"{n} in {what}" for what, n in (("softirq", f.softirq_samples),
                                                  ("irq", f.irq_samples)) if n]
        where += f"  ({', '.join(ctx)})" if ctx else ""
        out.append(f"{units.number(f.self_samples):>7} {_pct(f.self_samples, total):>7} "
                   f"{units.number(f.total_samples):>7} {_pct(f.total_samples, total):>7}  "
                   f"{f.function}{where}")
    return out


def _interrupts(p, work: int) -> str:
    """' (softirq 3.0 %, irq 0.5 %)': the kernel's work done in interrupt context, which
    /proc/stat counts as si and hi (on idle CPUs too), not sy."""
    parts = [f"{what} {_pct(n, work)}" for what, n in (("softirq", p.softirq_samples),
                                                        ("irq", p.irq_samples)) if n]
    return f" ({', '.join(parts)})" if parts else ""


def _stack(frames: tuple[str, ...], width: int = 6) -> str:
    """leaf <- caller <- ... (the innermost frames, the ones that say most)."""
    inner = list(reversed(frames))[:width]
    more = " <- ..." if len(frames) > width else ""
    return " <- ".join(inner) + more


def render(p, files: dict[str, str] | None = None) -> str:
    work = p.work_samples
    lines = [f"ksight profile: {units.duration(p.seconds)} of {p.target} at {p.freq} Hz, "
             f"{units.number(p.samples)} samples"
             + (" (stopped early)" if p.stopped_early else "")
             + (", kernel stacks only" if p.kernel_only else "")]
    if p.samples == 0:
        lines.append("no samples: nothing ran on the sampled CPUs (or the process was idle)")
    elif p.kernel_only:
        lines.append(f"  idle {_pct(p.idle_samples, p.samples)} of samples (user mode is not "
                     "sampled with --kernel-only)"
                     + (f"; of the work{_interrupts(p, work)}" if _interrupts(p, work) else ""))
    else:
        lines.append(f"  idle {_pct(p.idle_samples, p.samples)} of samples; of the work: kernel "
                     f"{_pct(p.kernel_samples, work)}{_interrupts(p, work)}, user "
                     f"{_pct(p.user_samples, work)}")
    lines += _funcs("Hottest kernel functions (SELF: running it; TOTAL: it or its callees; % of "
                    "work samples)", p.kernel_functions, work, False)
    if not p.kernel_only:
        lines += _funcs("Hottest functions, kernel and user", p.functions[:15], work, True)
    if p.stacks:
        lines += ["", "Hottest stacks (innermost first)"]
        for s in p.stacks[:8]:
            lines.append(f"{units.number(s.samples):>7} {_pct(s.samples, work):>7}  {s.comm}: "
                         f"{_stack(s.frames)}")
    if p.processes:
        lines += ["", f"{'SAMPLES':>7} {'%':>7} {'KERNEL':>7}  {'PID':>7}  COMMAND"]
        for pr in p.processes[:10]:
            lines.append(f"{units.number(pr.samples):>7} {_pct(pr.samples, work):>7} "
                         f"{_pct(pr.kernel_samples, pr.samples):>7}  {pr.pid:>7}  {pr.comm}")
    if p.lost:
        lines.append(f"\nperf lost {units.number(p.lost)} chunks of samples: the counts are low")
    for n in p.notes:
        lines.append(f"note: {n}")
    for what, path in (files or {}).items():
        lines.append(f"{what} written to {path}")
    return "\n".join(lines)
