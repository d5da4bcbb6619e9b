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
    with netns.socket_in(None, _socket.AF_INET, _socket.SOCK_STREAM) as s:
        assert s.family == _socket.AF_INET
    dead = max(int(n) for n in os.listdir("/proc") if n.isdigit()) + 100000
    with pytest.raises(Unavailable, match="process exited"):
        netns.socket_in(dead, _socket.AF_INET, _socket.SOCK_STREAM)
    assert netns.current() == os.stat("/proc/self/ns/net").st_ino
