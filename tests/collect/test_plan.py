"""Typed needs become one plan, and the collector reads exactly that plan (no more, no less)."""

from __future__ import annotations

import pytest

from ksight.collect.collector import Collector
from ksight.collect.plan import Needs, Plan
from ksight.collect.snapshot import take
from ksight.diagnose.engine import plan_for
from ksight.model.counters import net, vm
from tests.conftest import corpus_root


def test_plan_is_the_union_of_needs():
    a = Needs(sources=("meminfo",), counters=(vm("pswpin"),), sysctls=("vm.swappiness",))
    b = Needs(uses=("zoneinfo",), counters=(net("TcpExt", "ListenOverflows"),),
              processes=("stat", "status"), smaps_top=5, sockets=True)
    p = Plan.of([a, b])
    assert set(p.sources) == {"meminfo", "vmstat", "sysctl", "zoneinfo", "netstat", "uptime"}
    assert p.processes[:2] == ("stat", "status") and "sockets" in p.processes
    assert p.smaps_top == 5 and p.sockets


def test_unknown_parts_are_refused():
    with pytest.raises(ValueError):
        Needs(processes=("stats",))
    with pytest.raises(ValueError):
        Needs(cgroup_files=("memory.stat",))


def test_page_cache_check_never_scans_processes_or_sockets():
    p = plan_for(["pagecache"])
    assert p.processes == () and not p.sockets and p.smaps_top == 0
    assert "vmstat" in p.sources and "slabinfo" not in p.sources and "vmallocinfo" not in p.sources


def test_take_reads_what_the_plan_says_on_a_real_tree():
    root = corpus_root("procfs")
    plan = Plan.of([Needs(sources=("meminfo", "loadavg"), processes=("stat", "status"), smaps_top=1)])
    snap = take(root, plan=plan)
    assert set(snap.sources) <= {"meminfo", "loadavg", "uptime"}
    assert "vmstat" not in snap.sources
    assert snap.processes, snap.unavailable
    p = snap.processes[26231]
    assert p.stat is not None and p.status is not None and p.statm is None
    # only the largest by RSS is asked: 26235 (VmRSS 42652 kB) has no smaps_rollup in the
    # corpus, 26231 (VmRSS 6716 kB) has one but is second: nobody gets one
    assert not [q for q in snap.processes.values() if q.smaps_rollup is not None]
    assert snap.sockets is None
    plan2 = Plan.of([Needs(processes=("stat", "status"), smaps_top=2)])
    snap2 = take(root, plan=plan2)
    got = {pid: q.smaps_rollup.rss_kb for pid, q in snap2.processes.items() if q.smaps_rollup}
    assert got == {26231: 29948}  # proc/26231/smaps_rollup "Rss: 29948 kB"


def test_no_processes_unless_planned():
    snap = take(corpus_root("procfs"), plan=Plan.of([Needs(sources=("meminfo",))]))
    assert snap.processes is None and snap.sockets is None


def test_capture_collector_replays_every_snapshot(tmp_path):
    from tests.conftest import FIXTURES

    col = Collector.open(str(FIXTURES / "captures" / "vm-6.18.tar.zst"))
    assert not col.live and col.count() >= 2
    plan = plan_for(["pagecache"])
    snaps = col.window(plan, seconds=1, step=1)
    assert len(snaps) == col.count()
    assert [s.uptime_s for s in snaps] == sorted(s.uptime_s for s in snaps)
    last = col.one(plan, -1)
    assert last.uptime_s == snaps[-1].uptime_s
    with pytest.raises(Exception):
        col.one(plan, 99)


def test_a_plan_for_some_pids_reads_only_those():
    root = corpus_root("procfs")
    snap = take(root, plan=Plan.of([Needs(processes=("stat",), pids=(26231,))]))
    assert set(snap.processes) == {26231}
    # a need for every process (or for sockets, whose owners may be anyone) widens it again
    p = Plan.of([Needs(processes=("stat",), pids=(26231,)), Needs(processes=("status",))])
    assert p.pids is None
    assert Plan.of([Needs(processes=("stat",), pids=(1,)), Needs(sockets=True)]).pids is None
    assert Plan.of([Needs(processes=("stat",), pids=(1,)), Needs(processes=("cgroup",), pids=(2,))]).pids == (1, 2)


def test_a_source_built_on_the_process_table_does_not_read_it_again():
    # process_maps picks the processes that grow from the scan's status (VmSize, VmRSS), not by
    # reading every proc/PID/statm a second time
    from ksight.fs import LiveRoot

    class Counting(LiveRoot):
        statm = 0

        def read_bytes(self, path, **kw):
            if path.endswith("/statm"):
                Counting.statm += 1
            return super().read_bytes(path, **kw)

        def text_reader(self, *, one_shot=False):
            return self.read_text  # every read through read_bytes, so it is counted

    plan = Plan.of([Needs(sources=("process_maps",), processes=("stat", "status"))])
    snap = take(Counting(), plan=plan)
    assert snap.processes and "process_maps" in snap.sources
    assert Counting.statm == 0
    Counting.statm = 0
    take(Counting(), plan=Plan.of([Needs(sources=("process_maps",))]))  # no table: statm it is
    assert Counting.statm > 0
