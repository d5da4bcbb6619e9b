"""What the flight recorder's report shows, as data: the contract between the code that computes
it (views/report_series.py builds the charts from snapshots; views/report.py adds the episodes
and findings) and the renderers (render/report_html.py draws the page; `ksight report --json`
prints the same dataclasses through render.jsonable). Fields are only ever added.

Times are wall-clock Unix seconds (`ReportView.wall_clock`), or, for a capture that recorded no
wall clock, seconds since boot (the kernel's uptime). A value of None is a gap: no reading there
(a reboot, a source missing from a sample, a process not running, an interval without a clock).
The renderer draws a gap as a break in the line, never as a zero.

Long recordings are reduced before they get here (views/report_series.py): each series keeps,
per time bucket, the samples where it was lowest and highest, so a one-second peak inside a
24-hour recording is still a point of the series; `ReportSeries.peak` is the exact peak over the
whole window either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..diagnose.finding import Finding, NotEvaluated
from ..record.episode import Episode

# the units a chart's axis can be in; render/report_html.py formats each with render/units.py
UNITS = ("bytes", "bytes/s", "pages/s", "%", "count", "/s")


@dataclass(frozen=True)
class ReportSeries:
    """One line (or one band of a stacked chart) over time."""

    name: str  # the legend label, e.g. "anon" or "postgres (pid 4242)"
    times: tuple[float, ...]  # see the module docstring; increasing
    values: tuple[float | None, ...]  # same length as times; None: a gap
    source: str = ""  # where the numbers come from, e.g. "/proc/meminfo AnonPages"
    peak: float | None = None  # the highest value over the whole window (before any reduction)
    peak_at: float | None = None  # when (same clock as times)
    reduced: bool = False  # True: min/max per time bucket of a longer series (peaks kept)


@dataclass(frozen=True)
class ReportChart:
    """One chart. In a stacked chart every series has the same `times` (bands stack per time)."""

    id: str  # stable key: "memory", "reclaim", "paging", "retrans", "cpu", "processes"
    title: str
    unit: str  # one of UNITS: the y axis's unit
    series: tuple[ReportSeries, ...]
    stacked: bool = False
    y_max: float | None = None  # a fixed top of the y axis (100 for CPU %), else from the data
    note: str | None = None  # how the numbers were computed, for the reader
    missing: str | None = None  # why the chart has no data (then series may be empty)


@dataclass(frozen=True)
class ReportView:
    """Everything the report page shows: charts, then episodes and findings, then what could not
    be judged."""

    host: str | None
    kernel: str | None
    start: float | None  # the window shown (same clock as the series' times)
    end: float | None
    charts: tuple[ReportChart, ...]
    episodes: tuple[Episode, ...] = ()
    findings: tuple[Finding, ...] = ()  # findings not covered by an episode (or all, for check)
    not_evaluated: tuple[NotEvaluated, ...] = ()
    notes: tuple[str, ...] = ()  # how the window was taken: reboots cut, snapshots, reductions
    wall_clock: bool = True  # False: times are seconds since boot (no wall clock recorded)
    snapshots: int = 0
    title: str = "ksight report"


__all__ = ["ReportSeries", "ReportChart", "ReportView", "UNITS", "as_report_view"]


# ---- views of another shape --------------------------------------------------------------------
# `ksight report` (views/report.py) may hand the renderer its own view: `episodes` an
# EpisodeReport (episodes, not_evaluated, notes, host, kernel, start, end, samples) and `charts` a
# list of Chart(name, title, unit "kB" | "/s" | "%", stacked, lines=(Line(name, times, values),),
# source). as_report_view reads that shape (duck-typed: no import of it) into a ReportView, so
# either contract draws the same page.

_UNIT_SCALE = {"kB": ("bytes", 1024.0), "KiB": ("bytes", 1024.0), "bytes": ("bytes", 1.0),
               "B": ("bytes", 1.0), "/s": ("/s", 1.0), "%": ("%", 1.0),
               "pages/s": ("pages/s", 1.0), "bytes/s": ("bytes/s", 1.0)}


def _peak(times, values):
    best = None
    for t, v in zip(times, values):
        if v is not None and (best is None or v > best[0]):
            best = (v, t)
    return best or (None, None)


def _dirty_apart(series: list[ReportSeries]) -> list[ReportSeries]:
    """In a stack, "dirty" pages are part of "file" (the page cache): the file band becomes the
    clean part, so the stack's total is not counted twice."""
    names = [s.name for s in series]
    if "file" not in names or "dirty" not in names:
        return series
    f, d = series[names.index("file")], series[names.index("dirty")]
    clean = tuple(None if a is None else max(a - (b or 0), 0.0) for a, b in zip(f.values, d.values))
    p, pt = _peak(f.times, clean)
    out = list(series)
    out[names.index("file")] = ReportSeries("file cache (clean)", f.times, clean,
                                            f.source + " minus dirty", p, pt, f.reduced)
    return out


def as_report_view(view) -> ReportView:
    """`view` itself when it is a ReportView, else the same data read from the other shape."""
    if isinstance(view, ReportView):
        return view
    er = getattr(view, "episodes", None)
    if er is None or not hasattr(er, "episodes"):
        raise TypeError(f"cannot draw a {type(view).__name__}: expected a ReportView")
    charts = []
    wall = True
    for ch in getattr(view, "charts", None) or ():
        unit, k = _UNIT_SCALE.get(getattr(ch, "unit", ""), (getattr(ch, "unit", ""), 1.0))
        series = []
        for ln in ch.lines:
            vals = tuple(None if v is None else v * k for v in ln.values)
            p, pt = _peak(ln.times, vals)
            series.append(ReportSeries(ln.name, tuple(ln.times), vals,
                                       getattr(ch, "source", "") or "", p, pt))
            if ln.times and ln.times[0] < 1e9:  # seconds since boot, not Unix time
                wall = False
        stacked = bool(getattr(ch, "stacked", False)) and len({s.times for s in series}) <= 1
        series = _dirty_apart(series) if stacked else series
        name = getattr(ch, "name", "chart")
        charts.append(ReportChart(name, getattr(ch, "title", name), unit, tuple(series),
                                  stacked=stacked, y_max=100.0 if unit == "%" and stacked else None,
                                  note=getattr(ch, "source", None),
                                  missing=None if series else "no data in the recording"))
    host = getattr(er, "host", None) or {}
    return ReportView(
        host=host.get("hostname") if isinstance(host, dict) else str(host),
        kernel=getattr(er, "kernel", None),
        start=getattr(view, "since", None) or getattr(er, "start", None),
        end=getattr(view, "until", None) or getattr(er, "end", None),
        charts=tuple(charts), episodes=tuple(er.episodes),
        findings=tuple(getattr(view, "findings", ()) or ()),
        not_evaluated=tuple(getattr(er, "not_evaluated", ()) or ()),
        notes=tuple(getattr(er, "notes", ()) or ()), wall_clock=wall,
        snapshots=int(getattr(er, "samples", 0) or 0))
