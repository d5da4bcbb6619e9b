import os
import socket

import pytest

from ksight.errors import Unavailable
from ksight.fs import DirRoot, LiveRoot
from ksight.sources.proc_pid import fd


def test_parse_link():
    assert fd.parse_link("socket:[12345]") == 12345
    assert fd.parse_link("pipe:[12345]") is None
    assert fd.parse_link("/dev/null") is None
    assert fd.parse_link("socket:[]") is None
    assert fd.parse_link("socket:[12x]") is None


def test_tree_with_links(tmp_path):
    d = tmp_path / "proc" / "42" / "fd"
    d.mkdir(parents=True)
    os.symlink("socket:[777]", d / "3")
    os.symlink("/dev/null", d / "0")
    os.symlink("socket:[778]", d / "5")
    (d / "9").write_text("not a link")  # unreadable as a link: skipped like a vanished fd
    assert sorted(fd.socket_inodes(DirRoot(str(tmp_path)), 42)) == [777, 778]


def test_missing_process(tmp_path):
    (tmp_path / "proc").mkdir()
    with pytest.raises(Unavailable) as ei:
        fd.socket_inodes(DirRoot(str(tmp_path)), 99)
    assert ei.value.reason == "process exited"


def test_live_own_socket():
    s = socket.socket()
    try:
        ino = os.fstat(s.fileno()).st_ino
        assert ino in fd.socket_inodes(LiveRoot(), os.getpid())
    finally:
        s.close()


def test_live_exited_process():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(Unavailable) as ei:
        fd.socket_inodes(LiveRoot(), pid)
    assert ei.value.reason == "process exited"


def test_permission_denied():
    """As an unprivileged user (a forked child drops to nobody when we are root), pid 1's fds."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            try:
                fd.socket_inodes(LiveRoot(), 1)
                os.write(w, b"no error")
            except Unavailable as u:
                os.write(w, u.reason.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        reason = f.read().decode()
    os.waitpid(pid, 0)
    assert "permission denied" in reason
