"""The process lines' lean path (views/report_series._Builder.processes skips a reading that
cannot change its bucket: the same Process object, or the same RSS in the same bucket) draws
what reading every value draws. Numbers are written here by hand: RSS in pages of 4096 bytes."""

from __future__ import annotations

import copy

from ksight.views.report_series import build_charts
from tests.browser.synth import T0, process, snap

PAGE = 4096


def _procs(cs):
    return {s.name: s for c in cs.charts if c.id == "processes" for s in c.series}


def _snaps(shared: bool, n: int = 400):
    """Process 10 "flat" at 100 pages, except 900 pages in the one second ending at 250 s;
    process 20 "grows" 1 page a second; process 30 "brief" only from 100 to 199 s. With
    shared=True the unchanged readings are the same objects (and the same table), as a reader
    that shares them gives; else every snapshot has copies of everything."""
    flat, spike = process(10, "flat", 100, 5), process(10, "flat", 900, 5)
    brief = process(30, "brief", 300, 7)
    table = {10: flat, 20: process(20, "grows", 1300, 6)}  # the last 100 s, shared
    out = []
    for i in range(n):
        grows = process(20, "grows", 1000 + i, 6)
        if 100 <= i < 200:
            procs = {10: flat, 20: grows, 30: brief}
        else:
            procs = {10: spike if i == 250 else flat, 20: grows}
        if not shared:
            procs = {pid: copy.deepcopy(p) for pid, p in procs.items()}
        s = snap(i)
        if i >= 300:  # the last 100 s: "grows" stays at 1300 (shared: one table object)
            procs = table if shared else copy.deepcopy(table)
        out.append(type(s)(**{**s.__dict__, "processes": procs}))
    return out


def test_the_lean_path_draws_what_every_reading_draws():
    for buckets in (64, 4096):  # reduced (min/max per bucket) and one point per sample
        a = _procs(build_charts(_snaps(True), max_buckets=buckets))
        b = _procs(build_charts(_snaps(False), max_buckets=buckets))
        assert set(a) == {"flat (10)", "grows (20)", "brief (30)"}
        for name in a:
            assert (a[name].times, a[name].values) == (b[name].times, b[name].values), name
            assert (a[name].peak, a[name].peak_at) == (b[name].peak, b[name].peak_at)


def test_the_one_second_spike_and_the_gaps_are_kept():
    p = _procs(build_charts(_snaps(True), max_buckets=64))
    flat = p["flat (10)"]
    assert flat.reduced and len(flat.times) < 400
    assert dict(zip(flat.times, flat.values))[T0 + 250] == 900 * PAGE  # the spike, a point
    assert {v for v in flat.values if v is not None} == {100 * PAGE, 900 * PAGE}
    grows = p["grows (20)"]
    # written: 1000 + i pages for i < 300, then 1300: first at 300 s
    assert (grows.peak, grows.peak_at) == (1300 * PAGE, T0 + 300)
    assert grows.values[-1] == 1300 * PAGE and grows.times[-1] >= T0 + 399 - 8
    brief = p["brief (30)"]
    vals = [v for v in brief.values if v is not None]
    assert vals and set(vals) == {300 * PAGE}
    assert min(brief.times) >= T0 + 100 and max(brief.times) <= T0 + 200 + 8
