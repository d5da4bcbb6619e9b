import pytest

from ksight.errors import ParseError
from ksight.sources import meminfo
from tests.conftest import corpus_text, corpus_root


def test_procfs_values():
    # prometheus/procfs meminfo_test.go: MemTotal 15666184 kB, MemFree 440324, SReclaimable 1738124
    m = meminfo.parse(corpus_text("procfs", "proc", "meminfo"))
    assert m.mem_total_kb == 15666184
    assert m.mem_free_kb == 440324
    assert m.sreclaimable_kb == 1738124


def test_gopsutil_values():
    # gopsutil mem_linux_test.go: Total 16502300672 B, Available 11495358464 B, Cached 4069036032 B
    m = meminfo.parse(corpus_text("gopsutil", "mem", "testdata", "linux", "virtualmemory",
                                  "intelcorei5", "proc", "meminfo"))
    assert m.mem_total_kb * 1024 == 16502300672
    assert m.mem_available_kb * 1024 == 11495358464
    # gopsutil's "Cached" is Cached + SReclaimable (as free(1) counts buff/cache)
    assert (m.cached_kb + m.sreclaimable_kb) * 1024 == 4069036032
    # "used" as gopsutil and sysstat define it: total - available
    assert (m.mem_total_kb - m.mem_available_kb) * 1024 == 5006942208


def test_read_through_root():
    m = meminfo.read(corpus_root("node_exporter"))
    assert m.mem_total_kb == 3742148  # node_memory_MemTotal_bytes 3.831959552e+09 / 1024


def test_absent_field_is_none_not_zero():
    m = meminfo.parse("MemTotal: 100 kB\nMemFree: 50 kB\n")
    assert m.mem_available_kb is None
    assert m.mem_total_kb == 100


def test_unknown_lines_are_kept_but_not_typed():
    m = meminfo.parse("MemTotal: 100 kB\nFutureField: 7 kB\n")
    assert m.fields["FutureField"] == 7


@pytest.mark.parametrize("text", ["MemTotal 100 kB\n", "MemTotal: abc kB\n", "MemTotal:\n",
                                  "MemTotal: 5 MB\n"])
def test_malformed_line_names_path_and_line(text):
    with pytest.raises(ParseError) as ei:
        meminfo.parse("MemFree: 1 kB\n" + text)
    assert ei.value.path == "proc/meminfo"
    assert ei.value.lineno == 2


def test_24_era_byte_table_is_skipped():
    # gopsutil issue1002: the 2.4 "total: used: free:" table precedes the kB lines
    from tests.conftest import corpus_files
    f = next(iter(corpus_files("gopsutil/**/issue1002/**/meminfo")), None) or pytest.skip("no corpus")
    m = meminfo.parse(f.read_text())
    assert m.mem_total_kb == 254472 and m.mem_free_kb == 121588
