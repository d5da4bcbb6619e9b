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
    assert {ch["name"] for ch in doc["charts"]} >= {"memory", "reclaim", "cpu", "rss"}


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
def test_charts_hold_the_rates_written_into_the_series():
    from ksight.views.report import report_view

    # 50 stalls/s (100 pages scanned directly per stall) from 100 s to 160 s
    snaps, _ = series(300, stalls=lambda t: 50 if 100 < t <= 160 else 0)
    view = report_view(iter(snaps))
    charts = {c.name: c for c in view.charts}
    rec = {ln.name: ln for ln in charts["reclaim"].lines}
    st = rec["allocstall"]
    by_t = dict(zip(st.times, st.values))
    assert by_t[T0 + 130] == 50 and by_t[T0 + 99] == 0 and by_t[T0 + 200] == 0
    assert dict(zip(rec["pgscan direct"].times, rec["pgscan direct"].values))[T0 + 130] == 5000
    # CPU: 5 user, 2 system, 93 idle ticks of 100 per CPU each second (written in series())
    cpu = {ln.name: dict(zip(ln.times, ln.values)) for ln in charts["cpu"].lines}
    assert cpu["usr"][T0 + 50] == pytest.approx(5.0) and cpu["sys"][T0 + 50] == pytest.approx(2.0)
    # memory composition: the capture's meminfo, kB as the kernel printed it
    mem = {ln.name: ln.values[0] for ln in charts["memory"].lines}
    mi = snaps[0].get("meminfo")
    assert mem["anon"] == mi.anon_pages_kb and mem["shmem"] == mi.shmem_kb
    assert mem["file"] == mi.cached_kb - mi.shmem_kb + mi.buffers_kb
    # at most MAX_POINTS a line, the whole range covered
    assert all(len(ln.times) <= 2 * 1000 for c in view.charts for ln in c.lines)


def test_a_long_range_is_thinned_for_plotting_but_keeps_the_mean():
    from ksight.views.report import report_view

    snaps, _ = series(3000, stalls=lambda t: 10)  # a steady 10 stalls/s for 50 minutes
    view = report_view(iter(snaps), max_points=200, areas=["pagecache"])
    st = next(ln for c in view.charts if c.name == "reclaim" for ln in c.lines if ln.name == "allocstall")
    assert len(st.times) <= 400
    assert all(v == pytest.approx(10) for v in st.values if v is not None)
    assert st.times[-1] == T0 + 2999


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
    rep = view.episodes
    assert (rep.start, rep.end, rep.samples) == (T0 + 200, T0 + 499, 300)
    assert rep.episodes == []  # the burst at 100 s is outside
    view = report_view(iter(snaps), areas=["pagecache"], until=T0 + 299)
    assert [e.rule for e in view.episodes.episodes] == ["pagecache.direct-reclaim"]
