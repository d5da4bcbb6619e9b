"""Page cache verdicts a kernel memory expert would sign (issue 9: thrashing, swap-io,
dirty-backlog, major-fault-storm, the pagecache view), on scenario captures built from real
kernel text of several kernels: pcp's meminfo-root-005 (4.12-5.8: workingset_refault/activate,
pglazyfree, NFS nr_unstable still counted), meminfo-root-007 (5.9+: *_file/_anon split with
workingset_restore), node_exporter's host (pre-4.8 per-zone layout). Only counter deltas,
clocks and sysctls are changed."""

from __future__ import annotations

import io
import re

import pytest

from ksight.diagnose.engine import diagnose
from tests.conftest import corpus_text
from tests.diagnose.helpers import counter, set_counter, snapshots

SOURCES = ["uptime", "meminfo", "vmstat", "sysctl", "zoneinfo", "swaps"]


def pcp(n: int, sysctls: bool = True) -> dict:
    files = {f"proc/{x}": corpus_text("pcp", "unpacked", f"meminfo-root-00{n}", "proc", x)
             for x in ("meminfo", "vmstat", "zoneinfo")}
    if sysctls:
        for k, v in {"dirty_ratio": 20, "dirty_background_ratio": 10, "dirty_bytes": 0,
                     "dirty_background_bytes": 0, "swappiness": 60}.items():
            files[f"proc/sys/vm/{k}"] = f"{v}\n"
    return files


def bumped(files, **incr):
    v = files["proc/vmstat"]
    for name, d in incr.items():
        v = set_counter(v, name, (counter(v, name) or 0) + d)
    return dict(files, **{"proc/vmstat": v})


def findings(tmp_path, states, rule):
    r = diagnose(snapshots(tmp_path, states, SOURCES), ["pagecache"])
    return [f for f in r.findings if f.id == rule], r


# ---- swap-io: swap-in is the harm ----------------------------------------------------------

@pytest.mark.parametrize("kernel", [5, 7])
def test_swap_out_only_is_not_a_warning_swap_in_is(tmp_path, kernel):
    base = pcp(kernel)
    out, _ = findings(tmp_path / "o", [base, bumped(base, pswpout=20_000)], "pagecache.swap-io")
    assert [f.severity for f in out] == ["info"]  # cold anon moved out: what swap is for
    assert "read back" not in out[0].explanation and "waits" not in out[0].explanation
    inn, _ = findings(tmp_path / "i", [base, bumped(base, pswpin=200, pswpout=200)], "pagecache.swap-io")
    assert [f.severity for f in inn] == ["warning"]
    ev = {e.name: e.value for e in inn[0].evidence}
    assert ev["pswpin"] == 200 and ev["pswpout"] == 200


def test_zram_swap_in_says_decompression_not_disk_read(tmp_path):
    base = dict(pcp(7), **{"proc/swaps": "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                                         "/dev/zram0                              partition\t8388604\t\t1048576\t\t100\n"})
    got, _ = findings(tmp_path, [base, bumped(base, pswpin=3000)], "pagecache.swap-io")
    f = got[0]
    assert f.severity == "critical"  # 3,000 pages/s >= 2,560
    assert "decompress" in f.explanation and "read from the swap device" not in f.explanation
    disk = dict(base, **{"proc/swaps": base["proc/swaps"].replace("/dev/zram0", "/dev/sda2 ")})
    got, _ = findings(tmp_path / "d", [disk, bumped(disk, pswpin=3000)], "pagecache.swap-io")
    assert "read from the swap device" in got[0].explanation and "decompress" not in got[0].explanation


# ---- thrashing: working-set refaults are activations ---------------------------------------

@pytest.mark.parametrize("kernel,refault,activate,restore", [
    (5, "workingset_refault", "workingset_activate", None),
    (7, "workingset_refault_file", "workingset_activate_file", "workingset_restore_file")])
def test_refaults_without_activations_info_with_them_warning(tmp_path, kernel, refault, activate, restore):
    base = pcp(kernel)
    mi = base["proc/meminfo"]
    lru_kb = sum(int(re.search(rf"^{k}:\s+(\d+)", mi, re.M).group(1)) for k in (r"Active\(file\)", r"Inactive\(file\)"))
    n = lru_kb // 4 // 20  # 5% of the file LRU in one 1 s interval: well above 1 %/s and 256 pages/s
    assert n > 256
    far, _ = findings(tmp_path / "f", [base, bumped(base, **{refault: n})], "pagecache.thrashing")
    assert [f.severity for f in far] == ["info"]  # evicted too long ago: not the working set
    moves = {refault: n, activate: n // 2} | ({restore: n // 4} if restore else {})
    ws, _ = findings(tmp_path / "w", [base, bumped(base, **moves)], "pagecache.thrashing")
    # warning, or critical where half of 5% of this host's file LRU is >= 100 MiB/s
    assert [f.severity for f in ws] == ["critical" if n // 2 >= 25_600 else "warning"]
    ev = {e.name: e.value for e in ws[0].evidence}
    assert ev["workingset activations"] == n // 2
    if restore:
        assert ev["workingset restores"] == n // 4


def test_thrashing_share_is_per_second_not_per_window(tmp_path):
    # the same 5%-of-cache refault burst spread over a 60 s interval is 0.08 %/s: quiet
    base = pcp(5)
    mi = base["proc/meminfo"]
    lru_kb = sum(int(re.search(rf"^{k}:\s+(\d+)", mi, re.M).group(1)) for k in (r"Active\(file\)", r"Inactive\(file\)"))
    n = lru_kb // 4 // 20
    states = [base, bumped(base, workingset_refault=n, workingset_activate=n)]
    r = diagnose(snapshots(tmp_path, states, SOURCES, step_s=60.0), ["pagecache"])
    assert "pagecache.thrashing" not in {f.id for f in r.findings}


# ---- dirty-backlog -------------------------------------------------------------------------

def test_dirty_above_kernel_threshold_without_sysctls_one_snapshot(tmp_path):
    base = pcp(5, sysctls=False)
    v = base["proc/vmstat"]
    assert counter(v, "nr_dirty_threshold") == 518_246
    hot = dict(base, **{"proc/vmstat": set_counter(set_counter(v, "nr_dirty", 600_000), "nr_writeback", 20_000)})
    got, r = findings(tmp_path, [hot], "pagecache.dirty-backlog")  # one snapshot
    assert "pagecache.dirty-backlog" not in {n.rule for n in r.not_evaluated}
    assert [f.severity for f in got] == ["critical"]  # 620,000 >= 0.95 * 518,246
    ev = {e.name: e.value for e in got[0].evidence}
    assert ev["dirty + writeback (peak in window)"] == 620_000 * 4
    assert ev["dirty threshold"] == 518_246 * 4


def test_nr_unstable_counts_as_dirty_before_5_8(tmp_path):
    base = pcp(5, sysctls=False)
    freerun = (518_246 + 258_806) // 2  # 388,526 pages
    v = set_counter(set_counter(base["proc/vmstat"], "nr_dirty", 300_000), "nr_writeback", 0)
    quiet = dict(base, **{"proc/vmstat": v})
    got, _ = findings(tmp_path / "q", [quiet], "pagecache.dirty-backlog")
    assert got == []
    nfs = dict(base, **{"proc/vmstat": set_counter(v, "nr_unstable", 100_000)})
    got, _ = findings(tmp_path / "n", [nfs], "pagecache.dirty-backlog")
    assert [f.severity for f in got] == ["warning"]  # 400,000 > 388,526 < 0.95 * 518,246
    ev = {e.name: e for e in got[0].evidence}
    assert ev["dirty + writeback (peak in window)"].value == 400_000 * 4 > freerun * 4
    assert "nr_unstable" in ev


def test_cgroup_v2_group_over_its_dirty_share(tmp_path):
    from tests.conftest import FIXTURES

    base = pcp(7)
    cg = {str(p.relative_to(FIXTURES / "cgroup_v2")): p.read_text()
          for p in (FIXTURES / "cgroup_v2").rglob("*") if p.is_file()}
    nginx = "sys/fs/cgroup/system.slice/nginx.service/"
    # memory.max 256 MiB, memory.current 250 MiB: 1,536 pages of headroom; 24 MiB of file pages,
    # 16 MiB of it dirty -- the group's 20% share of (6,144 + 1,536) pages is 1,536 pages
    cg[nginx + "memory.stat"] = cg[nginx + "memory.stat"] + \
        "active_file 8388608\ninactive_file 16777216\nfile_dirty 12582912\nfile_writeback 4194304\n"
    files = dict(base, **cg)
    r = diagnose(snapshots(tmp_path, [files], SOURCES + ["cgroup_memory"]), ["pagecache"])
    got = [f for f in r.findings if f.id == "pagecache.dirty-backlog"]
    assert [f.subject.cgroup for f in got] == ["/system.slice/nginx.service"]
    ev = {e.name: e.value for e in got[0].evidence}
    assert ev["group dirty + writeback"] == 4096 * 4
    assert ev["group dirty threshold"] == int(0.2 * (6144 + 1536)) * 4


# ---- major-fault storm ---------------------------------------------------------------------

def test_major_fault_storm_without_swap(tmp_path):
    base = pcp(7)
    got, _ = findings(tmp_path / "a", [base, bumped(base, pgmajfault=2000)], "pagecache.major-fault-storm")
    assert [f.severity for f in got] == ["warning"]
    assert {e.name: e.value for e in got[0].evidence}["pgmajfault"] == 2000
    # the same faults explained by swap-in: swap-io's case, not this one
    got, _ = findings(tmp_path / "b", [base, bumped(base, pgmajfault=2000, pswpin=1500)],
                      "pagecache.major-fault-storm")
    assert got == []
    got, _ = findings(tmp_path / "c", [base, bumped(base, pgmajfault=100)], "pagecache.major-fault-storm")
    assert got == []


def test_missing_counter_is_not_evaluated_not_healthy(tmp_path):
    base = pcp(7)
    v = re.sub(r"^workingset_\w+ \d+\n", "", base["proc/vmstat"], flags=re.M)
    v = re.sub(r"^pgmajfault \d+\n", "", v, flags=re.M)
    old = dict(base, **{"proc/vmstat": v})
    r = diagnose(snapshots(tmp_path, [old, old], SOURCES), ["pagecache"])
    ne = {n.rule: n.reason for n in r.not_evaluated}
    assert "workingset_refault" in ne["pagecache.thrashing"]
    assert "pgmajfault" in ne["pagecache.major-fault-storm"]


# ---- the pagecache view --------------------------------------------------------------------

def test_view_explains_negative_gap_by_madv_free(tmp_path):
    from ksight.collect.snapshot import take
    from ksight.render.pagecache_text import render
    from ksight.views import pagecache as pc
    from tests.diagnose.helpers import tree

    snap = take(tree(tmp_path, pcp(5)), sources=list(pc.SOURCES))
    rep = pc.report(snap)
    # meminfo-root-005 by hand: Buffers + Cached + SwapCached = 8,513,952 kB; Active(file) +
    # Inactive(file) + Shmem + SwapCached = 9,022,516 kB; vmstat pglazyfree 3,666,737 -
    # pglazyfreed 269,600 = 3,397,137 pages = 13,588,548 kB
    assert rep.cache.gap_kb == 8_513_952 - 9_022_516
    assert rep.cache.lazyfree_kb == 13_588_548
    assert "MADV_FREE" in rep.cache.gap_why and "508,564" in rep.cache.gap_why
    out = io.StringIO()
    render(rep, out)
    assert "MADV_FREE" in out.getvalue() and "(now None)" not in out.getvalue()


def test_view_zone_without_managed_line_is_unknown_not_empty(tmp_path):
    from ksight.collect.snapshot import take
    from ksight.render.pagecache_text import render
    from ksight.views import pagecache as pc
    from tests.diagnose.helpers import tree

    files = pcp(5)
    old = re.sub(r"^\s+managed\s+\d+\n", "", files["proc/zoneinfo"], flags=re.M)  # as before 3.8
    assert "managed" not in old
    snap = take(tree(tmp_path, dict(files, **{"proc/zoneinfo": old})), sources=list(pc.SOURCES))
    rep = pc.report(snap)
    assert rep.zones and all(z.state == "unknown managed size" for z in rep.zones if z.managed_pages is None)
    assert not any(z.state == "empty" for z in rep.zones)
    out = io.StringIO()
    render(rep, out)
    assert "unknown managed size" in out.getvalue()


def test_show_sysctl_on_tree_without_proc_sys_says_missing_from_capture(tmp_path):
    from ksight.sources import sysctl
    from tests.diagnose.helpers import tree

    s = sysctl.read(tree(tmp_path, pcp(5, sysctls=False)))
    assert s.missing["vm.watermark_boost_factor"].startswith("missing from the capture")
    assert "added in" not in s.missing["vm.watermark_boost_factor"]
