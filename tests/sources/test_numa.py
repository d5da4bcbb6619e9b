import pytest

from ksight.errors import ParseError, Unavailable
from ksight.fs import DirRoot, LiveRoot
from ksight.sources import meminfo, numa
from tests.conftest import corpus_root


@pytest.mark.parametrize("text,want", [
    ("0-3,8,10-11", (0, 1, 2, 3, 8, 10, 11)),
    ("0", (0,)),
    ("0-1\n", (0, 1)),
    ("", ()),
    ("\n", ()),
    ("0-7:2/4", (0, 1, 4, 5)),  # the kernel's used/group form (bitmap_parselist)
])
def test_parse_cpulist(text, want):
    assert numa.parse_cpulist(text) == want


@pytest.mark.parametrize("text", ["a-b", "3-1", "0-", "1,,2", "0-3:0"])
def test_parse_cpulist_bad(text):
    with pytest.raises(ParseError):
        numa.parse_cpulist(text)


def test_node_exporter_three_nodes():
    # node_exporter e2e-output.txt: node_memory_numa_MemTotal{node="0"} 1.3740271616e+11
    # (= 134182340 kB), node_memory_numa_numa_foreign_total{node="0"} 5.98586233e+10
    nm = numa.read(corpus_root("node_exporter"))
    assert sorted(nm.nodes) == [0, 1, 2]
    n0 = nm.nodes[0]
    assert n0.meminfo["MemTotal"] * 1024 == 137402716160
    assert n0.numastat["numa_foreign"] == 59858623300
    assert n0.meminfo["HugePages_Total"] == 0 and "Node 0 MemTotal" not in n0.meminfo
    assert n0.cpus == (0, 1) and nm.nodes[1].cpus == (2, 3)
    assert n0.distance is None  # not in that fixture: absent, not empty


def test_pcp_sysfs_numa_distance_matrix():
    # PCP sysfs-numa-001: 4 nodes, SLIT 10 on the diagonal, 20 elsewhere; 2 CPUs per node
    nm = numa.read(corpus_root("pcp", "unpacked", "sysfs-numa-001"))
    assert sorted(nm.nodes) == [0, 1, 2, 3]
    for n, node in nm.nodes.items():
        assert node.distance == tuple(10 if i == n else 20 for i in range(4))
        assert node.cpus == (2 * n, 2 * n + 1)
        assert node.meminfo["MemTotal"] - node.meminfo["MemFree"] == node.meminfo["MemUsed"]


def test_no_node_directory_is_unavailable(tmp_path):
    (tmp_path / "sys" / "devices" / "system").mkdir(parents=True)
    with pytest.raises(Unavailable):
        numa.read(DirRoot(str(tmp_path)))
    (tmp_path / "sys" / "devices" / "system" / "node").mkdir()
    (tmp_path / "sys" / "devices" / "system" / "node" / "online").write_text("0\n")
    with pytest.raises(Unavailable):
        numa.read(DirRoot(str(tmp_path)))


def test_missing_optional_files_are_none(tmp_path):
    d = tmp_path / "sys" / "devices" / "system" / "node" / "node0"
    d.mkdir(parents=True)
    (d / "meminfo").write_text("Node 0 MemTotal: 100 kB\nNode 0 HugePages_Free: 3\n")
    nm = numa.read(DirRoot(str(tmp_path)))
    assert nm.nodes[0].meminfo == {"MemTotal": 100, "HugePages_Free": 3}
    assert nm.nodes[0].cpus is None and nm.nodes[0].distance is None
    assert nm.nodes[0].numastat == {}


@pytest.mark.parametrize("text", [
    "garbage\n", "Node 0 MemTotal: abc kB\n", "Node 0 MemTotal: 5 MB\n",
    "Node 1 MemTotal: 5 kB\n",  # another node's line in node0's file
    "Node 0 MemTotal: 100 kB\nNode 0 MemFr",  # truncated mid-line
])
def test_bad_meminfo(text):
    with pytest.raises(ParseError) as ei:
        numa.parse_meminfo(text, "sys/devices/system/node/node0/meminfo", 0)
    assert ei.value.path.endswith("node0/meminfo")


def test_every_node_meminfo_in_the_corpora_parses():
    from tests.conftest import corpus_files
    files = corpus_files("**/node[0-9]*/meminfo")
    assert len(files) >= 19
    for f in files:
        n = int(f.parent.name[4:])
        m = numa.parse_meminfo(f.read_text().rstrip("\x00"), str(f), n)
        assert m["MemTotal"] > 0, f


def test_live():
    root = LiveRoot()
    try:
        nm = numa.read(root)
    except Unavailable:
        pytest.skip("kernel without CONFIG_NUMA")
    m = meminfo.read(root)
    total = sum(n.meminfo["MemTotal"] for n in nm.nodes.values())
    all_cpus = sorted(c for n in nm.nodes.values() for c in (n.cpus or ()))
    assert len(all_cpus) == len(set(all_cpus)) >= 1
    assert nm.nodes[min(nm.nodes)].distance[0] == 10 or len(nm.nodes) > 1
    if abs(total - m.mem_total_kb) > 0.01 * m.mem_total_kb:
        # seen here (Firecracker guest with virtio-mem): /proc/meminfo MemTotal 24684092 kB,
        # node0 MemTotal 4286676 kB = the zones' managed pages (see test_zoneinfo)
        pytest.skip(f"/proc/meminfo MemTotal {m.mem_total_kb} kB != nodes' {total} kB here")
    assert total == m.mem_total_kb
