"""mpstat's percentages from two /proc/stat readings: real first readings from the corpora, second
readings with known ticks added, expected values computed by hand (in the comments)."""

from __future__ import annotations

import pytest

from ksight.model.cpu import cpulist, mpstat_cpu, mpstat_interval, peak
from ksight.sources import stat
from tests.conftest import corpus_text
from tests.model.cpu_text import bump, spread


def _pair(base: str, deltas, **kw):
    return stat.parse(base), stat.parse(bump(base, deltas, **kw))


def test_hand_computed_per_cpu_and_all():
    base = corpus_text("procfs", "proc", "stat")  # 8 CPUs, cpu0 44490 19 21045 1087069 ...
    d = spread(8, {"idle": 100})
    d[0] = {"user": 30, "system": 50, "idle": 10, "iowait": 5, "softirq": 5}  # 100 ticks
    a, b = _pair(base, d)
    m = mpstat_interval(a, b)
    c0 = m.cpus[0]
    # cpu0: 30/100 usr, 50 sys, 5 iowait, 5 soft, 10 idle
    assert (c0.usr, c0.sys, c0.iowait, c0.soft, c0.idle, c0.ticks) == (30.0, 50.0, 5.0, 5.0, 10.0, 100)
    assert m.cpus[5].idle == 100.0 and m.cpus[5].ticks == 100
    # all: 800 ticks; usr 30/800 = 3.75, sys 50/800 = 6.25, iowait 5/800 = 0.625,
    # soft 0.625, idle (10 + 7*100)/800 = 88.75
    al = m.all
    assert al.ticks == 800
    assert al.usr == pytest.approx(3.75) and al.sys == pytest.approx(6.25)
    assert al.iowait == pytest.approx(0.625) and al.soft == pytest.approx(0.625)
    assert al.idle == pytest.approx(88.75)
    assert sum(al.get(f) for f in ("usr", "nice", "sys", "iowait", "irq", "soft", "steal",
                                   "guest", "gnice", "idle")) == pytest.approx(100.0)


def test_guest_is_taken_out_of_user():
    base = corpus_text("node_exporter", "proc", "stat")  # prints guest and guest_nice columns
    d = spread(8, {"idle": 100})
    # cpu2: user +60 of which guest 40, nice +10 of which guest_nice 10, sys +10, idle +20;
    # interval = 60 + 10 + 10 + 20 = 100 (guest is inside user): usr 20, guest 40, nice 0,
    # gnice 10, sys 10, idle 20
    d[2] = {"user": 60, "guest": 40, "nice": 10, "guest_nice": 10, "system": 10, "idle": 20}
    a, b = _pair(base, d)
    c = mpstat_interval(a, b).cpus[2]
    assert (c.usr, c.guest, c.nice, c.gnice, c.sys, c.idle, c.ticks) == (20.0, 40.0, 0.0, 10.0,
                                                                        10.0, 20.0, 100)


def test_guest_moving_more_than_user_widens_the_interval():
    base = corpus_text("node_exporter", "proc", "stat")
    # cpu1: user +10, guest +15 (the race mpstat corrects): user - guest went back by 5, so
    # the interval is 10 + idle 85 + shift 5 = 100; %usr 0 (went back), %guest 15
    d = {1: {"user": 10, "guest": 15, "idle": 85}}
    a, b = _pair(base, d)
    c = mpstat_interval(a, b).cpus[1]
    assert c.ticks == 100 and c.usr == 0.0 and c.guest == 15.0 and c.idle == 85.0


def test_iowait_going_back_while_idle_rises_counts_as_idle():
    base = corpus_text("procfs", "proc", "stat")  # cpu2 iowait 441
    # NO_HZ: iowait went back by 3 while idle rose by 100: mpstat takes the new iowait as the
    # earlier one (delta 0): interval 100, idle 100 %, iowait 0 %
    a, b = _pair(base, {2: {"idle": 100, "iowait": -3}})
    c = mpstat_interval(a, b).cpus[2]
    assert (c.ticks, c.idle, c.iowait) == (100, 100.0, 0.0)


def test_idle_restarting_from_zero_cpu_back_online():
    base = corpus_text("procfs", "proc", "stat")  # cpu3 idle 1113230
    # idle restarted at 50 (CPU back online); mpstat sets the earlier idle to 0: the interval is
    # user 10 + idle 50 = 60: usr 16.67 %, idle 83.33 %
    a, b = _pair(base, {3: {"user": 10}}, set_={3: {"idle": 50}})
    c = mpstat_interval(a, b).cpus[3]
    assert c.ticks == 60
    assert c.usr == pytest.approx(100 * 10 / 60) and c.idle == pytest.approx(100 * 50 / 60)


def test_cpu_going_offline_and_coming_back():
    base = corpus_text("procfs", "proc", "stat")
    a, b = _pair(base, spread(8, {"user": 50, "idle": 50}), drop=(7,))
    m = mpstat_interval(a, b)
    assert m.offline == (7,) and 7 not in m.cpus
    # the offline CPU adds nothing: all = 7 CPUs x 100 ticks, usr 350/700 = 50 %
    assert m.all.ticks == 700 and m.all.usr == pytest.approx(50.0)
    # and back: absent in the earlier reading, left out of "all" for that interval
    m2 = mpstat_interval(b, stat.parse(bump(base, spread(8, {"user": 100, "idle": 100}))))
    assert m2.back_online == (7,) and 7 not in m2.cpus
    # cpus 0-6 moved user +50, idle +50 from b: 7 x 100 ticks
    assert m2.all.ticks == 700 and m2.all.usr == pytest.approx(50.0)


def test_tickless_cpu_is_all_idle():
    base = corpus_text("procfs", "proc", "stat")
    a = stat.parse(base)
    c = mpstat_interval(a, a).cpus[4]
    assert c.ticks == 0 and c.idle == 100.0 and c.usr == 0.0


def test_uniprocessor_uses_the_cpu_line():
    text = "cpu  100 0 50 1000 0 0 0 0 0 0\ncpu0 100 0 50 1000 0 0 0 0 0 0\nctxt 1\n"
    later = "cpu  130 0 60 1060 0 0 0 0 0 0\ncpu0 130 0 60 1060 0 0 0 0 0 0\nctxt 2\n"
    m = mpstat_interval(stat.parse(text), stat.parse(later))
    # 30 + 10 + 60 = 100 ticks: 30 % usr, 10 % sys, 60 % idle
    assert (m.all.usr, m.all.sys, m.all.idle) == (30.0, 10.0, 60.0)


def test_old_kernel_four_columns():
    # 2.4 prints user nice system idle only: the missing columns are 0 (as mpstat reads them)
    a = stat.parse("cpu  10 0 10 80\ncpu0 10 0 10 80\ncpu1 0 0 0 0\n")
    b = stat.parse("cpu  30 0 20 150\ncpu0 20 0 15 165\ncpu1 10 0 5 65\n")
    c0 = mpstat_interval(a, b).cpus[0]
    assert c0.ticks == 100 and (c0.usr, c0.sys, c0.idle, c0.iowait) == (10.0, 5.0, 85.0, 0.0)


def test_mpstat_cpu_direct():
    a = stat.CpuTimes(100, 0, 100, 800, 0, 0, 0, 0, 0, 0)
    b = stat.CpuTimes(150, 0, 125, 825, 0, 0, 0, 0, 0, 0)
    p = mpstat_cpu(a, b, "0")
    assert (p.usr, p.sys, p.idle, p.busy) == (50.0, 25.0, 25.0, 75.0)


def test_cpulist():
    assert cpulist([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert cpulist([3]) == "3" and cpulist([]) == ""


def test_peak_per_cpu_and_all():
    from types import SimpleNamespace as NS

    base = corpus_text("procfs", "proc", "stat")
    d = spread(8, {"idle": 100})
    d[3] = {"softirq": 100}
    a, b = _pair(base, d)
    ivs = [NS(index=0, mpstat=None, all=None, cpus=None)]
    m = mpstat_interval(a, b)
    ivs = [NS(index=0, all=m.all, cpus=m.cpus)]
    p = peak(ivs, "soft", all_at=15, cpu_at=30)
    # one CPU at 100 % softirq of 8: 12.5 % in total
    assert p.all_pct == pytest.approx(12.5) and p.cpu == 3 and p.cpu_pct == 100.0
    assert p.intervals_all == 0 and p.intervals_cpu == 1 and p.cpus_over == (3,)


def test_two_real_readings_of_this_machine_by_hand():
    """Two real /proc/stat readings 0.3 s apart: every percentage equals the plain formula
    (field delta / sum of the eight time deltas, guest taken out of user), computed here
    independently, as long as no counter went back (then mpstat's corrections apply)."""
    import time

    with open("/proc/stat") as f:
        t1 = f.read()
    time.sleep(0.3)
    with open("/proc/stat") as f:
        t2 = f.read()

    def rows(text):
        out = {}
        for line in text.splitlines():
            if line.startswith("cpu"):
                k, *v = line.split()
                out[k] = [int(x) for x in v] + [0] * (10 - len(v))
        return out

    r1, r2 = rows(t1), rows(t2)
    m = mpstat_interval(stat.parse(t1), stat.parse(t2))
    checked = 0
    for name, a in r1.items():
        if name == "cpu" or name not in r2:
            continue
        b = r2[name]
        d = [y - x for x, y in zip(a, b)]
        if any(x < 0 for x in d) or (d[0] - d[8]) < 0 or (d[1] - d[9]) < 0:
            continue  # a counter went back: mpstat's corrections, tested above
        total = sum(d[:8])
        if total == 0:
            continue
        hand = {"usr": (d[0] - d[8]) / total * 100, "nice": (d[1] - d[9]) / total * 100,
                "sys": d[2] / total * 100, "idle": d[3] / total * 100,
                "iowait": d[4] / total * 100, "irq": d[5] / total * 100,
                "soft": d[6] / total * 100, "steal": d[7] / total * 100,
                "guest": d[8] / total * 100, "gnice": d[9] / total * 100}
        ours = m.cpus[int(name[3:])]
        for k, v in hand.items():
            assert ours.get(k) == pytest.approx(v), (name, k, ours, hand)
        checked += 1
    assert checked >= 1


def test_top_processes_by_hand_sleepers_left_out():
    """% of one CPU per process in the interval (ticks / clk_tck / seconds), as pidstat; the
    processes whose times did not move rank nowhere; a reused PID is another process."""
    from types import SimpleNamespace as NS

    from ksight.model import HostInfo, Snapshot
    from ksight.model.cpu import top_processes
    from ksight.model.series import Series

    def proc(pid, start, ut, st, state="S", comm=None):
        return NS(pid=pid, comm=comm or f"p{pid}", stat=NS(starttime_ticks=start, utime_ticks=ut,
                                                          stime_ticks=st, state=state))

    def snap(up, procs):
        return Snapshot(taken_at=None, monotonic=None, uptime_s=up,
                        host=HostInfo(hostname="h", clk_tck=100), sources={},
                        processes={p.pid: p for p in procs})

    sleepers = [proc(100 + k, 5, 7, 3) for k in range(200)]
    a = snap(10.0, [proc(1, 1, 100, 50), proc(2, 2, 0, 0), proc(3, 3, 10, 10), proc(4, 4, 500, 0)]
             + sleepers)
    b = snap(12.0, [proc(1, 1, 300, 50), proc(2, 2, 0, 40, "R"), proc(3, 3, 10, 10),
                    proc(4, 9, 520, 0)] + sleepers)  # pid 4 reused: not a 10% user
    by_u, by_s = top_processes(Series([a, b]), 0)
    # pid 1: 200 ticks in 2 s at 100 Hz = 100% user, 0% system; pid 2: 40 ticks = 20% system
    assert [(r.pid, r.usr_pct, r.sys_pct) for r in by_u] == [(1, 100.0, 0.0)]
    assert [(r.pid, r.usr_pct, r.sys_pct, r.state) for r in by_s] == [(2, 0.0, 20.0, "R")]
