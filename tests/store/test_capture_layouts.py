"""Captures as people hand them over: an archive of a folder (`tar czf cap.tgz mydir/`), a folder
whose snapshot folders are links to folders elsewhere. Links that leave the capture (archive) or
the snapshot's tree (folder) stay refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from ksight.errors import Unavailable
from ksight.store.capture import capture, open_capture

SRC = ["uptime", "meminfo"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A 2-snapshot capture folder written by ksight, and the uptimes it recorded."""
    base = tmp_path_factory.mktemp("made")
    out = base / "mydir"
    capture(str(out), interval=0.1, count=2, sources=SRC, processes=False, sockets=False)
    ups = [float((out / d / "proc" / "uptime").read_text().split()[0]) for d in ("0000", "0001")]
    return out, ups


def _uptimes(spec):
    cap = open_capture(str(spec))
    return cap, [s.uptime_s for s in cap.snapshots(sources=SRC)]


@pytest.mark.skipif(shutil.which("tar") is None, reason="tar not installed")
@pytest.mark.parametrize("how", [["mydir/"], ["-C", "mydir", "."]])
def test_tar_of_a_folder(made, tmp_path, how):
    out, ups = made
    tgz = tmp_path / "cap.tgz"
    subprocess.run(["tar", "czf", str(tgz), *how], cwd=out.parent, check=True, timeout=60)
    cap, got = _uptimes(tgz)
    assert cap.manifest is not None and cap.manifest["count"] == 2
    assert got == ups


def test_folder_with_snapshot_folders_linked_elsewhere(made, tmp_path):
    out, ups = made
    elsewhere = tmp_path / "disk2"
    shutil.copytree(out, elsewhere, symlinks=True)
    cap_dir = tmp_path / "cap"
    cap_dir.mkdir()
    shutil.copy(out / "manifest.json", cap_dir / "manifest.json")
    os.symlink(elsewhere / "0000", cap_dir / "0000")  # absolute link
    os.symlink(os.path.relpath(elsewhere / "0001", cap_dir), cap_dir / "0001")  # relative link
    cap, got = _uptimes(cap_dir)
    assert got == ups
    # without the manifest the linked folders are found too
    (cap_dir / "manifest.json").unlink()
    cap, got = _uptimes(cap_dir)
    assert cap.manifest is None and got == ups


def test_links_leaving_a_snapshot_tree_are_refused(made, tmp_path):
    out, _ = made
    elsewhere = tmp_path / "disk2"
    shutil.copytree(out, elsewhere, symlinks=True)
    secret = tmp_path / "secret"
    secret.write_text("not kernel text\n")
    snap0 = elsewhere / "0000" / "proc"
    os.symlink(secret, snap0 / "abs_leak")
    os.symlink(os.path.relpath(secret, snap0), snap0 / "rel_leak")
    os.symlink("../../0001/proc/uptime", snap0 / "sibling")  # inside the capture, outside 0000
    os.symlink("uptime", snap0 / "inside")
    cap_dir = tmp_path / "cap"
    cap_dir.mkdir()
    shutil.copy(out / "manifest.json", cap_dir / "manifest.json")
    for d in ("0000", "0001"):
        os.symlink(elsewhere / d, cap_dir / d)
    root = open_capture(str(cap_dir)).roots[0]
    assert root.read_text("proc/inside") == (snap0 / "uptime").read_text()
    for name in ("abs_leak", "rel_leak", "sibling"):
        with pytest.raises(Unavailable, match="outside"):
            root.read_text(f"proc/{name}")


def _add(tar, name, data=None, link=None, kind=None):
    ti = tarfile.TarInfo(name)
    if link is not None:
        ti.type, ti.linkname = tarfile.SYMTYPE, link
        tar.addfile(ti)
    elif kind == "dir":
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(ti)
    else:
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))


def test_archive_with_a_top_folder_refuses_links_out(tmp_path, made):
    out, ups = made
    tgz = tmp_path / "cap.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        _add(tar, "mydir/manifest.json", (out / "manifest.json").read_bytes())
        for d in ("0000", "0001"):
            _add(tar, f"mydir/{d}/proc/uptime", (out / d / "proc" / "uptime").read_bytes())
        _add(tar, "mydir/0000/proc/leak", link="../../../../etc/hostname")
        _add(tar, "mydir/0000/proc/abs", link="/etc/hostname")
        _add(tar, "mydir/0000/proc/ok", link="uptime")
    cap, got = _uptimes(tgz)
    assert got == ups and cap.manifest["count"] == 2
    r = cap.roots[0]
    assert r.read_text("proc/ok") == (out / "0000" / "proc" / "uptime").read_text()
    for name in ("leak", "abs"):
        with pytest.raises(Unavailable, match="outside"):
            r.read_text(f"proc/{name}")


def test_not_descending_into_a_folder_that_is_no_capture(tmp_path):
    (tmp_path / "only" / "stuff").mkdir(parents=True)
    (tmp_path / "only" / "stuff" / "x").write_text("1")
    from ksight.errors import CaptureError

    with pytest.raises(CaptureError, match="not a capture"):
        open_capture(str(tmp_path))
