"""What the flight recorder's report shows, as data: the contract between the code that computes
it (views/report_series.py builds the charts from snapshots; views/report.py adds the episodes
and the episode report) and the renderers: render/report_text.py (the text and, through
render.jsonable, `ksight report --json`: docs/report-json.md) and render/report_html.py (the
page) all read this one ReportView. Fields are only ever added.

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

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import TYPE_CHECKING

from ..diagnose.finding import Finding, NotEvaluated
from ..record.episode import Episode

if TYPE_CHECKING:  # the judging engine is not imported to draw a page
    from ..record.episodes import EpisodeReport

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
    # `ksight report` (views/report.py) also fills these:
    episode_report: EpisodeReport | None = None  # verdict, rules run, partial, breaks, range
    source: str | None = None  # the recording or capture read
    since: float | None = None  # the range asked for (None: from the first sample / to the last)
    until: float | None = None
    bundle_dir: str | None = None  # where the recorder's trigger bundles were looked for


__all__ = ["ReportSeries", "ReportChart", "ReportView", "UNITS"]

