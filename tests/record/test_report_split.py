"""`ksight report` over a long range in two processes (record/report_split.py, issue 13): the
episodes, the rules' looked / not looked and the charts must be those of the one-process pass,
on bench/report.py's synthetic machine with its four faults (30 minutes of it here, the range
cut inside the leak's episode, so one episode spans both halves)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0
FAULTS = {"reclaim": (200, 5), "retrans": (400, 60), "leak": (800, 300), "sys": (1300, 120)}
SECONDS = 1800

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from ksight.record.store import RecordingWriter

    bench = _bench()
    base = bench.base_snapshot()
    path = tmp_path_factory.mktemp("rec") / "half-hour.db"
    w = RecordingWriter.create_or_open(str(path), interval=1.0)
    for s in bench.synthetic(SECONDS, base=base, faults=FAULTS, t0=T0):
        w.append(s)
    w.close()
    return str(path), bench


@pytest.fixture
def short_ranges(monkeypatch):
    from ksight.record import report_split

    monkeypatch.setattr(report_split, "MIN_SPAN_S", 0.0)
    monkeypatch.delenv("KSIGHT_REPORT_JOBS", raising=False)


def _key(view):
    return [(e.rule, e.subject, e.start, e.end, e.severity, e.windows, e.peak_at, e.peak)
            for e in view.episodes]


def _both(path, **kw):
    from ksight.record.store import Recording
    from ksight.views.report import report_view

    since, until = kw.get("since"), kw.get("until")
    with Recording.open(path) as rec:
        one = report_view(rec.snapshots(since, until, lazy=True), span=rec.range(since, until),
                          recording=rec, jobs=1, **kw)
    with Recording.open(path) as rec:
        two = report_view(rec.snapshots(since, until, lazy=True), span=rec.range(since, until),
                          recording=rec, jobs=2, **kw)
    assert not any("two processes" in n for n in one.notes)
    assert any("two processes" in n for n in two.notes), two.notes  # it was cut in two
    return one, two


def _same(one, two):
    assert _key(two) == _key(one)
    a, b = one.episode_report, two.episode_report
    assert (b.samples, b.windows, b.windows_fine, b.start, b.end, b.rules_run) == \
           (a.samples, a.windows, a.windows_fine, a.start, a.end, a.rules_run)
    assert b.not_evaluated == a.not_evaluated and b.partial == a.partial
    assert b.verdict == a.verdict
    assert (two.start, two.end, two.snapshots, two.host, two.kernel, two.wall_clock) == \
           (one.start, one.end, one.snapshots, one.host, one.kernel, one.wall_clock)


@pytest.mark.parametrize("window", [30.0, 60.0])
def test_two_processes_find_the_one_pass_episodes_and_draw_its_charts(recorded, short_ranges,
                                                                     window):
    path, bench = recorded
    one, two = _both(path, window_seconds=window, max_buckets=64)
    _same(one, two)
    assert two.charts == one.charts
    found = {e.rule: e for e in two.episodes}
    for fault, rule in bench.EXPECT.items():
        start, n = FAULTS[fault]
        e = found[rule]
        assert e.start < T0 + start + n and T0 + start <= e.end, (fault, e.start, e.end)
    # window 30: blocks of 300 s, cut at 900 s: inside the leak (800-1100), one episode
    leak = [e for e in two.episodes if e.rule == "memory.leak-suspect"]
    assert len(leak) == 1


def test_a_range_not_on_the_recordings_start_and_the_text_report(recorded, short_ranges):
    path, _ = recorded
    one, two = _both(path, since=T0 + 7.5, until=T0 + 1500, charts=False)
    _same(one, two)
    one, two = _both(path, since=T0 + 7.5, until=T0 + 1500, max_buckets=2048)
    _same(one, two)
    assert two.charts == one.charts


def test_short_ranges_and_one_cpu_stay_in_one_process(recorded):
    from ksight.record import report_split

    assert not report_split.wanted((T0, T0 + 3600), 60.0, None, jobs=2)  # under MIN_SPAN_S
    assert report_split.wanted((T0, T0 + 86400), 60.0, None, jobs=2)
    assert not report_split.wanted((T0, T0 + 86400), 60.0, None, jobs=1)
    assert not report_split.wanted((T0, T0 + 86400), 60.0, 120.0, jobs=2)  # gaps between windows


@pytest.mark.parametrize("cut", [300, 301, 450])
def test_charts_of_two_parts_added_are_the_charts_of_one(recorded, cut):
    """ChartBuilder(continued=True).take(): a process missing just after the cut leaves a gap in
    its line, one that appears after it starts a line; buckets across the cut keep their
    lowest and highest; every reading is where the one-pass builder puts it."""
    import dataclasses

    from ksight.views.report_series import ChartBuilder

    _, bench = recorded
    snaps = list(bench.synthetic(600, faults={"reclaim": (280, 40), "leak": (250, 100)}, t0=T0))
    procs0 = snaps[0].processes  # two of the top processes by RSS (the charted ones)
    pids = sorted(procs0, key=lambda p: -(procs0[p].res_kb or 0))
    gone, late = pids[1], pids[2]
    out = []
    for i, s in enumerate(snaps):
        procs = dict(s.processes)
        if 301 < i < 340:
            procs.pop(gone)  # missing right after the cut (a gap in its line), back later
        if i < 305:
            procs.pop(late)  # appears after it
        out.append(dataclasses.replace(s, processes=procs))
    span = out[-1].taken_at - out[0].taken_at
    for mb in (16, 64, 2048):
        one = ChartBuilder(max_buckets=mb, span=span)
        one.feed(out)
        first = ChartBuilder(max_buckets=mb, span=span, t0=out[0].taken_at)
        first.feed(out[:cut + 1])
        first.finish()
        second = ChartBuilder(max_buckets=mb, span=span, t0=out[0].taken_at, continued=True)
        second.feed(out[cut:])
        second.finish()
        first.take(second)
        a, b = one.result(), first.result()
        assert b.charts == a.charts, mb
        assert (b.start, b.end, b.snapshots, b.notes) == (a.start, a.end, a.snapshots, a.notes)


def test_a_reboot_in_the_range_is_judged_in_one_process(tmp_path, short_ranges):
    """Windows restart at a reboot (aligned on the new boot's first sample): the halves could
    not be added exactly, so the range is judged in one pass (and says nothing of two)."""
    import dataclasses

    from ksight.record.store import Recording, RecordingWriter
    from ksight.views.report import report_view

    bench = _bench()
    path = str(tmp_path / "reboot.db")
    w = RecordingWriter.create_or_open(path, interval=1.0)
    for i, s in enumerate(bench.synthetic(1500, faults=FAULTS, t0=T0)):
        if i >= 1000:  # rebooted: uptime starts again
            s = dataclasses.replace(s, uptime_s=30.0 + i - 1000)
        w.append(s)
    w.close()
    with Recording.open(path) as rec:
        one = report_view(rec.snapshots(lazy=True), recording=rec, jobs=1, charts=False)
    with Recording.open(path) as rec:
        two = report_view(rec.snapshots(lazy=True), recording=rec, jobs=2, charts=False)
        assert rec.skipped == 0
    assert one.episode_report.breaks and two.episode_report.breaks
    assert not any("two processes" in n for n in two.notes)
    _same(one, two)
