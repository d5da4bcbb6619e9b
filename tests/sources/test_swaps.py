import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import meminfo, swaps
from tests.conftest import corpus_root, corpus_text


def test_procfs_values():
    # procfs swaps_test.go: /dev/dm-2 partition, size 131068, used 176, priority -2
    s = swaps.parse(corpus_text("procfs", "proc", "swaps"))
    assert s.devices == (swaps.SwapDevice("/dev/dm-2", "partition", 131068, 176, -2),)


def test_node_exporter():
    s = swaps.read(corpus_root("node_exporter"))
    assert s.devices[0].filename == "/dev/zram0" and s.devices[0].priority == 100
    assert s.size_kb == 8388604 and s.used_kb == 76


def test_header_only_means_no_swap():
    s = swaps.parse("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
    assert s.devices == () and s.size_kb == 0


def test_escaped_filename():
    s = swaps.parse("Filename Type Size Used Priority\n/swap\\040file file 1024 0 -2\n")
    assert s.devices[0].filename == "/swap file" and s.devices[0].type == "file"


@pytest.mark.parametrize("text", [
    "", "garbage\n", "Filename Type Size Used Priority\n/dev/sda2 partition 100 x -1\n",
    "Filename Type Size Used Priority\n/dev/sda2 partition 1000",  # truncated mid-line
])
def test_bad_input(text):
    with pytest.raises(ParseError):
        swaps.parse(text)


def test_live_matches_meminfo():
    root = LiveRoot()
    s = swaps.read(root)
    m = meminfo.read(root)
    assert s.size_kb == m.swap_total_kb
    # SwapFree also excludes pages in the swap cache accounting window; allow a little slack
    assert abs((m.swap_total_kb - m.swap_free_kb) - s.used_kb) <= max(1024, 0.01 * s.size_kb)
