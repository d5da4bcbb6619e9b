"""The page also draws the view `ksight report` builds in its own shape (views/report.py on the
report branch: an EpisodeReport and Chart/Line lists in kB, /s, %), read through
views.report_data.as_report_view. Stand-ins with those fields, as that branch defines them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from ksight.diagnose.finding import NotEvaluated
from ksight.render import report_html as rh
from ksight.views.report_data import ReportView, as_report_view
from tests.browser.synth import T0, episode


@dataclass(frozen=True)
class Line:
    name: str
    times: tuple
    values: tuple


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    unit: str
    stacked: bool
    lines: tuple
    source: str


@dataclass
class EpisodeReport:
    episodes: list = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    samples: int = 0
    not_evaluated: list = field(default_factory=list)
    host: dict = field(default_factory=dict)
    kernel: str | None = None
    notes: list = field(default_factory=list)


@dataclass
class WatchView:
    episodes: EpisodeReport
    charts: list = field(default_factory=list)
    source: str | None = None
    since: float | None = None
    until: float | None = None
    bundle_dir: str | None = None


def watch_view():
    t = tuple(T0 + i for i in range(10))
    mem = Chart("memory", "Memory", "kB", True,
                (Line("anon", t, (1000.0,) * 10), Line("file", t, (3000.0,) * 9 + (None,)),
                 Line("dirty", t, (200.0,) * 10)),
                "/proc/meminfo")
    rec = Chart("reclaim", "Reclaim", "/s", False, (Line("pgscan kswapd", t[1:], (0.0, 5.0) * 4 + (2.0,)),),
                "/proc/vmstat")
    cpu = Chart("cpu", "CPU", "%", True, (Line("usr", t[1:], (20.0,) * 9), Line("sys", t[1:], (5.0,) * 9)),
                "/proc/stat")
    er = EpisodeReport([episode(T0 + 2, T0 + 6)], T0, T0 + 9, 10,
                       [NotEvaluated("cpu.steal", "no steal column")], {"hostname": "w1"}, "6.18",
                       ["a note"])
    return WatchView(er, [mem, rec, cpu], source="rec.db")


def test_the_other_shape_is_read_with_units_converted():
    v = as_report_view(watch_view())
    assert isinstance(v, ReportView)
    assert v.host == "w1" and v.kernel == "6.18" and v.start == T0 and v.end == T0 + 9
    assert v.snapshots == 10 and v.wall_clock and v.notes == ("a note",)
    mem = v.charts[0]
    assert mem.unit == "bytes" and mem.stacked
    assert mem.series[0].values[0] == 1000 * 1024 and mem.series[0].peak == 1000 * 1024
    assert mem.series[1].values[-1] is None
    # the stack's file band is the clean part when the view also stacks dirty
    assert [s.name for s in mem.series] == ["anon", "file cache (clean)", "dirty"]
    assert mem.series[1].values[0] == (3000 - 200) * 1024
    assert v.charts[1].unit == "/s" and v.charts[1].series[0].peak == 5.0
    assert v.charts[2].y_max == 100.0
    assert v.episodes[0].rule == "memory.leak-suspect"
    assert as_report_view(v) is v


def test_the_page_draws_it():
    doc = rh.to_html(watch_view())
    assert doc.count("<svg") == 3
    assert all(re.findall(r'<path d="([^"]+)"', doc))
    assert ">memory.leak-suspect</text>" in doc and "no steal column" in doc


def test_something_else_is_refused():
    with pytest.raises(TypeError):
        rh.to_html(object())
