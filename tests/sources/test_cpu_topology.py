import os
import subprocess

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import cpu_topology
from ksight.sources.cpu_topology import parse_cpulist, parse_cpumask
from tests.conftest import corpus_root, need_tool


def test_parse_cpulist():
    assert parse_cpulist("0-3,8\n") == (0, 1, 2, 3, 8)
    assert parse_cpulist("1,3-5,9") == (1, 3, 4, 5, 9)  # node_exporter sys/devices/system/cpu/isolated
    assert parse_cpulist("") == ()
    assert parse_cpulist("0-7:2/4") == (0, 1, 4, 5)
    for bad in ("0-", "a", "3-1", "1,,2"):
        with pytest.raises(ParseError):
            parse_cpulist(bad)


def test_parse_cpumask():
    assert parse_cpumask("11") == (0, 4)  # procfs cpu0 thread_siblings "11" = list "0,4"
    assert parse_cpumask("00000000,00000100\n") == (8,)
    with pytest.raises(ParseError):
        parse_cpumask("zz")


def test_procfs_tree():
    t = cpu_topology.read(corpus_root("procfs"))
    # prometheus/procfs sysfs fixture: cpu0 core_id 0, package 0, thread_siblings_list "0,4",
    # core_siblings_list "0-7"; cpu1 thread_siblings_list "1,5"
    assert t.cpus[0].thread_siblings == (0, 4)
    assert t.cpus[0].core_siblings == tuple(range(8))
    assert t.cpus[1].thread_siblings == (1, 5) and t.cpus[1].core_id == 1
    assert t.online is None  # the fixture has no cpu/online file: absent, not empty
    assert t.caches == () and t.cpus[0].die_id is None
    assert t.smt is True


def test_node_exporter_tree():
    t = cpu_topology.read(corpus_root("node_exporter"))
    assert t.online == (0, 1, 2, 3)
    # e2e-output.txt node_cpu_core_throttles_total has core 0,1 in package 0 and 1
    assert {(c.package_id, c.core_id) for c in t.cpus.values()} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert t.packages == 2 and t.cores == 4
    assert t.cpus[0].thread_siblings is None  # not captured: None, not ()


def test_pcp_sysfs_numa_caches_deduplicated():
    t = cpu_topology.read(corpus_root("pcp", "unpacked", "sysfs-numa-001"))
    assert t.online == tuple(range(8))
    # hand-read: 4 packages of 2 cores; per CPU 32K L1d, 32K L1i, 4096K L2 private,
    # 16384K L3 shared by the package ("0-1", "4-5", ...)
    assert t.packages == 4 and t.cpus[5].package_id == 2 and t.cpus[5].core_siblings == (4, 5)
    l3 = t.cache(3)
    assert [c.shared_cpus for c in l3] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert {(c.size_kb, c.line_size, c.ways) for c in l3} == {(16384, 64, 16)}
    assert len(t.cache(1, "Data")) == 8 and len(t.cache(1, "Instruction")) == 8
    assert len(t.cache(2)) == 8 and t.cache(2)[0].size_kb == 4096
    assert len(t.caches) == 28


def test_offline_cpu_and_missing_cache(tmp_path):
    base = tmp_path / "sys/devices/system/cpu"
    (base / "cpu0/topology").mkdir(parents=True)
    (base / "cpu1").mkdir()  # offline: no topology directory
    (base / "online").write_text("0\n")
    (base / "cpu0/topology/core_id").write_text("0\n")
    (base / "cpu0/topology/physical_package_id").write_text("0\n")
    from ksight.fs import DirRoot
    t = cpu_topology.read(DirRoot(str(tmp_path)))
    assert list(t.cpus) == [0] and t.online == (0,) and t.caches == ()
    (base / "cpu0/topology/core_id").write_text("zero\n")
    with pytest.raises(ParseError):
        cpu_topology.read(DirRoot(str(tmp_path)))


def test_cache_sizes():
    assert cpu_topology.parse_cache_size_kb("32K", "x") == 32
    assert cpu_topology.parse_cache_size_kb("8M\n", "x") == 8192
    with pytest.raises(ParseError):
        cpu_topology.parse_cache_size_kb("32 KB", "x")


def _getconf(name: str) -> int | None:
    out = subprocess.run([need_tool("getconf"), name], capture_output=True, text=True, timeout=10).stdout.strip()
    return int(out) if out.isdigit() and int(out) > 0 else None  # '' or 0: glibc does not know


def _vendor() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    return ""


def test_live_against_lscpu_topology():
    t = cpu_topology.read(LiveRoot())
    assert set(t.online) <= set(t.cpus) | set(range(os.cpu_count() or 0))
    assert len(t.online) >= len(os.sched_getaffinity(0))
    out = subprocess.run([need_tool("lscpu"), "-p"], capture_output=True, text=True, timeout=10).stdout
    header = [l for l in out.splitlines() if l.startswith("# CPU,")][0][2:].split(",")
    col = {name: i for i, name in enumerate(header) if name}
    rows = [l.split(",") for l in out.splitlines() if l and not l.startswith("#")]
    assert sorted(int(r[col["CPU"]]) for r in rows) == sorted(t.cpus)
    for r in rows:
        assert t.cpus[int(r[col["CPU"]])].package_id == int(r[col["Socket"]])
        assert t.cpus[int(r[col["CPU"]])].core_id is not None
    # lscpu gives each cache instance an id: distinct ids per column = instances we dedupe to
    for name, level, ctype in [("L1d", 1, "Data"), ("L1i", 1, "Instruction"), ("L2", 2, "Unified"),
                               ("L3", 3, "Unified")]:
        if name not in col:
            continue
        ids = {r[col[name]] for r in rows if r[col[name]] != ""}
        if ids:
            assert len(t.cache(level, ctype)) == len(ids), (level, ctype)


_LSCPU_C = "NAME,ONE-SIZE,ALL-SIZE,WAYS,TYPE,LEVEL,COHERENCY-SIZE"


def test_live_cache_sizes_against_lscpu():
    # `lscpu -C` (util-linux >= 2.34): per cache kind, the size of one instance and of all of
    # them together; ALL-SIZE / ONE-SIZE is the number of instances on this machine
    p = subprocess.run([need_tool("lscpu"), "-C=" + _LSCPU_C, "--bytes"], capture_output=True,
                       text=True, timeout=10)
    if p.returncode != 0:
        pytest.skip(f"lscpu -C not supported here (util-linux < 2.34?): {p.stderr.strip()}")
    t = cpu_topology.read(LiveRoot())
    lines = [l.split() for l in p.stdout.splitlines()[1:] if l.strip()]
    if not lines or not t.caches:
        pytest.skip("this machine exposes no CPU cache information (no cpuN/cache in sysfs)")
    seen = 0
    for name, one, all_, ways, ctype, level, line in lines:
        got = t.cache(int(level), ctype)
        assert got, (name, level, ctype)
        sizes = {c.size_kb for c in got}
        assert sizes == {int(one) // 1024}, (name, sizes, one)
        assert len(got) * int(one) == int(all_), (name, len(got), one, all_)
        if ways != "-" and ways != "0":
            assert {c.ways for c in got} == {int(ways)}, name
        if line != "-":
            assert {c.line_size for c in got} == {int(line)}, name
        seen += 1
    assert seen == len({(c.level, c.type) for c in t.caches})


def test_live_cache_sizes_against_getconf():
    """glibc's getconf reads CPUID, not sysfs, and does not always mean one instance:
    on Intel (CPUID leaf 4) every level is the size of one cache instance; on AMD and Hygon
    (leaf 0x80000006) L1 and L2 are per core but LEVEL3_CACHE_SIZE is the L3 of the whole
    processor: e.g. 384 MiB on an EPYC with twelve 32 MiB L3 instances, of which a VM's sysfs
    shows one. So L1/L2 must equal the per-instance size; on AMD, L3 must be a whole multiple of
    it, at least as large as the L3 sysfs shows for one package; elsewhere L3 equals it."""
    t = cpu_topology.read(LiveRoot())
    if not t.caches:
        pytest.skip("this machine exposes no CPU cache information (no cpuN/cache in sysfs)")
    whole_chip_l3 = _vendor() in ("AuthenticAMD", "HygonGenuine")
    checked = 0
    for name, level, ctype in [("LEVEL1_DCACHE", 1, "Data"), ("LEVEL1_ICACHE", 1, "Instruction"),
                               ("LEVEL2_CACHE", 2, "Unified"), ("LEVEL3_CACHE", 3, "Unified")]:
        size = _getconf(name + "_SIZE")
        got = t.cache(level, ctype)
        if size is None or not got:
            continue  # glibc reports 0 or nothing for this level (common in VMs)
        one = got[0].size_kb * 1024
        if level == 3 and whole_chip_l3:
            per_package: dict = {}
            for c in got:
                pkg = t.cpus[c.shared_cpus[0]].package_id
                per_package[pkg] = per_package.get(pkg, 0) + c.size_kb * 1024
            assert size % one == 0 and size >= max(per_package.values()), (name, size, one)
        else:
            assert size == one, (name, size, one)
        line = _getconf(name + "_LINESIZE")
        if line:
            assert got[0].line_size == line, name
        ways = _getconf(name + "_ASSOC")
        if ways and not (level == 3 and whole_chip_l3):
            assert got[0].ways == ways, name
        checked += 1
    if not checked:
        pytest.skip("getconf reports no cache size that sysfs also has")
