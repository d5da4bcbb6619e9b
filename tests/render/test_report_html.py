"""The report page (render/report_html.py) without a browser: untrusted strings escaped, nothing
fetched, peaks drawn at their height after per-pixel reduction, gaps break lines, episodes are
shaded bands with their rule id, times on the axis in local wall-clock time. The browser tests
(tests/browser/) load the same page in chromium."""

from __future__ import annotations

import os
import re
import time

import pytest

from ksight.diagnose.finding import NotEvaluated
from ksight.render import report_html as rh
from ksight.views.report_data import ReportChart, ReportSeries, ReportView
from ksight.views.report_series import build_charts
from tests.browser.synth import T0, episode, finding, recording

EVIL = "<script>alert(1)</script>"


def page(snaps, episodes=(), findings=(), not_evaluated=()):
    cs = build_charts(snaps)
    v = ReportView(cs.host, cs.kernel, cs.start, cs.end, cs.charts, episodes=episodes,
                   findings=findings, not_evaluated=not_evaluated, notes=cs.notes,
                   wall_clock=cs.wall_clock, snapshots=cs.snapshots)
    return v, rh.to_html(v)


def one_chart(values, times=None, unit="pages/s", stacked=False, more=()):
    times = times or tuple(T0 + i for i in range(len(values)))
    s = ReportSeries("x", tuple(times), tuple(values), peak=max(v for v in values if v is not None))
    ch = ReportChart("c", "C", unit, (s, *more), stacked=stacked)
    return ReportView("h", "k", times[0], times[-1], (ch,), snapshots=len(values))


def paths(doc: str) -> list[str]:
    return re.findall(r'<path d="([^"]*)"', doc)


def ys(d: str) -> list[float]:
    return [float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", d)]


def test_untrusted_strings_are_escaped_everywhere():
    n = 60
    eps = (episode(T0 + 30, T0 + 50, comm=EVIL),)
    evil_ne = NotEvaluated("cpu.steal", f"no steal {EVIL} & more")
    _, doc = page(recording(n, hostile=True), eps, (finding(comm=EVIL),), (evil_ne,))
    assert "<script" not in doc.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    # every tag in the page is one the renderer writes
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", doc))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "div",
                    "svg", "rect", "line", "text", "g", "path", "circle", "ul", "li", "span",
                    "table", "tr", "th", "td", "b", "code"}, tags


def test_nothing_is_fetched_and_no_script():
    _, doc = page(recording(30))
    assert "Content-Security-Policy" in doc and "default-src 'none'" in doc
    low = doc.lower()
    for bad in ("<script", "<link", " src=", "href=", "url(", "@import", "@font-face"):
        assert bad not in low, bad
    # the only URL is the SVG namespace name, which is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", doc)) == {"http://www.w3.org/2000/svg"}


def test_every_chart_is_drawn_with_titles_axes_and_legend():
    v, doc = page(recording(120), (episode(T0 + 60, T0 + 90),))
    for c in v.charts:
        assert f'id="chart-{c.id}"' in doc
    assert doc.count("<svg") == 6
    assert all(d for d in paths(doc))
    assert "local time (" in doc
    for lbl in ("GiB", "MiB", "pages/s", "%"):
        assert f">{lbl}</text>" in doc or f">{lbl}/s</text>" in doc, lbl
    assert 'class="legend"' in doc and "peak" in doc
    assert "memory.leak-suspect" in doc


def test_a_one_sample_peak_is_drawn_at_its_height():
    n = 100_000
    vals = [10.0] * n
    vals[77_750] = 1000.0  # inside a pixel column, not its first or last sample
    doc = rh.to_html(one_chart(vals))
    (d,) = paths(doc)
    assert len(d.split()) <= 4 * rh.PLOT_W + 10  # reduced per pixel column
    top = rh.MARGIN_T + rh.PLOT_H - 1000.0 / 1000.0 * rh.PLOT_H  # the axis tops at 1,000
    assert min(ys(d)) == pytest.approx(top, abs=0.06)
    base = rh.MARGIN_T + rh.PLOT_H - 10.0 / 1000.0 * rh.PLOT_H
    assert max(ys(d)) == pytest.approx(base, abs=0.06)


def test_a_gap_breaks_the_line_and_is_not_a_zero():
    vals = [5.0] * 10 + [None] * 3 + [5.0] * 10
    doc = rh.to_html(one_chart(vals))
    (d,) = paths(doc)
    assert d.count("M") == 2
    assert len(set(ys(d))) == 1  # never drawn down to 0


def test_stacked_bands_sit_on_each_other():
    t = tuple(T0 + i for i in range(5))
    a = ReportSeries("a", t, (10.0,) * 5, peak=10.0)
    b = ReportSeries("b", t, (30.0,) * 5, peak=30.0)
    ch = ReportChart("m", "M", "%", (a, b), stacked=True, y_max=100.0)
    doc = rh.to_html(ReportView("h", "k", t[0], t[-1], (ch,)))
    da, db = paths(doc)
    y = lambda v: rh.MARGIN_T + rh.PLOT_H - v / 100.0 * rh.PLOT_H  # noqa: E731
    assert min(ys(da)) == pytest.approx(y(10)) and max(ys(da)) == pytest.approx(y(0))
    assert min(ys(db)) == pytest.approx(y(40)) and max(ys(db)) == pytest.approx(y(10))


def test_episode_band_spans_its_time_with_the_rule_id():
    v, doc = page(recording(101), (episode(T0 + 25, T0 + 75, rule="tcp.retrans-high"),))
    bands = re.findall(r'<g class="episode"><title>([^<]*)</title><rect x="([\d.]+)" y="[\d.]+" '
                       r'width="([\d.]+)"', doc)
    assert len(bands) == 6  # one per chart
    tip, x, w = bands[0]
    assert tip.startswith("tcp.retrans-high (warning)")
    # the window is T0..T0+100: the band covers a quarter to three quarters of the plot
    assert float(x) == pytest.approx(rh.MARGIN_L + rh.PLOT_W * 0.25, abs=0.1)
    assert float(w) == pytest.approx(rh.PLOT_W * 0.5, abs=0.2)
    assert ">tcp.retrans-high</text>" in doc


def test_findings_evidence_actions_and_not_judged():
    ne = NotEvaluated("cpu.steal", "/proc/stat has no steal column")
    _, doc = page(recording(30), (), (finding(),), (ne,))
    assert "anonymous memory growth" in doc and "409,600 KiB/s" in doc and "/proc/4242/smaps_rollup" in doc
    assert "sysctl -w vm.overcommit_memory=2" in doc
    assert "echo 1073741824 &gt; /sys/fs/cgroup/app/memory.high" in doc
    assert "ksight pmap 4242" in doc
    assert doc.index("Findings") < doc.index("What could not be judged") < doc.index("no steal column")


def test_time_axis_is_local_wall_clock(monkeypatch):
    if not hasattr(time, "tzset"):
        pytest.skip("no time.tzset on this platform")
    monkeypatch.setenv("TZ", "IST-5:30")  # UTC+05:30; a POSIX rule: needs no tzdata
    time.tzset()
    try:
        vals = [1.0] * 601
        doc = rh.to_html(one_chart(vals))  # T0 is 2026-01-01 00:00:00 UTC
    finally:
        monkeypatch.undo()
        time.tzset()
    assert "UTC+05:30" in doc
    ticks = re.findall(r'class="xtick">([^<]*)<', doc)
    assert ticks[0] == "05:30" and "05:40" in ticks
    assert "2026-01-01 05:30:00" in doc


def test_empty_chart_says_why():
    ch = ReportChart("retrans", "TCP", "%", (), missing="no /proc/net/snmp: permission denied")
    doc = rh.to_html(ReportView("h", "k", T0, T0 + 10, (ch,)))
    assert "No data: no /proc/net/snmp: permission denied" in doc
    assert "<svg" not in doc


def test_no_clock_at_all():
    doc = rh.to_html(ReportView("h", "k", None, None, ()))
    assert "nothing to plot" in doc


def test_render_to_a_path_is_owner_only(tmp_path):
    out = tmp_path / "r.html"
    rh.render(one_chart([1.0, 2.0]), out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert os.stat(out).st_mode & 0o077 == 0


def test_odd_numbers_are_gaps_not_broken_paths():
    nan, inf = float("nan"), float("inf")
    vals = [1.0, nan, 2.0, inf, 3.0, -inf, 4.0]
    doc = rh.to_html(one_chart(vals))
    (d,) = paths(doc)
    assert "nan" not in d.lower() and "inf" not in d.lower()
    assert len(ys(d)) == 0 or all(rh.MARGIN_T <= y <= rh.MARGIN_T + rh.PLOT_H for y in ys(d))
    # a point with no finite time is left out
    t = (T0, float("nan"), T0 + 2)
    doc = rh.to_html(one_chart([1.0, 2.0, 3.0], times=t))
    assert "nan" not in paths(doc)[0].lower()


def test_episode_outside_or_reversed_is_harmless():
    from dataclasses import replace

    v = one_chart([1.0] * 10)
    eps = (episode(T0 - 100, T0 - 50), episode(T0 + 8, T0 + 3), episode(T0 + 2, T0 + 2))
    doc = rh.to_html(replace(v, episodes=eps))
    widths = [float(w) for w in re.findall(r'<g class="episode">.*?width="([-\d.]+)"', doc)]
    assert widths and all(w > 0 for w in widths)


def test_undecodable_bytes_in_a_name_do_not_stop_the_page(tmp_path):
    bad = b"caf\xe9\xff".decode("utf-8", "surrogateescape")
    v = one_chart([1.0, 2.0])
    from dataclasses import replace

    v = replace(v, host=bad)
    out = tmp_path / "r.html"
    rh.render(v, out)
    assert "caf\ufffd\ufffd" in out.read_text(encoding="utf-8")


def test_many_episodes_keep_their_bands_and_few_labels():
    from dataclasses import replace

    v = one_chart([1.0] * 3600)
    eps = tuple(episode(T0 + 100 * k, T0 + 100 * k + 5, rule="tcp.retrans-high") for k in range(30))
    doc = rh.to_html(replace(v, episodes=eps))
    assert doc.count('<g class="episode">') == 30  # every band drawn
    labels = re.findall(r'class="eplabel"[^>]*>([^<]*)<', doc)
    assert 1 <= len(labels) <= 9 and set(labels) == {"tcp.retrans-high"}
