"""The report page in a real browser (Debian's chromium, headless): it loads offline with no
console message at all (the page has no script, so any message is a problem: a blocked fetch, a
parse error), its charts are in the DOM with drawn paths, and a screenshot shows them.

Each check is first shown able to fail: a page that tries to fetch is caught by the console
check, a blank page by the screenshot check."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ksight.render import report_html as rh
from ksight.views.report_data import ReportView
from ksight.views.report_series import build_charts
from tests.browser import png
from tests.browser.synth import T0, episode, finding, recording
from tests.conftest import need_tool

W, H = 1060, 760  # the screenshot: the header and the first two charts


def chromium(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = need_tool("chromium", "the HTML report is tested in a real headless browser")
    prof = tmp_path / f"chromium-profile-{os.getpid()}"
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
           "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
           "--hide-scrollbars", f"--user-data-dir={prof}", "--enable-logging=stderr", "--v=0",
           *args]
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (chromium logs each as `INFO:CONSOLE(...)` or
    `:CONSOLE:N]` with --enable-logging=stderr), JavaScript errors included."""
    return [ln for ln in stderr.splitlines() if re.search(r":CONSOLE[:(]", ln)
            or "Uncaught" in ln]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    n = 600
    cs = build_charts(recording(n, hostile=True))
    eps = (episode(T0 + n // 3 + 30, T0 + n - 1, comm="<script>alert(1)</script>"),
           episode(T0 + n // 2, T0 + n // 2 + 19, rule="pagecache.direct-reclaim",
                   severity="critical"),
           episode(T0 + n - n // 5, T0 + n - 1, rule="tcp.retrans-high"))
    v = ReportView(cs.host, cs.kernel, cs.start, cs.end, cs.charts, episodes=eps,
                   findings=(finding("cpu.high-system", "info"),), notes=cs.notes,
                   wall_clock=cs.wall_clock, snapshots=cs.snapshots)
    out = tmp_path_factory.mktemp("report") / "report.html"
    rh.render(v, out)
    return out


def test_the_console_check_catches_a_page_that_fetches(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
                   f'content="{rh.CSP}"></head><body><img src="http://192.0.2.1/x.png"></body></html>')
    r = chromium(tmp_path, "--dump-dom", bad.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    msgs = console_messages(r.stderr)
    assert msgs and any("Content Security Policy" in m for m in msgs), r.stderr[-3000:]


def test_page_loads_without_console_messages_and_draws_every_chart(tmp_path, report_file):
    r = chromium(tmp_path, "--dump-dom", report_file.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_messages(r.stderr) == []
    dom = r.stdout
    # the DOM as chromium built it: every chart box holds an svg with drawn paths
    boxes = re.findall(r'<div class="chartbox" id="chart-([a-z]+)">(.*?)</div>', dom, re.S)
    assert [b[0] for b in boxes] == ["memory", "reclaim", "paging", "retrans", "cpu", "processes"]
    for cid, body in boxes:
        assert "<svg" in body, cid
        ds = re.findall(r'<path d="([^"]+)"', body)
        assert ds and all(re.match(r"M[\d.]+,[\d.]+ ", d) for d in ds), cid
    # episodes are bands with their rule id, and the hostile process name stayed text
    assert dom.count('class="episode"') == 3 * 6
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_screenshot_shows_the_charts(tmp_path, report_file):
    shot = tmp_path / "shot.png"
    r = chromium(tmp_path, f"--screenshot={shot}", f"--window-size={W},{H}", report_file.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    assert console_messages(r.stderr) == []
    w, h, rows, bpp = png.read(shot.read_bytes())
    assert (w, h) == (W, H)
    var, colours = png.stats(rows, bpp)
    assert var > 500, var  # a page of text and coloured charts, not a blank one
    # the memory chart's bands are drawn in the palette's colours (at 0.78 opacity on white:
    # allow for the blend); count pixels near the first band's blue #0072B2 blended
    blue = (0x00, 0x72, 0xB2)
    blend = tuple(round(c * 0.78 + 255 * 0.22) for c in blue)
    near = sum(k for c, k in colours.items() if all(abs(a - b) <= 24 for a, b in zip(c, blend)))
    assert near > 500, near


def test_the_screenshot_check_catches_a_blank_page(tmp_path):
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body style='background:#fff'></body></html>")
    shot = tmp_path / "blank.png"
    r = chromium(tmp_path, f"--screenshot={shot}", f"--window-size={W},{H}", blank.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    w, h, rows, bpp = png.read(shot.read_bytes())
    assert (w, h) == (W, H)
    var, _ = png.stats(rows, bpp)
    assert var < 1


def test_a_reduced_long_recording_and_odd_values_load_cleanly(tmp_path):
    """Reduced series (min/max per bucket, gaps from a reboot) and a chart with no data."""
    from ksight.views.report_series import report_view

    snaps = recording(3000)
    # a reboot two thirds in: another boot_id, uptime restarting
    from dataclasses import replace

    cut = 2000
    snaps = snaps[:cut] + [replace(s, host=replace(s.host, boot_id="b-2"), uptime_s=s.uptime_s - 5000,
                                   monotonic=s.monotonic - 5000) for s in snaps[cut:]]
    v = report_view(snaps, max_buckets=64, episodes=(episode(T0 + 100, T0 + 2500),))
    assert any(s.reduced for c in v.charts for s in c.series)
    out = tmp_path / "long.html"
    rh.render(v, out)
    r = chromium(tmp_path, "--dump-dom", out.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_messages(r.stderr) == []
    assert r.stdout.count("<svg") == sum(1 for c in v.charts if c.series)


def test_the_report_commands_page_loads_cleanly(tmp_path):
    """`ksight report --html` end to end: the one ReportView of views/report.py (episodes and
    charts of one pass over the checked-in capture) drawn and loaded in chromium."""
    import sys

    from tests.conftest import FIXTURES

    out = tmp_path / "report.html"
    p = subprocess.run([sys.executable, "-m", "ksight", "report", "--from",
                        str(FIXTURES / "captures" / "vm-6.18.tar.zst"), "--html", str(out)],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode in (0, 1, 2), p.stderr
    assert (out.stat().st_mode & 0o077) == 0  # it names the machine's processes: owner only
    r = chromium(tmp_path, "--dump-dom", out.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_messages(r.stderr) == []
    boxes = dict(re.findall(r'<div class="chartbox" id="chart-([a-z]+)">(.*?)</div>', r.stdout,
                            re.S))
    for cid in ("memory", "cpu", "processes"):  # the capture's two samples: drawn
        assert re.search(r'<path d="M[\d.]+,[\d.]+', boxes[cid]), cid
    # the capture's episodes (check's findings on it, tests/record/test_episodes_cli.py)
    assert "cpu.high-iowait" in r.stdout and "from " in r.stdout
