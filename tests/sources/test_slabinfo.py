import re

import pytest

from ksight.errors import ParseError, Unavailable
from ksight.fs import LiveRoot
from ksight.sources import slabinfo
from tests.conftest import IS_ROOT, corpus_text

PAGE = 4096  # PCP's expected output was made with PAGESIZE=4096


def pcp_slab_expected() -> dict[str, dict[str, dict[str, int]]]:
    """pcp/expected/821.out "Checking slabinfo metric values" blocks: capture -> metric -> cache -> value."""
    out: dict = {}
    cap = metric = None
    for line in corpus_text("pcp", "expected", "821.out").splitlines():
        m = re.match(r"== Checking (\w+) metric values - (meminfo-root-\d+)\.tgz", line)
        if m:
            cap = m.group(2) if m.group(1) == "slabinfo" else None
            continue
        if cap is None:
            continue
        if line.startswith("mem.slabinfo."):
            metric = line.strip()
            continue
        m = re.match(r'\s+inst \[N or "(.*)"\] value (\d+)$', line)
        if m and metric:
            out.setdefault(cap, {}).setdefault(metric, {})[m.group(1)] = int(m.group(2))
    return out


FIELD = {
    "mem.slabinfo.objects.active": lambda c: c.active_objs,
    "mem.slabinfo.objects.total": lambda c: c.num_objs,
    "mem.slabinfo.objects.size": lambda c: c.objsize,
    "mem.slabinfo.slabs.active": lambda c: c.active_slabs,
    "mem.slabinfo.slabs.total": lambda c: c.num_slabs,
    "mem.slabinfo.slabs.objects_per_slab": lambda c: c.objperslab,
    "mem.slabinfo.slabs.pages_per_slab": lambda c: c.pagesperslab,
    # PCP (src/pmdas/linux/proc_slabinfo.c, v2.x) estimates the bytes of the *active* objects'
    # slabs: pagesperslab * active_objs * pagesize / objperslab (integer division), not
    # num_slabs * pagesperslab * pagesize (= our slab_bytes, checked by hand in another test).
    "mem.slabinfo.slabs.total_size": lambda c: c.pagesperslab * c.active_objs * PAGE // c.objperslab,
}


def test_pcp_821_every_value():
    exp = pcp_slab_expected()
    assert sorted(exp) == [f"meminfo-root-00{i}" for i in range(1, 8)]
    checked = 0
    for cap, metrics in exp.items():
        s = slabinfo.parse(corpus_text("pcp", "unpacked", cap, "proc", "slabinfo"))
        assert s.version == "2.1"
        for metric, insts in metrics.items():
            get = FIELD[metric]
            for name, want in insts.items():
                assert get(s.caches[name]) == want, (cap, metric, name)
                checked += 1
        # PCP lists one instance per cache line (file lines - 2 header lines): same set
        assert set(metrics["mem.slabinfo.objects.active"]) == set(s.caches)
    assert checked > 7000


def test_procfs_and_node_exporter_fixtures():
    s = slabinfo.parse(corpus_text("procfs", "proc", "slabinfo"))
    # first data row, hand-read: pid_3 375 532 576 28 4 : ... : slabdata 19 19 0
    c = s.caches["pid_3"]
    assert (c.active_objs, c.num_objs, c.objsize, c.objperslab, c.pagesperslab) == (375, 532, 576, 28, 4)
    assert (c.active_slabs, c.num_slabs, c.sharedavail) == (19, 19, 0)
    assert c.objs_bytes == 532 * 576
    assert c.slab_bytes(4096) == 19 * 4 * 4096
    assert len(s.caches) == 300  # 302 lines - 2 header lines
    n = slabinfo.parse(corpus_text("node_exporter", "proc", "slabinfo"))
    assert len(n.caches) == 4


def test_old_version_1_1():
    text = ("slabinfo - version: 1.1\n"
            "kmem_cache            59     78    100    2    2    1 :  252  126\n")
    c = slabinfo.parse(text).caches["kmem_cache"]
    assert (c.active_objs, c.num_objs, c.objsize, c.active_slabs, c.num_slabs, c.pagesperslab) == (59, 78, 100, 2, 2, 1)
    assert c.objperslab is None


def test_debug_stats_sections_are_skipped():
    text = ("slabinfo - version: 2.1 (statistics)\n"
            "# name ...\n"
            "ext4_inode 10 20 1000 4 1 : tunables 54 27 8 : slabdata 5 5 0 : globalstat 1 2 3 : cpustat 4 5 6 7\n")
    c = slabinfo.parse(text).caches["ext4_inode"]
    assert (c.limit, c.batchcount, c.sharedfactor, c.num_slabs) == (54, 27, 8, 5)


HDR = "slabinfo - version: 2.1\n# name <active_objs> ...\n"


@pytest.mark.parametrize("text", [
    "",
    "garbage\n",
    "slabinfo - version: 3.0\n",
    HDR + "pid_3  375  532  576   28    4 : tunables    0    0    0 : slabdata     19\n",  # cut mid-line
    HDR + "pid_3  375  532  576   28 : tunables 0 0 0 : slabdata 19 19 0\n",              # a column missing
    HDR + "pid_3  375  5x2  576   28 4 : tunables 0 0 0 : slabdata 19 19 0\n",
    HDR + "pid_3  375  532  576   28 4 : tunables 0 0 0\n",                                # no slabdata
])
def test_malformed(text):
    with pytest.raises(ParseError):
        slabinfo.parse(text)


def test_live():
    if not IS_ROOT:
        with pytest.raises(Unavailable):
            slabinfo.read(LiveRoot())
        return
    s = slabinfo.read(LiveRoot())
    assert s.version.startswith("2.")
    # independent: /proc/slabinfo has one line per cache after the 2 header lines
    lines = open("/proc/slabinfo").read().splitlines()[2:]
    names = {ln.split()[0] for ln in lines}
    assert abs(len(s.caches) - len(names)) <= 5  # caches come and go between the reads
    # every cache's memory is whole pages; a kernel always has a kmalloc cache
    assert any(n.startswith("kmalloc-") for n in s.caches)
