"""The Root seam: live, tree and archive roots, and every way a read can fail."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import pytest

from ksight.errors import CaptureError, Unavailable
from ksight.fs import ArchiveRoot, DirRoot, LiveRoot, open_root
from tests.conftest import corpus


def make_tar(path, members: dict, links: dict | None = None, mode="w"):
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti)


def test_dir_root_reads_and_lists():
    r = DirRoot(str(corpus("procfs")))
    assert r.read_text("proc/meminfo").startswith("MemTotal:")
    assert "26231" in r.listdir("proc")
    assert r.isdir("proc/26231") and not r.isdir("proc/meminfo")
    # a leading slash means the same thing: paths are relative to the root
    assert r.read_text("/proc/loadavg") == r.read_text("proc/loadavg")


def test_missing_file_is_unavailable_with_reason():
    r = DirRoot(str(corpus("procfs")))
    with pytest.raises(Unavailable) as ei:
        r.read_text("proc/no-such-file")
    assert "missing" in ei.value.reason


def test_pid_that_is_not_there_reads_as_process_exited(tmp_path):
    (tmp_path / "proc").mkdir()
    with pytest.raises(Unavailable) as ei:
        DirRoot(str(tmp_path)).read_text("proc/4242/stat")
    assert ei.value.reason == "process exited"


def test_live_vanished_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(Unavailable) as ei:
        LiveRoot().read_text(f"proc/{p.pid}/stat")
    assert ei.value.reason == "process exited"


def test_permission_denied_is_unavailable(tmp_path, monkeypatch):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "slabinfo").write_text("x")
    real_open = os.open

    def deny(path, *a, **k):
        if str(path).endswith("slabinfo"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(Unavailable) as ei:
        DirRoot(str(tmp_path)).read_text("proc/slabinfo")
    assert "permission denied" in ei.value.reason


def test_tree_links_never_leave_the_tree(tmp_path):
    (tmp_path / "proc").mkdir()
    os.symlink("/etc/hostname", tmp_path / "proc" / "escape")
    os.symlink("../proc", tmp_path / "proc" / "inside")
    (tmp_path / "proc" / "loadavg").write_text("0.1 0.2 0.3 1/2 3\n")
    r = DirRoot(str(tmp_path))
    with pytest.raises(Unavailable) as ei:
        r.read_text("proc/escape")
    assert "outside" in ei.value.reason
    assert r.read_text("proc/inside/loadavg").startswith("0.1")
    assert r.readlink("proc/escape") == "/etc/hostname"  # the link itself can be read
    with pytest.raises(Unavailable):
        r.read_text("proc/../../etc/hostname")  # ".." cannot climb above the root


def test_procfs_files_are_read_to_eof_not_by_size():
    # /proc files report st_size 0; a read that trusted it would return nothing
    assert os.stat("/proc/meminfo").st_size == 0
    assert LiveRoot().read_text("proc/meminfo").count("\n") > 10


def test_sysctl_values_longer_than_the_small_buffer(tmp_path):
    d = tmp_path / "proc" / "sys" / "net" / "ipv4"
    d.mkdir(parents=True)
    long = " ".join(["cubic", "reno"] * 40)  # > 128 bytes
    (d / "tcp_available_congestion_control").write_text(long + "\n")
    assert DirRoot(str(tmp_path)).read_sysctl("net.ipv4.tcp_available_congestion_control") == long


def test_archive_root_reads_resolves_links_and_lists(tmp_path):
    a = tmp_path / "c.tar.gz"
    make_tar(a, {"proc/123/stat": b"123 (x) S", "proc/meminfo": b"MemTotal: 1 kB\n"},
             {"proc/self": "123", "proc/123/fd/3": "socket:[99]", "proc/bad": "/etc/passwd"},
             mode="w:gz")
    r = ArchiveRoot(str(a))
    assert r.read_text("proc/self/stat") == "123 (x) S"
    assert r.readlink("proc/123/fd/3") == "socket:[99]"
    assert r.listdir("proc") == ["123", "bad", "meminfo", "self"]
    with pytest.raises(Unavailable) as ei:
        r.read_text("proc/bad")
    assert "outside" in ei.value.reason
    with pytest.raises(Unavailable) as ei:
        r.read_text("proc/999/stat")
    assert ei.value.reason == "process exited"


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "proc/../../evil"])
def test_archive_member_escaping_root_is_refused(tmp_path, name):
    a = tmp_path / "evil.tar"
    make_tar(a, {name: b"x", "proc/meminfo": b"MemTotal: 1 kB\n"})
    with pytest.raises(CaptureError) as ei:
        ArchiveRoot(str(a))
    assert "escapes" in str(ei.value)


def test_not_an_archive(tmp_path):
    f = tmp_path / "junk.tar"
    f.write_bytes(os.urandom(4096))
    with pytest.raises(CaptureError) as ei:
        open_root(str(f))
    assert "not a capture archive" in str(ei.value)


def test_truncated_archive(tmp_path):
    a = tmp_path / "c.tar.gz"
    make_tar(a, {f"proc/f{i}": os.urandom(3000) for i in range(20)}, mode="w:gz")
    data = a.read_bytes()
    a.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaptureError):
        ArchiveRoot(str(a))


def test_zstd_archive(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    raw = tmp_path / "c.tar"
    make_tar(raw, {"proc/meminfo": b"MemTotal: 7 kB\n"})
    z = tmp_path / "c.tar.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress(raw.read_bytes()))
    assert open_root(str(z)).read_text("proc/meminfo") == "MemTotal: 7 kB\n"


def test_open_root_of_nothing(tmp_path):
    with pytest.raises(CaptureError):
        open_root(str(tmp_path / "nope"))


def test_listdirs_alike_on_every_root(tmp_path):
    # a tree with files, subdirectories, a link to a directory and a dangling link
    t = tmp_path / "t"
    for d in ("g/a/x", "g/b", "g/c"):
        os.makedirs(t / d)
    (t / "g" / "memory.max").write_text("max\n")
    (t / "g" / "a" / "f").write_text("1\n")
    os.symlink("b", t / "g" / "lnk")
    os.symlink("nowhere", t / "g" / "dangling")
    tar = tmp_path / "t.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(t, arcname=".")
    from ksight.fs import Root
    from ksight.fs import RecordingRoot

    class Plain(Root):  # only the five primitives: the generic listdirs
        def __init__(self, inner):
            self.inner = inner

        def read_bytes(self, path, *, chunk=65536):
            return self.inner.read_bytes(path, chunk=chunk)

        def listdir(self, path):
            return self.inner.listdir(path)

        def exists(self, path):
            return self.inner.exists(path)

        def isdir(self, path):
            return self.inner.isdir(path)

        def readlink(self, path):
            return self.inner.readlink(path)

    dr = DirRoot(str(t))
    assert sorted(os.listdir(t / "g")) == ["a", "b", "c", "dangling", "lnk", "memory.max"]
    roots = [dr, ArchiveRoot(str(tar)), DirRoot(str(tmp_path)).sub("t"), RecordingRoot(dr), Plain(dr)]
    for r in roots:
        assert r.listdirs("g") == ["a", "b", "c"], r
        assert r.listdirs("g/a") == ["x"] and r.listdirs("g/b") == [], r
        with pytest.raises(Unavailable):
            r.listdirs("g/nope")
    rec = roots[3]
    assert {"g", "g/a", "g/b", "g/c"} <= rec.dirs  # a capture holds what listdirs saw
    live = LiveRoot().listdirs("proc")  # /proc/self is a link, /proc/meminfo a file
    assert "self" not in live and "meminfo" not in live and "1" in live and "sys" in live


def test_netns_helpers():
    import socket as _socket

    from ksight.fs import netns

    assert netns.parse_link("net:[4026531992]") == 4026531992
    assert netns.parse_link("mnt:[4026531992]") is None and netns.parse_link("socket:[5]") is None
    assert netns.current() == os.stat("/proc/self/ns/net").st_ino
    s = netns.socket_in(None, _socket.AF_INET, _socket.SOCK_STREAM)
    try:  # a bare _socket.socket: no context manager
        assert s.family == _socket.AF_INET
    finally:
        s.close()
    dead = max(int(n) for n in os.listdir("/proc") if n.isdigit()) + 100000
    with pytest.raises(Unavailable, match="process exited"):
        netns.socket_in(dead, _socket.AF_INET, _socket.SOCK_STREAM)
    assert netns.current() == os.stat("/proc/self/ns/net").st_ino


# ---- read_many: several files of one directory in one call ----

def _read_many_tree(t):
    g = t / "g"
    os.makedirs(g / "sub")
    (g / "memory.max").write_text("max\n")
    (g / "memory.stat").write_bytes(b"anon 1\nfile 2\n" * 500)  # several reads' worth
    (g / "empty").write_text("")
    return g


def _same_as_read_bytes(root, d, names):
    got = root.read_many(d, names)
    assert list(got) == list(names)
    for n in names:
        try:
            want = root.read_bytes(f"{d}/{n}")
        except Unavailable as u:
            assert isinstance(got[n], Unavailable), (root, n)
            assert (got[n].source, got[n].reason) == (u.source, u.reason), (root, n)
        else:
            assert got[n] == want, (root, n)
    return got


def test_read_many_equals_read_bytes_on_every_root(tmp_path):
    from ksight.fs import RecordingRoot

    t = tmp_path / "t"
    _read_many_tree(t)
    tar = tmp_path / "t.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(t, arcname=".")
    names = ["memory.max", "memory.stat", "empty", "nope", "sub"]
    dr = DirRoot(str(t))
    for r in (dr, ArchiveRoot(str(tar)), DirRoot(str(tmp_path)).sub("t"), RecordingRoot(dr)):
        got = _same_as_read_bytes(r, "g", names)
        assert got["memory.max"] == b"max\n" and got["empty"] == b""
        assert got.nlink is None  # only the live root tells the link count
        assert "missing" in got["nope"].reason and got["nope"].source == "g/nope"
        assert r.read_many("g", []) == {}
        for bad in ("a/b", "..", ".", "", "x\0y"):
            with pytest.raises(ValueError):
                r.read_many("g", [bad])
    missing_dir = dr.read_many("nodir", ["a"])
    assert isinstance(missing_dir["a"], Unavailable) and missing_dir["a"].source == "nodir/a"


def test_read_many_on_a_capture_keeps_its_checks(tmp_path):
    # a capture root refuses FIFOs, devices and oversized files: read_many goes through read_bytes
    from ksight.fs import root as rootmod

    g = _read_many_tree(tmp_path / "t")
    os.mkfifo(g / "fifo")
    os.symlink("/dev/zero", g / "zero")
    (g / "big").write_bytes(b"x" * 4096)
    r = DirRoot(str(tmp_path / "t"))
    old = rootmod.MAX_FILE_BYTES
    rootmod.MAX_FILE_BYTES = 1024
    try:
        got = r.read_many("g", ["fifo", "zero", "big", "memory.max"])
    finally:
        rootmod.MAX_FILE_BYTES = old
    assert "FIFO" in got["fifo"].reason
    assert "outside the capture" in got["zero"].reason
    assert "refused" in got["big"].reason and "larger than" in got["big"].reason
    assert got["memory.max"] == b"max\n"


def test_read_many_recorded_capture_replays_the_same_values(tmp_path):
    from ksight.fs import RecordingRoot

    live_dir = "proc/self"
    names = ["limits", "comm", "cgroup", "nope", "environ"]
    rec = RecordingRoot(LiveRoot())
    got = rec.read_many(live_dir, names)
    assert got.nlink is None  # not passed on: a capture lists what it would skip listing
    for n, v in got.items():
        assert (rec.files.get(f"{live_dir}/{n}") == v) if isinstance(v, bytes) else f"{live_dir}/{n}" not in rec.files
    out = tmp_path / "cap"
    for p, data in rec.files.items():
        os.makedirs((out / p).parent, exist_ok=True)
        (out / p).write_bytes(data)
    again = DirRoot(str(out)).read_many(live_dir, names)
    for n in names:
        if isinstance(got[n], bytes):
            assert again[n] == got[n]
        else:
            assert isinstance(again[n], Unavailable)


def test_live_read_many_c_and_python_agree():
    from ksight.fs import root as rootmod

    live = LiveRoot()
    assert rootmod._read_dir_files is not None, "ksight._procscan not built (setup.py build_ext)"
    for d, names in (("proc/self", ["limits", "comm", "nope", "fd", "cmdline"]),
                     ("proc/sys/vm", ["swappiness", "overcommit_memory", "min_free_kbytes"]),
                     ("sys/kernel/mm", ["transparent_hugepage", "nope"]),
                     ("proc/no-such-dir", ["a", "b"]), ("", ["proc", "nope"])):
        c = live.read_many(d, names)
        py = live._read_many_py(rootmod.norm(d), names)
        assert list(c) == list(py) == names
        for n in names:
            if isinstance(py[n], Unavailable):
                assert isinstance(c[n], Unavailable) and (c[n].source, c[n].reason) == (py[n].source, py[n].reason)
            else:
                assert c[n] == py[n], (d, n)
        assert c.nlink == py.nlink
        if c.nlink is not None:
            assert c.nlink == os.stat("/" + d).st_nlink
    # and each value as read_bytes gives it (files whose text does not move)
    _same_as_read_bytes(live, "proc/sys/vm", ["swappiness", "overcommit_memory", "nope"])


def test_live_read_many_larger_than_its_buffer():
    live = LiveRoot()
    live.READ_MANY_MAX = 8  # the C buffer: larger files go through read_bytes
    got = live.read_many("proc/self", ["limits", "comm"])
    assert got["limits"] == live.read_bytes("proc/self/limits") and len(got["limits"]) > 8
    assert got["comm"] == live.read_bytes("proc/self/comm")


def test_read_dir_files_c_codes():
    from ksight import _procscan

    nlink, vals = _procscan.read_dir_files("/proc/self", ["comm", "nope", "limits"], 20)
    assert nlink >= 2 and isinstance(vals[0], bytes) and vals[1] == 2 and vals[2] == _procscan.BIG
    assert _procscan.read_dir_files("/no/such/dir", ["a"], 10) == 2
    for bad in ("a/b", "..", ".", "", "a\0b"):
        with pytest.raises(ValueError):
            _procscan.read_dir_files("/proc/self", [bad], 10)
    with pytest.raises(TypeError):
        _procscan.read_dir_files("/proc/self", [b"comm"], 10)


def test_permission_denied_says_whether_root_would_help(monkeypatch):
    """Root refused (a process of another user namespace, an LSM) must not be told to run as
    root; anyone else is."""
    import errno as _errno

    from ksight.fs import root as fsroot

    exc = PermissionError(_errno.EACCES, "Permission denied")
    monkeypatch.setattr(fsroot.os, "geteuid", lambda: 1000)
    assert fsroot._os_reason("proc/1/smaps", exc, lambda pid: True) == \
        "permission denied (run as root for this source)"
    monkeypatch.setattr(fsroot.os, "geteuid", lambda: 0)
    why = fsroot._os_reason("proc/1/smaps", exc, lambda pid: True)
    assert "even to root" in why and "run as root" not in why
