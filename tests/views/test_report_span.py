"""views/report_series.ChartBuilder(span=...): a recording's range known beforehand gives the
buckets their final width from the start. The charts must be exactly those of the doubling grid
(which merges pairs of buckets as the range grows), peaks included."""

from __future__ import annotations

from ksight.views import report_series as rs
from tests.browser.synth import recording


def test_a_known_span_gives_the_same_charts_as_the_doubling_grid():
    rec = recording(600)  # a leak, a dirty burst, processes coming and going, a reboot-free day
    span = rec[-1].taken_at - rec[0].taken_at
    for mb in (8, 16, 64, 4096):  # 8: the doubling grid goes through 7 widths
        a = rs.build_charts(iter(rec), max_buckets=mb)
        b = rs.ChartBuilder(max_buckets=mb, span=span)
        b.feed(iter(rec))
        got = b.result()
        assert got.charts == a.charts, mb
        assert got.notes == a.notes
        if mb == 8:
            assert any(s.reduced for c in got.charts for s in c.series)


def test_a_span_too_short_still_doubles():
    rec = recording(300)
    a = rs.build_charts(iter(rec), max_buckets=8)
    b = rs.ChartBuilder(max_buckets=8, span=10.0)  # wrong: shorter than the samples' range
    b.feed(iter(rec))
    assert b.result().charts == a.charts
