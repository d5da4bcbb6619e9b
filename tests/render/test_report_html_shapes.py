"""The page draws the one view `ksight report` builds (views/report.report_view: episodes and
charts from one pass over the samples, a views/report_data.ReportView); anything else is
refused. The samples are tests/record/test_episodes.series: the checked-in capture's snapshot
with a burst of direct reclaim written in by hand."""

from __future__ import annotations

import re

import pytest

from ksight.render import report_html as rh
from tests.record.test_episodes import T0, burst, series


@pytest.fixture(scope="module")
def view():
    from ksight.views.report import report_view

    # 200 stalls/s (20,000 pages scanned directly per second) in the 5 s ending at 105..109 s
    snaps, _ = series(240, stalls=burst(104, 5, 200))
    return report_view(iter(snaps), areas=["pagecache"], source="rec-test.db")


def test_the_page_draws_the_report_view(view):
    doc = rh.to_html(view)
    drawn = [c for c in view.charts if any(s.times for s in c.series)]
    assert drawn and doc.count("<svg") == len(drawn)
    assert all(re.findall(r'<path d="([^"]+)"', doc))
    assert "pagecache.direct-reclaim" in doc and "from rec-test.db" in doc
    # the legend names the direct-scan line's exact peak: 20,000 pages/s (written in series())
    direct = next(s for c in view.charts if c.id == "reclaim" for s in c.series
                  if s.name == "direct scanned")
    assert direct.peak == 20000 and T0 + 105 <= direct.peak_at <= T0 + 109


def test_partial_rules_are_listed_with_what_could_not_be_judged(view):
    from dataclasses import replace

    from ksight.record.episodes import Partial

    rep = replace(view.episode_report, partial=[Partial("cpu.steal", 3, 4, "no steal column")])
    doc = rh.to_html(replace(view, episode_report=rep))
    assert "could not look in 3 of 4 windows: no steal column" in doc


def test_something_else_is_refused():
    with pytest.raises(TypeError):
        rh.to_html(object())
