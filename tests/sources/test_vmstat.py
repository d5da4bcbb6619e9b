import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import vmstat, zoneinfo
from tests.conftest import corpus_files, corpus_text


def test_node_exporter_values():
    # node_exporter e2e-output.txt: node_vmstat_pgfault 2.320168809e+09, node_vmstat_pswpout 35045,
    # node_vmstat_pgmajfault 507162 (tests/sources/test_corpora_node_exporter.py checks them all)
    v = vmstat.parse(corpus_text("node_exporter", "proc", "vmstat"))
    assert v.get("pgfault") == 2320168809
    assert v.get("pswpout") == 35045
    assert v.get("pgmajfault") == 507162


def test_pcp_values():
    # pcp/expected/821.out, meminfo-root-001: mem.vmstat.nr_free_pages 1159538, pgfault 414185127
    v = vmstat.parse(corpus_text("pcp", "unpacked", "meminfo-root-001", "proc", "vmstat"))
    assert v.get("nr_free_pages") == 1159538
    assert v.get("pgfault") == 414185127
    assert v.get("oom_kill") is None  # 821.out: "No value(s) available" on that kernel


def test_total_sums_variants_and_none_when_absent():
    v = vmstat.parse("pgscan_direct_normal 3\npgscan_direct_dma32 4\npgfault 1\n")
    assert v.total(prefix="pgscan_direct") == 7
    assert v.total("allocstall") is None


@pytest.mark.parametrize("text", ["", "garbage\n", "pgfault x\n", "pgfault 1\npgmaj",
                                  "pgfault 1 2\n"])
def test_bad_input(text):
    with pytest.raises(ParseError):
        vmstat.parse(text)


def test_every_vmstat_in_the_corpora_parses():
    # proc/vmstat and the per-node sys/devices/system/node/nodeN/vmstat (same format)
    files = corpus_files("**/vmstat")
    assert len(files) >= 15
    for f in files:
        v = vmstat.parse(f.read_text().rstrip("\x00"), str(f))
        assert v.counters, f


def test_live_nr_free_pages_matches_zoneinfo():
    root = LiveRoot()
    v = vmstat.read(root)
    z = zoneinfo.read(root)
    free = sum(x.free_pages or 0 for x in z.zones)
    assert abs(v.get("nr_free_pages") - free) <= 0.02 * free
    assert v.get("pgfault") > 0


def test_nameless_value_line_is_skipped():
    # PCP meminfo-root-006 node0/vmstat line 47 is " 176096": a counter printed without a name
    v = vmstat.parse("nr_written 5\n 176096\nnr_dirty_threshold 7\n")
    assert v.counters == {"nr_written": 5, "nr_dirty_threshold": 7}
    with pytest.raises(ParseError) as ei:
        vmstat.parse("nr_written 5\n 176096\nbad x\n")
    assert ei.value.lineno == 3  # line numbers still point at the file's lines
