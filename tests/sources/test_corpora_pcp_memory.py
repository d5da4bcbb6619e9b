"""PCP's qa/linux captures (meminfo-root-001..008, pressure-root-*), parsed by ksight and compared
with what PCP's Linux PMDA reports for the same trees (`pminfo -f` output in pcp/expected/*.out).

How the .out files are organised: 821.out runs four checks per capture, each framed as
    == Checking <all mem|slabinfo|buddyinfo|zoneinfo> metric values - meminfo-root-00N.tgz
    mem.zoneinfo.free
        inst [N or "DMA32::node0"] value 284860
    == done
1663.out does the same for meminfo-root-008; 1258.out (pressure) frames per capture too.

PCP units (header of the QA runs: PAGESIZE=4096): mem.util.* and mem.numa.util.* are kB as in
the files; mem.zoneinfo.* page counts are converted to kB (pages * 4), mem.buddyinfo.pages is
a block count and mem.buddyinfo.total is kB; mem.vmstat.* and mem.numa.alloc.* are raw counts.
Expected numbers are always looked up in the .out files at test time.
"""

from __future__ import annotations

import re

import pytest


from ksight.sources import buddyinfo, meminfo, numa, pressure, vmstat, zoneinfo
from tests.conftest import corpus, corpus_root

PAGE_KB = 4
_SECTION = re.compile(r"^== (?:Valgrind )?[Cc]hecking (.*?)(?: metric values| metric descriptors and values)? - (\S+?)\.tgz")
_INST = re.compile(r'^\s+inst \[\S+ or "([^"]*)"\] value (\S+)$')
_VALUE = re.compile(r"^\s+value (\S+)$")


def load_pminfo(path) -> dict[str, dict[str, dict[str | None, float]]]:
    """{capture: {metric: {instance name or None: value}}} from a QA .out file."""
    out: dict[str, dict[str, dict]] = {}
    cap = metric = None
    for line in path.read_text(errors="replace").split("\n"):
        m = _SECTION.match(line)
        if m:
            cap = m.group(2)
            out.setdefault(cap, {})
            metric = None
            continue
        if line.startswith("== done"):
            cap = metric = None
            continue
        if cap is None:
            continue
        if re.match(r"^[a-z]\w*(\.\w+)+(\s+PMID.*)?$", line):
            metric = line.split()[0]
            out[cap].setdefault(metric, {})
            continue
        if metric is None:
            continue
        mi, mv = _INST.match(line), _VALUE.match(line)
        if mi:
            out[cap][metric][mi.group(1)] = float(mi.group(2))
        elif mv:
            out[cap][metric][None] = float(mv.group(1))
    return out


@pytest.fixture(scope="module")
def pcp821():
    return load_pminfo(corpus("pcp", "expected", "821.out"))


@pytest.fixture(scope="module")
def pcp1663():
    return load_pminfo(corpus("pcp", "expected", "1663.out"))


ROOTS = [f"meminfo-root-00{i}" for i in range(1, 8)]


def values(data, cap, prefix):
    return {m[len(prefix):]: v for m, v in data[cap].items() if m.startswith(prefix) and v}


def test_helper_reads_sections(pcp821):
    assert set(ROOTS) <= set(pcp821)
    assert pcp821["meminfo-root-001"]["mem.zoneinfo.free"]["DMA::node0"] > 0


# ---------------------------------------------------------------- zoneinfo

_ZONE_ATTR = {"free": "free_pages", "min": "min_pages", "low": "low_pages", "high": "high_pages",
              "spanned": "spanned_pages", "present": "present_pages",
              "managed": "managed_pages", "scanned": "scanned_pages", "cma": "cma_pages"}


# PCP's metric names for two per-node stats differ from the kernel's
_PCP_RENAMED = {"workingset_active_anon": "workingset_activate_anon",
                "workingset_active_file": "workingset_activate_file"}


@pytest.mark.parametrize("cap", ROOTS)
def test_zoneinfo_every_pcp_value(pcp821, cap):
    z = zoneinfo.read(corpus_root("pcp", "unpacked", cap))
    checked = 0
    for name, insts in values(pcp821, cap, "mem.zoneinfo.").items():
        for inst, want in insts.items():
            parts = inst.split("::")
            if name == "protection":
                zone, node, res = parts
                got = z.zone(int(node[4:]), zone).protection[int(res[len("lowmem_reserved"):])]
            elif len(parts) == 2:
                zz = z.zone(int(parts[1][4:]), parts[0])
                assert zz is not None, inst
                got = getattr(zz, _ZONE_ATTR[name]) if name in _ZONE_ATTR else zz.counters[name]
            else:  # "nodeN": a per-node stat (4.8+)
                got = z.node_counters[int(inst[4:])][_PCP_RENAMED.get(name, name)]
            assert got is not None and got * PAGE_KB == want, (cap, name, inst, got)
            checked += 1
    assert checked > 100, checked


def test_zoneinfo_named_values(pcp821):
    # A few by hand so a failure reads plainly (821.out, meminfo-root-001 and -002; kB = pages*4)
    z1 = zoneinfo.read(corpus_root("pcp", "unpacked", "meminfo-root-001"))
    p1 = pcp821["meminfo-root-001"]
    dma32 = z1.zone(0, "DMA32")
    assert dma32.free_pages * 4 == p1["mem.zoneinfo.free"]["DMA32::node0"]
    assert dma32.min_pages * 4 == p1["mem.zoneinfo.min"]["DMA32::node0"]
    assert dma32.managed_pages * 4 == p1["mem.zoneinfo.managed"]["DMA32::node0"]
    assert dma32.boost_pages is None  # 4.x kernel: no boost watermark
    z2 = zoneinfo.read(corpus_root("pcp", "unpacked", "meminfo-root-002"))
    p2 = pcp821["meminfo-root-002"]
    assert z2.zone(1, "Normal").high_pages * 4 == p2["mem.zoneinfo.high"]["Normal::node1"]
    assert z2.zone(1, "Normal").low_pages * 4 == p2["mem.zoneinfo.low"]["Normal::node1"]


# ---------------------------------------------------------------- buddyinfo

def test_buddyinfo_blocks_and_kb(pcp821):
    cap = "meminfo-root-001"  # the only capture with a buddyinfo
    b = buddyinfo.read(corpus_root("pcp", "unpacked", cap))
    pages = pcp821[cap]["mem.buddyinfo.pages"]
    total = pcp821[cap]["mem.buddyinfo.total"]
    assert len(pages) == 33
    for inst, want in pages.items():
        zone, order, node = inst.split("::")
        o = int(order[len("order"):])
        bz = b.zone(int(node[4:]), zone)
        assert bz.free_blocks[o] == want, inst
        assert bz.free_blocks[o] * (1 << o) * PAGE_KB == total[inst], inst


@pytest.mark.parametrize("cap", ROOTS[1:])
def test_no_buddyinfo_means_pcp_has_none(pcp821, cap):
    assert not pcp821[cap].get("mem.buddyinfo.pages")
    assert not corpus_root("pcp", "unpacked", cap).exists("proc/buddyinfo")


# ---------------------------------------------------------------- meminfo, vmstat

_UTIL = {
    "free": "MemFree", "available": "MemAvailable", "bufmem": "Buffers", "cached": "Cached",
    "active": "Active", "inactive": "Inactive", "active_anon": "Active(anon)",
    "inactive_anon": "Inactive(anon)", "active_file": "Active(file)",
    "inactive_file": "Inactive(file)", "unevictable": "Unevictable", "mlocked": "Mlocked",
    "swapTotal": "SwapTotal", "swapFree": "SwapFree", "swapCached": "SwapCached",
    "dirty": "Dirty", "writeback": "Writeback", "anonpages": "AnonPages", "mapped": "Mapped",
    "shmem": "Shmem", "slab": "Slab", "slabReclaimable": "SReclaimable",
    "slabUnreclaimable": "SUnreclaim", "kernelStack": "KernelStack", "pageTables": "PageTables",
    "NFS_Unstable": "NFS_Unstable", "bounce": "Bounce", "commitLimit": "CommitLimit",
    "committed_AS": "Committed_AS", "vmallocTotal": "VmallocTotal",
    "vmallocChunk": "VmallocChunk", "corrupthardware": "HardwareCorrupted",
    "anonhugepages": "AnonHugePages", "directMap4k": "DirectMap4k",
    "directMap2M": "DirectMap2M", "directMap1G": "DirectMap1G",
    "hugepagesTotal": "HugePages_Total", "hugepagesFree": "HugePages_Free",
    "hugepagesRsvd": "HugePages_Rsvd", "hugepagesSurp": "HugePages_Surp",
    "kreclaimable": "KReclaimable", "percpu": "Percpu",
}


@pytest.mark.parametrize("cap", ROOTS)
def test_meminfo_mem_util(pcp821, cap):
    m = meminfo.read(corpus_root("pcp", "unpacked", cap))
    util = values(pcp821, cap, "mem.util.")
    checked = 0
    for pcp_name, key in _UTIL.items():
        if pcp_name in util and key in m.fields:
            assert m.fields[key] == util[pcp_name][None], (cap, pcp_name)
            checked += 1
    assert checked >= 30
    # PCP's "used" is MemTotal - MemFree; mem.physmem is MemTotal
    assert m.mem_total_kb - m.mem_free_kb == util["used"][None]
    assert m.mem_total_kb == pcp821[cap]["mem.physmem"][None]


@pytest.mark.parametrize("cap", ROOTS)
def test_vmstat_mem_vmstat(pcp821, cap):
    v = vmstat.read(corpus_root("pcp", "unpacked", cap))
    checked = 0
    for name, insts in values(pcp821, cap, "mem.vmstat.").items():
        if name in v.counters:  # PCP's own sums (nr_slab, pgscan_direct_total) are not lines
            assert v.counters[name] == insts[None], (cap, name)
            checked += 1
    assert checked >= 100, checked


# ---------------------------------------------------------------- NUMA

_NUMA_UTIL = {"total": "MemTotal", "free": "MemFree", "used": "MemUsed", "active": "Active",
              "inactive": "Inactive", "dirty": "Dirty", "filePages": "FilePages",
              "mapped": "Mapped", "anonpages": "AnonPages", "shmem": "Shmem",
              "kernelStack": "KernelStack", "pageTables": "PageTables", "slab": "Slab",
              "slabReclaimable": "SReclaimable", "slabUnreclaimable": "SUnreclaim",
              "anonhugepages": "AnonHugePages", "hugepagesTotal": "HugePages_Total",
              "hugepagesFree": "HugePages_Free", "active_anon": "Active(anon)",
              "inactive_file": "Inactive(file)", "unevictable": "Unevictable"}
_NUMA_ALLOC = {"hit": "numa_hit", "miss": "numa_miss", "foreign": "numa_foreign",
               "interleave_hit": "interleave_hit", "local_node": "local_node",
               "other_node": "other_node"}


def _check_numa(data, cap):
    nm = numa.read(corpus_root("pcp", "unpacked", cap))
    util = values(data, cap, "mem.numa.util.")
    alloc = values(data, cap, "mem.numa.alloc.")
    checked = 0
    for pcp_name, key in _NUMA_UTIL.items():
        for inst, want in util.get(pcp_name, {}).items():
            assert nm.nodes[int(inst[4:])].meminfo[key] == want, (cap, pcp_name, inst)
            checked += 1
    for pcp_name, key in _NUMA_ALLOC.items():
        for inst, want in alloc[pcp_name].items():
            assert nm.nodes[int(inst[4:])].numastat[key] == want, (cap, pcp_name, inst)
            checked += 1
    assert sorted(nm.nodes) == sorted(int(i[4:]) for i in util["total"])
    return nm, checked


@pytest.mark.parametrize("cap", ROOTS)
def test_numa_per_node(pcp821, cap):
    _, checked = _check_numa(pcp821, cap)
    assert checked >= 20


def test_numa_root_008_two_nodes_with_cpus_and_distance(pcp1663):
    # 1663.out has no mem.numa values for this capture (it has no proc/meminfo), so only the
    # shape is checked here: two nodes, a symmetric SLIT, disjoint CPU lists.
    assert not pcp1663["meminfo-root-008"]["mem.numa.alloc.hit"]
    nm = numa.read(corpus_root("pcp", "unpacked", "meminfo-root-008"))
    assert sorted(nm.nodes) == [0, 1]
    assert nm.nodes[0].numastat["numa_hit"] > 0 and nm.nodes[1].meminfo["MemTotal"] > 0
    # a 2-node SLIT: 10 to itself, symmetric
    d0, d1 = nm.nodes[0].distance, nm.nodes[1].distance
    assert d0[0] == d1[1] == 10 and d0[1] == d1[0] > 10
    assert set(nm.nodes[0].cpus).isdisjoint(nm.nodes[1].cpus)


# ---------------------------------------------------------------- pressure (1258.out)

@pytest.fixture(scope="module")
def pcp1258():
    return load_pminfo(corpus("pcp", "expected", "1258.out"))


@pytest.mark.parametrize("cap", ["pressure-root-001", "pressure-root-002"])
def test_pressure(pcp1258, cap):
    p = pressure.read(corpus_root("pcp", "unpacked", cap))
    data = pcp1258[cap]
    checked = 0
    for metric, insts in data.items():
        m = re.fullmatch(r"kernel\.all\.pressure\.(\w+)\.(some|full)\.(avg|total)", metric)
        if not m or not insts:
            continue
        res, kind, what = m.groups()
        line = getattr(getattr(p, res), kind)
        assert line is not None, metric
        if what == "avg":
            # PCP keeps averages as 32-bit floats and prints them rounded: 0.42 shows as 0.41
            for inst, want in insts.items():
                window = {"10 second": line.avg10, "1 minute": line.avg60,
                          "5 minute": line.avg300}[inst]
                assert abs(window - want) <= 0.011, (metric, inst)
        else:
            # 1258.out prints totals through the QA filter as <total // 1000>.<last 2 digits>
            want = insts[None]
            assert int(want) == line.total_usec // 1000, metric
            assert round((want - int(want)) * 100) == line.total_usec % 100, metric
        checked += 1
    assert checked >= 10
    if cap == "pressure-root-001":
        assert p.cpu.full is None and p.irq is None  # pre-5.13 cpu file: "some" only
    else:
        assert p.irq.some is None and p.irq.full is not None


def test_every_proc_meminfo_in_the_corpora_parses():
    from tests.conftest import corpus_files
    files = corpus_files("**/proc/meminfo")
    assert len(files) >= 12
    for f in files:
        # gopsutil issue1002 is a 2.4-era meminfo that opens with the old byte table
        # ("total: used: free: ..." / "Mem: ..." / "Swap: ..."): skipped, the kB lines parse.
        m = meminfo.parse(f.read_text(), str(f))
        assert m.mem_total_kb and m.mem_free_kb is not None, f
