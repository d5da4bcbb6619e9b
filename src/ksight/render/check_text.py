"""`ksight check` for people: a verdict line, then each finding with its evidence, why it
matters and what to run. At most 100 columns; colour only on a terminal (rich decides)."""

from __future__ import annotations

import shutil
import sys

from ..diagnose.finding import Report
from .units import number

_STYLE = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}


def _console():
    from rich.console import Console

    tty = sys.stdout.isatty()
    width = min(shutil.get_terminal_size((100, 24)).columns, 100) if tty else 100
    return Console(width=width, highlight=False, soft_wrap=False, no_color=not tty,
                   force_terminal=tty or None)


def _now(current) -> str:
    """'now 60', or what it means that there is no current value (a sysctl this kernel lacks)."""
    from rich.markup import escape

    return f"now {escape(str(current))}" if current is not None else "not set on this kernel"


def _num(v) -> str:
    return "?" if v is None else number(v)


def _block(c, markup: str, indent: int, hang: int | None = None) -> None:
    """Print wrapped to the console width, first line at `indent`, the rest at `hang`."""
    from rich.text import Text

    t = Text.from_markup(markup)
    hang = indent if hang is None else hang
    lines = t.wrap(c, max(c.width - hang, 20))
    for i, line in enumerate(lines):
        c.print(Text(" " * (indent if i == 0 else hang)) + line, soft_wrap=True)


def render_report(report: Report, *, verbose: bool = False) -> None:
    from rich.markup import escape

    c = _console()
    w = report.window
    span = f"{w.get('seconds', 0):g} s window" if w.get("snapshots", 1) > 1 else "one snapshot"
    host = report.host.get("hostname") or "?"
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in ("critical", "warning", "info")}
    n_not = len(report.not_evaluated)
    looked = f"{report.rules_run} of {report.rules_selected} rules looked"
    if report.rules_run == 0:
        verdict = "[bold]could not diagnose[/]: no rule could look (see below)"
        if report.window_missing:
            verdict += "; one snapshot only (capture with --count 2 or more)"
    elif not report.findings or report.worst == "info":
        if n_not:
            verdict = (f"[bold yellow]incomplete[/]: nothing wrong found by the rules that looked, "
                       f"but {n_not} could not look (below)")
        else:
            verdict = "[bold green]OK[/]: nothing wrong found"
    else:
        parts = [f"[{_STYLE[s]}]{n} {s}[/]" for s, n in counts.items() if n]
        verdict = ", ".join(parts)
    c.print(f"ksight check: {escape(host)} (kernel {escape(report.kernel or '?')}), {span}, "
            f"{looked}: {verdict}")
    for n in report.notes:
        c.print(f"[dim]{escape(n)}[/]")
    for b in report.series_breaks:
        c.print(f"[yellow]series cut after snapshot {b['after_snapshot']}[/]: {escape(b['reason'])}")
    if report.series_breaks:
        c.print(f"[dim]diagnosed the last unbroken part ({w.get('snapshots')} snapshots); "
                f"{report.snapshots_left_out} earlier snapshot(s) left out[/]")
    for f in report.findings:
        c.print()
        subj = ""
        if f.subject is not None:
            bits = [f"pid {f.subject.pid}" if f.subject.pid else "",
                    f.subject.comm or "", f"cgroup {f.subject.cgroup}" if f.subject.cgroup else "",
                    f.subject.socket or "",
                    f"netns {f.subject.netns}" if f.subject.netns else "",
                    f"interface {f.subject.interface}" if f.subject.interface else "",
                    f"device {f.subject.device}" if f.subject.device else "",
                    f"cpu {f.subject.cpu}" if f.subject.cpu else "",
                    f.subject.object or ""]
            subj = ", ".join(b for b in bits if b)
        c.print(f"[{_STYLE[f.severity]}]{f.severity.upper()}[/] [bold]{escape(f.title)}[/]  [dim]{f.id}[/]")
        if subj and subj not in f.title:
            _block(c, f"subject: {escape(subj)}", 2)
        for e in f.evidence:
            thr = f"  (threshold {_num(e.threshold)})" if e.threshold is not None else ""
            note = f"; {e.note}" if e.note else ""
            _block(c, f"{escape(e.name)}: [bold]{_num(e.value)}[/] {escape(e.unit)}{thr}"
                      f"  [dim]{escape(e.source)}{escape(note)}[/]", 2, 6)
        _block(c, f"[italic]Why it matters:[/] {escape(f.explanation)}", 2, 4)
        for a in f.actions:
            if a.kind == "sysctl":
                _block(c, f"[bold]→[/] sysctl -w {a.name}={a.recommended}   "
                          f"[dim]({_now(a.current)})[/]", 2, 6)
                if a.why:
                    _block(c, f"[dim]{escape(a.why)}[/]", 6)
            elif a.kind == "cgroup":
                _block(c, f"[bold]→[/] echo {escape(str(a.recommended))} > {escape(a.path or '')}   "
                          f"[dim]({_now(a.current)})[/]", 2, 6)
                if a.why:
                    _block(c, f"[dim]{escape(a.why)}[/]", 6)
            else:
                _block(c, f"[bold]→[/] {escape(a.text or '')}", 2, 6)
    if report.counter_resets:
        c.print(f"\n[yellow]counter reset in the window[/] (reboot, wrap or CPU unplug): "
                f"{', '.join(report.counter_resets)}; those rates were not used")
    missing = list(report.not_evaluated)
    if missing and (verbose or report.rules_run == 0 or not report.findings):
        c.print("\nnot evaluated (could not look):")
        for n in missing:
            c.print(f"  {n.rule}: {escape(n.reason)}")
    elif missing:
        c.print(f"\n[dim]{len(missing)} rule(s) could not look (missing data); -v shows which and why[/]")
    if verbose and report.unavailable:
        c.print("\nunavailable sources:")
        for u in report.unavailable:
            c.print(f"  {u['source']}: {escape(u['reason'])}")
