"""A full disk during `capture` (issue 8: 8): one line, no traceback; an archive that cannot be
finished is removed (never a torn .tar or a 0-byte .tar.zst); a directory capture keeps its
complete snapshots and a manifest listing them, and says so. On a small tmpfs we mount ourselves."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from ksight.cli.main import main
from ksight.errors import CaptureError
from ksight.store.capture import capture, open_capture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
SRC = ["uptime", "meminfo", "vmstat", "zoneinfo", "stat"]


@pytest.fixture
def small_fs():
    """mount(size) -> the mount point of a fresh tmpfs of that many bytes; unmounted after."""
    base = tempfile.mkdtemp(prefix="ksight-enospc-")
    mounted = []

    def mount(size: int) -> str:
        if mounted:
            subprocess.run(["umount", base], check=True)
            mounted.pop()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", base],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
        mounted.append(base)
        return base

    try:
        yield mount
    finally:
        if mounted:
            subprocess.run(["umount", base], check=True)
        os.rmdir(base)


def _fill(mnt: str, leave: int = 0) -> None:
    """Fill the filesystem, then free `leave` bytes."""
    fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    if leave:
        os.truncate(os.path.join(mnt, "filler"), os.path.getsize(os.path.join(mnt, "filler")) - leave)


def _used(mnt: str) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.mark.parametrize("name", ["cap.tar", "cap.tar.gz", "cap.tar.zst", "capdir"])
@pytest.mark.parametrize("leave", [0, 8192])
def test_full_disk_gives_one_error_and_leaves_nothing(small_fs, name, leave):
    mnt = small_fs(512 * 1024)
    _fill(mnt, leave)
    with pytest.raises(CaptureError) as exc:
        capture(os.path.join(mnt, name), count=2, interval=0.01, sources=SRC, processes=True,
                sockets=False)
    msg = str(exc.value)
    assert "No space left on device" in msg and "\n" not in msg
    assert ("removed" in msg) if name != "capdir" else ("nothing was kept" in msg)
    assert os.listdir(mnt) == ["filler"]  # no partial .tar, no 0-byte .tar.zst, no temp file


def test_cli_full_disk_is_one_line_exit_3(small_fs, capsys):
    mnt = small_fs(512 * 1024)
    _fill(mnt)
    assert main(["capture", "-o", os.path.join(mnt, "cap.tar.zst")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ksight: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert os.listdir(mnt) == ["filler"]


def _tree(tmp_path, kb: int) -> str:
    """A machine whose snapshot is about `kb` KiB (a meminfo padded with lines ksight skips)."""
    from tests.conftest import corpus_text

    proc = tmp_path / "machine" / "proc"
    proc.mkdir(parents=True)
    (proc / "uptime").write_text("100.00 150.00\n")
    pad = "".join(f"Pad{i:06d}:      1 kB\n" for i in range(kb * 1024 // 22))
    (proc / "meminfo").write_text(corpus_text("procfs", "proc", "meminfo") + pad)
    return str(tmp_path / "machine")


def test_directory_capture_keeps_complete_snapshots_and_says_so(small_fs, capsys, tmp_path,
                                                                monkeypatch):
    # room for one snapshot and a half: the first is kept, the second removed, the manifest says so
    from ksight.fs import DirRoot
    from ksight.store import capture as capmod

    tree = _tree(tmp_path, 200)
    monkeypatch.setattr(capmod, "LiveRoot", lambda: DirRoot(tree))
    mnt = small_fs(300 * 1024)
    out = os.path.join(mnt, "capdir")
    code = main(["capture", "-o", out, "--count", "4", "--interval", "0.01", "--no-processes",
                 "--no-sockets"])
    o, err = capsys.readouterr()
    assert code == 3 and "Traceback" not in err
    assert "stopped after 1 of 4" in err and "kept the complete snapshots" in err
    cap = open_capture(out)
    assert [m["dir"] for m in cap.metas] == ["0000"] and len(cap.roots) == 1
    assert sorted(os.listdir(out)) == ["0000", "manifest.json"]  # the torn 0001 is gone
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert "No space left on device" in m["write_error"] and m["requested_count"] == 4
    snap = next(cap.snapshots(sources=["meminfo"]))
    assert snap.get("meminfo").mem_total_kb == 15666184  # procfs fixture: MemTotal


def test_archive_on_a_disk_that_fills_midway_is_removed(small_fs, tmp_path, monkeypatch):
    from ksight.fs import DirRoot
    from ksight.store import capture as capmod

    tree = _tree(tmp_path, 200)
    monkeypatch.setattr(capmod, "LiveRoot", lambda: DirRoot(tree))
    mnt = small_fs(300 * 1024)
    with pytest.raises(CaptureError, match="No space left on device.*removed"):
        capture(os.path.join(mnt, "cap.tar"), count=4, interval=0.01, sources=["uptime", "meminfo"],
                processes=False, sockets=False)
    assert os.listdir(mnt) == []
