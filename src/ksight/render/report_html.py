"""The flight recorder's report as ONE self-contained HTML page: charts, episodes, findings with
their evidence and actions, and what could not be judged (`ksight report --html FILE`).

Why inline SVG written here, and no chart library: the page must open offline, years later, on
a machine with no network, and must be safe to open although every process name and path in it
comes from the machine under diagnosis. SVG drawn in Python needs no script at all, so the page
carries a Content-Security-Policy that forbids scripts and every fetch (`default-src 'none'`): a
hostile process name can neither run nor phone home, and there is no vendored JavaScript to keep
patched or to license. The cost is no zoom and no per-point tooltip; hover titles (SVG <title>)
give each line's exact peak and when, and each episode's rule, subject, span and title.

Drawing: each chart is PLOT_W pixels wide. Series longer than that are reduced per pixel column
to the column's lowest and highest sample (for a stacked chart, the samples where the stack is
lowest and highest), so a one-sample peak is still drawn at its height; the legend gives each
series' exact peak and when. A None value is a gap (the line breaks), never a zero. Times are
shown in the local time zone of the machine that wrote the page, named on the axis.

Every string from the machine (host, process names, paths, evidence, actions) goes through
`_e` (html.escape, quotes included) before it is written: it is untrusted input.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import math
import os
from collections.abc import Sequence
from typing import IO

from ..views.report_data import ReportChart, ReportSeries, ReportView
from . import units

PLOT_W = 900  # plot area, pixels
PLOT_H = 220
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 78, 16, 22, 44
SVG_W = MARGIN_L + PLOT_W + MARGIN_R
SVG_H = MARGIN_T + PLOT_H + MARGIN_B
# Okabe-Ito (colour-blind safe), then a few more distinct ones
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000", "#999999", "#7F3C8D")
SEVERITY_COLOUR = {"critical": "#C0392B", "warning": "#E67E22", "info": "#2E86C1"}
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _e(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


# ---- numbers and times -------------------------------------------------------------------------

def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "bytes":
        return units.size(v)
    if unit == "bytes/s":
        return units.size(v) + "/s"
    if unit == "%":
        return units.pct(v, 2)
    if unit in ("pages/s", "/s"):
        return units.rate(v, unit if unit != "/s" else "/s")
    return units.number(v)


_BIN = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))


def _axis_scale(unit: str, top: float) -> tuple[float, str]:
    """(divisor, axis title) so that tick labels are plain numbers."""
    if unit in ("bytes", "bytes/s"):
        for name, n in _BIN:
            if top >= n:
                return float(n), name + ("/s" if unit == "bytes/s" else "")
        return 1.0, "B" + ("/s" if unit == "bytes/s" else "")
    if unit == "%":
        return 1.0, "%"
    if top >= 1e6:
        return 1e6, f"million {unit}"
    if top >= 1e4:
        return 1e3, f"thousand {unit}"
    return 1.0, unit


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 172800, 604800)


def _local(t: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(t).astimezone()


def _clock(t: float | None, wall: bool, with_date: bool = False) -> str:
    if t is None:
        return "-"
    if not wall:
        return f"{t:,.0f} s"
    d = _local(t)
    return d.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def _tz_name(t: float | None) -> str:
    d = _local(t if t is not None else 0)
    off = d.strftime("%z")
    utc = f"UTC{off[:3]}:{off[3:]}"
    name = d.tzname() or ""
    return "UTC" if off == "+0000" and name in ("UTC", "GMT", "") else f"{name} {utc}".strip()


def _time_ticks(t0: float, t1: float, wall: bool) -> list[tuple[float, str]]:
    span = max(t1 - t0, 1e-9)
    step = next((s for s in _TIME_STEPS if span / s <= 8), _TIME_STEPS[-1])
    if wall:
        off = _local(t0).utcoffset()
        off_s = off.total_seconds() if off is not None else 0
        first = math.ceil((t0 + off_s) / step) * step - off_s  # round in local time
    else:
        first = math.ceil(t0 / step) * step
    out = []
    t = first
    multi_day = wall and _local(t0).date() != _local(t1).date()
    while t <= t1 + 1e-9 and len(out) < 20:
        if wall:
            d = _local(t)
            if step >= 86400:
                lab = d.strftime("%m-%d")
            elif multi_day and d.hour == 0 and d.minute == 0 and d.second == 0:
                lab = d.strftime("%m-%d %H:%M")
            else:
                lab = d.strftime("%H:%M" if step >= 60 else "%H:%M:%S")
        else:
            lab = f"{t:g}"
        out.append((t, lab))
        t += step
    return out


# ---- per-pixel reduction -----------------------------------------------------------------------

def _columns(times: Sequence[float], x_of, keys: Sequence[float | None]) -> list[int]:
    """Indexes to draw: per pixel column, the first and last sample, the lowest and highest
    (by `keys`), in time order; every gap (key None) is kept so lines break there."""
    keep: list[int] = []
    col = None
    members: list[int] = []

    def flush():
        if not members:
            return
        vals = [i for i in members if keys[i] is not None]
        pick = {members[0], members[-1]}
        if vals:
            pick.add(min(vals, key=lambda i: keys[i]))
            pick.add(max(vals, key=lambda i: keys[i]))
        pick.update(i for i in members if keys[i] is None)
        keep.extend(sorted(pick))

    for i, t in enumerate(times):
        c = int(x_of(t))
        if c != col:
            flush()
            col, members = c, []
        members.append(i)
    flush()
    return keep


# ---- one chart ---------------------------------------------------------------------------------

def _path(points: list[tuple[float, float] | None]) -> str:
    d, pen = [], False
    for p in points:
        if p is None:
            pen = False
            continue
        d.append(f"{'L' if pen else 'M'}{p[0]:.1f},{p[1]:.1f}")
        pen = True
    return " ".join(d)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _clean(s: ReportSeries) -> ReportSeries:
    """A series safe to draw: a value that is not a finite number is a gap, a point without a
    finite time is dropped (a NaN in a path's d attribute is an error in the browser)."""
    pts = [(t, v if _finite(v) else None) for t, v in zip(s.times, s.values) if _finite(t)]
    return dataclasses.replace(s, times=tuple(t for t, _ in pts), values=tuple(v for _, v in pts),
                               peak=s.peak if _finite(s.peak) else None)


def _chart_svg(ch: ReportChart, view: ReportView, t0: float, t1: float) -> str:
    wall = view.wall_clock
    ch = dataclasses.replace(ch, series=tuple(_clean(s) for s in ch.series))
    span = max(t1 - t0, 1e-9)

    def x_of(t: float) -> float:
        return MARGIN_L + (t - t0) / span * PLOT_W

    series = [s for s in ch.series if s.times]
    # the y range, from every value (stack totals for a stacked chart)
    top = 0.0
    if ch.stacked and series:
        n = len(series[0].times)
        for i in range(n):
            top = max(top, sum(s.values[i] or 0 for s in series if i < len(s.values)))
    for s in series:
        for v in s.values:
            if v is not None and v > top:
                top = v
    if ch.y_max is not None:
        top = max(top, ch.y_max) if top > ch.y_max else ch.y_max
    div, axis_unit = _axis_scale(ch.unit, top)
    step = _nice_step(top / div if top > 0 else 1.0)
    ymax = (math.ceil((top / div) / step) * step if top > 0 else step * 5) * div
    if ch.y_max is not None and abs(ymax - ch.y_max) / ch.y_max < 0.2:
        ymax = max(ch.y_max, top)

    def y_of(v: float) -> float:
        return MARGIN_T + PLOT_H - (v / ymax) * PLOT_H if ymax > 0 else MARGIN_T + PLOT_H

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{SVG_W}" height="{SVG_H}" '
           f'viewBox="0 0 {SVG_W} {SVG_H}" role="img" aria-label="{_e(ch.title)}">',
           f'<title>{_e(ch.title)}</title>',
           f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{PLOT_W}" height="{PLOT_H}" class="plot"/>']
    # grid and y labels
    k = 0
    while True:
        v = k * step * div
        if v > ymax * (1 + 1e-9) or k > 50:
            break
        y = y_of(v)
        out.append(f'<line x1="{MARGIN_L}" x2="{MARGIN_L + PLOT_W}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" class="ytick">{_e(_tick(v / div))}</text>')
        k += 1
    out.append(f'<text x="14" y="{MARGIN_T + PLOT_H / 2:.0f}" class="axis" '
               f'transform="rotate(-90 14 {MARGIN_T + PLOT_H / 2:.0f})">{_e(axis_unit)}</text>')
    # x ticks
    for t, lab in _time_ticks(t0, t1, wall):
        x = x_of(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_T}" y2="{MARGIN_T + PLOT_H}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{MARGIN_T + PLOT_H + 16}" class="xtick">{_e(lab)}</text>')
    xlab = f"local time ({_tz_name(t0)})" if wall else "seconds since boot"
    out.append(f'<text x="{MARGIN_L + PLOT_W / 2:.0f}" y="{SVG_H - 6}" class="axis">{_e(xlab)}</text>')
    # episodes: shaded bands with their rule id. Labels are kept readable: a rule is named on
    # its first band and on bands wide enough for it, at most 9 per chart, on three rows
    labelled: set[str] = set()
    n_labels = 0
    for ep in sorted(view.episodes, key=lambda e: (min(e.start, e.end), e.rule)):
        lo, hi = min(ep.start, ep.end), max(ep.start, ep.end)
        a, b = max(lo, t0), min(hi, t1)
        if b < t0 or a > t1:
            continue
        xa, xb = x_of(a), x_of(b)
        if xb - xa < 3:
            xa, xb = xa - 1.5, xa + 1.5
        col = SEVERITY_COLOUR.get(ep.severity, "#888888")
        tip = (f"{ep.rule} ({ep.severity}) {_subject(ep.subject)}: "
               f"{_clock(ep.start, wall)} to {_clock(ep.end, wall)}, {ep.windows} window(s); "
               f"{ep.peak.title}")
        label = ""
        if n_labels < 9 and (ep.rule not in labelled or xb - xa >= 7 * len(ep.rule)):
            label = (f'<text x="{xa + 2:.1f}" y="{MARGIN_T + 11 + 11 * (n_labels % 3)}" '
                     f'class="eplabel" fill="{col}">{_e(ep.rule)}</text>')
            labelled.add(ep.rule)
            n_labels += 1
        out.append(f'<g class="episode"><title>{_e(tip)}</title>'
                   f'<rect x="{xa:.1f}" y="{MARGIN_T}" width="{xb - xa:.1f}" height="{PLOT_H}" '
                   f'fill="{col}" fill-opacity="0.16" stroke="{col}" stroke-opacity="0.6"/>'
                   f'{label}</g>')
    # the data
    if ch.stacked:
        out.extend(_stacked(series, x_of, y_of, ch.unit, wall))
    else:
        for i, s in enumerate(series):
            out.append(_line(s, PALETTE[i % len(PALETTE)], x_of, y_of, ch.unit, wall))
    out.append(f'<line x1="{MARGIN_L}" x2="{MARGIN_L}" y1="{MARGIN_T}" y2="{MARGIN_T + PLOT_H}" class="axisline"/>')
    out.append(f'<line x1="{MARGIN_L}" x2="{MARGIN_L + PLOT_W}" y1="{MARGIN_T + PLOT_H}" '
               f'y2="{MARGIN_T + PLOT_H}" class="axisline"/>')
    out.append("</svg>")
    return "\n".join(out)


def _tick(v: float) -> str:
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def _peak_text(s: ReportSeries, unit: str, wall: bool) -> str:
    if s.peak is None:
        return f"{s.name}: no value"
    return f"{s.name}: peak {_fmt(s.peak, unit)} at {_clock(s.peak_at, wall)}"


def _line(s: ReportSeries, colour: str, x_of, y_of, unit: str, wall: bool) -> str:
    idx = _columns(s.times, x_of, s.values)
    pts = [None if s.values[i] is None else (x_of(s.times[i]), y_of(s.values[i])) for i in idx]
    d = _path(pts)
    # lone points (a value between two gaps) are drawn as dots, or they would not show
    dots = []
    for j, p in enumerate(pts):
        if p is not None and (j == 0 or pts[j - 1] is None) and (j + 1 == len(pts) or pts[j + 1] is None):
            dots.append(f'<circle cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="2.5" fill="{colour}"/>')
    return (f'<g class="series"><title>{_e(_peak_text(s, unit, wall))}</title>'
            f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6" '
            f'stroke-linejoin="round"/>{"".join(dots)}</g>')


def _stacked(series: list[ReportSeries], x_of, y_of, unit: str, wall: bool) -> list[str]:
    if not series:
        return []
    times = series[0].times
    n = len(times)
    if any(len(s.times) != n or len(s.values) != n for s in series):
        raise ValueError("a stacked chart's series must share their times")
    totals = []
    for i in range(n):
        vals = [s.values[i] for s in series]
        totals.append(None if all(v is None for v in vals) else sum(v or 0 for v in vals))
    idx = _columns(times, x_of, totals)
    # runs of drawable rows (a row of None breaks the areas)
    runs: list[list[int]] = [[]]
    for i in idx:
        if totals[i] is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(i)
    runs = [r for r in runs if r]
    out = []
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        ds = []
        for run in runs:
            lower = [sum(series[m].values[i] or 0 for m in range(k)) for i in run]
            upper = [lo + (s.values[i] or 0) for lo, i in zip(lower, run)]
            xs = [x_of(times[i]) for i in run]
            if len(run) == 1:  # one sample: a thin bar so it shows
                xs = [xs[0] - 1.5, xs[0] + 1.5]
                lower, upper = lower * 2, upper * 2
            top = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{y_of(u):.1f}"
                           for j, (x, u) in enumerate(zip(xs, upper)))
            bot = " ".join(f"L{x:.1f},{y_of(lo):.1f}" for x, lo in zip(reversed(xs), reversed(lower)))
            ds.append(f"{top} {bot} Z")
        out.append(f'<g class="series"><title>{_e(_peak_text(s, unit, wall))}</title>'
                   f'<path d="{" ".join(ds)}" fill="{colour}" fill-opacity="0.78" '
                   f'stroke="{colour}" stroke-width="0.8"/></g>')
    return out


def _legend(ch: ReportChart, wall: bool) -> str:
    items = []
    for i, s in enumerate(x for x in ch.series if x.times):
        colour = PALETTE[i % len(PALETTE)]
        peak = "" if s.peak is None else f" &middot; peak {_e(_fmt(s.peak, ch.unit))} at {_e(_clock(s.peak_at, wall))}"
        items.append(f'<li title="{_e(s.source)}"><span class="sw" style="background:{colour}"></span>'
                     f'{_e(s.name)}<span class="dim">{peak}</span></li>')
    return f'<ul class="legend">{"".join(items)}</ul>'


# ---- findings, episodes, what could not be judged ----------------------------------------------

def _subject(sub) -> str:
    if sub is None:
        return "the whole machine"
    bits = [f"pid {sub.pid}" if sub.pid else "", sub.comm or "",
            f"cgroup {sub.cgroup}" if sub.cgroup else "", sub.socket or "",
            f"netns {sub.netns}" if sub.netns else "",
            f"interface {sub.interface}" if sub.interface else "",
            f"device {sub.device}" if sub.device else "", f"cpu {sub.cpu}" if sub.cpu else "",
            sub.object or ""]
    return ", ".join(b for b in bits if b) or "the whole machine"


def _value(v) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return units.number(v)
    return "-" if v is None else str(v)


def _action(a) -> str:
    if a.kind == "sysctl":
        cmd = f"sysctl -w {a.name}={a.recommended}"
        now = f"now {a.current}" if a.current is not None else "not set on this kernel"
    elif a.kind == "cgroup":
        cmd = f"echo {a.recommended} > {a.path}"
        now = f"now {a.current}" if a.current is not None else ""
    else:
        cmd, now = a.text or "", ""
    why = f'<div class="why">{_e(a.why)}</div>' if a.why else ""
    tag = "code" if a.kind != "code" else "span"
    return (f'<li class="action {_e(a.kind)}"><{tag}>{_e(cmd)}</{tag}>'
            f'{" <span class=dim>(" + _e(now) + ")</span>" if now else ""}{why}</li>')


def _finding(f, wall: bool, when: str = "") -> str:
    ev = "".join(
        f"<tr><td>{_e(e.name)}</td><td class=num>{_e(_value(e.value))} {_e(e.unit)}</td>"
        f"<td class=num>{'' if e.threshold is None else _e(_value(e.threshold))}</td>"
        f"<td class=src>{_e(e.source)}{'; ' + _e(e.note) if e.note else ''}</td></tr>"
        for e in f.evidence)
    acts = "".join(_action(a) for a in f.actions)
    return (f'<div class="finding {_e(f.severity)}"><div class="fhead">'
            f'<span class="sev">{_e(f.severity.upper())}</span> <b>{_e(f.title)}</b> '
            f'<span class="rule">{_e(f.id)}</span></div>'
            f'<div class="dim">{_e(_subject(f.subject))}{_e(when)}</div>'
            + (f'<table class="ev"><tr><th>evidence</th><th>value</th><th>threshold</th>'
               f'<th>source</th></tr>{ev}</table>' if ev else "")
            + f'<p class="expl">{_e(f.explanation)}</p>'
            + (f'<ul class="actions">{acts}</ul>' if acts else "") + "</div>")


def _episodes(view: ReportView) -> str:
    if not view.episodes:
        return '<p class="dim">No rule fired at warning or above in this window.</p>'
    wall = view.wall_clock
    rows = []
    for ep in sorted(view.episodes, key=lambda e: e.start):
        rows.append(
            f'<tr class="{_e(ep.severity)}"><td><span class="sev">{_e(ep.severity)}</span></td>'
            f'<td class="rule">{_e(ep.rule)}</td><td>{_e(_subject(ep.subject))}</td>'
            f'<td>{_e(_clock(ep.start, wall, True))}</td><td>{_e(_clock(ep.end, wall, True))}</td>'
            f'<td class=num>{_e(units.duration(ep.seconds))}</td><td class=num>{ep.windows}</td>'
            f'<td class=src>{_e(ep.bundle or "-")}</td></tr>')
    table = ('<table class="episodes"><tr><th>severity</th><th>rule</th><th>subject</th>'
             '<th>start</th><th>end</th><th>lasted</th><th>windows</th><th>evidence bundle</th>'
             f'</tr>{"".join(rows)}</table>')
    details = "".join(
        _finding(ep.peak, wall, f" · worst window at {_clock(ep.peak_at, wall, True)}")
        for ep in sorted(view.episodes, key=lambda e: e.start))
    return table + "<h3>Evidence at each episode's worst window</h3>" + details


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;
color:#222;background:#fff;max-width:1040px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}.dim{color:#666}.meta{color:#444;margin:2px 0}
.chartbox{margin:10px 0 22px}.chartbox h3{margin:0 0 2px}.note{color:#666;font-size:12px;margin:0 0 4px}
svg.chart{display:block;font-size:11px}.plot{fill:#fcfcfc;stroke:none}.grid{stroke:#e3e3e3;stroke-width:1}
.axisline{stroke:#888;stroke-width:1}.ytick{text-anchor:end;fill:#444}.xtick{text-anchor:middle;fill:#444}
.axis{text-anchor:middle;fill:#333;font-size:12px}.eplabel{font-size:10px;font-weight:600}
.legend{list-style:none;padding:0;margin:2px 0 0 78px;font-size:12px}.legend li{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.missing{color:#8a5a00;background:#fff7e6;padding:6px 10px;border-radius:4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;vertical-align:top}
.num{text-align:right;white-space:nowrap}.src{color:#555;font-size:12px}.rule{font-family:ui-monospace,monospace;color:#555}
.finding{border-left:4px solid #999;padding:6px 12px;margin:12px 0;background:#fafafa}
.finding.critical{border-color:#C0392B}.finding.warning{border-color:#E67E22}.finding.info{border-color:#2E86C1}
.sev{font-weight:700;font-size:12px}.critical .sev{color:#C0392B}.warning .sev{color:#B9650F}.info .sev{color:#2E86C1}
.expl{margin:6px 0}.actions{margin:4px 0;padding-left:20px}.action code{background:#eef;padding:1px 4px}
.why{color:#555;font-size:12px}.notev li{margin:2px 0}
"""


def to_html(view: ReportView) -> str:
    """The page as a string (`view`: the ReportView of views/report.py or report_series.py)."""
    if not isinstance(view, ReportView):
        raise TypeError(f"cannot draw a {type(view).__name__}: expected a ReportView")
    wall = view.wall_clock
    t0 = view.start
    t1 = view.end
    times = [t for c in view.charts for s in c.series for t in (s.times[:1] + s.times[-1:])]
    if t0 is None and times:
        t0 = min(times)
    if t1 is None and times:
        t1 = max(times)
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f'<title>{_e(view.title)}: {_e(view.host or "?")}</title>',
             f'<style>{CSS}</style></head><body>',
             f'<h1>{_e(view.title)}: {_e(view.host or "?")}</h1>']
    span = "" if t0 is None or t1 is None else f" ({units.duration(t1 - t0)})"
    parts.append(f'<p class="meta">kernel {_e(view.kernel or "?")} &middot; '
                 f'{_e(_clock(t0, wall, True))} to {_e(_clock(t1, wall, True))}'
                 f'{_e(span)}{" " + _e(_tz_name(t0)) if wall and t0 is not None else ""} &middot; '
                 f'{view.snapshots:,} snapshots &middot; {len(view.episodes)} episode(s), '
                 f'{len(view.findings)} other finding(s), {len(view.not_evaluated)} rule(s) could '
                 'not judge</p>')
    if view.source:
        parts.append(f'<p class="meta dim">from {_e(view.source)}</p>')
    for n in view.notes:
        parts.append(f'<p class="meta dim">{_e(n)}</p>')
    parts.append('<h2>Over time</h2>')
    if t0 is None or t1 is None:
        parts.append('<p class="missing">No sample with a clock in this window: nothing to plot.</p>')
    else:
        if t1 <= t0:
            t0, t1 = t0 - 0.5, t1 + 0.5
        if not view.charts:
            parts.append('<p class="missing">No chart in this report.</p>')
        for ch in view.charts:
            parts.append(f'<div class="chartbox" id="chart-{_e(ch.id)}"><h3>{_e(ch.title)}</h3>')
            if ch.note:
                parts.append(f'<p class="note">{_e(ch.note)}</p>')
            if not any(s.times for s in ch.series):
                parts.append(f'<p class="missing">No data: {_e(ch.missing or "nothing recorded")}</p></div>')
                continue
            parts.append(_chart_svg(ch, view, t0, t1))
            parts.append(_legend(ch, wall))
            parts.append('</div>')
    parts.append('<h2>Episodes</h2>')
    parts.append(_episodes(view))
    parts.append('<h2>Findings</h2>')
    if view.findings:
        parts.extend(_finding(f, wall) for f in view.findings)
    else:
        parts.append('<p class="dim">No other finding.</p>')
    parts.append('<h2>What could not be judged</h2>')
    partial = list(getattr(view.episode_report, "partial", None) or ())
    if view.not_evaluated or partial:
        parts.append('<ul class="notev">' + "".join(
            f'<li><span class="rule">{_e(n.rule)}</span>: {_e(n.reason)}</li>'
            for n in view.not_evaluated) + "".join(
            f'<li><span class="rule">{_e(p.rule)}</span>: could not look in '
            f'{p.windows_not_looked:,} of {p.windows:,} windows: {_e(p.reason)}</li>'
            for p in partial) + '</ul>')
    else:
        parts.append('<p class="dim">Every rule could look.</p>')
    parts.append('<p class="dim">Written by ksight. Self-contained: no script, no network.</p>')
    parts.append('</body></html>\n')
    # a name read with surrogateescape (undecodable bytes) must not stop the page being written
    return _utf8("\n".join(parts))


def _utf8(text: str) -> str:
    """Text that encodes as UTF-8: undecodable bytes kept as surrogates become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace").decode("utf-8")


def render(view: ReportView, out: str | os.PathLike | IO[str]) -> None:
    """Write the page to `out`: a path (created readable by its owner only: the page names the
    machine's processes and paths, as a capture does) or an open text file."""
    text = to_html(view)
    if hasattr(out, "write"):
        out.write(text)
        return
    fd = os.open(os.fspath(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


__all__ = ["render", "to_html", "PLOT_W", "PLOT_H", "SVG_W", "SVG_H"]
