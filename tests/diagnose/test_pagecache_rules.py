"""Page cache rules on real kernel text with chosen counters moved (unit level).

The end-to-end proofs (a real fault on this machine) are in tests/e2e; these check each
rule's thresholds and edges: fires when the data says so, stays quiet when it does not, never
turns a counter reset into a rate."""

from __future__ import annotations

import pytest

from ksight.diagnose.engine import diagnose
from tests.conftest import corpus_text
from tests.diagnose.helpers import counter, set_counter, snapshots

SOURCES = ["uptime", "meminfo", "vmstat", "sysctl", "zoneinfo", "pressure", "buddyinfo"]


@pytest.fixture
def base():
    """node_exporter's fixture host: real meminfo, vmstat, zoneinfo, buddyinfo, pressure."""
    files = {f"proc/{n}": corpus_text("node_exporter", "proc", n)
             for n in ("meminfo", "vmstat", "zoneinfo", "buddyinfo")}
    for r in ("cpu", "memory", "io"):
        files[f"proc/pressure/{r}"] = corpus_text("node_exporter", "proc", "pressure", r)
    files["proc/sys/vm/min_free_kbytes"] = "67584\n"
    files["proc/sys/vm/dirty_ratio"] = "20\n"
    files["proc/sys/vm/dirty_background_ratio"] = "10\n"
    files["proc/sys/vm/dirty_bytes"] = "0\n"
    files["proc/sys/vm/dirty_background_bytes"] = "0\n"
    files["proc/sys/vm/swappiness"] = "60\n"
    return files


def bumped(files, **incr):
    out = dict(files)
    v = out["proc/vmstat"]
    for name, d in incr.items():
        v = set_counter(v, name, (counter(v, name) or 0) + d)
    out["proc/vmstat"] = v
    return out


def ids(report, min_sev="warning"):
    order = ["info", "warning", "critical"]
    return {f.id for f in report.findings if order.index(f.severity) >= order.index(min_sev)}


def test_quiet_when_nothing_moves(tmp_path, base):
    r = diagnose(snapshots(tmp_path, [base, base], SOURCES), ["pagecache"])
    assert ids(r, "info") == set()
    assert r.rules_run >= 8


def test_direct_reclaim_fires_on_allocstall_with_watermarks(tmp_path, base):
    # node_exporter's vmstat is an older kernel: pgscan/pgsteal are per zone (vm_total sums them)
    # 50 stalls in one second: a burst (20/s), not one unlucky allocation
    after = bumped(base, allocstall=50, pgscan_direct_normal=600, pgscan_direct_dma32=40,
                   pgsteal_direct_normal=320)
    r = diagnose(snapshots(tmp_path, [base, after], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.direct-reclaim")
    ev = {e.name: e for e in f.evidence}
    assert ev["allocstall"].value == pytest.approx(50.0)
    assert ev["pgscan_direct"].value == pytest.approx(640.0)
    assert ev["direct reclaim efficiency"].value == pytest.approx(50.0)
    assert any(" free" in name and e.source == "/proc/zoneinfo" for name, e in ev.items())
    # node_exporter's Normal zone holds 4,539,739 free pages against a high watermark of 31,113
    # (145x): no order-0 allocation stalls there, so the cause is high-order allocations and
    # the watermark sysctls are not advised (tests/diagnose/test_pagecache_reclaim_expert.py
    # has the watermark cause)
    assert "high-order" in f.title
    act = {a.name: a for a in f.actions if a.kind == "sysctl"}
    assert "vm.min_free_kbytes" not in act and "vm.watermark_scale_factor" not in act


def test_direct_reclaim_is_critical_at_high_stall_rate(tmp_path, base):
    after = bumped(base, allocstall=500)
    r = diagnose(snapshots(tmp_path, [base, after], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.direct-reclaim")
    assert f.severity == "critical"


def test_counter_reset_is_flagged_not_a_rate(tmp_path, base):
    v = base["proc/vmstat"]
    before = dict(base, **{"proc/vmstat": set_counter(v, "pswpout", 10_000_000)})
    after = dict(base, **{"proc/vmstat": set_counter(v, "pswpout", 5)})
    r = diagnose(snapshots(tmp_path, [before, after], SOURCES), ["pagecache"])
    assert "pagecache.swap-io" not in ids(r, "info")
    assert any("pswpout" in c for c in r.counter_resets)


def test_swap_io_thresholds(tmp_path, base):
    r = diagnose(snapshots(tmp_path, [base, bumped(base, pswpin=5)], SOURCES), ["pagecache"])
    assert "pagecache.swap-io" not in ids(r, "info")  # 5 pages/s: below the 10 pages/s threshold
    # swap-out alone is cold memory moved out: info, never a warning
    r = diagnose(snapshots(tmp_path / "o", [base, bumped(base, pswpout=5000)], SOURCES), ["pagecache"])
    assert "pagecache.swap-io" in ids(r, "info") and "pagecache.swap-io" not in ids(r)
    r = diagnose(snapshots(tmp_path / "i", [base, bumped(base, pswpin=50)], SOURCES), ["pagecache"])
    assert "pagecache.swap-io" in ids(r)
    r = diagnose(snapshots(tmp_path / "c", [base, bumped(base, pswpin=5000)], SOURCES), ["pagecache"])
    assert next(f for f in r.findings if f.id == "pagecache.swap-io").severity == "critical"


def test_drop_caches(tmp_path, base):
    after = bumped(base, drop_pagecache=1)
    r = diagnose(snapshots(tmp_path, [base, after], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.drop-caches")
    assert {e.name: e.value for e in f.evidence}["drop_pagecache"] == 1


def test_reclaim_efficiency(tmp_path, base):
    ok = bumped(base, pgscan_kswapd_normal=10_000, pgsteal_kswapd_normal=9_000)
    r = diagnose(snapshots(tmp_path, [base, ok], SOURCES), ["pagecache"])
    assert "pagecache.reclaim-efficiency" not in ids(r, "info")
    bad = bumped(base, pgscan_kswapd_normal=10_000, pgsteal_kswapd_normal=500)
    r = diagnose(snapshots(tmp_path, [base, bad], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.reclaim-efficiency")
    assert f.severity == "critical"  # 5% < 10%
    assert {e.name: e.value for e in f.evidence}["%vmeff"] == pytest.approx(5.0)


def test_compaction_stall(tmp_path, base):
    after = bumped(base, compact_stall=10, compact_fail=8)
    r = diagnose(snapshots(tmp_path, [base, after], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.compaction-stall")
    assert f.severity == "critical"  # 80% of stalls failed
    assert any(e.source == "/proc/buddyinfo" for e in f.evidence)


def test_inode_steal(tmp_path, base):
    r = diagnose(snapshots(tmp_path, [base, bumped(base, kswapd_inodesteal=50)], SOURCES), ["pagecache"])
    assert "pagecache.inode-steal" not in ids(r, "info")
    r = diagnose(snapshots(tmp_path, [base, bumped(base, kswapd_inodesteal=5000)], SOURCES), ["pagecache"])
    assert "pagecache.inode-steal" in ids(r)


def test_thrashing_relative_to_cache(tmp_path, base):
    # the fixture's file LRU is 359,088 kB = 89,772 pages: 1%/s is ~898 pages/s
    small = bumped(base, workingset_refault=500, workingset_activate=500)
    r = diagnose(snapshots(tmp_path, [base, small], SOURCES), ["pagecache"])
    assert "pagecache.thrashing" not in ids(r, "info")
    # refaults the kernel did not activate (too far back to be the working set): info only
    far = bumped(base, workingset_refault=50_000)
    r = diagnose(snapshots(tmp_path / "f", [base, far], SOURCES), ["pagecache"])
    assert "pagecache.thrashing" in ids(r, "info") and "pagecache.thrashing" not in ids(r)
    big = bumped(base, workingset_refault=50_000, workingset_activate=40_000)
    r = diagnose(snapshots(tmp_path / "b", [base, big], SOURCES), ["pagecache"])
    assert "pagecache.thrashing" in ids(r)


def test_dirty_backlog_against_kernel_thresholds(tmp_path, base):
    v = base["proc/vmstat"]
    thresh = counter(v, "nr_dirty_threshold")
    bg = counter(v, "nr_dirty_background_threshold")
    assert thresh and bg
    freerun = (thresh + bg) // 2
    below = dict(base, **{"proc/vmstat": set_counter(set_counter(v, "nr_dirty", freerun - 10),
                                                     "nr_writeback", 0)})
    above = dict(base, **{"proc/vmstat": set_counter(set_counter(v, "nr_dirty", thresh),
                                                     "nr_writeback", 5)})
    r = diagnose(snapshots(tmp_path, [below, below], SOURCES), ["pagecache"])
    assert "pagecache.dirty-backlog" not in ids(r, "info")
    r = diagnose(snapshots(tmp_path, [below, above], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.dirty-backlog")
    assert f.severity == "critical"
    ev = {e.name: e.value for e in f.evidence}
    assert ev["dirty threshold"] == thresh * 4  # kB with 4 KiB pages


def test_zone_reclaim_mode_single_node_is_quiet(tmp_path, base):
    files = dict(base, **{"proc/sys/vm/zone_reclaim_mode": "1\n",
                          "sys/devices/system/node/node0/meminfo": "Node 0 MemTotal: 100 kB\n"})
    r = diagnose(snapshots(tmp_path, [files, files], SOURCES + ["numa"]), ["pagecache"])
    assert "pagecache.numa-zone-reclaim" not in ids(r, "info")


def test_zone_reclaim_mode_two_nodes(tmp_path, base):
    files = dict(base, **{"proc/sys/vm/zone_reclaim_mode": "1\n",
                          "sys/devices/system/node/node0/meminfo": "Node 0 MemTotal: 100 kB\n",
                          "sys/devices/system/node/node1/meminfo": "Node 1 MemTotal: 100 kB\n"})
    r = diagnose(snapshots(tmp_path, [files, bumped(files, allocstall=3)], SOURCES + ["numa"]),
                 ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.numa-zone-reclaim")
    assert any(a.name == "vm.zone_reclaim_mode" and a.recommended == "0" for a in f.actions)


def test_missing_source_is_reported_not_crashed(tmp_path, base):
    files = {k: v for k, v in base.items() if k != "proc/vmstat"}
    r = diagnose(snapshots(tmp_path, [files, files], SOURCES), ["pagecache"])
    reasons = {n.rule: n.reason for n in r.not_evaluated}
    assert "pagecache.swap-io" in reasons and "vmstat" in reasons["pagecache.swap-io"]
    assert not any("internal error" in n.reason for n in r.not_evaluated)


def test_one_snapshot_runs_only_single_snapshot_rules(tmp_path, base):
    r = diagnose(snapshots(tmp_path, [base], SOURCES), ["pagecache"])
    assert any("two snapshots" in n.reason for n in r.not_evaluated)


def _tree_files(base):
    return {str(p.relative_to(base)): p.read_text() for p in base.rglob("*") if p.is_file()}


def _bump_events(text: str, key: str, by: int) -> str:
    return "\n".join(f"{k} {int(v) + by}" if k == key else f"{k} {v}"
                     for k, v in (ln.split() for ln in text.strip().splitlines())) + "\n"


def test_cgroup_v2_limit_hits_name_the_group_not_its_parents(tmp_path, base):
    """v2 memory.events is hierarchical: a parent counts its child's limit hits. Only the group
    at its own limit (memory.events.local, or a finite memory.max) is reported."""
    from tests.conftest import FIXTURES

    cg = _tree_files(FIXTURES / "cgroup_v2")
    before = dict(base, **cg)
    after = dict(before)
    nginx = "sys/fs/cgroup/system.slice/nginx.service/"
    after[nginx + "memory.events"] = _bump_events(cg[nginx + "memory.events"], "max", 50)
    after[nginx + "memory.events.local"] = _bump_events(cg[nginx + "memory.events.local"], "max", 50)
    parent = "sys/fs/cgroup/system.slice/memory.events"
    after[parent] = _bump_events(cg[parent], "max", 50)
    r = diagnose(snapshots(tmp_path, [before, after], SOURCES + ["cgroup_memory"]), ["pagecache"])
    named = {(f.subject.cgroup if f.subject else None) for f in r.findings
             if f.id == "pagecache.direct-reclaim"}
    assert named == {"/system.slice/nginx.service"}, r.findings


def test_actions_never_step_the_wrong_way(tmp_path, base):
    # swappiness already 5: advising 10 would raise it; the action is dropped, not inverted
    files = dict(base, **{"proc/sys/vm/swappiness": "5\n"})
    r = diagnose(snapshots(tmp_path, [files, bumped(files, pswpin=5000)], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.swap-io")
    assert not [a for a in f.actions if a.name == "vm.swappiness"]
    # dirty_ratio 40: the advice to raise the foreground limit never lowers it
    v = base["proc/vmstat"]
    thresh = counter(v, "nr_dirty_threshold")
    hot = dict(base, **{"proc/sys/vm/dirty_ratio": "40\n",
                        "proc/vmstat": set_counter(set_counter(v, "nr_dirty", thresh), "nr_writeback", 5)})
    r = diagnose(snapshots(tmp_path / "b", [hot, hot], SOURCES), ["pagecache"])
    f = next(f for f in r.findings if f.id == "pagecache.dirty-backlog")
    rec = {a.name: a.recommended for a in f.actions if a.kind == "sysctl"}
    assert int(rec["vm.dirty_ratio"]) > 40
