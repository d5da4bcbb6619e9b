"""`ksight report` for people: the range and verdict, then one block per episode (rule, subject,
start, end, how long, the evidence of its worst window, the bundle captured for it), then the
rules that could not look. JSON is `report_json`: the views/report_data.ReportView the page
draws, with the episode report's verdict, range and rule counts (docs/report-json.md). At most
100 columns; colour only on a terminal."""

from __future__ import annotations

import dataclasses
import time

from ..record.episodes import EpisodeReport
from .units import duration, number

_STYLE = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}
VERSION = 2  # 2: one view for text, JSON and HTML (charts as ReportChart, host a name)


def when(t: float | None, wall: bool = True) -> str:
    """A time as local 'YYYY-MM-DD HH:MM:SS' (or seconds of uptime when not a wall clock)."""
    if t is None:
        return "?"
    if not wall or t < 1e9:  # uptime or monotonic: the recording had no wall clock
        return f"{t:,.0f} s after boot"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def subject_text(sub) -> str:
    if sub is None:
        return "the machine"
    bits = [f"pid {sub.pid}" if sub.pid else "", sub.comm or "",
            f"cgroup {sub.cgroup}" if sub.cgroup else "", sub.socket or "",
            f"netns {sub.netns}" if sub.netns else "",
            f"interface {sub.interface}" if sub.interface else "",
            f"device {sub.device}" if sub.device else "", f"cpu {sub.cpu}" if sub.cpu else "",
            sub.object or ""]
    return ", ".join(b for b in bits if b) or "the machine"


def render(view, *, verbose: bool = False) -> None:
    from rich.markup import escape

    from .check_text import _block, _console, _num

    c = _console()
    rep: EpisodeReport = view.episode_report
    host = view.host or rep.host.get("hostname") or "?"
    span = (f"{when(rep.start)} to {when(rep.end)} ({duration((rep.end or 0) - (rep.start or 0))}, "
            f"{rep.samples:,} samples)" if rep.samples else "no samples in the range")
    counts = {s: sum(1 for e in view.episodes if e.severity == s)
              for s in ("critical", "warning", "info")}
    v = rep.verdict
    if v == "unknown":
        verdict = ("[bold]could not diagnose[/]: no rule could look"
                   + (" (below)" if rep.samples >= 2 else ""))
    elif v in ("ok", "incomplete") and not any(counts.values()):
        verdict = ("[bold green]OK[/]: no episode" if v == "ok" else
                   "[bold yellow]incomplete[/]: no episode from the rules that looked; some "
                   "could not look (below)")
    else:
        verdict = ", ".join(f"[{_STYLE[s]}]{n} {s}[/]" for s, n in counts.items() if n) + " episode(s)"
    kernel = view.kernel or rep.kernel or "?"
    c.print(f"ksight report: {escape(host)} (kernel {escape(kernel)}), {span}, "
            f"{rep.rules_run} of {rep.rules_selected} rules looked: {verdict}")
    if view.source:
        c.print(f"[dim]from {escape(view.source)}[/]")
    if rep.samples < 2:
        c.print("nothing to judge: " + ("no sample in the range" if not rep.samples else
                                       "one sample in the range (a window needs two)")
                + (" (--since/--until)" if view.since or view.until else ""))
        return
    for n in view.notes:
        c.print(f"[dim]{escape(n)}[/]")
    for b in rep.breaks:
        c.print(f"[yellow]{escape(b['kind'])} at {when(b['at'])}[/]: {escape(b['reason'])}; "
                "windows start again after it")
    for e in view.episodes:
        f = e.peak
        c.print()
        c.print(f"[{_STYLE[e.severity]}]{e.severity.upper()}[/] [bold]{escape(f.title)}[/]  "
                f"[dim]{e.rule}[/]")
        _block(c, f"subject: {escape(subject_text(e.subject))}", 2)
        _block(c, f"from {when(e.start)} to {when(e.end)} ({duration(e.seconds)}, fired in "
                  f"{e.windows} window(s) of {rep.window_seconds:g} s); worst window ending "
                  f"{when(e.peak_at)}", 2, 4)
        for ev in f.evidence:
            thr = f"  (threshold {_num(ev.threshold)})" if ev.threshold is not None else ""
            note = f"; {ev.note}" if ev.note else ""
            _block(c, f"{escape(ev.name)}: [bold]{_num(ev.value)}[/] {escape(ev.unit)}{thr}"
                      f"  [dim]{escape(ev.source)}{escape(note)}[/]", 4, 8)
        if verbose:
            _block(c, f"[italic]Why it matters:[/] {escape(f.explanation)}", 4, 6)
        for a in f.actions[: None if verbose else 2]:
            if a.kind == "sysctl":
                text = f"sysctl -w {a.name}={a.recommended}"
            elif a.kind == "cgroup":
                text = f"echo {a.recommended} > {a.path}"
            else:
                text = a.text or ""
            _block(c, f"[bold]→[/] {escape(text)}", 4, 8)
        if e.bundle:
            _block(c, f"[bold]evidence captured:[/] {escape(e.bundle)}", 4, 8)
    if rep.partial:
        c.print("\nlooked in some windows only:")
        for p in rep.partial:
            c.print(f"  {p.rule}: could not look in {number(p.windows_not_looked)} of "
                    f"{number(p.windows)} judgements: {escape(p.reason)}")
    if rep.not_evaluated and (verbose or rep.rules_run == 0 or not view.episodes):
        c.print("\nnot evaluated (could not look):")
        for n in rep.not_evaluated:
            c.print(f"  {n.rule}: {escape(n.reason)}")
    elif rep.not_evaluated:
        c.print(f"\n[dim]{len(rep.not_evaluated)} rule(s) could not look (-v says which and why)[/]")


def report_json(view) -> dict:
    """The ReportView as JSON (render/jsonable), its episode report flattened into the verdict,
    the judged range, the rule counts, partial rules and breaks (docs/report-json.md)."""
    from .jsonable import jsonable

    rep: EpisodeReport = view.episode_report
    doc = {"version": VERSION, "verdict": rep.verdict, "exit_status": rep.exit_status(),
           "rules_run": rep.rules_run, "rules_selected": rep.rules_selected}
    for f in dataclasses.fields(view):
        if f.name == "episode_report":
            continue
        doc[f.name] = jsonable(getattr(view, f.name))
    doc["episodes"] = [dict(jsonable(e), seconds=round(e.seconds, 3)) for e in view.episodes]
    doc["host_info"] = rep.host
    doc["range"] = {"start": rep.start, "end": rep.end, "samples": rep.samples,
                    "window_seconds": rep.window_seconds, "step": rep.step,
                    "windows": rep.windows, "windows_full_resolution": rep.windows_fine}
    doc["partial"] = [jsonable(p) for p in rep.partial]
    doc["breaks"] = rep.breaks
    return doc
