"""The report's charts (views/report_series.py) against numbers computed by hand: from the
synthetic kernel text of tests/browser/synth.py (values chosen for easy arithmetic), and from the
raw text of the project VM's capture, read here straight out of the tar with regexes."""

from __future__ import annotations

import io
import math
import re
import tarfile

import pytest

from ksight.model.snapshot import Snapshot
from ksight.views import report_series as rs
from ksight.views.report_series import build_charts
from tests.browser.synth import T0, process, recording, snap
from tests.conftest import FIXTURES

CAP = FIXTURES / "captures" / "vm-6.18.tar.zst"
MiB = 1024 * 1024


def chart(cs, cid):
    return next(c for c in cs.charts if c.id == cid)


def series(cs, cid, name):
    return next(s for s in chart(cs, cid).series if s.name == name)


def at(s, t):
    """The value of series s at time t (exact time match)."""
    return s.values[s.times.index(t)]


@pytest.fixture(scope="module")
def rec():
    return recording(600)


@pytest.fixture(scope="module")
def charts(rec):
    return build_charts(rec)


def test_window_and_host(charts):
    assert charts.start == T0 and charts.end == T0 + 599
    assert charts.host == "synth" and charts.kernel == "6.18.0-synth"
    assert charts.snapshots == 600 and charts.wall_clock
    assert [c.id for c in charts.charts] == ["memory", "reclaim", "paging", "retrans", "cpu",
                                             "processes"]


def test_memory_composition_is_meminfo_in_bytes(charts):
    # synth.recording: AnonPages 300000 kB before the leak, Shmem 20000, Active(file) 500000 +
    # Inactive(file) 300000, Dirty 800 kB (5000 in the burst at 300..319), Slab 90000
    m = chart(charts, "memory")
    assert m.stacked and m.unit == "bytes"
    assert at(series(charts, "memory", "anon"), T0 + 10) == 300_000 * 1024
    assert at(series(charts, "memory", "shmem"), T0 + 10) == 20_000 * 1024
    assert at(series(charts, "memory", "file cache (clean)"), T0 + 10) == (800_000 - 800) * 1024
    assert at(series(charts, "memory", "dirty"), T0 + 10) == 800 * 1024
    assert at(series(charts, "memory", "dirty"), T0 + 305) == 5000 * 1024
    assert at(series(charts, "memory", "slab"), T0 + 10) == 90_000 * 1024
    # the leak: rss grows 100 pages/s from 200 on; anon follows (400 kB/s)
    assert at(series(charts, "memory", "anon"), T0 + 599) == (300_000 + 399 * 400) * 1024
    # stacked bands share their times
    assert len({s.times for s in m.series}) == 1


def test_reclaim_and_paging_rates(charts):
    # the burst at snapshots 300..319: +5000 pgscan_kswapd per 1 s step
    k = series(charts, "reclaim", "kswapd scanned")
    assert at(k, T0 + 305) == 5000.0 and at(k, T0 + 100) == 0.0
    assert k.peak == 5000.0 and T0 + 300 <= k.peak_at <= T0 + 319
    assert at(series(charts, "reclaim", "direct reclaimed"), T0 + 305) == 500.0
    # pgpgin +400 KiB per second -> 409600 bytes/s; pswpout +256 pages -> 1 MiB/s
    assert at(series(charts, "paging", "page-in"), T0 + 5) == 400 * 1024
    assert at(series(charts, "paging", "page-out"), T0 + 5) == 800 * 1024
    assert at(series(charts, "paging", "swap-out"), T0 + 305) == 256 * 4096
    assert series(charts, "paging", "swap-out").peak == MiB
    # rates are per interval: no point at the first snapshot
    assert T0 not in k.times


def test_retransmission_rate(charts):
    r = series(charts, "retrans", "retransmitted")
    # 1000 segments out per second, 50 of them retransmitted in the last fifth (from 480)
    assert at(r, T0 + 100) == 0.0
    assert at(r, T0 + 500) == pytest.approx(5.0)
    assert r.peak == pytest.approx(5.0)


def test_cpu_breakdown_by_hand(charts):
    # per CPU and second: usr 20 ticks (40 while leaking), sys 10, softirq 2, idle the rest
    c = chart(charts, "cpu")
    assert c.stacked and c.y_max == 100.0
    assert at(series(charts, "cpu", "usr"), T0 + 50) == pytest.approx(20.0)
    assert at(series(charts, "cpu", "usr"), T0 + 550) == pytest.approx(40.0)
    assert at(series(charts, "cpu", "sys"), T0 + 550) == pytest.approx(10.0)
    assert at(series(charts, "cpu", "soft"), T0 + 550) == pytest.approx(2.0)
    assert at(series(charts, "cpu", "iowait"), T0 + 550) == 0.0


def test_top_processes_by_peak_rss(charts):
    p = chart(charts, "processes")
    names = [s.name for s in p.series]
    # leaky grows to 25000 + 399*100 pages = 259.5 MiB, above steady's 40000 pages (156 MiB)
    assert names[:3] == ["leaky (4242)", "steady (77)", "small (88)"]
    assert p.series[0].peak == (25_000 + 399 * 100) * 4096
    assert p.series[0].peak_at == T0 + 599


def test_pid_reuse_is_another_process():
    snaps = [snap(i, procs=[process(10, "first", 1000, start_ticks=5)]) for i in range(3)]
    snaps += [snap(i, procs=[process(10, "second", 3000, start_ticks=900)]) for i in range(3, 6)]
    cs = build_charts(snaps, top=5)
    names = sorted(s.name for s in chart(cs, "processes").series)
    assert names == ["first (10)", "second (10)"]
    second = series(cs, "processes", "second (10)")
    assert second.times[0] == T0 + 3 and second.peak == 3000 * 4096


def test_reboot_is_a_gap_and_no_rate_across_it():
    snaps = [snap(i, vm=dict(pgpgin=1000 * i)) for i in range(5)]
    # after the reboot the counters restart from 0
    snaps += [snap(i, vm=dict(pgpgin=1000 * (i - 5)), boot_id="b-2", uptime0=-4) for i in range(5, 10)]
    cs = build_charts(snaps)
    pin = series(cs, "paging", "page-in")
    # rates: intervals 1..4 and 6..9 (1000 KiB/s); the interval across the reboot has none
    assert [v for v in pin.values if v is not None] == [1000 * 1024.0] * 8
    assert None in pin.values  # the line breaks
    gap = pin.values.index(None)
    assert pin.times[gap - 1] == T0 + 4 and pin.times[gap + 1] == T0 + 6
    assert any("reboot" in n or "boot_id" in n for n in cs.notes)


def test_a_one_sample_peak_survives_reduction():
    n = 5000
    spike_at = 3217
    snaps = []
    cum = 0
    for i in range(n):
        cum += 100 if i != spike_at else 123_456
        snaps.append(snap(i, vm=dict(pgscan_kswapd=cum)))
    cs = build_charts(iter(snaps), max_buckets=64)
    k = series(cs, "reclaim", "kswapd scanned")
    assert k.reduced and len(k.times) <= 2 * 64
    assert max(v for v in k.values if v is not None) == 123_456.0
    assert k.values[k.times.index(T0 + spike_at)] == 123_456.0
    assert min(v for v in k.values if v is not None) == 100.0
    assert any("peaks kept" in x for x in cs.notes)
    # the memory stack keeps whole samples (one consistent row per point)
    mem = chart(cs, "memory")
    assert len({s.times for s in mem.series}) == 1


def test_an_iterator_in_chunks_gives_the_same_charts(rec, monkeypatch):
    a = build_charts(iter(rec))
    monkeypatch.setattr(rs, "CHUNK", 10_000)
    b = build_charts(list(rec))
    assert a.charts == b.charts
    assert rs.CHUNK == 10_000


def test_a_missing_source_says_why():
    snaps = [snap(i) for i in range(3)]
    snaps = [Snapshot(s.taken_at, s.monotonic, s.uptime_s, s.host,
                      {k: v for k, v in s.sources.items() if k != "meminfo"},
                      unavailable=(__import__("ksight.model.snapshot", fromlist=["Missing"])
                                   .Missing("meminfo", "permission denied"),))
             for s in snaps]
    cs = build_charts(snaps)
    m = chart(cs, "memory")
    assert m.series == () and "meminfo" in m.missing and "permission denied" in m.missing
    assert chart(cs, "cpu").missing and chart(cs, "processes").missing


def test_no_snapshot_at_all():
    cs = build_charts([])
    assert cs.start is None and cs.snapshots == 0
    assert all(c.missing for c in cs.charts)


# ---- the real capture: values equal the raw kernel text --------------------------------------

def _raw(name: str) -> str:
    import zstandard

    with open(CAP, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return t.extractfile(name).read().decode()


def _kb(text: str, key: str) -> int:
    return int(re.search(rf"^{re.escape(key)}:\s+(\d+) kB$", text, re.M).group(1))


def test_capture_memory_and_cpu_equal_the_raw_text():
    from ksight.sources import SYSTEM
    from ksight.store.capture import open_capture

    snaps = list(open_capture(str(CAP)).snapshots(processes=True, sockets=False,
                                                  sources=list(SYSTEM)))
    cs = build_charts(snaps)
    for k in (0, 1):
        text = _raw(f"000{k}/proc/meminfo")
        t = snaps[k].taken_at
        assert at(series(cs, "memory", "anon"), t) == _kb(text, "AnonPages") * 1024
        assert at(series(cs, "memory", "slab"), t) == _kb(text, "Slab") * 1024
        file_kb = _kb(text, "Active(file)") + _kb(text, "Inactive(file)")
        assert at(series(cs, "memory", "file cache (clean)"), t) == (file_kb - _kb(text, "Dirty")) * 1024
    # CPU: sum the cpuN lines of both readings and divide, as mpstat does (guest is in user)
    def cpus(text):
        rows = [list(map(int, ln.split()[1:])) for ln in text.splitlines()
                if re.match(r"cpu\d+ ", ln)]
        return [sum(col) for col in zip(*rows)]
    a, b = cpus(_raw("0000/proc/stat")), cpus(_raw("0001/proc/stat"))
    d = [y - x for x, y in zip(a, b)]
    total = sum(d[:8])
    usr = (d[0] - d[8]) / total * 100
    sys_ = d[2] / total * 100
    t1 = snaps[1].taken_at
    assert at(series(cs, "cpu", "usr"), t1) == pytest.approx(usr, abs=1e-9)
    assert at(series(cs, "cpu", "sys"), t1) == pytest.approx(sys_, abs=1e-9)
    # the processes: RSS from the raw statm (resident pages x 4096) of the top process
    top = chart(cs, "processes").series[0]
    pid = int(re.search(r"\((\d+)\)$", top.name).group(1))
    statm = _raw(f"0001/proc/{pid}/statm")
    assert top.values[-1] == int(statm.split()[1]) * 4096
    assert not math.isnan(top.peak)


def test_report_view_in_one_call_and_as_json(rec):
    import json

    from ksight.render.jsonable import jsonable
    from tests.browser.synth import episode

    ep = episode(T0 + 300, T0 + 320)
    v = rs.report_view(iter(rec), episodes=[ep], notes=["recorded by a test"])
    assert v.start == T0 and v.end == T0 + 599 and v.snapshots == 600
    assert v.episodes == (ep,) and v.notes[0] == "recorded by a test"
    doc = json.loads(json.dumps(jsonable(v)))
    mem = next(c for c in doc["charts"] if c["id"] == "memory")
    assert mem["series"][0]["name"] == "anon" and len(mem["series"][0]["times"]) == 600
    assert doc["episodes"][0]["rule"] == "memory.leak-suspect"


def test_a_process_missing_from_some_snapshots_is_a_gap():
    p = process(42, "bursty", 500, start_ticks=7)
    other = process(1, "init", 100, start_ticks=1)
    snaps = [snap(i, procs=[p, other] if i not in (3, 4) else [other]) for i in range(7)]
    s = series(build_charts(snaps), "processes", "bursty (42)")
    assert [v for v in s.values if v is not None] == [500 * 4096.0] * 5
    gap = s.values.index(None)
    assert s.times[gap] == T0 + 3 and s.times[gap + 1] == T0 + 5


def test_without_a_wall_clock_times_are_seconds_since_boot():
    from dataclasses import replace

    from ksight.render.report_html import to_html

    snaps = [replace(snap(i, vm=dict(pgpgin=100 * i)), taken_at=None) for i in range(4)]
    cs = build_charts(snaps)
    assert not cs.wall_clock and cs.start == 1000.0 and cs.end == 1003.0
    pin = series(cs, "paging", "page-in")
    assert pin.times == (1001.0, 1002.0, 1003.0) and pin.values == (100 * 1024.0,) * 3
    v = rs.report_view(snaps)
    assert "seconds since boot" in to_html(v)


def test_blocks_that_share_their_edge_give_the_same_charts(rec):
    from ksight.model.series import Series

    b = rs.ChartBuilder()
    for a in range(0, 599, 50):  # blocks [0..50], [50..100], ...: the edge snapshot twice
        b.observe(Series(rec[a:a + 51]))
    assert b.result().charts == build_charts(rec).charts
