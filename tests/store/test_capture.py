"""Capture and replay: what was read is written as it was, and re-parses to the same model."""

from __future__ import annotations

import json
import mmap
import os

import pytest

from ksight.cli.main import main
from ksight.collect.snapshot import take
from ksight.errors import CaptureError, Unavailable
from ksight.fs import LiveRoot, Root, open_root
from ksight.model.series import Series
from ksight.sources import vmstat
from ksight.store.capture import capture, open_capture
from tests.conftest import corpus

SRC = ["uptime", "meminfo", "vmstat", "stat", "loadavg", "zoneinfo", "sysctl"]


@pytest.mark.parametrize("name", ["capdir", "cap.tar", "cap.tar.gz", "cap.tar.zst"])
def test_capture_roundtrip(tmp_path, name):
    out = str(tmp_path / name)
    between = []  # the live pgfault counter read after snapshot 0 and before snapshot 1

    def fault_pages(n=64):
        with mmap.mmap(-1, n * 4096) as mem:  # fresh anonymous pages: the first write faults
            for off in range(0, n * 4096, 4096):
                mem[off] = 1

    def progress(i, n, snap):
        if i == 1:  # make the machine's pgfault move on both sides of the live read
            fault_pages()
            between.append(vmstat.parse(open("/proc/vmstat").read()).counters["pgfault"])
            fault_pages()

    m = capture(out, interval=0.2, count=2, sources=SRC, processes=False, sockets=False,
                progress=progress)
    assert m["format"] == "ksight-capture" and len(m["snapshots"]) == 2
    assert m["host"]["page_size"] == os.sysconf("SC_PAGE_SIZE")
    cap = open_capture(out)
    snaps = list(cap.snapshots(sources=SRC))
    assert len(snaps) == 2
    assert snaps[0].host.kernel == os.uname().release
    assert not snaps[0].host.page_size_assumed
    w = Series(snaps)
    assert 0.15 < w.seconds < 2.0  # from the kernel uptime recorded in each snapshot
    assert snaps[1].get("meminfo").mem_total_kb == take(LiveRoot(), sources=["meminfo"]).get("meminfo").mem_total_kb
    # each snapshot replays its own text, as read at its own time: the counter read live between
    # the two takes lies between the replayed values (a replay of one snapshot twice, or of the
    # machine now, would not)
    (mid,) = between
    assert snaps[0].get("vmstat").counters["pgfault"] < mid < snaps[1].get("vmstat").counters["pgfault"]
    # and the replayed value is the number in the stored text
    raw = open_root(out).read_text("0001/proc/vmstat")
    assert snaps[1].get("vmstat").counters["pgfault"] == vmstat.parse(raw).counters["pgfault"]


class DenyingRoot(Root):
    """The live machine, except slabinfo is permission-denied (as for a non-root user)."""

    def __init__(self):
        self.inner = LiveRoot()
        self.live, self.label = True, "deny"

    def read_bytes(self, path, *, chunk=65536):
        if path.endswith("slabinfo"):
            raise Unavailable(path, "permission denied (run as root for this source)")
        return self.inner.read_bytes(path, chunk=chunk)

    def listdir(self, p): return self.inner.listdir(p)
    def exists(self, p): return self.inner.exists(p)
    def isdir(self, p): return self.inner.isdir(p)
    def readlink(self, p): return self.inner.readlink(p)


def test_unavailable_reason_survives_replay(tmp_path):
    out = str(tmp_path / "c")
    capture(out, root=DenyingRoot(), count=1, sources=["uptime", "slabinfo"], processes=False,
            sockets=False)
    snap = next(open_capture(out).snapshots(sources=["uptime", "slabinfo"]))
    assert "permission denied" in snap.missing("slabinfo").reason


def test_single_tree_and_subdirs_without_manifest(tmp_path):
    one = open_capture(str(corpus("node_exporter")))
    assert len(one.roots) == 1 and one.manifest is None
    s = next(one.snapshots(sources=["meminfo"]))
    assert s.host.page_size_assumed and s.taken_at is None
    for i, up in enumerate(["10.00 1.00", "15.00 2.00"]):
        d = tmp_path / f"s{i}" / "proc"
        d.mkdir(parents=True)
        (d / "uptime").write_text(up + "\n")
    snaps = list(open_capture(str(tmp_path)).snapshots(sources=["uptime"]))
    assert Series(snaps).seconds == 5.0


def test_not_a_capture(tmp_path):
    (tmp_path / "x").write_text("hello")
    with pytest.raises(CaptureError):
        open_capture(str(tmp_path))
    with pytest.raises(CaptureError):
        open_capture(str(tmp_path / "x"))


def test_capture_refuses_to_overwrite(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("keep me")
    with pytest.raises(CaptureError):
        capture(str(tmp_path / "d"), count=1, sources=["uptime"], processes=False, sockets=False)
    assert (tmp_path / "d" / "f").read_text() == "keep me"


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["check", "--from", str(tmp_path / "missing")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ksight: ") and "Traceback" not in err
    assert main(["show", "nosuchsource"]) == 3


def test_capture_cli_with_processes_and_sockets_replays(tmp_path, capsys):
    out = str(tmp_path / "cap.tar.zst")
    assert main(["capture", "-o", out, "--count", "2", "--interval", "0.2"]) == 0
    capsys.readouterr()  # what capture said (its summary and any unavailable sources)
    assert main(["show", "--from", out, "--json", "--processes", "--sockets", "meminfo"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert str(os.getpid()) in doc["processes"]
    assert doc["sockets"] is not None
