"""`ksight pmap`: every row against procps `pmap -x` on a process whose mappings do not change,
pmap's naming rules and the classes on hand-written smaps text, and --from without smaps."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout

import pytest

from ksight.cli.main import main
from ksight.views import pmap
from tests.conftest import need_tool

# a sleeping python with mappings of every class: private anonymous, shared anonymous, a shared
# /dev/shm file, a private file; each touched (some written) so RSS and Dirty are not all 0
CHILD = textwrap.dedent("""
    import mmap, os, sys, time
    keep = []
    a = mmap.mmap(-1, 64 * 4096); a[:4096 * 8] = b"x" * (4096 * 8); keep.append(a)
    s = mmap.mmap(-1, 16 * 4096, flags=mmap.MAP_SHARED); s[:4096] = b"y" * 4096; keep.append(s)
    path = "/dev/shm/ksight-test-pmap-%d" % os.getpid()
    with open(path, "wb") as f:
        f.write(b"z" * (8 * 4096))
    fd = os.open(path, os.O_RDWR); os.unlink(path)
    m = mmap.mmap(fd, 8 * 4096, flags=mmap.MAP_SHARED); m[:4096] = b"w" * 4096; keep.append(m)
    r = mmap.mmap(fd, 8 * 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ); r[:4096]; keep.append(r)
    print("ready", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        yield p.pid
    finally:
        p.kill()  # only the process this test started, by its Popen
        p.wait(timeout=10)


def run_json(*argv) -> dict:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(list(argv)) == 0
    return json.loads(buf.getvalue())


def procps_rows(pid: int) -> tuple[list[tuple], tuple]:
    out = subprocess.run([need_tool("pmap", "procps"), "-x", str(pid)], capture_output=True,
                         text=True, check=True, timeout=30).stdout.splitlines()
    assert out[1].split() == ["Address", "Kbytes", "RSS", "Dirty", "Mode", "Mapping"]
    rows = []
    for ln in out[2:]:
        if ln.startswith("----"):
            break
        addr, kb, rss, dirty, mode, name = ln.split(None, 5)
        rows.append((int(addr, 16), int(kb), int(rss), int(dirty), mode, name.strip()))
    total = tuple(int(x) for x in out[-1].split()[2:5])
    assert out[-1].startswith("total kB")
    return rows, total


def test_every_row_matches_procps_pmap_x(child):
    want, want_total = procps_rows(child)
    got = run_json("pmap", str(child), "--json")
    rows = [(m["start"], m["kbytes"], m["rss_kb"], m["dirty_kb"], m["mode"], m["name"].strip())
            for m in got["mappings"]]
    assert rows == want
    t = got["total"]
    assert (t["kbytes"], t["rss_kb"], t["dirty_kb"]) == want_total
    kinds = {m["kind"] for m in got["mappings"]}
    assert {"heap", "stack", "anon", "shm", "exe", "lib"} <= kinds
    # the /dev/shm file: shared and shm; its private read-only copy: private, file-backed shm
    shm = [m for m in got["mappings"] if m["path"].startswith("/dev/shm/ksight-test-pmap")]
    assert {(m["shared"], m["anonymous"], m["kind"]) for m in shm} == {(True, False, "shm"),
                                                                       (False, False, "shm")}
    # the shared anonymous mmap: the kernel names it /dev/zero (deleted); shmem, anonymous
    assert any(m["path"].startswith("/dev/zero") and m["shared"] and m["anonymous"]
               and m["kind"] == "shm" for m in got["mappings"])
    assert os.path.realpath(sys.executable) == got["exe"]


def test_text_rows_carry_pmap_columns(child):
    want, want_total = procps_rows(child)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["pmap", str(child)]) == 0
    lines = buf.getvalue().splitlines()
    assert lines[1].split() == ["Address", "Kbytes", "RSS", "Dirty", "Mode", "Class", "Mapping"]
    body = lines[2:2 + len(want)]
    for ln, w in zip(body, want):
        toks = ln.split(None, 7)
        assert (int(toks[0], 16), int(toks[1]), int(toks[2]), int(toks[3]), toks[4]) == w[:5]
        assert toks[5] in ("p", "s") and toks[6] in pmap.KINDS
    total = next(ln for ln in lines if ln.startswith("total kB"))
    assert tuple(int(x) for x in total.split()[2:5]) == want_total
    assert not any(ln != ln.rstrip() for ln in lines)


SMAPS = """\
55d0a0000000-55d0a0002000 r--p 00000000 fd:01 1234                       /usr/bin/prog
Size:                  8 kB
Rss:                   8 kB
Shared_Dirty:          0 kB
Private_Dirty:         0 kB
Swap:                  0 kB
55d0a1000000-55d0a1021000 rw-p 00000000 00:00 0                          [heap]
Rss:                  12 kB
Shared_Dirty:          0 kB
Private_Dirty:        12 kB
Swap:                  4 kB
7f0000000000-7f0000004000 rw-s 00000000 00:01 98307                      /SYSV00000000 (deleted)
Rss:                   8 kB
Shared_Dirty:          8 kB
Private_Dirty:         0 kB
Swap:                  0 kB
7f0000010000-7f0000011000 r-xp 00000000 fd:01 77                         /usr/lib/libfoo.so.1
Rss:                   4 kB
Shared_Dirty:          0 kB
Private_Dirty:         0 kB
Swap:                  0 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  16 kB
Shared_Dirty:          2 kB
Private_Dirty:        14 kB
Swap:                  0 kB
VmFlags: rd wr mr mw me gd ac
"""


def test_hand_written_smaps():
    maps, guessed = pmap.parse_smaps(SMAPS, "proc/1/smaps", None)
    assert guessed  # no exe link: the first file mapping is the program
    got = [(m.kbytes, m.rss_kb, m.dirty_kb, m.mode, m.name, m.shared, m.anonymous, m.kind)
           for m in maps]
    assert got == [
        (8, 8, 0, "r----", "prog", False, False, "exe"),
        (132, 12, 12, "rw---", "  [ anon ]", False, True, "heap"),  # 0x21000 bytes = 132 kB
        (16, 8, 8, "rw-s-", "  [ shmid=0x18003 ]", True, False, "shm"),  # 98307 = 0x18003
        (4, 4, 0, "r-x--", "libfoo.so.1", False, False, "lib"),
        (132, 16, 16, "rw---", "  [ stack ]", False, True, "stack"),  # 2 + 14 dirty
    ]


def test_from_a_capture_without_smaps_says_what_is_missing(tmp_path, capsys):
    pid = os.getpid()
    d = tmp_path / "proc" / str(pid)
    d.mkdir(parents=True)
    for name in ("stat", "status", "cmdline"):
        (d / name).write_bytes(open(f"/proc/{pid}/{name}", "rb").read())
    (tmp_path / "proc" / "uptime").write_text(open("/proc/uptime").read())
    assert main(["pmap", str(pid), "--from", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"proc/{pid}/smaps" in err[0] and "capture" in err[0]


def test_capture_then_pmap_from_equals_live(child, tmp_path):
    """`ksight capture --pid` records the process's smaps; `pmap --from` on it gives what pmap
    gives live on the same (unchanging) process, and procps pmap -x agrees with both."""
    cap = str(tmp_path / "cap.tar.zst")
    assert main(["capture", "-o", cap, "--pid", str(child), "--no-sockets"]) == 0
    live = run_json("pmap", str(child), "--json")
    offline = run_json("pmap", str(child), "--json", "--from", cap)
    # Pss is the process's share of each page: it moves when another process maps the same
    # library pages (python processes come and go on this machine); the rest must be equal
    for doc in (live, offline):
        for m in doc["mappings"]:
            m.pop("pss_kb")
    assert offline == live
    want, want_total = procps_rows(child)
    assert [(m["start"], m["kbytes"], m["rss_kb"], m["dirty_kb"], m["mode"], m["name"].strip())
            for m in offline["mappings"]] == want
    t = offline["total"]
    assert (t["kbytes"], t["rss_kb"], t["dirty_kb"]) == want_total


def test_vanished_pid_is_a_clear_message(capsys):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=10)
    assert main(["pmap", str(p.pid)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no process {p.pid}" in err[0]


def test_permission_denied_is_a_clear_message():
    """smaps of another user's process needs ptrace rights: one line saying so, exit 3. As root,
    a forked child that became nobody asks about this (root's) process."""
    with redirect_stdout(io.StringIO()):  # every module imported before the fork: nobody
        assert main(["pmap", str(os.getpid())]) == 0  # may not be able to read the tree

    me = os.geteuid()
    if me == 0:
        pid, drop = os.getpid(), True
    else:
        others = [int(n) for n in os.listdir("/proc") if n.isdigit()
                  and os.stat(f"/proc/{n}").st_uid != me]
        if not others:
            pytest.skip("no process of another user to be refused")
        pid, drop = others[0], False
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the child: never returns into pytest
        rc = 99
        try:
            os.close(r)
            if drop:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            sys.stderr = os.fdopen(w, "w", buffering=1)
            rc = main(["pmap", str(pid)])
            sys.stderr.flush()
        except BaseException as exc:  # shown in the parent's assertion
            os.write(w, f"child raised {exc!r}".encode())
        finally:
            os._exit(rc)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, status = os.waitpid(child, 0)
    lines = err.strip().splitlines()
    assert os.waitstatus_to_exitcode(status) == 3 and len(lines) == 1, err
    assert f"proc/{pid}/smaps" in lines[0] and "permission denied" in lines[0], lines


def test_from_a_capture_with_cut_smaps_names_the_line(tmp_path, capsys):
    pid = os.getpid()
    d = tmp_path / "proc" / str(pid)
    d.mkdir(parents=True)
    for name in ("stat", "status", "cmdline"):
        (d / name).write_bytes(open(f"/proc/{pid}/{name}", "rb").read())
    (tmp_path / "proc" / "uptime").write_text(open("/proc/uptime").read())
    (d / "smaps").write_bytes(SMAPS.encode()[:-40])  # cut in the middle of a line
    assert main(["pmap", str(pid), "--from", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"proc/{pid}/smaps" in err[0] and "malformed" in err[0], err
