import ctypes
import ctypes.util
import subprocess

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import sysvipc_shm
from tests.conftest import corpus_root, corpus_text


def test_pcp_sysvipc_root_001():
    s = sysvipc_shm.read(corpus_root("pcp", "unpacked", "sysvipc-root-001"))
    assert len(s.segments) == 16  # 17 lines - header
    by_id = {seg.shmid: seg for seg in s.segments}
    # hand-read rows of the capture
    g = by_id[1474565]
    assert (g.key, g.size_bytes, g.cpid, g.lpid, g.nattch) == (0, 32763904, 29440, 4383, 2)
    assert (g.rss_bytes, g.swap_bytes) == (27246592, 5517312)
    assert g.perms == 0o1600 and g.marked_for_removal
    last = by_id[2916367]
    assert (last.key, last.perms, last.nattch, last.ctime) == (493364125, 0o600, 42, 1554334590)
    assert not last.marked_for_removal
    assert by_id[44793865].dtime == 0
    assert s.total_bytes == sum(int(l.split()[3]) for l in
                                corpus_text("pcp", "unpacked", "sysvipc-root-001", "proc", "sysvipc", "shm").splitlines()[1:])


def test_pcp_sysvipc_root_002():
    s = sysvipc_shm.read(corpus_root("pcp", "unpacked", "sysvipc-root-002"))
    (seg,) = s.segments
    assert (seg.key, seg.shmid, seg.perms, seg.size_bytes, seg.nattch, seg.swap_bytes) == (1111, 0, 0o1570, 666, 777, 778240)


OLD = """\
       key      shmid perms       size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime
         0      32768  1600     393216  2219  2375      2  1000  1000  1000  1000 1224002541 1224002541 1224002505
"""


def test_old_kernel_without_rss_swap():
    (seg,) = sysvipc_shm.parse(OLD).segments
    assert seg.rss_bytes is None and seg.swap_bytes is None
    assert seg.uid == 1000 and seg.size_bytes == 393216
    assert sysvipc_shm.parse(OLD).rss_bytes is None


def test_header_only():
    assert sysvipc_shm.parse(OLD.splitlines()[0] + "\n").segments == ()


@pytest.mark.parametrize("text", [
    "",
    "garbage\n",
    OLD + "         0      32768  1600     393216  2219\n",  # cut mid-line
    OLD.replace("1600", "16x0"),
    OLD.replace("1600", "1900"),  # not octal
])
def test_malformed(text):
    with pytest.raises(ParseError):
        sysvipc_shm.parse(text)


def test_live_segment_we_create():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
    size = 3 * 4096 + 5
    shmid = libc.shmget(IPC_PRIVATE, ctypes.c_size_t(size), IPC_CREAT | 0o640)
    if shmid < 0:
        pytest.skip("shmget failed (SysV IPC not available)")
    try:
        s = sysvipc_shm.read(LiveRoot())
        seg = next(x for x in s.segments if x.shmid == shmid)
        assert seg.size_bytes == size and seg.perms & 0o777 == 0o640 and seg.nattch == 0
        # cross-check with ipcs(1), which reads the same via shmctl(SHM_STAT)
        try:
            out = subprocess.run(["ipcs", "-m", "-i", str(shmid)], capture_output=True, text=True, timeout=10).stdout
        except FileNotFoundError:
            out = ""
        if out:
            assert f"segsz={size}" in out.replace(" ", "") or str(size) in out
    finally:
        libc.shmctl(shmid, IPC_RMID, None)
    assert all(x.shmid != shmid for x in sysvipc_shm.read(LiveRoot()).segments)
