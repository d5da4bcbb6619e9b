"""ksight meminfo: the view's arithmetic on real kernel text, and live (a tmpfs and an orphan
SysV segment of our own, removed in finally)."""

from __future__ import annotations

import ctypes
import io
import json
import os
import subprocess
import sys
import tempfile

import pytest

from ksight.model.snapshot import HostInfo, Snapshot
from ksight.sources import consoles, meminfo, slabinfo, sysvipc_shm, tmpfs, vmallocinfo
from ksight.views import meminfo as mv
from tests.conftest import corpus_text


def _snap(**sources) -> Snapshot:
    return Snapshot(None, None, None, HostInfo(page_size=4096), sources=sources)


def test_unexplained_by_hand_on_pcp_meminfo_root_001():
    mi = meminfo.parse(corpus_text("pcp", "unpacked", "meminfo-root-001", "proc", "meminfo"))
    u = mv.unexplained(mi)
    # by hand from the file: MemFree 4650860 + Active 5836156 + Inactive 3659244 + Unevictable 16
    # + SReclaimable 1063556 + SUnreclaim 275700 + KernelStack 13152 + PageTables 55928
    # + VmallocUsed 0 + HugePages_Total 0 x 2048 + Bounce 0 + WritebackTmp 0 = 15554612
    assert u.explained_kb == 15554612
    assert u.unexplained_kb == 16022140 - 15554612 == 467528
    assert round(u.pct, 2) == 2.92
    # Cached/AnonPages/Shmem/Buffers are inside the LRU sum: never added
    names = {t.name for t in u.terms}
    assert not names & {"Cached", "AnonPages", "Shmem", "Buffers", "Mlocked", "Mapped"}
    assert any(lo.startswith("Percpu") for lo in u.left_out)  # this kernel printed no Percpu


def test_kernel_stacks_in_vmalloc_are_not_counted_twice():
    mi = meminfo.parse("MemTotal: 100000 kB\nMemFree: 50000 kB\nActive: 10000 kB\nInactive: 10000 kB\n"
                       "Unevictable: 0 kB\nSReclaimable: 1000 kB\nSUnreclaim: 1000 kB\n"
                       "KernelStack: 16 kB\nPageTables: 100 kB\nPercpu: 100 kB\nVmallocUsed: 40 kB\n")
    # two 16 KiB stacks from kernel_clone (4 pages each, as 6.x prints them) and one 8 KiB area
    vmi = vmallocinfo.parse(
        "0xffffc90000008000-0xffffc9000000d000   20480 kernel_clone+0xb8/0x400 pages=4 vmalloc N0=4\n"
        "0xffffc90000010000-0xffffc90000015000   20480 kernel_clone+0xb8/0x400 pages=4 vmalloc N0=4\n"
        "0xffffc90000020000-0xffffc90000023000   12288 bpf_prog_alloc_no_stats+0x4c/0x2e0 pages=2 vmalloc N0=2\n")
    without = mv.unexplained(mi)
    with_vmi = mv.unexplained(mi, vmi)
    # 100000 - (50000+10000+10000+0+1000+1000+16+100+100+40) = 27744; the stacks (32 kB of
    # vmalloc pages) make KernelStack a double count: 16 kB more is unexplained
    assert without.unexplained_kb == 27744
    assert with_vmi.unexplained_kb == 27760
    assert any(lo.startswith("KernelStack") for lo in with_vmi.left_out)


def test_slab_top_as_slabtop_cache_size():
    si = slabinfo.parse(corpus_text("procfs", "proc", "slabinfo"))
    top = mv.slab_top(si, 4096, 3)
    # slabdata num_slabs x pagesperslab x 4096, from the raw lines (awk over the file):
    # ext4_inode_cache 3685 x 8, buffer_head, dentry 5454 x 4
    assert [(t.name, t.cache_size_bytes) for t in top] == [
        ("ext4_inode_cache", 120750080), ("buffer_head", 113836032), ("dentry", 89358336)]
    assert top[0].use_pct == 100 * 84136 // 84755 == 99
    assert top[2].objs == 169074 and top[2].active == 166069 and top[2].obj_size == 528


def test_sysv_segments_on_pcp_capture_and_an_orphan():
    shm = sysvipc_shm.parse(corpus_text("pcp", "unpacked", "sysvipc-root-001", "proc", "sysvipc", "shm"))
    mi = meminfo.parse("MemTotal: 100 kB\nShmem: 10 kB\n")
    part = mv.shmem_part(mi, shm, None)
    assert part.sysv_segments == 16  # 17 lines minus the header
    assert part.sysv_rss_bytes == 56332288  # awk '{r+=$15}' over the rss column
    assert part.orphans == () and part.orphan_bytes == 0  # every segment there has nattch > 0
    # an orphan: nattch 0 (the kernel's layout, one segment marked for removal: perms 1600)
    shm2 = sysvipc_shm.parse(
        "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n"
        "         0          4  1600                 16384  1234  1240      2  1000  1000  1000  1000 1700000000 1700000001 1700000002                 16384                     0\n"
        "       -17          5   600                 65536  1234     0      0  1000  1000  1000  1000          0          0 1700000003                  8192                     0\n")
    part2 = mv.shmem_part(mi, shm2, None)
    assert [o.shmid for o in part2.orphans] == [5] and part2.orphan_bytes == 8192


def test_tmpfs_capture_file_round_trip_and_missing():
    doc = {"format": 1, "mounts": [{"mount_point": "/dev/shm", "fstype": "tmpfs", "source": "tmpfs",
                                    "size_bytes": 4096 * 100, "used_bytes": 4096 * 25,
                                    "avail_bytes": 4096 * 75, "inodes": 10, "inodes_free": 9,
                                    "reason": None}]}
    t = tmpfs.parse(json.dumps(doc))
    assert t.mounts[0].used_pct == 25.0 and t.used_bytes == 102400
    for bad in ("", "{}", '{"format": 1, "mounts": [{"mount_point": 1}]}',
                '{"format": 1, "mounts": [{"mount_point": "/a", "fstype": "tmpfs", "source": "x", "used_bytes": -1}]}'):
        with pytest.raises(Exception):
            tmpfs.parse(bad)
    from ksight.errors import Unavailable
    from ksight.fs import DirRoot
    with tempfile.TemporaryDirectory() as d:
        with pytest.raises(Unavailable, match="statfs"):
            tmpfs.read(DirRoot(d))


def test_report_says_what_is_missing():
    mi = meminfo.parse(corpus_text("pcp", "unpacked", "meminfo-root-001", "proc", "meminfo"))
    from ksight.model.snapshot import Missing
    snap = Snapshot(None, None, None, HostInfo(), sources={"meminfo": mi},
                    unavailable=(Missing("vmallocinfo", "permission denied"),))
    rep = mv.report(snap)
    assert rep.vmalloc.top is None and rep.slab.top is None
    buf = io.StringIO()
    from ksight.render.meminfo_text import render
    render(rep, buf)
    assert "callers: unavailable (permission denied)" in buf.getvalue()
    assert "467,528" in buf.getvalue() or "456.6 MiB" in buf.getvalue()


def test_consoles_parse():
    c = consoles.parse("ttyS0                -W- (EC  p a)    4:64\ntty0                 -WU (E  p  )    4:1\n")
    assert [x.name for x in c.serial_enabled()] == ["ttyS0"]
    assert c.consoles[0].flags == "ECpa" and c.consoles[1].minor == 1


# ---- live -----------------------------------------------------------------------------------

IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"), reason="needs root")
def test_live_tmpfs_and_orphan_sysv_segment_are_shown():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget.restype = ctypes.c_int
    libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
    libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
    libc.shmdt.argtypes = (ctypes.c_void_p,)
    d = tempfile.mkdtemp(prefix="ksight-test-meminfo-")
    mounted = False
    shmid = -1
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "ksighttest", d], check=True)
        mounted = True
        with open(os.path.join(d, "blob"), "wb") as f:
            f.write(b"\1" * (3 * 1024 * 1024))
        shmid = libc.shmget(IPC_PRIVATE, 2 * 1024 * 1024, IPC_CREAT | 0o600)
        assert shmid >= 0, os.strerror(ctypes.get_errno())
        addr = libc.shmat(shmid, None, 0)  # touch it so it is resident, then detach: nattch 0
        assert addr not in (None, ctypes.c_void_p(-1).value)
        ctypes.memset(addr, 1, 1024 * 1024)
        libc.shmdt(addr)
        out = subprocess.run([sys.executable, "-m", "ksight", "meminfo", "--json"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        rep = json.loads(out)["report"]
        mine = [t for t in rep["shmem"]["tmpfs"] if t["mount_point"] == d]
        assert len(mine) == 1
        assert mine[0]["size_bytes"] == 8 * 1024 * 1024
        assert mine[0]["used_bytes"] == 3 * 1024 * 1024  # 768 pages of 4 KiB we wrote
        orph = [o for o in rep["shmem"]["orphans"] if o["shmid"] == shmid]
        assert len(orph) == 1 and orph[0]["size_bytes"] == 2 * 1024 * 1024
        assert orph[0]["rss_bytes"] == 1024 * 1024  # the 256 pages we touched
        text = subprocess.run([sys.executable, "-m", "ksight", "meminfo"], check=True,
                              capture_output=True, text=True, timeout=60).stdout
        assert d in text and f"shmid {shmid} " in text
    finally:
        if shmid >= 0:
            libc.shmctl(shmid, IPC_RMID, None)
        if mounted:
            subprocess.run(["umount", d], check=False)
        os.rmdir(d)
