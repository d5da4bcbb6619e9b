"""The C fast path of the process scan (ksight._procscan) against the Python path (the reference).

Both paths run on the same input and must give the same Process tables, field by field: on the
corpora (old kernels that print fewer stat fields, hand-made trees the Python parser reads on
its general path), on bad input built in a temporary tree (each case also checks which way the C
code answered: parsed, or a code that sends the PID to Python), and on this live machine with
~50 children of several kinds. Skipped, with the reason, when the extension was not built.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from ksight.collect import processes as P
from ksight.collect.processes import scan
from ksight.fs import DirRoot, LiveRoot, SubRoot
from ksight.fs import RecordingRoot
from tests.conftest import CORPORA, IN_CI, corpus_root, need_tool

if P._procscan is None and IN_CI:
    # CI installs a compiler (.ci/run): there the fast path must exist, or its tests would
    # silently stop running
    raise RuntimeError(f"ksight._procscan did not build in CI: {P.PROCSCAN_ERROR}")
pytestmark = pytest.mark.skipif(
    P._procscan is None,
    reason=f"needs the C extension ksight._procscan, built at install time with `gcc` and the "
           f"Python headers (python3-dev; .ci/run installs both): {P.PROCSCAN_ERROR or 'not built'}")


WITH_STATM = ("stat", "statm", "status")  # the default detail is stat and status


def _raw(root: DirRoot, pids, with_statm=True):
    """What the C code answers per PID: a tuple of objects, or an int code."""
    return P._procscan.scan(root.base, list(pids), root.live, P._c_spec(), with_statm)


def _dump(proc):
    """Every attribute of a Process, nested objects as their full __dict__ (status text too),
    with the type of every value (an int must not come back as a bool, a str as bytes)."""
    out = {}
    for k, v in vars(proc).items():
        if hasattr(v, "__dict__"):
            out[k] = (type(v).__name__, {a: (type(x).__name__, x) for a, x in vars(v).items()})
        else:
            out[k] = (type(v).__name__, v)
    return out


def _both(root, **kw):
    """(python procs, python missing), (C procs, C missing); checks the C path really ran."""
    calls = []
    real = P._procscan.scan

    class Spy:
        def scan(self, *a):
            calls.append(a)
            return real(*a)

    py = scan(root, c_path=False, **kw)
    saved, P._procscan = P._procscan, Spy()
    try:
        c = scan(root, **kw)
    finally:
        P._procscan = saved
    return py, c, calls


def _assert_same(py, c):
    (pp, pm), (cp, cm) = py, c
    assert set(pp) == set(cp)
    for pid in pp:
        assert _dump(cp[pid]) == _dump(pp[pid]), pid
        for part in ("stat", "statm", "status"):  # and the same attribute order
            a, b = getattr(pp[pid], part), getattr(cp[pid], part)
            assert list(vars(a) if a is not None else ()) == list(vars(b) if b is not None else ())
    assert cm == pm


# -- corpora ------------------------------------------------------------------------------------

PCP_TREES = sorted(os.path.basename(p) for p in glob.glob(str(CORPORA / "pcp" / "unpacked" / "procpid-*-root-*")))


@pytest.mark.parametrize("detail", [P.DEFAULT_DETAIL, WITH_STATM, ("stat",)])
@pytest.mark.parametrize("tree", ["procfs"] + PCP_TREES)
def test_corpus_trees_same_both_ways(tree, detail):
    root = corpus_root("procfs") if tree == "procfs" else corpus_root("pcp", "unpacked", tree)
    py, c, calls = _both(root, page_size=4096, detail=detail)
    assert all(a[4] == ("statm" in detail) for a in calls)  # statm read only when asked
    # status read only when asked (the optional 9th argument; absent means True)
    assert all((a[8] if len(a) > 8 else True) == ("status" in detail) for a in calls)
    if "status" not in detail:
        assert all(p.status is None for p in c[0].values())
    assert calls and py[0]
    _assert_same(py, c)
    codes = _raw(root, py[0])
    parsed = sum(isinstance(r, tuple) for r in codes)
    if tree == "procfs":
        # hand-made: status starts with a blank line (Python's general parser) or files are
        # missing, so every PID goes to Python
        assert parsed == 0 and set(codes) <= {P._procscan.PARSE, errno.ENOENT}
    else:
        assert parsed == len(codes)  # real kernel text: the C code reads every one itself


def test_pcp_values_through_the_c_path():
    # pcp/expected/974.out: proc.memory.datrss (statm data, kB) and proc.id.egid
    root = corpus_root("pcp", "unpacked", "procpid-4.14.5-root-005")
    assert all(isinstance(r, tuple) for r in _raw(root, [996, 26304]))
    procs, _ = scan(root, page_size=4096)
    assert procs[996].data_kb == 185880 and procs[996].status.gid[1] == 0
    assert procs[26304].data_kb == 68748 and procs[26304].status.gid[1] == 65534


def test_old_kernel_prints_fewer_stat_fields():
    # 2.6.32 prints 44 stat fields: guest/cguest (2.6.24) present, exit_code (3.5) absent -> None
    root = corpus_root("pcp", "unpacked", "procpid-2.6.32-root-001")
    procs, _ = scan(root, page_size=4096)
    st = procs[min(procs)].stat
    assert st.cguest_time_ticks is not None and st.exit_code is None


# -- bad input in a temporary tree ---------------------------------------------------------------

# proc(5) fields 1-25, 26-34 (sigignore 4096, sigcatch 16386), 35-44 (exit_signal 17,
# processor 1, cguest_time 9), 45-52 (addresses, exit_code 0)
STAT = ("4242 (worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 777 10485760 300 "
        "18446744073709551615 1 1 0 0 0 0 0 4096 16386 0 0 0 17 1 0 0 0 0 9 0 0 0 0 0 0 0 0\n")
STATM = "2560 300 200 10 0 150 0\n"
STATUS = ("Name:\tworker\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\n"
          "PPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\n"
          "VmPeak:\t   10240 kB\nVmSize:\t   10240 kB\nVmRSS:\t    1200 kB\nRssAnon:\t     600 kB\n"
          "RssFile:\t     600 kB\nRssShmem:\t       0 kB\nVmData:\t     600 kB\nVmStk:\t     132 kB\n"
          "VmSwap:\t       0 kB\nThreads:\t1\nvoluntary_ctxt_switches:\t5\n"
          "nonvoluntary_ctxt_switches:\t2\n")


def _tree(tmp_path, stat=STAT, statm=STATM, status=STATUS, pid=4242):
    d = tmp_path / "proc" / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    for name, text in (("stat", stat), ("statm", statm), ("status", status)):
        if text is not None:
            (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return DirRoot(str(tmp_path))


def test_plain_tree_parsed_in_c_with_independent_values(tmp_path):
    root = _tree(tmp_path)
    (r,) = _raw(root, [4242])
    st, sm, ss = r
    # the values written above, not the Python parser's output
    assert (st.pid, st.comm, st.state, st.ppid, st.tpgid, st.starttime_ticks) == (4242, "worker", "S", 1, -1, 777)
    assert st.rsslim_bytes == 2**64 - 1 and st.sigignore == 4096 and st.sigcatch == 16386
    assert st.exit_signal == 17 and st.processor == 1 and st.cguest_time_ticks == 9
    assert st.exit_code == 0 and sm.resident_pages == 300 and sm.data_pages == 150
    assert ss.name == "worker" and ss.state == "S" and ss.uid == (0, 0, 0, 0) and ss.vm_rss_kb == 1200
    assert ss.vm_pin_kb is None and ss.vm_lck_kb is None  # absent lines are None, never 0
    assert ss.text == STATUS and ss.fields["Umask"] == "0022"
    _assert_same(*_both(root)[:2])


CASES = {
    # name: (stat, statm, status, what the C code answers: "tuple" or a code)
    "old-kernel-stat-44-fields": (STAT.rsplit(" ", 8)[0] + "\n", STATM, STATUS, "tuple"),
    "stat-no-newline": (STAT.rstrip("\n"), STATM, STATUS, "PARSE"),  # cut: Python says so
    "comm-with-parens-spaces-newline": (STAT.replace("(worker)", "(a) (b\n c) )"), STATM, STATUS, "tuple"),
    "comm-not-utf8": (STAT.encode().replace(b"worker", b"w\xe9\xff)"), STATM, STATUS, "tuple"),
    "stat-dash-field": (STAT.replace(" 777 ", " - "), STATM, STATUS, "tuple"),
    "stat-empty": ("", STATM, STATUS, "PARSE"),
    "stat-truncated": (STAT[:60], STATM, STATUS, "PARSE"),
    "stat-garbage": ("garbage\n", STATM, STATUS, "PARSE"),
    "stat-plus-sign": (STAT.replace(" 777 ", " +777 "), STATM, STATUS, "PARSE"),
    "stat-over-64-bits": (STAT.replace(" 777 ", " 99999999999999999999999 "), STATM, STATUS, "PARSE"),
    "stat-bad-int": (STAT.replace(" 777 ", " 7x7 "), STATM, STATUS, "PARSE"),
    "stat-nbsp": (STAT.replace(" 777 ", " 7\u00a077 "), STATM, STATUS, "PARSE"),
    "statm-6-numbers": (STAT, "1 2 3 4 5 6\n", STATUS, "PARSE"),
    "statm-garbage": (STAT, "a b c d e f g\n", STATUS, "PARSE"),
    "statm-empty": (STAT, "", STATUS, "PARSE"),
    "status-wrong-unit": (STAT, STATM, STATUS.replace("1200 kB", "1200 MB"), "PARSE"),
    "status-bad-uid": (STAT, STATM, STATUS.replace("Uid:\t0\t0", "Uid:\tx\t0"), "PARSE"),
    "status-spaces-not-tabs": (STAT, STATM, STATUS.replace(":\t", ": "), "PARSE"),
    "status-two-colon-tabs-on-one-line": (STAT, STATM, STATUS + "X:\ta:\tb\nno colon here\n", "tuple"),
    "status-key-twice (first wins)": (STAT, STATM, STATUS + "VmRSS:\t1 kB\n", "tuple"),
    "status-blank-first-line": (STAT, STATM, "\n" + STATUS, "PARSE"),
    "status-truncated-mid-line": (STAT, STATM, STATUS[:STATUS.index("VmRSS") + 5], "PARSE"),
    "status-truncated-mid-number": (STAT, STATM, STATUS[:STATUS.index("VmRSS:\t") + 13], "PARSE"),
    "status-empty": (STAT, STATM, "", "PARSE"),
    "status-non-ascii-name": (STAT, STATM, STATUS.replace("Name:\tworker", "Name:\twörker"), "PARSE"),
    "status-no-vm-lines (kernel thread)": (STAT, "0 0 0 0 0 0 0\n",
                                           "".join(l + "\n" for l in STATUS.splitlines()
                                                   if not l.startswith(("Vm", "Rss"))), "tuple"),
    "status-over-the-buffer": (STAT, STATM, STATUS + "X-pad:\t" + "y" * 20000 + "\n", "BIG"),
    "status-state-empty": (STAT, STATM, STATUS.replace("State:\tS (sleeping)", "State:\t"), "tuple"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_and_odd_input_same_both_ways(tmp_path, case):
    stat, statm, status, want = CASES[case]
    root = _tree(tmp_path, stat, statm, status)
    (r,) = _raw(root, [4242])
    if want == "tuple":
        assert isinstance(r, tuple), r
    else:
        assert r == getattr(P._procscan, want), r
    py, c, calls = _both(root)
    assert calls
    _assert_same(py, c)


def test_bad_input_is_recorded_by_the_python_path(tmp_path):
    root = _tree(tmp_path, stat=STAT[:60])  # truncated: fewer than the required fields
    assert scan(root)[0][4242].statm is None  # the default detail: no statm
    procs, missing = scan(root, detail=WITH_STATM)
    p = procs[4242]
    assert p.stat is None and p.statm is not None and p.comm == "worker"  # from status
    assert p.missing and p.missing[0].startswith("stat: malformed")
    assert [m.source for m in missing] == ["processes:stat"]


def test_old_kernel_fields_are_none(tmp_path):
    root = _tree(tmp_path, stat=STAT.rsplit(" ", 8)[0] + "\n")  # 44 fields, as 2.6.24 .. 3.4
    st = scan(root)[0][4242].stat
    assert st.cguest_time_ticks == 9 and st.exit_code is None


def test_errors_go_to_the_python_path(tmp_path):
    root = _tree(tmp_path)
    _tree(tmp_path, statm=None, pid=4343)  # statm missing: recorded, not exited
    (tmp_path / "proc" / "4444").mkdir()
    (tmp_path / "proc" / "4444" / "stat").mkdir()  # a directory where a file should be
    r = _raw(root, [4242, 4343, 4444, 4545])
    assert isinstance(r[0], tuple) and r[1:] == [errno.ENOENT, errno.EISDIR, errno.ENOENT]
    r = _raw(root, [4242, 4343], with_statm=False)  # statm not asked for: its absence is no error
    assert r[0][1] is None and r[1][1] is None and r[1][0].pid == 4242
    assert scan(root, pids=[4343])[0][4343].missing == ()
    py, c, _ = _both(root, pids=[4242, 4343, 4444, 4545], detail=WITH_STATM)
    _assert_same(py, c)
    procs, missing = c
    assert set(procs) == {4242, 4343, 4444}  # 4545 has no directory: exited
    assert procs[4343].missing == ("statm: missing (not on this kernel or not captured)",)
    assert procs[4444].missing[0] == "stat: is a directory"
    assert "1 processes exited during the scan" in [m.reason for m in missing]


def test_links_in_a_capture_go_to_the_python_path(tmp_path):
    outside = tmp_path / "outside"
    _tree(outside)
    inside = tmp_path / "cap"
    root = _tree(inside)
    (inside / "proc" / "5000").symlink_to(outside / "proc" / "4242")  # leaves the tree
    d = inside / "proc" / "5001"
    d.mkdir()
    for f in ("stat", "statm", "status"):
        (d / f).symlink_to(inside / "proc" / "4242" / f)  # stays inside: allowed
    r = _raw(root, [5000, 5001])
    assert r[0] in (errno.ELOOP, errno.ENOTDIR) and r[1] == errno.ELOOP
    py, c, _ = _both(root, pids=[5000, 5001])
    _assert_same(py, c)
    procs = c[0]
    assert procs[5000].stat is None and "link points outside the capture" in procs[5000].missing[0]
    assert procs[5001].stat.pid == 4242  # the file it links to


# -- which roots and details take the C path ---------------------------------------------------

def test_c_path_only_for_plain_roots_and_default_detail(tmp_path, monkeypatch):
    root = _tree(tmp_path)

    class Boom:
        def scan(self, *a):
            raise AssertionError("C path taken")

    expected = scan(root, c_path=False)
    monkeypatch.setattr(P, "_procscan", Boom())
    rec = RecordingRoot(root)
    assert scan(rec) == expected and "proc/4242/status" in rec.files  # recorded through the Root
    assert scan(SubRoot(DirRoot(str(tmp_path.parent)), tmp_path.name)) == expected
    assert scan(root, detail=("stat", "statm", "status", "cmdline"))[0][4242].stat == expected[0][4242].stat
    assert scan(root, detail=("stat", "cmdline"))[0][4242].statm is None
    assert scan(root, c_path=False) == expected
    with pytest.raises(AssertionError, match="C path taken"):
        scan(root, detail=("stat",))  # stat alone (check's CPU rules) too
    with pytest.raises(AssertionError, match="C path taken"):
        scan(root, detail=("status", "stat", "statm"))  # the C parts in any order
    with pytest.raises(AssertionError, match="C path taken"):
        scan(root, detail=("status", "stat"))  # with or without statm
    with pytest.raises(AssertionError, match="C path taken"):
        scan(LiveRoot())


# -- live -------------------------------------------------------------------------------------

CHILD_SECONDS = "120"  # every child ends by itself even if the test is killed


@pytest.fixture
def children(tmp_path):
    """~50 idle children of several kinds; killed and reaped by PID at the end."""
    odd = tmp_path / "a b) (c"  # a comm with a space and parentheses
    shutil.copy("/bin/sleep", odd)
    uni = tmp_path / "slé"  # a non-ASCII comm: status goes to the Python path
    shutil.copy("/bin/sleep", uni)
    procs = []
    try:
        for i in range(50):
            kind = i % 5
            if kind == 0:
                cmd = ["sleep", CHILD_SECONDS]
            elif kind == 1:
                cmd = [str(odd), CHILD_SECONDS]
            elif kind == 2:
                cmd = [str(uni), CHILD_SECONDS]
            elif kind == 3:
                cmd = ["sh", "-c", f"sleep {CHILD_SECONDS}; :"]
            else:  # a bigger address space, with threads
                cmd = [sys.executable, "-c", "import threading,time\n"
                       "b = bytearray(8 << 20)\n"
                       "[threading.Thread(target=time.sleep, args=(120,), daemon=True).start() for _ in range(3)]\n"
                       "time.sleep(120)"]
            # the shell's sleep is its child, not the shell itself (`; :` stops the exec): the
            # shell leads its own process group so that the whole group is killed at the end
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=kind == 3))
        zombie = subprocess.Popen(["true"])  # exits and is not reaped until the end: a zombie
        procs.append(zombie)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until every child has exec'd and gone to sleep
            states = []
            for p in procs:
                try:
                    with open(f"/proc/{p.pid}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
                except OSError:
                    states.append("?")
            if all(s in ("S", "Z") for s in states) and states[-1] == "Z":
                break
            time.sleep(0.1)
        time.sleep(0.5)  # python children: past start-up, threads started
        yield procs
    finally:
        for p in procs:
            try:
                if os.getpgid(p.pid) == p.pid:  # a group of its own: the shell and its sleep
                    os.killpg(p.pid, signal.SIGKILL)
                elif p.poll() is None:
                    os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


STABLE_STAT = ("pid", "ppid", "pgrp", "session", "tty_nr", "starttime_ticks", "exit_signal",
               "rt_priority", "policy", "nice", "priority")


def _comm(c: str) -> str:
    # a kworker's name carries the workqueue it is running ("kworker/u8:1-events_unbound")
    return c.partition("-")[0] if c.startswith("kworker/") else c


def test_live_same_both_ways(children):
    root = LiveRoot()
    py, c, calls = _both(root)
    assert calls
    pp, cp = py[0], c[0]
    both = set(pp) & set(cp)
    assert len(both) >= 50
    for pid in both:  # every process: the fields that do not change between two reads
        a, b = pp[pid], cp[pid]
        assert [getattr(a.stat, f) for f in STABLE_STAT] == [getattr(b.stat, f) for f in STABLE_STAT]
        assert (a.status.uid, a.status.gid, a.status.tgid) == (b.status.uid, b.status.gid, b.status.tgid)
        assert _comm(a.comm) == _comm(b.comm) == _comm(a.status.name) == _comm(b.status.name)
        assert a.page_size == b.page_size
    mine = [p.pid for p in children]
    for pid in mine:  # our idle children: everything (processor may change while asleep)
        a, b = _dump(pp[pid]), _dump(cp[pid])
        for d in (a, b):
            d["stat"][1].pop("processor")
        assert a == b, pid
    # the odd comm, a kernel thread and the zombie went through the C code; non-ASCII did not
    raw = dict(zip(mine, _raw(root, mine)))
    odd = [pid for pid in mine if cp[pid].comm == "a b) (c"]
    uni = [pid for pid in mine if cp[pid].comm == "slé"]
    assert len(odd) == 10 and all(isinstance(raw[p], tuple) for p in odd)
    assert len(uni) == 10 and all(raw[p] == P._procscan.PARSE for p in uni)
    assert cp[mine[-1]].stat.state == "Z" and isinstance(raw[mine[-1]], tuple)
    assert cp[mine[-1]].status.vm_rss_kb is None  # a zombie has no memory lines
    kthreads = [pid for pid in both if cp[pid].kernel_thread]
    assert kthreads and all(isinstance(r, tuple) for r in _raw(root, kthreads[:5]))
    # independent of both parsers: ps's view of our python children (RSS kB, VSZ kB)
    py_kids = [p.pid for p in children[4:50:5]]
    out = subprocess.run([need_tool("ps", "procps"), "-o", "pid=,vsz=", "-p", ",".join(map(str, py_kids))],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    for line in out.splitlines():
        pid, vsz = map(int, line.split())
        assert cp[pid].status.vm_size_kb == vsz and cp[pid].stat.num_threads == 4


def test_live_vanished_pid_is_counted(children):
    p = subprocess.Popen(["true"])
    p.wait()  # reaped: its PID directory is gone
    assert _raw(LiveRoot(), [p.pid]) == [errno.ENOENT]
    procs, missing = scan(LiveRoot(), pids=[children[0].pid, p.pid])
    assert set(procs) == {children[0].pid}
    assert [m.reason for m in missing] == ["1 processes exited during the scan"]


# -- socket inodes in C (proc/PID/fd) -------------------------------------------------------------

SOCKETS = ("stat", "status", "sockets")


def _socket_pairs(n):
    out = []
    for _ in range(n):
        out += socket.socketpair()
    return out


def test_live_socket_inodes_same_both_ways(children):
    """The fd links read in C give what sources/proc_pid/fd.py gives (same inodes, same order),
    for processes with sockets (us), without (sleep), a kernel thread and a zombie; and the
    inodes are those fstat names (independent of both)."""
    socks = _socket_pairs(20)
    try:
        me = os.getpid()
        kthread = next(p for p in P.list_pids(LiveRoot())
                       if p != 2 and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == "2")
        pids = [me, children[0].pid, children[-1].pid, 2, kthread]
        py, c, calls = _both(LiveRoot(), detail=SOCKETS, pids=pids)
        assert calls and all(a[5] is True for a in calls)  # the sockets read in C
        assert all(isinstance(r, tuple) and len(r) == 4
                   for r in P._procscan.scan("/", pids, True, P._c_spec(), False, True))
        for pid in pids:
            assert c[0][pid].socket_inodes == py[0][pid].socket_inodes, pid
        assert {os.fstat(s.fileno()).st_ino for s in socks} <= set(c[0][me].socket_inodes)
        assert c[0][children[0].pid].socket_inodes == ()
        assert c[0][children[-1].pid].socket_inodes == () and c[0][children[-1].pid].stat.state == "Z"
        assert c[0][2].socket_inodes == ()
    finally:
        for s in socks:
            s.close()


def _tree_with_fds(tmp_path, links):
    root = _tree(tmp_path)
    fd = tmp_path / "proc" / "4242" / "fd"
    fd.mkdir()
    for name, target in links.items():
        os.symlink(target, fd / name)
    return root


@pytest.mark.parametrize("links, in_c", [
    ({"0": "/dev/null", "1": "socket:[123]", "10": "socket:[77]", "2": "pipe:[5]"}, True),
    ({"3": "socket:[]", "4": "socket:[12a]", "5": "socket:[9", "6": "socket:[ 9]"}, True),
    ({"3": "socket:[\u0663]"}, False),  # an Arabic-Indic digit: str.isdigit() says yes
    ({"3": "socket:[" + "9" * 25 + "]"}, False),  # more than 64 bits: Python's int
    ({}, True),
])
def test_socket_inodes_in_a_tree_same_both_ways(tmp_path, links, in_c):
    root = _tree_with_fds(tmp_path, links)
    py, c, calls = _both(root, detail=SOCKETS)
    _assert_same(py, c)
    assert c[0][4242].socket_inodes == py[0][4242].socket_inodes
    raw = P._procscan.scan(root.base, [4242], False, P._c_spec(), False, True)[0]
    assert isinstance(raw, tuple) == in_c, raw
    if links == {"0": "/dev/null", "1": "socket:[123]", "10": "socket:[77]", "2": "pipe:[5]"}:
        assert raw[3] == (123, 77)  # sorted by name: "1" < "10" < "2"


def test_socket_inodes_unreadable_fd_dir_goes_to_python(tmp_path):
    root = _tree(tmp_path)  # no fd directory at all
    py, c, _ = _both(root, detail=SOCKETS)
    _assert_same(py, c)
    assert P._procscan.scan(root.base, [4242], False, P._c_spec(), False, True)[0] == errno.ENOENT
    assert c[0][4242].socket_inodes is None and c[0][4242].missing


# -- kept procfs fds between scans ----------------------------------------------------------------

def _kept_here():
    return P._kept.get("/", {})


def test_kept_fds_read_again_same_as_python(children):
    P.close_kept()
    pids = [p.pid for p in children]
    first = scan(LiveRoot(), pids=pids)
    kept = _kept_here()
    assert set(kept) == set(pids)  # the zombie's stat and status open too
    for pid, (a, b) in kept.items():
        assert os.readlink(f"/proc/self/fd/{a}") == f"/proc/{pid}/stat"
        assert os.readlink(f"/proc/self/fd/{b}") == f"/proc/{pid}/status"
    again = scan(LiveRoot(), pids=pids)  # from the kept fds
    assert _kept_here() == kept
    py = scan(LiveRoot(), pids=pids, c_path=False)
    for pid in pids:
        a, b, c = _dump(first[0][pid]), _dump(again[0][pid]), _dump(py[0][pid])
        for d in (a, b, c):
            d["stat"][1].pop("processor")
        assert a == b == c, pid
    P.close_kept()
    assert P.kept_fds() == 0
    for a, b in kept.values():
        with pytest.raises(OSError):
            os.readlink(f"/proc/self/fd/{a}")


def test_stat_alone_keeps_stat_open_and_a_later_scan_adds_status(children):
    P.close_kept()
    pids = [p.pid for p in children]
    only = scan(LiveRoot(), pids=pids, detail=("stat",))
    kept = _kept_here()
    assert set(kept) == set(pids)
    assert all(b == -1 for _a, b in kept.values())  # status never opened
    assert all(p.status is None and p.stat is not None for p in only[0].values())
    full = scan(LiveRoot(), pids=pids)  # stat from the kept fd, status opened and kept now
    both = _kept_here()
    assert {pid: a for pid, (a, _b) in both.items()} == {pid: a for pid, (a, _b) in kept.items()}
    for pid, (_a, b) in both.items():
        assert os.readlink(f"/proc/self/fd/{b}") == f"/proc/{pid}/status"
    py = scan(LiveRoot(), pids=pids, c_path=False)
    py_stat = scan(LiveRoot(), pids=pids, detail=("stat",), c_path=False)
    for pid in pids:
        a, b, c, d = (_dump(x[0][pid]) for x in (only, full, py, py_stat))
        for x in (a, b, c, d):
            x["stat"][1].pop("processor")
        assert b == c and a == d, pid
    P.close_kept()


def test_kept_fd_of_exited_process_reads_esrch_even_when_the_pid_is_reused():
    """The kernel's side of the kept fds: an open /proc/PID/stat of a reaped process answers
    ESRCH, also once another process got the same PID (forced with ns_last_pid)."""
    if os.geteuid() != 0:
        pytest.skip("ns_last_pid needs root")
    a = subprocess.Popen(["sleep", CHILD_SECONDS])
    fd = os.open(f"/proc/{a.pid}/stat", os.O_RDONLY)
    b = None
    try:
        assert os.pread(fd, 4096, 0).startswith(f"{a.pid} (sleep)".encode())
        a.kill()
        a.wait()
        with pytest.raises(ProcessLookupError):
            os.pread(fd, 4096, 0)
        for _ in range(5):  # another fork may take the PID first: retry a few times
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(a.pid - 1))
            b = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            if b.pid == a.pid:
                break
            b.kill()
            b.wait()
            b = None
        if b is None:
            pytest.skip("could not get the same PID again")
        with pytest.raises(ProcessLookupError):
            os.pread(fd, 4096, 0)
        # and the scan, with a kept fd of the old process, reads the new one
        P.close_kept()
        old = {a.pid: (os.open("/proc/self/stat", os.O_RDONLY), -1)}
        os.close(old[a.pid][0])  # stand-in closed: use the real stale fd instead
        P._kept["/"] = {a.pid: (os.dup(fd), -1)}
        deadline = time.monotonic() + 5
        while open(f"/proc/{b.pid}/comm").read().strip() != "cat" and time.monotonic() < deadline:
            time.sleep(0.02)
        procs, missing = scan(LiveRoot(), pids=[b.pid])
        assert procs[b.pid].comm == "cat" and not missing
        (s, st) = _kept_here()[b.pid]
        assert os.pread(s, 4096, 0).startswith(f"{b.pid} (cat)".encode())
    finally:
        os.close(fd)
        P.close_kept()
        if b is not None:
            b.kill()
            b.wait()
        if a.poll() is None:
            a.kill()
            a.wait()


def test_kept_fds_of_exited_processes_are_closed(children):
    P.close_kept()
    p = subprocess.Popen(["sleep", CHILD_SECONDS])
    try:
        scan(LiveRoot(), pids=[children[0].pid, p.pid])
        fds = _kept_here()[p.pid]
        p.kill()
        p.wait()
        procs, missing = scan(LiveRoot(), pids=[children[0].pid, p.pid])
        assert set(procs) == {children[0].pid}
        assert [m.reason for m in missing] == ["1 processes exited during the scan"]
        assert p.pid not in _kept_here()
        for fd in fds:  # closed by the C code (the ESRCH read)
            with pytest.raises(OSError):
                os.readlink(f"/proc/self/fd/{fd}")
        # a full scan drops the PIDs it no longer lists
        _kept_here()[10 ** 7] = (os.open("/dev/null", os.O_RDONLY), -1)
        scan(LiveRoot())
        assert 10 ** 7 not in _kept_here()
    finally:
        P.close_kept()
        if p.poll() is None:
            p.kill()
            p.wait()


def test_kept_fd_naming_another_pid_is_dropped_unclosed(children):
    """A kept fd number that now names another file (closed and reused behind our back) is not
    trusted: the PID's own file is read, and the fd is left alone (it is not ours any more)."""
    P.close_kept()
    me, kid = os.getpid(), children[0].pid
    wrong = (os.open(f"/proc/{me}/stat", os.O_RDONLY), os.open(f"/proc/{me}/status", os.O_RDONLY))
    try:
        P._kept["/"] = {kid: wrong}
        procs, _ = scan(LiveRoot(), pids=[kid])
        assert procs[kid].stat.pid == kid and procs[kid].status.tgid == kid
        assert _kept_here()[kid] != wrong
        for fd in wrong:
            os.fstat(fd)  # still open
    finally:
        P.close_kept()
        for fd in wrong:
            os.close(fd)


def test_kept_fds_are_bounded(children, monkeypatch):
    P.close_kept()
    monkeypatch.setattr(P, "KEEP_FDS_MAX", 10)
    try:
        scan(LiveRoot())
        assert P.kept_fds() == 10
        monkeypatch.setattr(P, "KEEP_FDS", False)
        P.close_kept()
        scan(LiveRoot())
        assert P.kept_fds() == 0
    finally:
        P.close_kept()


def test_forked_child_closes_its_copies(children):
    P.close_kept()
    scan(LiveRoot(), pids=[children[0].pid])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copies were closed by the at-fork hook
        try:
            os.write(w, str(P.kept_fds()).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"0" and P.kept_fds() == 2
    P.close_kept()
