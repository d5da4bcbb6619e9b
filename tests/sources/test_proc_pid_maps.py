import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import maps
from tests.conftest import corpus_root


def test_procfs_maps():
    # procfs proc_maps_test.go (26232): /bin/cat at 0x55680ae1e000, inode 47316994, dev fd:01
    m = maps.read(corpus_root("procfs"), 26232)
    r = m.regions[0]
    assert (r.start, r.end, r.perms, r.offset, r.dev, r.inode, r.pathname) == \
        (0x55680ae1e000, 0x55680ae20000, "r--p", 0, "fd:01", 47316994, "/bin/cat")
    assert [x.pathname for x in m.regions if x.pathname.startswith("[")] == \
        ["[heap]", "[stack]", "[vvar]", "[vdso]", "[vsyscall]"]
    assert m.regions[1].offset == 0xA000 and m.regions[1].perms == "rwxs"


def test_anonymous_region_has_empty_path():
    m = maps.read(corpus_root("procfs"), 26234)  # 2.4-era, single-space separated
    assert m.regions[2].pathname == "" and m.regions[0].pathname == "/bin/tcsh"


@pytest.mark.parametrize("text", ["0040-0050 r-xp", "zz-00 r-xp 0 fd:01 1", "00400000 r-xp 0 fd:01 1 /x"])
def test_malformed(text):
    with pytest.raises(ParseError):
        maps.parse(text)
