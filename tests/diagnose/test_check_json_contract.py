"""The --json document keeps the documented shape (docs/check-json.md)."""

from __future__ import annotations

import json

from ksight.cli.main import main
from tests.diagnose.helpers import counter, set_counter, tree
from tests.conftest import corpus_text

FINDING_KEYS = {"id", "area", "severity", "title", "subject", "evidence", "explanation", "actions"}
EVIDENCE_KEYS = {"name", "value", "unit", "source", "threshold", "note"}
ACTION_KEYS = {"kind", "text", "name", "current", "recommended", "why", "path"}


def test_json_document_shape_and_exit_status(tmp_path, capsys):
    v = corpus_text("node_exporter", "proc", "vmstat")
    files0 = {"proc/vmstat": v, "proc/meminfo": corpus_text("node_exporter", "proc", "meminfo"),
              "proc/uptime": "100.00 150.00\n"}
    # swap-in is the harm swap-io judges (swap-out alone is info): 10,000 pages/s of each
    v1 = set_counter(v, "pswpout", counter(v, "pswpout") + 20_000)
    v1 = set_counter(v1, "pswpin", counter(v1, "pswpin") + 20_000)
    files1 = dict(files0, **{"proc/vmstat": v1,
                             "proc/uptime": "102.00 153.00\n"})
    tree(tmp_path / "0000", files0)
    tree(tmp_path / "0001", files1)
    status = main(["check", "--json", "--from", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1
    assert set(doc) >= {"version", "host", "kernel", "window", "findings", "unavailable"}
    assert doc["window"]["seconds"] == 2.0  # from proc/uptime: no manifest
    f = next(f for f in doc["findings"] if f["id"] == "pagecache.swap-io")
    assert set(f) == FINDING_KEYS
    assert f["severity"] == "critical"  # 10,000 pages/s >= 2,560
    assert status == 2 and doc["exit_status"] == 2
    for e in f["evidence"]:
        assert set(e) == EVIDENCE_KEYS
    assert {e["name"]: e["value"] for e in f["evidence"]}["pswpout"] == 10_000
    assert all(set(a) == ACTION_KEYS for a in f["actions"])
    # the tree has no zoneinfo: it is listed with the reason, not silently zero
    un = {u["source"]: u["reason"] for u in doc["unavailable"]}
    assert "zoneinfo" in un and "missing" in un["zoneinfo"]


def test_nothing_to_read_exits_3(tmp_path, capsys):
    (tmp_path / "proc").mkdir()
    status = main(["check", "--json", "--from", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert status == 3 and doc["verdict"] == "unknown"
    assert doc["not_evaluated"]


def test_text_never_prints_now_none(capsys):
    from ksight.diagnose.finding import Action, Report
    from ksight.diagnose.rule import Rule, Threshold  # noqa: F401
    from ksight.render.check_text import render_report
    from ksight.collect.plan import Needs

    r = Rule("pagecache.x", "pagecache", "t", Needs(), {}, lambda c, r: None)
    f = r.finding("warning", [], "why", [Action.sysctl("vm.watermark_scale_factor", None, 100),
                                          Action.cgroup_write("/sys/fs/cgroup/g/memory.high", 5, None)])
    rep = Report(host={"hostname": "h"}, kernel="k", window={"seconds": 1, "snapshots": 2},
                 findings=[f], rules_run=1, rules_selected=1)
    render_report(rep)
    out = capsys.readouterr().out
    assert "None" not in out and "not set on this kernel" in out
