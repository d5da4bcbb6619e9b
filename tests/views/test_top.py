"""`ksight top`: VIRT/RES/SHR/%MEM against procps `top -b` and `ps`, VMAs against `pmap`,
oom_score/adj against the files as a person reads them, on processes this test starts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout

import pytest

from ksight.cli.main import main
from tests.conftest import need_tool

# a sleeping python that holds 40 MiB touched, 100 MiB reserved and untouched, 30 extra mappings;
# its memory does not change after "ready", so tools reading it a moment apart agree
CHILD = textwrap.dedent("""
    import mmap, os, time
    keep = [bytearray(40 << 20)]
    for i in range(len(keep[0]) // 4096):
        keep[0][i * 4096] = 1
    keep.append(mmap.mmap(-1, 100 << 20))
    keep += [mmap.mmap(-1, 4096 * (i + 1)) for i in range(30)]
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("%d" % ADJ)
    print("ready", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def children():
    procs = []
    try:
        for adj in (300, 500):
            p = subprocess.Popen([sys.executable, "-c", CHILD.replace("ADJ", str(adj))],
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        yield [p.pid for p in procs]
    finally:
        for p in procs:  # only what this test started, by Popen
            p.kill()
            p.wait(timeout=10)


def top_json(*argv) -> dict:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["top", "--json", *argv]) == 0
    return json.loads(buf.getvalue())


def test_columns_match_top_ps_and_pmap(children):
    got = top_json("-n", "400", "-s", "rss")
    rows = {r["pid"]: r for r in got["rows"]}
    top = need_tool("top", "procps")
    ps = need_tool("ps", "procps")
    pmap = need_tool("pmap", "procps")
    out = subprocess.run([top, "-b", "-n1", "-w", "512", *sum((["-p", str(p)] for p in children), [])],
                         capture_output=True, text=True, check=True, timeout=30,
                         env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    head = next(i for i, ln in enumerate(out) if ln.split()[:1] == ["PID"])
    cols = out[head].split()
    for ln in out[head + 1:]:
        v = dict(zip(cols, ln.split()))
        r = rows[int(v["PID"])]
        # top prints KiB unscaled at this size (VIRT/RES/SHR), %MEM with one decimal
        assert r["virt_kb"] == int(v["VIRT"])
        assert abs(r["res_kb"] - int(v["RES"])) <= 64  # sampling noise: a few pages
        assert abs(r["shr_kb"] - int(v["SHR"])) <= 64
        assert abs(r["mem_pct"] - float(v["%MEM"])) <= 0.11
    for pid in children:
        vsz, rss = subprocess.run([ps, "-o", "vsz=,rss=", "-p", str(pid)], capture_output=True,
                                  text=True, check=True, timeout=30).stdout.split()
        r = rows[pid]
        assert r["virt_kb"] == int(vsz) and abs(r["res_kb"] - int(rss)) <= 64
        assert r["res_kb"] >= 40 << 10  # the 40 MiB touched
        assert r["virt_kb"] >= r["res_kb"] + (100 << 10)  # 100 MiB reserved, never touched
        n = len(subprocess.run([pmap, str(pid)], capture_output=True, text=True, check=True,
                               timeout=30).stdout.splitlines()) - 2  # "PID: cmd" and "total"
        assert r["vmas"] == n and n >= 30
        assert r["oom_score_adj"] == int(open(f"/proc/{pid}/oom_score_adj").read())
        assert abs(r["oom_score"] - int(open(f"/proc/{pid}/oom_score").read())) <= 1
        assert r["swap_kb"] == 0 or r["swap_kb"] is not None
    assert {rows[p]["oom_score_adj"] for p in children} == {300, 500}


def test_sort_by_oom_puts_the_higher_adj_first(children):
    got = top_json("-s", "oom", "-n", "400")
    order = [r["pid"] for r in got["rows"] if r["pid"] in children]
    assert order == list(reversed(children))  # adj 500 above adj 300
    scores = [r["oom_score"] for r in got["rows"] if r["oom_score"] is not None]
    assert scores == sorted(scores, reverse=True)


def test_text_has_top_columns(children):
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["top", "-n", "3"]) == 0
    lines = buf.getvalue().splitlines()
    assert lines[1].split() == ["PID", "UID", "VIRT", "RES", "SHR", "CODE", "DATA", "%MEM", "SWAP",
                                "VMAs", "OOM", "ADJ", "COMMAND"]
    assert len(lines) >= 5


def test_vmas_only_for_the_shown_and_from_a_capture(children, tmp_path):
    """The VMA column is the maps part of the N shown (plan.Few ranked by the sort key: which
    ones are read is tests/collect/test_process_parts.py's), live;
    from a capture it is there for the processes recorded with --pid (their smaps' headers) and
    missing, with a note, for the others."""
    def maps_lines(pid):
        with open(f"/proc/{pid}/maps") as f:
            return sum(1 for _ in f)

    got = {r["pid"]: r for r in top_json("-n", "400", "-s", "oom")["rows"]}
    assert [got[p]["vmas"] for p in children] == [maps_lines(p) for p in children]
    cap = str(tmp_path / "cap.tar.zst")
    assert main(["capture", "-o", cap, "--pid", str(children[0]), "--no-sockets"]) == 0
    off = top_json("-n", "400", "--from", cap)
    rows = {r["pid"]: r for r in off["rows"]}
    assert rows[children[0]]["vmas"] == maps_lines(children[0])
    assert rows[children[1]]["vmas"] is None
    assert any(n.startswith("VMAs: proc/PID/maps unreadable") for n in off["notes"]), off["notes"]
