"""Reclaim rules judged as a kernel memory engineer would, on scenario captures built from real
kernel text (node_exporter's host, PCP's meminfo-root-001 (3.x-4.7 layout), a 2.6.38 vmstat, the
cgroup v2 fixture tree); only counter deltas, clocks, free pages and sysctls are changed."""

from __future__ import annotations

import re

import pytest

from ksight.diagnose.engine import diagnose
from tests.conftest import FIXTURES, corpus_text
from tests.diagnose.helpers import counter, set_counter, snapshots
from tests.diagnose.test_pagecache_rules import _bump_events, _tree_files

SOURCES = ["uptime", "meminfo", "vmstat", "sysctl", "zoneinfo", "pressure", "buddyinfo"]

# /proc/vmstat of a 2.6.38-rc3 i386 kernel, posted by Michal Hocko to linux-mm on 2011-02-07
# ("Re: khugepaged eating 100%CPU"; lore archive sjp38/lore-linux-mm). The PCP corpora in
# ../shared/corpora hold no pre-3.4 vmstat: this is the reclaim section, as printed.
VMSTAT_2_6_38 = """nr_free_pages 187236
nr_dirty 8
nr_writeback 0
pgpgin 19253206
pgpgout 6972134
pswpin 4233
pswpout 23401
pgfault 87302686
pgmajfault 15523
pgrefill_dma 288
pgrefill_normal 93009
pgrefill_high 200394
pgrefill_movable 0
pgsteal_dma 0
pgsteal_normal 3949660
pgsteal_high 601671
pgsteal_movable 0
pgscan_kswapd_dma 0
pgscan_kswapd_normal 3678094
pgscan_kswapd_high 366447
pgscan_kswapd_movable 0
pgscan_direct_dma 0
pgscan_direct_normal 290984
pgscan_direct_high 303477
pgscan_direct_movable 0
pginodesteal 73185
slabs_scanned 353792
kswapd_steal 4026528
kswapd_inodesteal 173760
pageoutrun 79411
allocstall 310
pgrotated 22447
compact_stall 347
compact_fail 67
compact_success 280
"""


@pytest.fixture
def host():
    files = {f"proc/{n}": corpus_text("node_exporter", "proc", n)
             for n in ("meminfo", "vmstat", "zoneinfo", "buddyinfo")}
    for r in ("cpu", "memory", "io"):
        files[f"proc/pressure/{r}"] = corpus_text("node_exporter", "proc", "pressure", r)
    files["proc/sys/vm/min_free_kbytes"] = "67584\n"
    files["proc/sys/vm/watermark_scale_factor"] = "10\n"
    return files


def bump(files, **incr):
    out = dict(files)
    v = out["proc/vmstat"]
    for name, d in incr.items():
        v = set_counter(v, name, (counter(v, name) or 0) + d)
    out["proc/vmstat"] = v
    return out


def zone_free(files, zone: str, free: int):
    """Set 'pages free' of one zone in zoneinfo."""
    out = dict(files)
    pat = re.compile(rf"(zone\s+{zone}\n\s+pages free\s+)\d+")
    assert pat.search(out["proc/zoneinfo"])
    out["proc/zoneinfo"] = pat.sub(rf"\g<1>{free}", out["proc/zoneinfo"])
    return out


def by_id(r, rid):
    return [f for f in r.findings if f.id == rid]


def serious(r):
    return {f.id for f in r.findings if f.severity in ("warning", "critical")}


def test_healthy_busy_server_is_not_warned(tmp_path, host):
    # kswapd 40k pages/s at 95 %, one stall, Normal zone 145x its high watermark (4,539,739 free
    # pages against high 31,113 in node_exporter's zoneinfo)
    busy = bump(host, pgscan_kswapd_normal=40_000, pgsteal_kswapd_normal=38_000, allocstall=1,
                pgscan_direct_normal=32, pgsteal_direct_normal=30)
    r = diagnose(snapshots(tmp_path, [host, busy], SOURCES), ["pagecache"])
    assert not serious(r) & {"pagecache.direct-reclaim", "pagecache.reclaim-efficiency"}, r.findings


def test_watermark_pressure_with_kswapd_failing(tmp_path, host):
    # Normal zone 20,000 free pages, under its low watermark 23,461; kswapd frees 20 % of what it scans
    low = zone_free(host, "Normal", 20_000)
    after = bump(low, allocstall=60, pgscan_direct_normal=6_000, pgsteal_direct_normal=1_000,
                 pgscan_kswapd_normal=40_000, pgsteal_kswapd_normal=8_000)
    r = diagnose(snapshots(tmp_path, [low, after], SOURCES), ["pagecache"])
    (f,) = by_id(r, "pagecache.direct-reclaim")
    assert "watermark" in f.title and f.severity == "warning"
    ev = {e.name: e.value for e in f.evidence}
    assert ev["kswapd efficiency in the peak interval"] == pytest.approx(20.0)
    assert ev["node0 Normal free"] == 20_000
    sysctls = [a.name for a in f.actions if a.kind == "sysctl"]
    assert sysctls[0] == "vm.watermark_scale_factor"  # 4.6+: before min_free_kbytes
    assert "vm.min_free_kbytes" not in sysctls  # the factor is still at its default


def test_high_order_stalls_far_above_watermarks_are_fragmentation(tmp_path, host):
    states = [host]
    for _ in range(3):  # 5 stalls/s for three intervals, compaction failing
        states.append(bump(states[-1], allocstall=5, pgscan_direct_normal=800,
                           pgsteal_direct_normal=700, compact_stall=6, compact_fail=5))
    r = diagnose(snapshots(tmp_path, states, SOURCES), ["pagecache"])
    (f,) = by_id(r, "pagecache.direct-reclaim")
    assert "high-order" in f.title
    assert not [a for a in f.actions if a.name in ("vm.min_free_kbytes", "vm.watermark_scale_factor")]
    ev = {e.name: e.value for e in f.evidence}
    assert ev["compact_fail"] == 15 and any(e.source == "/proc/buddyinfo" for e in f.evidence)


def test_one_stall_a_second_that_does_not_last_is_not_a_pattern(tmp_path, host):
    states = [host, bump(host, allocstall=1)]
    states += [states[-1]] * 3
    r = diagnose(snapshots(tmp_path, states, SOURCES), ["pagecache"])
    assert not by_id(r, "pagecache.direct-reclaim")


def test_burst_in_a_long_quiet_capture_is_seen_at_its_peak(tmp_path, host):
    states = [host] * 6
    states.append(bump(host, allocstall=300, pgscan_direct_normal=20_000, pgsteal_direct_normal=9_000))
    states += [states[-1]] * 5
    r = diagnose(snapshots(tmp_path, states, SOURCES), ["pagecache"])
    (f,) = by_id(r, "pagecache.direct-reclaim")
    assert f.severity == "critical"  # 300/s in one interval; the mean over 11 s is 27/s
    e = next(e for e in f.evidence if e.name == "allocstall")
    assert e.value == pytest.approx(300.0) and "interval 6 of 11" in e.note


def test_node_reclaim_on_two_nodes(tmp_path, host):
    files = dict(host, **{"proc/sys/vm/zone_reclaim_mode": "1\n",
                          "sys/devices/system/node/node0/meminfo": "Node 0 MemTotal: 100 kB\n",
                          "sys/devices/system/node/node1/meminfo": "Node 1 MemTotal: 100 kB\n"})
    after = bump(files, pgscan_direct_normal=5_000, pgsteal_direct_normal=4_000, zone_reclaim_failed=30)
    r = diagnose(snapshots(tmp_path, [files, after], SOURCES + ["numa"]), ["pagecache"])
    assert not by_id(r, "pagecache.direct-reclaim")  # no allocstall: not kswapd falling behind
    (f,) = by_id(r, "pagecache.numa-zone-reclaim")
    ev = {e.name: e.value for e in f.evidence}
    assert ev["pgscan_direct without allocstall"] == 5_000 and ev["zone_reclaim_failed"] == 30
    assert not any("allocstall" == e.name for e in f.evidence)


def test_pre_3_4_vmstat_reclaim_efficiency(tmp_path):
    from ksight.views.sar import paging_rows

    base = {"proc/vmstat": VMSTAT_2_6_38, "proc/sys/kernel/osrelease": "2.6.38-rc3\n"}
    good = bump(base, pgscan_kswapd_normal=10_000, pgsteal_normal=9_000, kswapd_steal=8_000)
    snaps = snapshots(tmp_path / "g", [base, good], ["uptime", "vmstat"])
    r = diagnose(snaps, ["pagecache"])
    assert "pagecache.reclaim-efficiency" not in {f.id for f in r.findings}
    assert "pagecache.reclaim-efficiency" not in {n.rule for n in r.not_evaluated}
    assert paging_rows(snaps)[0].values["%vmeff"] == pytest.approx(90.0)  # sar -B agrees
    bad = bump(base, pgscan_kswapd_normal=10_000, pgsteal_normal=500, kswapd_steal=400)
    snaps = snapshots(tmp_path / "b", [base, bad], ["uptime", "vmstat"])
    r = diagnose(snaps, ["pagecache"])
    (f,) = by_id(r, "pagecache.reclaim-efficiency")
    assert {e.name: e.value for e in f.evidence}["%vmeff"] == pytest.approx(5.0)
    assert paging_rows(snaps)[0].values["%vmeff"] == pytest.approx(5.0)


def test_mglru_high_vmeff_is_not_read_as_healthy(tmp_path, host):
    files = dict(host, **{"sys/kernel/mm/lru_gen/enabled": "0x0007\n"})
    after = bump(files, pgscan_kswapd_normal=10_000, pgsteal_kswapd_normal=9_800)
    r = diagnose(snapshots(tmp_path, [files, after], SOURCES + ["lru_gen"]), ["pagecache"])
    reasons = {n.rule: n.reason for n in r.not_evaluated}
    assert "MGLRU" in reasons["pagecache.reclaim-efficiency"]
    off = dict(host, **{"sys/kernel/mm/lru_gen/enabled": "0x0000\n"})
    r = diagnose(snapshots(tmp_path / "off", [off, bump(off, pgscan_kswapd_normal=10_000,
                                                           pgsteal_kswapd_normal=9_800)],
                           SOURCES + ["lru_gen"]), ["pagecache"])
    assert "pagecache.reclaim-efficiency" not in {n.rule for n in r.not_evaluated}


def _container(host, tmp_path, thrash: bool):
    cg = _tree_files(FIXTURES / "cgroup_v2")
    before = dict(host, **cg)
    nginx = "sys/fs/cgroup/system.slice/nginx.service/"
    # the fixture's nginx group is under pressure (some avg10=12.34): make it a calm group whose
    # stall totals do not move, so the only signals are the ones each scenario moves
    before[nginx + "memory.pressure"] = ("some avg10=0.00 avg60=0.00 avg300=0.00 total=98765432\n"
                                         "full avg10=0.00 avg60=0.00 avg300=0.00 total=87654321\n")
    before[nginx + "memory.stat"] = set_counter(set_counter(
        cg[nginx + "memory.stat"], "workingset_refault_file", 1000), "workingset_activate_file", 200)
    after = dict(before)
    for f in ("memory.events", "memory.events.local"):
        after[nginx + f] = _bump_events(cg[nginx + f], "max", 400)
    after["sys/fs/cgroup/system.slice/memory.events"] = _bump_events(
        cg["sys/fs/cgroup/system.slice/memory.events"], "max", 400)
    if thrash:
        st = after[nginx + "memory.stat"]
        st = set_counter(st, "workingset_refault_file", 1000 + 6_000)
        after[nginx + "memory.stat"] = set_counter(st, "workingset_activate_file", 200 + 4_000)
    r = diagnose(snapshots(tmp_path, [before, after], SOURCES + ["cgroup_memory"]), ["pagecache"])
    return [f for f in by_id(r, "pagecache.direct-reclaim")
            if f.subject and f.subject.cgroup == "/system.slice/nginx.service"]


def test_cache_heavy_container_recycling_at_its_limit_is_info(tmp_path, host):
    (f,) = _container(host, tmp_path, thrash=False)
    assert f.severity == "info" and "No sign of harm" in f.explanation


def test_same_container_thrashing_is_a_warning_citing_the_harm(tmp_path, host):
    (f,) = _container(host, tmp_path, thrash=True)
    assert f.severity == "warning"
    ev = {e.name: e.value for e in f.evidence}
    assert ev["memory.stat workingset_refault_file (refaults)"] == pytest.approx(6_000)
    assert ev["memory.stat workingset_activate_file (working-set refaults)"] == pytest.approx(4_000)
    assert "workingset_refault_file" in f.explanation


def test_reclaim_throttled(tmp_path):
    # PCP meminfo-root-001: a 3.x-4.7 vmstat with per-zone counters and pgscan_direct_throttle 0
    base = {"proc/vmstat": corpus_text("pcp", "unpacked", "meminfo-root-001", "proc", "vmstat")}
    r = diagnose(snapshots(tmp_path / "q", [base, base], ["uptime", "vmstat"]), ["pagecache"])
    assert not by_id(r, "pagecache.reclaim-throttled")
    r = diagnose(snapshots(tmp_path, [base, bump(base, pgscan_direct_throttle=3)], ["uptime", "vmstat"]),
                 ["pagecache"])
    (f,) = by_id(r, "pagecache.reclaim-throttled")
    assert f.severity == "warning" and f.evidence[0].value == 3
    r = diagnose(snapshots(tmp_path / "c", [base, bump(base, pgscan_direct_throttle=40)],
                           ["uptime", "vmstat"]), ["pagecache"])
    assert by_id(r, "pagecache.reclaim-throttled")[0].severity == "critical"


def _full_total(text: str, usec: int) -> str:
    return re.sub(r"^(full .* total=)\d+", rf"\g<1>{usec}", text, flags=re.M)


def test_memory_psi_full(tmp_path, host):
    mem = host["proc/pressure/memory"]
    after = dict(host, **{"proc/pressure/memory": _full_total(mem, 300_000)})  # 0.3 s of 1 s
    r = diagnose(snapshots(tmp_path, [host, after], SOURCES), ["pagecache"])
    (f,) = by_id(r, "pagecache.memory-psi-full")
    assert f.severity == "critical" and f.evidence[0].value == pytest.approx(30.0)
    little = dict(host, **{"proc/pressure/memory": _full_total(mem, 10_000)})  # 1 %
    r = diagnose(snapshots(tmp_path / "l", [host, little], SOURCES), ["pagecache"])
    assert not by_id(r, "pagecache.memory-psi-full")
    # no memory pressure file: not evaluated, never "no pressure"
    nopsi = {k: v for k, v in host.items() if not k.startswith("proc/pressure")}
    r = diagnose(snapshots(tmp_path / "n", [nopsi, nopsi], SOURCES), ["pagecache"])
    assert "pagecache.memory-psi-full" in {n.rule for n in r.not_evaluated}
