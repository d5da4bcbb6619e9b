"""A real capture from this project's VM (kernel 6.18): every source parses, and the views and
rules run on it offline, as they would on a capture sent from another machine."""

from __future__ import annotations

import json

from ksight.cli.main import main
from ksight.sources import SYSTEM
from ksight.store.capture import open_capture
from tests.conftest import FIXTURES

CAP = str(FIXTURES / "captures" / "vm-6.18.tar.zst")


def test_every_source_parses_from_the_capture():
    cap = open_capture(CAP)
    assert cap.manifest["host"]["kernel"].startswith("6.18")
    # every source by name: the opt-in ones (vmallocinfo) are read only when named
    snaps = list(cap.snapshots(processes=True, sockets=True, sources=list(SYSTEM)))
    assert len(snaps) == 2
    for s in snaps:
        missing = {m.source: m.reason for m in s.unavailable}
        # a VM without swap devices or NUMA beyond node0 still has every file ksight reads
        assert set(SYSTEM) - set(s.sources) <= set(missing), missing
        assert not any("malformed" in r for r in missing.values()), missing
        assert len(s.processes) > 10
        assert s.sockets is not None
    # the per-process table joins with the socket table through socket inodes
    owners = {x.pid for x in snaps[1].sockets.sockets if getattr(x, "pid", None)}
    assert owners and owners <= set(snaps[1].processes)
    # the capture was taken with a loopback listener (backlog 4) holding 2 unaccepted connections:
    # sock_diag's answer was stored in the capture and replays
    lst = [x for x in snaps[1].sockets.sockets if x.state == "LISTEN" and x.backlog == 4]
    assert len(lst) == 1 and lst[0].accept_queue == 2 and lst[0].rx_queue == 2
    assert lst[0].comm.startswith("python")


def test_views_and_check_run_offline(capsys):
    rc = main(["check", "--from", CAP, "--json"])
    doc = json.loads(capsys.readouterr().out)
    # by hand from the capture's proc/vmstat (snapshots 0000, 0001): nr_dirty + nr_writeback =
    # 7005 + 6144 = 13149 and 7974 + 6144 = 14118 pages; nr_dirty_threshold 16384 and
    # nr_dirty_background_threshold 8192 give the kernel's freerun ceiling (16384 + 8192) / 2 =
    # 12288. Above the ceiling, below 95 % of the threshold (15565): a dirty-backlog warning,
    # nothing critical, so exit 1
    sev = {f["id"]: f["severity"] for f in doc["findings"]}
    assert sev.get("pagecache.dirty-backlog") == "warning", doc["findings"]
    assert "critical" not in sev.values(), sev
    assert rc == doc["exit_status"] == 1
    assert doc["window"]["snapshots"] == 2 and 0.9 < doc["window"]["seconds"] < 3
    assert not any("internal error" in n["reason"] for n in doc["not_evaluated"])
    assert main(["sar", "-B", "--from", CAP]) == 0
    assert "pgpgin/s" in capsys.readouterr().out
    assert main(["pagecache", "--from", CAP]) == 0
    assert main(["show", "--from", CAP, "--snapshot", "0", "meminfo"]) == 0
