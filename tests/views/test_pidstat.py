"""`ksight pidstat -r`: hand arithmetic on two snapshots built from real /proc/PID text (PCP's
procpid corpus, counters moved by hand), a reused PID, and sysstat's `pidstat -r -p PID 1 1` run
at the same time as ksight on a process that faults at a steady rate."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
import threading
from contextlib import redirect_stdout

import pytest

from ksight.cli.main import main
from ksight.collect.plan import Needs, Plan
from ksight.collect.snapshot import take
from ksight.fs import DirRoot
from ksight.views import pidstat
from tests.conftest import corpus, need_tool

TREE = ("pcp", "unpacked", "procpid-4.18.13-root-006")


def _tree(tmp, name, uptime, minflt_add=0, majflt_add=0, rss_pages=None, start=None):
    """A proc tree of pid 1 from the corpus; stat fields moved by hand (proc(5) numbering:
    10 minflt, 12 majflt, 22 starttime, 23 vsize, 24 rss)."""
    src = corpus(*TREE, "proc")
    d = tmp / name / "proc"
    (d / "1").mkdir(parents=True)
    shutil.copy(src / "1" / "status", d / "1" / "status")
    text = (src / "1" / "stat").read_text()
    head, _, rest = text.rpartition(") ")
    f = rest.split()  # f[0] is field 3
    f[10 - 3] = str(int(f[10 - 3]) + minflt_add)
    f[12 - 3] = str(int(f[12 - 3]) + majflt_add)
    if rss_pages is not None:
        f[24 - 3] = str(rss_pages)
    if start is not None:
        f[22 - 3] = str(start)
    (d / "1" / "stat").write_text(head + ") " + " ".join(f) + "\n")
    (d / "meminfo").write_text((corpus("procfs", "proc", "meminfo")).read_text())
    (d / "uptime").write_text(f"{uptime:.2f} 0.00\n")
    return DirRoot(str(tmp / name)), f


PLAN = Plan.of([Needs(sources=pidstat.SOURCES, processes=pidstat.PARTS)])


def _mem_total_kb() -> int:
    for ln in corpus("procfs", "proc", "meminfo").read_text().splitlines():
        if ln.startswith("MemTotal:"):
            return int(ln.split()[1])
    raise AssertionError


def test_hand_arithmetic_on_two_built_snapshots(tmp_path):
    a_root, fa = _tree(tmp_path, "a", 1000.00)
    b_root, fb = _tree(tmp_path, "b", 1002.50, minflt_add=500, majflt_add=5, rss_pages=1500)
    a, b = take(a_root, plan=PLAN), take(b_root, plan=PLAN)
    per, avg = pidstat.rows([a, b], pids=[1])
    (row,) = per[0]
    assert row.minflt_per_s == pytest.approx(500 / 2.5)  # 200.00
    assert row.majflt_per_s == pytest.approx(5 / 2.5)  # 2.00
    assert row.vsz_kb == int(fb[23 - 3]) // 1024
    assert row.rss_kb == 1500 * 4  # pages of 4 KiB (a capture without page size: 4096)
    assert row.mem_pct == pytest.approx(100 * 6000 / _mem_total_kb())
    assert row.uid == 0 and row.command == "systemd"
    # Average over one interval is that interval
    assert avg[0].minflt_per_s == pytest.approx(200.0) and avg[0].rss_kb == 6000
    # without -p: the same process is active (it faulted), so it is shown
    per_all, _ = pidstat.rows([a, b])
    assert [r.pid for r in per_all[0]] == [1]


def test_three_snapshots_average_as_pidstat(tmp_path):
    r0, _ = _tree(tmp_path, "a", 1000.0)
    r1, _ = _tree(tmp_path, "b", 1001.0, minflt_add=100, rss_pages=1000)
    r2, _ = _tree(tmp_path, "c", 1004.0, minflt_add=400, rss_pages=2000)
    per, avg = pidstat.rows([take(r, plan=PLAN) for r in (r0, r1, r2)], pids=[1])
    assert [p[0].minflt_per_s for p in per] == pytest.approx([100.0, 100.0])  # 100/1, 300/3
    assert avg[0].minflt_per_s == pytest.approx(400 / 4)  # whole span
    assert avg[0].rss_kb == pytest.approx((4000 + 8000) / 2)  # mean of the two interval ends


def test_a_reused_pid_gives_no_rate(tmp_path):
    a_root, fa = _tree(tmp_path, "a", 1000.0)
    b_root, _ = _tree(tmp_path, "b", 1001.0, minflt_add=-1 * int(fa[10 - 3]) + 10,
                      start=int(fa[22 - 3]) + 50000)
    per, avg = pidstat.rows([take(a_root, plan=PLAN), take(b_root, plan=PLAN)], pids=[1])
    assert per == [[]] and avg == []


# faults at a steady rate: 64 pages touched, then dropped (MADV_DONTNEED), every 2 ms; VSZ fixed
CHILD = textwrap.dedent("""
    import mmap, time
    m = mmap.mmap(-1, 64 * 4096)
    print("ready", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for i in range(64):
            m[i * 4096] = 1
        m.madvise(mmap.MADV_DONTNEED)
        time.sleep(0.002)
""")


def test_live_against_sysstat_pidstat():
    tool = need_tool("pidstat", "sysstat")
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        got = {}

        def ours():
            buf = io.StringIO()
            with redirect_stdout(buf):
                got["rc"] = main(["pidstat", "-r", "-p", str(p.pid), "1", "1", "--json"])
            got["out"] = json.loads(buf.getvalue())

        t = threading.Thread(target=ours)
        t.start()
        out = subprocess.run([tool, "-r", "-p", str(p.pid), "1", "1"], capture_output=True,
                             text=True, timeout=30, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
        t.join(timeout=30)
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("Average:")
                    and ln.split()[2] == str(p.pid))
        _, uid, pid, minflt, majflt, vsz, rss, mem, cmd = line.split()
        row = got["out"]["intervals"][0]["rows"][0]
        assert row["pid"] == p.pid and row["uid"] == int(uid)
        assert float(minflt) > 1000  # the child did fault steadily
        assert row["minflt_per_s"] == pytest.approx(float(minflt), rel=0.25)
        assert row["majflt_per_s"] == pytest.approx(float(majflt), abs=2)
        assert row["vsz_kb"] == int(vsz)
        assert abs(row["rss_kb"] - int(rss)) <= 64 * 4 + 16
        assert row["command"] == cmd
    finally:
        p.kill()  # only the child this test started
        p.wait(timeout=10)


def test_text_layout_is_pidstats(tmp_path, capsys):
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["pidstat", "-r", "-p", "1", "0.2", "1"]) == 0
    lines = buf.getvalue().splitlines()
    head = next(ln for ln in lines if ln.endswith("Command") and not ln.startswith("Average"))
    # pidstat: %-11s time, then " %5s" UID, " %9s" PID, 2 x " %9s", 2 x " %7s", " %6s", "  Command"
    assert head[11:] == "   UID       PID  minflt/s  majflt/s     VSZ     RSS   %MEM  Command"
