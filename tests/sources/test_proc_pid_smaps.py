import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import smaps
from tests.conftest import corpus_root, corpus_text

# procfs proc_smaps_test.go TestProcSmapsRollup: the same values from smaps_rollup and from
# summing smaps (kB)
PROCFS_ROLLUP = dict(rss_kb=29948, pss_kb=29944, shared_clean_kb=4, shared_dirty_kb=0, private_clean_kb=15548,
                     private_dirty_kb=14396, referenced_kb=24752, anonymous_kb=20756, swap_kb=1940,
                     swap_pss_kb=1940)


def test_procfs_rollup():
    r = smaps.read_rollup(corpus_root("procfs"), 26231)
    assert {k: getattr(r, k) for k in PROCFS_ROLLUP} == PROCFS_ROLLUP
    assert r.pss_anon_kb is None  # appeared in 5.0; this capture predates it
    assert r.uss_kb == 15548 + 14396


def test_procfs_smaps_summed():
    s = smaps.read(corpus_root("procfs"), 26231)
    r = smaps.rollup_from_smaps(s)
    assert {k: getattr(r, k) for k in PROCFS_ROLLUP} == PROCFS_ROLLUP
    first = s.regions[0]
    assert (first.start, first.end, first.perms, first.pathname) == (0x400000, 0xcb1000, "r-xp", "/bin/alertmanager")
    assert first.size_kb == 8900 and first.rss_kb == 2952 and first.vm_flags == ("rd", "ex", "mr", "mw", "me", "dw", "sd")
    assert first.key == ("/bin/alertmanager", "r-xp", 0x400000)
    assert s.total("Rss") == 29948


def test_region_matching_by_start():
    s = smaps.parse(corpus_text("procfs", "proc", "26231", "smaps"))
    fewer = smaps.Smaps(s.regions[1:])
    pairs = smaps.match(s, fewer)
    assert pairs[0] == (s.regions[0], None)
    assert all(a is b for a, b in pairs[1:])


def test_gopsutil_odd_smaps():
    # a hand-made file: fields in odd order, some missing (Pss absent in the first region)
    s = smaps.parse(corpus_text("gopsutil", "process", "testdata", "linux", "1", "smaps"))
    assert s.regions[0].pathname == "[vvar]" and s.regions[0].pss_kb is None and s.regions[0].rss_kb == 0
    assert s.regions[1].pathname == "" and s.regions[1].pss_kb == 2


@pytest.mark.parametrize("text", ["", "00400000-ffffffffff601000 ---p 00000000 00:00 0 [rollup]\n",
                                  "Rss: lots kB\n", "Rss 12 kB\n"])
def test_bad_rollup(text):
    with pytest.raises(ParseError):
        smaps.parse_rollup(text)


def test_truncated_smaps_mid_line():
    text = corpus_text("procfs", "proc", "26231", "smaps")
    cut = text[: text.index("Pss:") + 6]  # "Pss:  " with no value
    with pytest.raises(ParseError):
        smaps.parse(cut)
