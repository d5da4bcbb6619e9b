"""`ksight report` through a recording (issue 13): the fast path (the store's shared decoding,
the charts' buckets sized from the recording's range, rules screened on one sample in ten and
judged again at full resolution where they fire) must list the same episodes as the exact path
(the plain decoder, every window judged at full resolution by every rule), on a recording with
real episodes: bench/report.py's synthetic machine (the project VM's captured snapshot, counters
moving as a quiet machine's) with its four faults injected, compressed into 20 minutes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0
FAULTS = {"reclaim": (200, 5), "retrans": (400, 60), "leak": (600, 300), "sys": (1000, 120)}
SECONDS = 1200


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
    path = tmp_path_factory.mktemp("rec") / "day.db"
    w = RecordingWriter.create_or_open(str(path), interval=1.0)
    for s in bench.synthetic(SECONDS, base=base, faults=FAULTS, t0=T0):
        w.append(s)
    w.close()
    return str(path), bench, base


def _key(view):
    return [(e.rule, e.subject, e.start, e.end, e.severity) for e in view.episodes]


def test_the_fast_path_finds_the_exact_paths_episodes(recorded):
    from ksight.record.store import Recording
    from ksight.views.report import report_view

    path, bench, base = recorded
    with Recording.open(path) as rec:
        fast = report_view(rec.snapshots(lazy=True), span=rec.range())
    with Recording.open(path) as rec:
        exact = report_view(rec.snapshots(share=False), exact=True)
    assert _key(fast) == _key(exact)
    found = {e.rule: e for e in fast.episodes}
    for fault, rule in bench.EXPECT.items():  # each fault is an episode, at its time
        start, n = FAULTS[fault]
        e = found[rule]
        assert e.start <= T0 + start and T0 + start + n - 1 <= e.end + 1, (fault, e.start, e.end)
        assert e.end - e.start <= n + 2 * 60, fault
    assert found["memory.leak-suspect"].subject.pid is not None
    # the same samples judged straight from memory (no store): the same episodes
    mem = report_view(bench.synthetic(SECONDS, base=base, faults=FAULTS, t0=T0))
    assert _key(mem) == _key(fast)


def test_shared_decoding_and_a_known_range_draw_the_same_charts(recorded):
    from ksight.record.store import Recording
    from ksight.views.report import report_view

    path, _, _ = recorded
    lo, hi = T0 + 100, T0 + 480  # the reclaim burst and the lossy minute
    with Recording.open(path) as rec:
        fast = report_view(rec.snapshots(lo, hi, lazy=True), since=lo, until=hi, span=rec.range(lo, hi),
                           max_buckets=32)
    with Recording.open(path) as rec:
        plain = report_view(rec.snapshots(lo, hi, share=False), since=lo, until=hi,
                            max_buckets=32)
    assert fast.charts == plain.charts
    assert any(s.reduced for c in fast.charts for s in c.series)
    rec_ = next(c for c in fast.charts if c.id == "reclaim")
    direct = next(s for s in rec_.series if s.name == "direct scanned")
    assert max(v for v in direct.values if v is not None) == 20000.0  # the burst, at its height
