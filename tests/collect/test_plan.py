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


# ---- conditional reads (Needs.uses_when) ----------------------------------------------------
VMALLOCINFO = ("0xffffc90000000000-0xffffc90000005000   20480 irq_init_percpu_irqstack+0xb0/0x100 "
               "pages=4 vmalloc N0=4\n"
               "0xffffc90000005000-0xffffc90000007000    8192 acpi_os_map_iomem+0x1a9/0x1e0 "
               "phys=0x000000007ffdf000 ioremap\n")


def _tree(tmp_path, meminfo_corpus: str):
    from ksight.fs import DirRoot
    from tests.conftest import corpus

    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text(corpus(meminfo_corpus, "proc", "meminfo").read_text())
    (proc / "vmallocinfo").write_text(VMALLOCINFO)
    return DirRoot(str(tmp_path))


def _unexplained_plan(window_s: float):
    from ksight.diagnose.engine import load_rules

    rule = [r for r in load_rules(["memory"]) if r.id == "memory.unexplained"][0]
    return rule, Plan.of([rule.needs])


@pytest.mark.parametrize("corpus_dir,read", [
    ("pcp/unpacked/meminfo-root-007", False),  # VmallocUsed 79940 kB, VmallocChunk 0: 5.3+ pages
    ("pcp/unpacked/meminfo-root-001", True),   # VmallocUsed 0 (4.4-5.2): vmallocinfo counts them
    ("node_exporter", True),                   # VmallocChunk printed: address space (before 4.4)
])
def test_vmallocinfo_is_read_only_where_meminfo_does_not_count_vmalloc_pages(tmp_path, corpus_dir, read):
    rule, plan = _unexplained_plan(1.0)
    assert "vmallocinfo" not in plan.sources and [w.source for w in plan.when] == ["vmallocinfo"]
    snap = take(_tree(tmp_path, corpus_dir), plan=plan)
    assert ("vmallocinfo" in snap.sources) is read
    why = [m.reason for m in snap.unavailable if m.source == "vmallocinfo"]
    assert why == ([] if read else ["not read: /proc/meminfo's VmallocUsed counts the vmalloc "
                                    "pages (5.3+)"])
    if read:
        assert snap.sources["vmallocinfo"].vmalloc_pages == 4


def test_a_source_some_rule_needs_is_read_every_time():
    rule, plan = _unexplained_plan(1.0)
    both = Plan.of([rule.needs, Needs(sources=("vmallocinfo",))])
    assert "vmallocinfo" in both.sources and both.when == ()
    assert plan.merge(Plan.of([Needs(sources=("vmallocinfo",))])).when == ()
    # check's own plans: a 1 s window has no vmalloc-leak rule (2 s at least), a 5 s one has
    assert [w.source for w in plan_for(["memory"], 1.0).when] == ["vmallocinfo"]
    assert "vmallocinfo" in plan_for(["memory"], 5.0).sources and plan_for(["memory"], 5.0).when == ()


def test_two_conditions_on_one_source_read_it_when_either_holds(tmp_path):
    from ksight.collect.plan import When

    never = When("vmallocinfo", ("meminfo",), lambda got: False, "never")
    always = When("vmallocinfo", ("loadavg",), lambda got: True, "always")
    p = Plan.of([Needs(uses_when=(never,)), Needs(uses_when=(always,))])
    (w,) = p.when
    assert set(w.after) == {"meminfo", "loadavg"} and w.why == "never; always"
    root = _tree(tmp_path, "pcp/unpacked/meminfo-root-007")
    (tmp_path / "proc" / "loadavg").write_text("0.10 0.20 0.30 1/100 42\n")
    assert "vmallocinfo" in take(root, plan=p).sources
    assert "vmallocinfo" not in take(root, plan=Plan.of([Needs(uses_when=(never,))])).sources
