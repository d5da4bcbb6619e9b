"""The series: per-interval deltas and rates, peaks, trends, and every kind of reset flagged.

Numbers here are hand arithmetic on counters the tests set, never the code's own output."""

from __future__ import annotations

import pytest

from ksight.model import HostInfo, Snapshot
from ksight.model.counters import UnknownCounter, cg, net, total, vm
from ksight.model.series import Series, make_counter, split
from ksight.sources.stat import CpuTimes, Stat
from ksight.sources.vmstat import Vmstat

ALLOCSTALL = vm("allocstall")
PSWPIN = vm("pswpin")


def snap(up, counters, *, mono=None, t=None, host=None, procs=None, stat=None):
    src = {"vmstat": Vmstat(dict(counters))}
    if stat is not None:
        src["stat"] = stat
    return Snapshot(taken_at=t, monotonic=mono, uptime_s=up, host=host or HostInfo(hostname="h"),
                    sources=src, processes=procs)


def test_burst_inside_a_long_window_is_seen_at_its_peak():
    # 600 s of quiet one snapshot every 5 s, with 500 stalls/s during one 5 s interval
    values, v = [], 0
    for i in range(121):
        values.append(v)
        v += 2500 if i == 60 else 0
    s = Series([snap(1000.0 + 5 * i, {"allocstall": x}) for i, x in enumerate(values)])
    cs = s.counter(ALLOCSTALL)
    assert cs.peak.rate == pytest.approx(500.0)
    assert cs.peak.interval == 60
    assert cs.peak.at == pytest.approx(305.0)
    assert cs.mean_rate == pytest.approx(2500 / 600)  # the old first-to-last average: ~4/s
    assert cs.total == 2500
    assert cs.sustained(400, 1) and not cs.sustained(400, 2)


def test_counter_going_back_is_a_reset_for_that_interval_only():
    s = Series([snap(10.0 + i, {"pswpin": x}) for i, x in enumerate([100, 110, 5, 25])])
    cs = s.counter(PSWPIN)
    assert cs.deltas == (10, None, 20)
    assert cs.resets == (1,)
    assert cs.total == 30
    assert cs.mean_rate == pytest.approx(15.0)  # 30 over the 2 s that have a delta


def test_absent_counter_is_absent_not_zero():
    s = Series([snap(10.0, {"pgfault": 1}), snap(11.0, {"pgfault": 2})])
    cs = s.counter(PSWPIN)
    assert not cs.present and cs.total is None and cs.peak is None and cs.mean_rate is None


def test_per_zone_counters_of_old_kernels_are_summed():
    s = Series([snap(10.0, {"allocstall_normal": 1, "allocstall_dma32": 2}),
                snap(12.0, {"allocstall_normal": 5, "allocstall_dma32": 6})])
    assert s.counter(ALLOCSTALL).total == 8


def test_clock_prefers_monotonic_then_uptime_then_wall():
    a, b = snap(50.0, {}, mono=10.0, t=100.0), snap(60.0, {}, mono=12.0, t=130.0)
    assert Series([a, b]).seconds == 2.0
    a, b = snap(50.0, {}, t=100.0), snap(60.0, {}, t=130.0)
    assert Series([a, b]).seconds == 10.0
    a, b = snap(None, {}, t=100.0), snap(None, {}, t=104.0)
    assert Series([a, b]).seconds == 4.0


def test_no_clock_gives_no_rate():
    s = Series([snap(None, {"pswpin": 0}), snap(None, {"pswpin": 100})])
    assert not s.has_clock
    cs = s.counter(PSWPIN)
    assert cs.total == 100 and cs.rates == (None,) and cs.peak is None
    # a step of 1e-10 s is no clock either: no rate of 10^12/s
    s = Series([snap(None, {"pswpin": 0}, mono=1.0), snap(None, {"pswpin": 100}, mono=1.0 + 1e-10)])
    assert not s.has_clock and s.counter(PSWPIN).peak is None


def test_reboot_in_the_middle_splits_the_series():
    snaps = [snap(5000.0, {"pswpin": 900}), snap(5001.0, {"pswpin": 950}),
             snap(3.0, {"pswpin": 0}), snap(4.0, {"pswpin": 7})]
    segs, breaks = split(snaps)
    assert [len(x) for x in segs] == [2, 2]
    assert breaks[0].after == 1 and breaks[0].kind == "reboot"
    s = Series.of(snaps)
    assert s.dropped == 2 and len(s.breaks) == 1
    assert s.counter(PSWPIN).total == 7  # only the part after the reboot


def test_boot_id_and_hostname_changes_split_too():
    h1, h2 = HostInfo(hostname="a", boot_id="x"), HostInfo(hostname="a", boot_id="y")
    _, br = split([snap(10.0, {}, host=h1), snap(11.0, {}, host=h2)])
    assert br and br[0].kind == "reboot"
    _, br = split([snap(10.0, {}, host=HostInfo(hostname="a")), snap(11.0, {}, host=HostInfo(hostname="b"))])
    assert br and br[0].kind == "host"


def _stat(cpus: dict[int, int]):
    times = {n: CpuTimes(user_ticks=u, nice_ticks=0, system_ticks=0, idle_ticks=0) for n, u in cpus.items()}
    return Stat(cpu_total=CpuTimes(user_ticks=sum(cpus.values()), nice_ticks=0, system_ticks=0, idle_ticks=0),
                cpus=times)


def test_cpu_going_offline_flags_per_cpu_sums():
    snaps = [snap(10.0, {}, stat=_stat({0: 100, 1: 100})),
             snap(11.0, {}, stat=_stat({0: 150, 1: 120})),
             snap(12.0, {}, stat=_stat({0: 300})),  # cpu1 went offline: the sum still rose
             snap(13.0, {}, stat=_stat({0: 350}))]
    s = Series(snaps)
    total_user = s.derived_counter("user", lambda x: x.get("stat").cpu_total.user_ticks, per_cpu=True)
    assert total_user.deltas == (70, None, 50) and total_user.resets == (1,)
    per_cpu = s.entity_counters("cpus", lambda c: c.user_ticks)
    assert per_cpu["cpu0"].deltas == (50, None, 50)


class _P:
    def __init__(self, pid, start, rss):
        self.pid = pid
        self.stat = type("S", (), {"starttime_ticks": start})()
        self.rss = rss


def test_reused_pid_is_two_processes():
    # pid 42 exits after the second snapshot and a new process gets pid 42 (another start time)
    snaps = [snap(10.0, {}, procs={42: _P(42, 1000, 10)}),
             snap(11.0, {}, procs={42: _P(42, 1000, 20)}),
             snap(12.0, {}, procs={42: _P(42, 1150, 500)}),
             snap(13.0, {}, procs={42: _P(42, 1150, 600)})]
    s = Series(snaps)
    gauges = s.entity_gauges("processes", lambda p: p.rss)
    assert set(gauges) == {(42, 1000), (42, 1150)}
    assert gauges[(42, 1000)].values == (10, 20, None, None)
    assert gauges[(42, 1150)].trend().growth == 100  # not 590: the first process is not mixed in
    counters = s.entity_counters("processes", lambda p: p.rss)
    assert counters[(42, 1000)].deltas == (10, None, None)


def test_trend_of_steady_growth_and_of_noise():
    s = Series([snap(100.0 + i, {}) for i in range(11)])
    grow = s.gauge("rss", lambda x: 1000 + 50 * (x.uptime_s - 100))
    t = grow.trend()
    assert t.slope_per_s == pytest.approx(50.0) and t.r2 == pytest.approx(1.0) and t.steady_growth
    flat = s.gauge("rss", lambda x: 1000 + (7 if int(x.uptime_s) % 2 else -7))
    assert not flat.trend().steady_growth


def test_make_counter_edges():
    cs = make_counter("x", (None, 5, 9), (1.0, 2.0))
    assert cs.deltas == (None, 4) and cs.rates == (None, 2.0)


def test_moved_only_keeps_the_entities_whose_counter_moved():
    # 1: never moves; 2: moves; 3: seen once; 4: a reset (goes back); 5: None then equal values
    procs = [{1: _P(1, 10, 5), 2: _P(2, 20, 5), 4: _P(4, 40, 9), 5: _P(5, 50, None)},
             {1: _P(1, 10, 5), 2: _P(2, 20, 5), 3: _P(3, 30, 1), 4: _P(4, 40, 2), 5: _P(5, 50, 7)},
             {1: _P(1, 10, 5), 2: _P(2, 20, 8), 4: _P(4, 40, 3), 5: _P(5, 50, 7)}]
    s = Series([snap(10.0 + i, {}, procs=p) for i, p in enumerate(procs)])
    every = s.entity_counters("processes", lambda p: p.rss)
    moved = s.entity_counters("processes", lambda p: p.rss, moved_only=True)
    assert set(every) == {(1, 10), (2, 20), (4, 40), (5, 50)}
    assert set(moved) == {(2, 20), (4, 40)}
    for k in moved:
        assert moved[k] == every[k]  # the same series, only fewer of them
    assert moved[(4, 40)].resets == (0,)
    # what is left out has no delta but 0 and no reset
    for k in set(every) - set(moved):
        assert not every[k].total and not every[k].resets


def test_misspelt_counters_fail_when_named():
    with pytest.raises(UnknownCounter):
        vm("pswpn")
    with pytest.raises(UnknownCounter):
        vm("workingset_refaults_file")  # the kernel's name has no s
    with pytest.raises(UnknownCounter):
        net("TcpExt", "ListenOverflow")
    with pytest.raises(UnknownCounter):
        cg("workingset_refault_files")
    # names kernels really printed, old and new, are accepted
    vm("pgsteal")  # pgsteal_<zone> before 3.4
    vm("workingset_refault")  # 3.15 - 5.8
    net("TcpExt", "ListenOverflows")
    assert total("x", vm("pswpin"), vm("pswpout")).read(Vmstat({"pswpin": 2, "pswpout": 3})) == 5


def test_disks_interfaces_and_cpus_are_keyed_by_name():
    from ksight.sources.diskstats import parse as parse_disk
    from ksight.sources.netdev import parse as parse_net
    from tests.conftest import corpus_text

    d0 = parse_disk(corpus_text("node_exporter", "proc", "diskstats"))
    n0 = parse_net(corpus_text("procfs", "proc", "net", "dev"))
    name = next(iter(d0.devices))
    a = Snapshot(None, None, 10.0, HostInfo(), {"diskstats": d0, "netdev": n0})
    b = Snapshot(None, None, 12.0, HostInfo(), {"diskstats": d0, "netdev": n0})
    s = Series([a, b])
    disks = s.entity_counters("disks", lambda d: d.sectors_written)
    assert set(disks) == set(d0.devices) and disks[name].deltas == (0,)
    assert set(s.entities("interfaces")[0]) == set(n0.interfaces)
