"""find_episodes: rules over a recorded range, window by window, merged into episodes.

The series are built here, by hand, on real kernel text: snapshot 1 of the checked-in capture
tests/fixtures/captures/vm-6.18.tar.zst (a real 6.18 VM's /proc and /sys, parsed), with the
counters we inject moved second by second. Every expected number (the burst's start, end and
rate) is the one written into the series below, not one ksight computed.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import pytest

from ksight.record.episodes import find_episodes, merge

CAPTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "captures", "vm-6.18.tar.zst")
T0 = 1_790_000_000.0
RECLAIM = ["pagecache.direct-reclaim"]


@functools.lru_cache(maxsize=1)
def base():
    from ksight.collect.collector import Collector
    from ksight.diagnose.engine import plan_for

    s = Collector.open(CAPTURE).one(plan_for(None), -1)
    vm = dict(s.get("vmstat").counters)
    # the capture's VM was writing (dirty at the threshold) and had OOM kills since boot: a
    # quiet base has neither
    vm.update(nr_dirty=100, nr_writeback=0, oom_kill=0)
    srcs = dict(s.sources)
    srcs["vmstat"] = dataclasses.replace(s.get("vmstat"), counters=vm)
    srcs.pop("netns_counters", None)
    return dataclasses.replace(s, sources=srcs, sockets=None, monotonic=None)


def series(seconds: int, *, stalls=None, leak=None, sys=None, reboot_at: int | None = None,
           drop: tuple[str, ...] = ()):
    """One snapshot a second. stalls(t) -> allocation stalls in the second ending at t;
    leak(t) -> kB of anonymous memory the largest process has grown by at t; sys(t) -> system
    ticks of each CPU in that second (of 100; default 2, user 5, idle the rest)."""
    b = base()
    vm0 = b.get("vmstat")
    st0 = b.get("stat")
    procs0 = b.processes
    pid = max(procs0, key=lambda p: procs0[p].status.rss_anon_kb or 0)
    vm = dict(vm0.counters)
    cpu = {n: [c.user_ticks, c.system_ticks, c.idle_ticks] for n, c in st0.cpus.items()}
    up0 = b.uptime_s
    out = []
    for t in range(seconds):
        if t:
            n = stalls(t) if stalls else 0
            vm["allocstall_normal"] = vm.get("allocstall_normal", 0) + n
            vm["pgscan_direct"] = vm.get("pgscan_direct", 0) + 100 * n
            vm["pgsteal_direct"] = vm.get("pgsteal_direct", 0) + 90 * n
            busy = sys(t) if sys else 2
            for c in cpu.values():
                c[0] += 5
                c[1] += busy
                c[2] += 95 - busy
        cpus = {n: dataclasses.replace(st0.cpus[n], user_ticks=c[0], system_ticks=c[1],
                                       idle_ticks=c[2]) for n, c in cpu.items()}
        tot = [sum(c[i] for c in cpu.values()) for i in range(3)]
        stat = dataclasses.replace(st0, cpus=cpus, cpu_total=dataclasses.replace(
            st0.cpu_total, user_ticks=tot[0], system_ticks=tot[1], idle_ticks=tot[2]))
        srcs = dict(b.sources)
        srcs["vmstat"] = dataclasses.replace(vm0, counters=dict(vm))
        srcs["stat"] = stat
        for d in drop:
            srcs.pop(d, None)
        procs = procs0
        grown = leak(t) if leak else 0
        if grown:
            p = procs0[pid]
            st = p.status
            procs = dict(procs0)
            procs[pid] = dataclasses.replace(p, status=dataclasses.replace(
                st, rss_anon_kb=st.rss_anon_kb + grown, vm_rss_kb=st.vm_rss_kb + grown,
                vm_size_kb=st.vm_size_kb + grown))
        up = up0 + t
        if reboot_at is not None and t >= reboot_at:
            up = 100.0 + (t - reboot_at)  # uptime went back: the machine rebooted
        out.append(dataclasses.replace(b, taken_at=T0 + t, uptime_s=up, sources=srcs,
                                       processes=procs))
    return out, pid


def burst(start: int, length: int, rate: int):
    return lambda t: rate if start < t <= start + length else 0


def _allocstall_peak(f) -> float:
    """The rule's peak allocation-stall rate (stalls/s in its worst interval)."""
    ev = [e for e in f.evidence if e.name == "allocstall" and e.unit == "stalls/s"]
    assert len(ev) == 1, [(e.name, e.unit) for e in f.evidence]
    return ev[0].value


@pytest.mark.parametrize("exact", [False, True], ids=["screened", "exact"])
def test_a_burst_in_a_long_window_is_one_episode_at_its_peak(exact):
    # 5 s of 200 stalls/s (the seconds ending at 605..609) inside 20 minutes of quiet
    snaps, _ = series(1200, stalls=burst(604, 5, 200))
    rep = find_episodes(snaps, rules=RECLAIM, window_seconds=60, exact=exact)
    assert [e.rule for e in rep.episodes] == RECLAIM
    e = rep.episodes[0]
    assert e.subject is None and e.severity == "critical"  # 200/s >= the 100/s critical line
    # the window holding the burst: [600, 660] s after T0
    assert e.start <= T0 + 604 and e.end >= T0 + 609
    assert e.end - e.start <= 60 + 1e-6 and e.windows == 1
    assert e.start <= e.peak_at <= e.end
    assert _allocstall_peak(e.peak) == 200
    total = {x.name: x.value for x in e.peak.evidence}["allocstall in the window"]
    assert total == 5 * 200  # every stall of the burst is inside the episode's window
    assert rep.samples == 1200 and rep.start == T0 and rep.end == T0 + 1199


def test_a_short_burst_the_coarse_pass_averages_away_is_still_found():
    # 2 s of 30 stalls/s: over the coarse pass's 10 s intervals that is 6/s, under every
    # threshold; the full-resolution screen of the rule's declared counters must catch it
    snaps, _ = series(600, stalls=burst(300, 2, 30))
    rep = find_episodes(snaps, rules=RECLAIM, window_seconds=60)
    assert len(rep.episodes) == 1, rep.episodes
    assert _allocstall_peak(rep.episodes[0].peak) == 30
    assert rep.windows_fine < rep.windows  # only around the burst


def test_two_bursts_separated_by_quiet_are_two_episodes():
    snaps, _ = series(1200, stalls=lambda t: 200 if 130 < t <= 135 or 900 < t <= 905 else 0)
    rep = find_episodes(snaps, rules=RECLAIM, window_seconds=60)
    eps = rep.episodes
    assert len(eps) == 2, eps
    assert eps[0].start <= T0 + 131 <= eps[0].end < T0 + 900
    assert eps[1].start <= T0 + 901 <= eps[1].end


def test_a_burst_across_two_windows_is_one_episode():
    # 40 s of stalls from 100 s to 140 s: windows [60,120] and [120,180] both fire
    snaps, _ = series(600, stalls=burst(100, 40, 50))
    rep = find_episodes(snaps, rules=RECLAIM, window_seconds=60)
    assert len(rep.episodes) == 1
    e = rep.episodes[0]
    assert e.windows == 2 and e.start == T0 + 60 and e.end == T0 + 180


def test_a_subject_level_episode_keeps_its_subject():
    # the largest process grows 4 MiB/s of anonymous memory from 200 s to 440 s
    snaps, pid = series(900, leak=lambda t: 4096 * max(0, min(t, 440) - 200))
    rep = find_episodes(snaps, areas=["memory"], rules=["memory.leak-suspect"], window_seconds=60)
    eps = [e for e in rep.episodes if e.rule == "memory.leak-suspect"]
    assert len(eps) == 1, rep.episodes
    e = eps[0]
    assert e.subject is not None and e.subject.pid == pid
    assert e.subject.comm == base().processes[pid].comm
    assert T0 + 180 <= e.start <= T0 + 240 and T0 + 420 <= e.end <= T0 + 480
    ev = {x.name: x.value for x in e.peak.evidence}
    # the growth in the episode's worst window is what the series above put in that window
    we = e.peak_at - T0
    assert ev["RssAnon+VmSwap growth"] == 4096 * (min(we, 440) - max(we - 60, 200))


def test_a_healthy_range_yields_no_episode():
    snaps, _ = series(600)
    rep = find_episodes(snaps, window_seconds=60)
    assert rep.episodes == [], [(e.rule, e.peak.title) for e in rep.episodes]
    assert rep.rules_run > 0 and rep.windows == 10


def test_rules_that_cannot_look_are_reported_with_the_reason():
    snaps, _ = series(300, drop=("vmstat",))
    rep = find_episodes(snaps, areas=["pagecache"], window_seconds=60)
    why = {n.rule: n.reason for n in rep.not_evaluated}
    assert "pagecache.direct-reclaim" in why and "vmstat" in why["pagecache.direct-reclaim"]
    assert rep.verdict in ("unknown", "incomplete") and rep.exit_status() == 3


def test_partial_when_a_source_is_missing_in_part_of_the_range():
    a, _ = series(300)
    b, _ = series(300, drop=("vmstat",))
    snaps = a[:150] + b[150:]
    rep = find_episodes(snaps, rules=RECLAIM, window_seconds=60)
    assert not rep.not_evaluated
    assert [p.rule for p in rep.partial] == RECLAIM
    assert "vmstat" in rep.partial[0].reason


def test_a_reboot_cuts_the_windows_and_episodes_after_it_are_found():
    snaps, _ = series(900, stalls=burst(700, 5, 200), reboot_at=400)
    rep = find_episodes(snaps, rules=RECLAIM, window_seconds=60)
    assert [b["kind"] for b in rep.breaks] == ["reboot"]
    assert len(rep.episodes) == 1 and rep.episodes[0].start <= T0 + 701 <= rep.episodes[0].end


def test_no_samples_is_unknown_not_a_traceback():
    rep = find_episodes(iter(()), window_seconds=60)
    assert rep.samples == 0 and rep.episodes == [] and rep.verdict == "unknown"
    assert rep.not_evaluated  # every rule, with the reason


def test_merge_gives_an_episode_its_bundle():
    snaps, _ = series(600, stalls=burst(300, 5, 200))
    rep = find_episodes(snaps, rules=RECLAIM, window_seconds=60,
                        bundles=[{"rule": "pagecache.direct-reclaim", "subject": None,
                                  "at": T0 + 310, "path": "/b/1"},
                                 {"rule": "pagecache.direct-reclaim", "subject": None,
                                  "at": T0 + 5000, "path": "/b/far"}])
    assert [e.bundle for e in rep.episodes] == ["/b/1"]
    assert merge([]) == []


def test_a_gap_in_the_recording_separates_episodes_and_keeps_their_times():
    # 10 minutes, then the recorder was off for 2 hours, then 10 minutes: a burst in each part
    a, _ = series(600, stalls=burst(300, 5, 200))
    b, _ = series(600, stalls=burst(300, 5, 200))
    gap = 7200.0
    later = [dataclasses.replace(s, taken_at=s.taken_at + gap, uptime_s=s.uptime_s + gap) for s in b]
    # counters after the gap continue from where they were (same boot): shift them up
    last = a[-1].get("vmstat").counters
    later = [dataclasses.replace(s, sources={**s.sources, "vmstat": dataclasses.replace(
        s.get("vmstat"), counters={k: v + last.get(k, 0) for k, v in s.get("vmstat").counters.items()})})
        for s in later]
    rep = find_episodes(a + later, rules=RECLAIM, window_seconds=60)
    starts = [e.start - T0 for e in rep.episodes]
    assert len(starts) == 2, rep.episodes
    assert starts[0] <= 301 <= rep.episodes[0].end - T0
    assert starts[1] <= gap + 301 <= rep.episodes[1].end - T0
    assert rep.samples == 1200 and not rep.breaks


def test_a_subject_with_no_field_is_the_machine():
    from ksight.diagnose.finding import Evidence, Finding, Subject

    def f(sub):
        return Finding("tcp.retransmission-rate", "tcp", "warning", "t",
                       (Evidence("x", 1, "", "/proc/net/snmp"),), "e", (), sub)

    eps = merge([(0, T0, T0 + 60, f(Subject())), (1, T0 + 60, T0 + 120, f(None))])
    assert len(eps) == 1 and eps[0].subject is None and eps[0].windows == 2


def test_a_short_cpu_burst_the_coarse_pass_misses_is_found_by_the_tick_screen():
    # 4 s of 95 % system time on every CPU: over the coarse pass's 10 s intervals that is one
    # interval at ~39 %, and cpu.high-system wants two; at full resolution it is four at 95 %
    snaps, _ = series(600, sys=lambda t: 95 if 300 < t <= 304 else 2)
    rep = find_episodes(snaps, areas=["cpu"], rules=["cpu.high-system"], window_seconds=60)
    assert [e.rule for e in rep.episodes] == ["cpu.high-system"], rep.episodes
    e = rep.episodes[0]
    assert e.start <= T0 + 301 and e.end >= T0 + 304 and e.windows == 1
    ev = {x.name: x.value for x in e.peak.evidence}
    peak = next(v for k, v in ev.items() if k.startswith("%sys (all CPUs"))
    assert peak == pytest.approx(95.0)  # 95 of 100 ticks, as written above
