import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import buddyinfo, zoneinfo
from tests.conftest import corpus_files, corpus_text


def test_procfs_values():
    # procfs/EXPECTED.md (buddyinfo_test.go): zone Normal order-0 free blocks 4381
    b = buddyinfo.parse(corpus_text("procfs", "proc", "buddyinfo"))
    assert [(z.node, z.zone) for z in b.zones] == [(0, "DMA"), (0, "DMA32"), (0, "Normal")]
    assert b.zone(0, "Normal").free_blocks[0] == 4381
    assert len(b.zone(0, "DMA").free_blocks) == 11
    assert b.zone(1, "Normal") is None


def test_free_pages_weights_orders():
    b = buddyinfo.parse("Node 0, zone DMA 1 2 0 1\n")
    assert b.zones[0].free_pages == 1 + 2 * 2 + 8


@pytest.mark.parametrize("text", [
    "", "  \n", "garbage\n", "Node 0, zone DMA\n", "Node 0, zone DMA 1 x 3\n",
    "Node X, zone DMA 1 2 3\n",
    # truncated mid-line: the last row is shorter than the others
    "Node 0, zone DMA 1 0 1 0 2 1 1 0 1 1 3\nNode 0, zone DMA32 759 572 79",
])
def test_bad_input(text):
    with pytest.raises(ParseError) as ei:
        buddyinfo.parse(text)
    assert ei.value.path == "proc/buddyinfo"


def test_every_buddyinfo_in_the_corpora_parses():
    files = corpus_files("**/buddyinfo")
    assert len(files) >= 3
    for f in files:
        assert buddyinfo.parse(f.read_text(), str(f)).zones


def test_live_matches_zoneinfo_zones():
    root = LiveRoot()
    b = buddyinfo.read(root)
    z = zoneinfo.read(root)
    for bz in b.zones:
        zz = z.zone(bz.node, bz.zone)
        assert zz is not None
        # free pages on the buddy lists vs the zone's NR_FREE_PAGES, read a moment apart;
        # per-CPU lists hold pages outside the buddy lists, so allow some slack
        assert abs(bz.free_pages - zz.free_pages) <= max(2048, 0.05 * zz.free_pages), bz.zone
