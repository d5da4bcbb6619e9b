"""The process scan: on corpora (values from procfs and PCP), live against psutil, and with
processes that vanish or refuse while they are read."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time

import pytest

from ksight.errors import Unavailable
from ksight.fs import LiveRoot, Root
from ksight.collect.processes import DEFAULT_DETAIL, Process, scan
from tests.conftest import corpus_root

ALL = ("stat", "statm", "status", "cmdline", "oom", "cgroup", "smaps_rollup")


def test_scan_procfs_corpus():
    procs, missing = scan(corpus_root("procfs"), detail=("stat", "statm", "status", "cmdline", "smaps_rollup"))
    assert set(procs) == {26231, 26232, 26233, 26234, 26235, 27079, 584}
    p = procs[26231]
    # procfs/EXPECTED.md: rss 1981 pages, vsize 56274944; proc_smaps_test.go: Rss 29948 kB
    assert p.comm == "vim" and p.stat.rss_pages == 1981 and p.stat.vsize_bytes == 56274944
    assert p.smaps_rollup.rss_kb == 29948 and p.cmdline == ("vim", "test.go", "+10")
    assert p.status.vm_rss_kb == 6716 and p.missing == ()
    assert p.virt_kb == 149919 * 4 and p.res_kb == 12547 * 4 and p.code_kb == 19864 * 4
    # 26235 has only status: comm comes from it, the rest is recorded as missing
    q = procs[26235]
    assert q.comm == "kube-proxy" and q.stat is None and any(m.startswith("stat: missing") for m in q.missing)
    assert q.res_kb == 42652  # falls back to status VmRSS when statm is absent
    assert procs[584].comm == "(a b ) ( c d) "
    sources = {m.source for m in missing}
    assert "processes:stat" in sources and "processes" not in sources  # nothing exited


@pytest.mark.parametrize("k,pid,datrss,egid", [
    # pcp/expected/974.out: proc.memory.datrss (statm data, kB) and proc.id.egid
    ("procpid-4.14.5-root-005", 996, 185880, 0),
    ("procpid-4.14.5-root-005", 26304, 68748, 65534),
    ("procpid-5.5.7-root-007", 214983, 171816, 1000),
    ("procpid-5.5.7-root-007", 291591, 4480, 1000),
])
def test_scan_pcp_captures(k, pid, datrss, egid):
    procs, _ = scan(corpus_root("pcp", "unpacked", k), detail=("stat", "statm", "status", "cmdline", "cgroup"),
                    page_size=4096)
    p = procs[pid]
    assert p.data_kb == datrss and p.status.gid[1] == egid
    assert p.cmdline and p.cgroup is not None


def test_scan_only_some_pids_and_unknown_detail():
    procs, _ = scan(corpus_root("procfs"), pids=[26231, 584], detail=("stat",))
    assert set(procs) == {26231, 584} and procs[26231].statm is None and procs[26231].missing == ()
    with pytest.raises(ValueError):
        scan(corpus_root("procfs"), detail=("stat", "nonsense"))


# -- a Root that misbehaves for one PID -------------------------------------------------------

class FlakyRoot(Root):
    """The live machine, except that reads of `pid` fail: `reason` for files named in `files`
    (all when None); with gone=True the PID directory also stops existing."""

    def __init__(self, pid: int, reason: str, files=None, gone: bool = True):
        self.inner = LiveRoot()
        self.live = True
        self.label = "flaky"
        self.pid, self.reason, self.files, self.gone = pid, reason, files, gone

    def _hit(self, path: str) -> bool:
        parts = path.split("/")
        return len(parts) >= 3 and parts[1] == str(self.pid) and (self.files is None or parts[2] in self.files)

    def read_bytes(self, path, *, chunk=65536):
        if self._hit(path):
            raise Unavailable(path, self.reason)
        return self.inner.read_bytes(path, chunk=chunk)

    def listdir(self, path):
        return self.inner.listdir(path)

    def exists(self, path):
        if self.gone and path == f"proc/{self.pid}":
            return False
        return self.inner.exists(path)

    def isdir(self, path):
        return self.inner.isdir(path)

    def readlink(self, path):
        return self.inner.readlink(path)


@pytest.fixture
def child():
    """An idle Python child holding ~50 MiB of touched memory; killed by PID afterwards."""
    p = subprocess.Popen([sys.executable, "-c",
                          "import sys, time\nb = bytearray(50 * 1024 * 1024)\n"
                          "for i in range(0, len(b), 4096): b[i] = 1\n"
                          "print('ready', flush=True)\ntime.sleep(60)\n"],
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"ready"
        yield p.pid
    finally:
        p.kill()
        p.wait(timeout=10)


def test_live_child_memory_agrees_with_psutil(child):
    psutil = pytest.importorskip("psutil")
    procs, missing = scan(LiveRoot(), detail=ALL)
    p = procs[child]
    mi = psutil.Process(child).memory_info()
    page = os.sysconf("SC_PAGE_SIZE")
    assert p.page_size == page
    assert p.res_kb >= 50 * 1024  # the 50 MiB it touched
    # statm and status count the same pages (the child is idle): RES == VmRSS
    assert abs(p.res_kb - p.status.vm_rss_kb) <= 8
    assert abs(p.res_kb * 1024 - mi.rss) <= 8 * page  # psutil: statm resident * page size
    assert abs(p.virt_kb * 1024 - mi.vms) <= 8 * page
    assert abs(p.shr_kb * 1024 - mi.shared) <= 8 * page
    assert p.stat.ppid == os.getpid() and p.cmdline[0] == sys.executable and p.comm.startswith("python")
    assert p.smaps_rollup.rss_kb >= 50 * 1024 and p.smaps_rollup.anonymous_kb >= 50 * 1024
    with open(f"/proc/{child}/oom_score_adj") as f:
        assert p.oom.score_adj == int(f.read())
    assert p.status.uid[0] == os.getuid() and p.missing == ()
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(AttributeError):
        p.pid = 1
    # every live PID psutil sees at the end was either in the scan or started after it
    assert child in set(psutil.pids())


def test_pid_exiting_mid_scan_is_counted_not_crashed(child):
    root = FlakyRoot(child, "process exited", files={"status"})
    # only these two PIDs: on a busy machine other processes exit during a full scan too
    procs, missing = scan(root, pids=[child, os.getpid()])
    assert child not in procs
    assert os.getpid() in procs
    assert [m.reason for m in missing if m.source == "processes"] == ["1 processes exited during the scan"]


def test_really_exited_pid_is_counted():
    p = subprocess.Popen(["true"])
    p.wait()
    procs, missing = scan(LiveRoot(), pids=[os.getpid(), p.pid])
    assert set(procs) == {os.getpid()}
    assert missing[0].reason == "1 processes exited during the scan"


def test_permission_denied_part_is_none_and_recorded(child):
    root = FlakyRoot(child, "permission denied (run as root for this source)", files={"smaps_rollup"}, gone=False)
    procs, missing = scan(root, detail=("stat", "smaps_rollup"), pids=[child, os.getpid()])
    p = procs[child]
    assert p.smaps_rollup is None and p.stat is not None
    assert p.missing == ("smaps_rollup: permission denied (run as root for this source)",)
    assert procs[os.getpid()].smaps_rollup is not None
    assert [m for m in missing if m.source == "processes:smaps_rollup"][0].reason.endswith("(1 of 2 processes)")


def test_kernel_thread_has_no_smaps_rollup_but_is_kept():
    # kthreadd (PID 2) has no mm: the kernel answers ESRCH, which is not an exit
    procs, missing = scan(LiveRoot(), pids=[2], detail=("stat", "smaps_rollup", "cmdline"))
    if 2 not in procs or not procs[2].kernel_thread:
        pytest.skip("PID 2 is not kthreadd here (a PID namespace?)")
    p = procs[2]
    assert p.smaps_rollup is None and p.cmdline == () and "no address space" in p.missing[0]
    assert not missing


def test_sockets_detail(child):
    srv = socket.socket()
    try:
        srv.bind(("127.0.0.1", 0))
        procs, _ = scan(LiveRoot(), pids=[os.getpid()], detail=("stat", "sockets"))
        ino = os.fstat(srv.fileno()).st_ino
        assert ino in procs[os.getpid()].socket_inodes
    finally:
        srv.close()


def test_scan_is_quick_enough():
    # not a benchmark (bench/process_scan.py is); a guard against an accidental slow path
    t0 = time.perf_counter()
    procs, _ = scan(LiveRoot())
    dt = time.perf_counter() - t0
    assert len(procs) > 5 and dt / len(procs) < 0.002, dt


def test_default_detail():
    # statm is not read by default: status gives the same columns (test_status_columns_*)
    assert DEFAULT_DETAIL == ("stat", "status")
    assert Process(1, "x").res_kb is None


# ---- top's memory columns from status (default) and from statm (when asked) ----------------

COLUMNS = ("virt_kb", "res_kb", "shr_kb", "code_kb", "data_kb")


def _columns_both_ways(p: Process):
    """(the columns from statm alone, the columns from status alone) of one Process."""
    import dataclasses

    a = dataclasses.replace(p, status=None, stat=None)
    b = dataclasses.replace(p, statm=None, stat=None)
    return [getattr(a, c) for c in COLUMNS], [getattr(b, c) for c in COLUMNS]


def test_status_columns_equal_statm_columns_on_corpora():
    import glob

    from tests.conftest import CORPORA

    trees = sorted(os.path.basename(t) for t in glob.glob(str(CORPORA / "pcp" / "unpacked" / "procpid-*-root-*")))
    compared = old = 0
    for t in trees:
        procs, _ = scan(corpus_root("pcp", "unpacked", t), detail=("stat", "statm", "status"), page_size=4096)
        default, _ = scan(corpus_root("pcp", "unpacked", t), page_size=4096)
        for pid, p in procs.items():
            if p.statm is None or p.status is None:
                continue
            if p.status.rss_file_kb is None and p.status.vm_rss_kb is not None:
                # before 4.5: no RssFile/RssShmem, and VmSize was total_vm - reserved_vm (2.6.x):
                # status cannot give the columns, so the default scan reads statm as well
                assert default[pid].statm == p.statm, (t, pid)
                old += 1
                continue
            m, s = _columns_both_ways(p)
            assert m == s, (t, pid, m, s)
            assert [getattr(default[pid], c) for c in COLUMNS] == m
            compared += 1
    assert compared > 300 and old > 300, (compared, old)  # 318 and 353 in the PCP trees


def test_status_columns_equal_statm_columns_live():
    # idle children of our own (stable), and every other process whose statm did not change
    # while its status was read (statm read before and after): exact equality
    kids = [subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(4 << 20); time.sleep(60)"],
                             stdin=subprocess.DEVNULL)
            for _ in range(3)]
    zombie = subprocess.Popen(["true"])
    try:
        time.sleep(0.5)
        from ksight.sources.proc_pid import statm as statm_mod
        from ksight.sources.proc_pid import status as status_mod

        root = LiveRoot()
        checked = kthreads = 0
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
        for pid in pids:
            try:
                m1 = root.read_text(f"proc/{pid}/statm")
                st = root.read_text(f"proc/{pid}/status")
                m2 = root.read_text(f"proc/{pid}/statm")
            except Unavailable:
                continue
            if m1 != m2:
                continue
            p = Process(pid, None, statm=statm_mod.parse(m1), status=status_mod.parse(st),
                        page_size=os.sysconf("SC_PAGE_SIZE"))
            m, s = _columns_both_ways(p)
            assert m == s, (pid, p.status.name, m, s)
            checked += 1
            kthreads += p.status.vm_size_kb is None  # kernel threads and zombies: all zeros
        assert checked > 20 and kthreads > 0
        # and the scan: default (status) and with statm give the same columns for the children
        a, _ = scan(root, pids=[k.pid for k in kids] + [zombie.pid])
        b, _ = scan(root, pids=[k.pid for k in kids] + [zombie.pid], detail=("stat", "statm", "status"))
        for pid in a:
            assert a[pid].statm is None and b[pid].statm is not None
            assert [getattr(a[pid], c) for c in COLUMNS] == [getattr(b[pid], c) for c in COLUMNS]
        assert a[kids[0].pid].res_kb >= 4096 and a[zombie.pid].res_kb == 0
    finally:
        for k in kids:
            k.kill()
            k.wait()
        zombie.wait()


def test_old_kernel_reads_statm_for_shr():
    # 2.6.32 (PCP): status has no RssFile, so the default scan reads statm for SHR too
    procs, _ = scan(corpus_root("pcp", "unpacked", "procpid-2.6.32-root-001"), page_size=4096)
    p = procs[1]
    assert p.status.rss_file_kb is None and p.statm is not None and p.shr_kb == 1232


def test_fast_reader_matches_read_text():
    root = LiveRoot()
    me = os.getpid()
    for one_shot in (False, True):
        read = root.text_reader(one_shot=one_shot)
        assert read(f"proc/{me}/cmdline") == root.read_text(f"proc/{me}/cmdline")
        assert read(f"proc/{me}/statm").split()[0] == root.read_text(f"proc/{me}/statm").split()[0]
        assert read(f"proc/{me}/limits") == root.read_text(f"proc/{me}/limits")
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(Unavailable) as ei:
        root.text_reader(one_shot=True)(f"proc/{p.pid}/stat")
    assert ei.value.reason == "process exited"
