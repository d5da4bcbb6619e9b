"""`ksight report`: the CLI over a capture (--from), its errors, its time arguments, and the
report view's charts against hand-computed numbers."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from ksight.cli.report import parse_time
from tests.record.test_episodes import T0, burst, series

CAPTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "captures", "vm-6.18.tar.zst")


def ksight(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ksight", *args], capture_output=True, text=True,
                          timeout=120)


def test_report_json_from_a_capture_agrees_with_check():
    p = ksight("report", "--from", CAPTURE, "--json")
    assert p.returncode in (0, 1, 2), p.stderr
    doc = json.loads(p.stdout)
    assert doc["exit_status"] == p.returncode and doc["range"]["samples"] == 2
    c = ksight("check", "--from", CAPTURE, "--json")
    chk = json.loads(c.stdout)
    # one window holds the whole capture: the episodes are check's findings, one each
    assert sorted((e["rule"], e["severity"]) for e in doc["episodes"]) == sorted(
        (f["id"], f["severity"]) for f in chk["findings"])
    for e in doc["episodes"]:
        assert e["start"] == doc["range"]["start"] and e["end"] == doc["range"]["end"]
        assert e["windows"] == 1 and e["bundle"] is None
    charts = {ch["id"]: ch for ch in doc["charts"]}
    assert set(charts) >= {"memory", "reclaim", "cpu", "processes"}
    for cid in ("memory", "cpu", "processes"):
        assert charts[cid]["series"], cid
    # the capture's two samples: memory at both, CPU per interval (one)
    assert len(charts["memory"]["series"][0]["times"]) == 2
    assert len(charts["cpu"]["series"][0]["times"]) == 1
    assert doc["host"] == doc["host_info"]["hostname"] == "vm" and doc["source"] == CAPTURE
    assert doc["version"] == 2 and doc["wall_clock"] is True


def test_report_text_from_a_capture():
    p = ksight("report", "--from", CAPTURE)
    assert p.returncode in (0, 1, 2), p.stderr
    assert p.stdout.startswith("ksight report: vm (kernel 6.18")
    assert max(len(line) for line in p.stdout.splitlines()) <= 100


def test_db_without_the_store_or_file_is_a_clear_error(tmp_path):
    p = ksight("report", "--db", str(tmp_path / "none.db"))
    assert p.returncode == 3 and "Traceback" not in p.stderr
    assert "--db" in p.stderr
    p = ksight("report", "--from", CAPTURE, "--db", str(tmp_path / "x.db"))
    assert p.returncode == 3 and "not allowed with argument" in p.stderr


def test_bad_times_are_usage_errors():
    p = ksight("report", "--from", CAPTURE, "--since", "yesterday-ish")
    assert p.returncode == 3 and "is not a time" in p.stderr
    p = ksight("report", "--from", CAPTURE, "--since=-1h", "--until=-2h")
    assert p.returncode == 3 and "not after" in p.stderr


def test_parse_time():
    now = 1_790_000_000.0
    assert parse_time("-2h", now) == now - 7200
    assert parse_time("-30m", now) == now - 1800
    assert parse_time("-1d", now) == now - 86400
    assert parse_time("-90", now) == now - 90
    assert parse_time("1790000123", now) == 1790000123.0
    assert parse_time("2026-12-01 03:00", now) == datetime.datetime(2026, 12, 1, 3, 0).timestamp()
    assert parse_time("2026-12-01T03:00:30", now) == datetime.datetime(2026, 12, 1, 3, 0, 30).timestamp()
    day = datetime.datetime.fromtimestamp(now).date()
    assert parse_time("03:15", now) == datetime.datetime(day.year, day.month, day.day, 3, 15).timestamp()


def test_help_ends_with_examples():
    p = ksight("report", "--help")
    assert p.returncode == 0 and "examples:" in p.stdout
    assert p.stdout.rstrip().splitlines()[-1].strip().startswith("ksight report")


# ---- the charts ----------------------------------------------------------------------------------
def _charts(view):
    return {c.id: {s.name: s for s in c.series} for c in view.charts}


def _at(s):
    return dict(zip(s.times, s.values))


def test_charts_hold_the_rates_written_into_the_series():
    from ksight.views.report import report_view
    from ksight.views.report_data import ReportView

    # 50 stalls/s, 100 pages scanned and 90 stolen directly per stall, from 100 s to 160 s
    snaps, _ = series(300, stalls=lambda t: 50 if 100 < t <= 160 else 0)
    view = report_view(iter(snaps))
    assert isinstance(view, ReportView) and view.episode_report.samples == 300
    ch = _charts(view)
    scanned, stolen = _at(ch["reclaim"]["direct scanned"]), _at(ch["reclaim"]["direct reclaimed"])
    assert scanned[T0 + 130] == 5000 and scanned[T0 + 99] == 0 and scanned[T0 + 200] == 0
    assert stolen[T0 + 130] == 4500 and stolen[T0 + 161] == 0
    # CPU: 5 user, 2 system, 93 idle ticks of 100 per CPU each second (written in series())
    assert _at(ch["cpu"]["usr"])[T0 + 50] == pytest.approx(5.0)
    assert _at(ch["cpu"]["sys"])[T0 + 50] == pytest.approx(2.0)
    assert _at(ch["cpu"]["iowait"])[T0 + 50] == pytest.approx(0.0)
    # memory composition: the capture's meminfo, kB as the kernel printed it, in bytes
    mi = snaps[0].get("meminfo")
    mem = {name: s.values[0] for name, s in ch["memory"].items()}
    assert mem["anon"] == mi.anon_pages_kb * 1024 and mem["shmem"] == mi.shmem_kb * 1024
    assert mem["dirty"] == mi.dirty_kb * 1024 and mem["slab"] == mi.slab_kb * 1024
    assert mem["file cache (clean)"] == (mi.active_file_kb + mi.inactive_file_kb
                                         - mi.dirty_kb) * 1024
    # the episode the same pass found
    assert [e.rule for e in view.episodes] == ["pagecache.direct-reclaim"]
    assert view.episodes[0].start <= T0 + 101 and view.episodes[0].end >= T0 + 160
    # the whole range: memory from the first sample, rates from the first interval's end
    for s in ch["memory"].values():  # 300 samples: far under the grid, one point each
        assert (s.times[0], s.times[-1]) == (T0, T0 + 299)
        assert len(s.times) == 300 and not s.reduced
    for s in ch["reclaim"].values():
        assert (s.times[0], s.times[-1]) == (T0 + 1, T0 + 299)
    assert (view.start, view.end, view.wall_clock) == (T0, T0 + 299, True)


def test_a_one_second_burst_in_a_long_range_is_kept_at_its_peak():
    from ksight.views.report import report_view

    # 50 minutes of a steady 10 stalls/s (1,000 pages scanned/s) and, in the second ending at
    # 1,234 s, 300 stalls (30,000 pages): far more samples than the 64 buckets of the grid
    snaps, _ = series(3000, stalls=lambda t: 300 if t == 1234 else 10)
    view = report_view(iter(snaps), max_buckets=64, areas=["pagecache"])
    sc = _charts(view)["reclaim"]["direct scanned"]
    assert sc.reduced and len(sc.times) <= 2 * 64 + 2  # at most two points per bucket
    assert _at(sc)[T0 + 1234] == 30000  # the burst is a point of the line, at its height
    assert (sc.peak, sc.peak_at) == (30000, T0 + 1234)
    # nothing averaged: every point is a rate written into the series (1,000 or 30,000 pages/s)
    assert all(v == pytest.approx(1000) or v == 30000 for v in sc.values)
    assert sc.times[0] == T0 + 1 and sc.times[-1] <= T0 + 2999
    # the whole range is covered: 3,000 s in at most 64 buckets is buckets of 64 s (0.25 s
    # doubled until 64 cover the range); the last one holds the last sample's bucket
    assert any("every 64 s (peaks kept)" in n for n in view.notes), view.notes
    assert sc.times[-1] > T0 + 2999 - 64
    mem = _charts(view)["memory"]["anon"]
    assert mem.times[0] == T0 and mem.times[-1] > T0 + 2999 - 64


def test_html_writes_a_page_or_says_why_not(tmp_path):
    out = tmp_path / "r.html"
    p = ksight("report", "--from", CAPTURE, "--html", str(out))
    import importlib.util

    if importlib.util.find_spec("ksight.render.report_html") is None:  # until h-html is merged
        assert p.returncode == 3 and "no HTML report" in p.stderr and not out.exists()
        return
    assert p.returncode in (0, 1, 2), p.stderr
    page = out.read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "<svg" in page


def test_since_until_bound_the_range():
    from ksight.views.report import report_view

    snaps, _ = series(600, stalls=burst(100, 5, 200))
    view = report_view(iter(snaps), areas=["pagecache"], since=T0 + 200, until=T0 + 499)
    rep = view.episode_report
    assert (rep.start, rep.end, rep.samples) == (T0 + 200, T0 + 499, 300)
    assert view.episodes == ()  # the burst at 100 s is outside
    assert (view.since, view.until, view.start, view.end) == (T0 + 200, T0 + 499) * 2
    for c in view.charts:  # the charts hold that range only
        for s in c.series:
            assert T0 + 200 <= s.times[0] and s.times[-1] <= T0 + 499
    view = report_view(iter(snaps), areas=["pagecache"], until=T0 + 299)
    assert [e.rule for e in view.episodes] == ["pagecache.direct-reclaim"]


def test_unreadable_samples_of_a_recording_are_a_note_in_every_output(monkeypatch, capsys):
    """A recording whose store skipped torn rows (the store is h-rec's: stood in for here):
    the note is in the JSON's notes, the text's, and the episode report's."""
    import argparse

    from ksight.cli import report as cli

    snaps, _ = series(120, stalls=burst(30, 5, 200))

    class Rec:
        skipped = 2
        errors = ["row 17: torn frame"]

    monkeypatch.setattr(cli, "_snapshots", lambda args, areas: (iter(snaps), "x.db", None, Rec()))
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    assert cli.run(p.parse_args(["--db", "x.db", "--json", "--area", "pagecache"])) == 2
    doc = json.loads(capsys.readouterr().out)
    want = "2 sample(s) of the recording could not be read and were left out: row 17: torn frame"
    assert want in doc["notes"] and doc["source"] == "x.db"
    assert [e["rule"] for e in doc["episodes"]] == ["pagecache.direct-reclaim"]
    assert doc["range"]["samples"] == 120 and doc["verdict"] == "critical"
    cli.run(p.parse_args(["--db", "x.db", "--area", "pagecache"]))
    assert want in " ".join(capsys.readouterr().out.split())
