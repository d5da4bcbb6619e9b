"""The optional bpftrace backend: output parsing (real captured output), backend choice and
fallback, and end to end (root, bpftrace installed: CI installs it and then these must pass,
elsewhere they skip with the reason)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from ksight.errors import ParseError, Unavailable, UsageError
from ksight.trace import bpftrace, recipes
from ksight.trace.bpftrace import Bucket
from ksight.trace.recipes.softirq import SoftirqTime
from ksight.fs import LiveRoot
from tests.conftest import FIXTURES, IS_ROOT, fixture_text, needs_root

PY = sys.executable
ROOT = LiveRoot()


# --- parsing: real output of this machine's bpftrace 0.17 (-f json) --------------------------
def test_parse_softirq_sample():
    # tests/fixtures/trace/bpftrace_softirq.jsonl: Softirq.bpftrace_program() for 1 s
    out = bpftrace.parse_output(fixture_text("trace", "bpftrace_softirq.jsonl"))
    assert out.attached_probes == 4          # entry, exit, END, interval
    assert out.maps["@events"] == 58
    assert out.maps["@n"] == {"7,0": 1, "9,1": 6, "1,1": 9, "7,1": 13}
    assert out.maps["@hist"]["1"] == [Bucket(4, 7, 1), Bucket(8, 15, 6), Bucket(16, 31, 2)]
    assert bpftrace.hist_total(out.maps["@hist"]["7"]) == 14 == 1 + 13   # @n for vec 7, both CPUs
    res = recipes.get("softirq")(ROOT, backend="bpftrace").bpftrace_summary(out)
    rows = {(r.kind, r.cpu): r for r in res["softirqs"]}
    assert rows[("TIMER", 1)] == SoftirqTime("TIMER", 1, count=9, total_usec=122.092,
                                             max_usec=24.814)
    assert res["histogram_usec"]["RCU"] == {2: 1, 4: 1, 8: 2, 16: 2}
    assert res["histogram"]["SCHED"][0] == {"min": 2, "max": 3, "count": 1}


def test_parse_reclaim_sample():
    # tests/fixtures/trace/bpftrace_reclaim.jsonl: Reclaim.bpftrace_program(), a python child
    # reading 64 MiB in a 24 MiB memory cgroup
    out = bpftrace.parse_output(fixture_text("trace", "bpftrace_reclaim.jsonl"))
    assert out.printf == ["tid 28813\n"]
    r = recipes.get("reclaim")(ROOT, backend="bpftrace")
    r.procs.cache[28813] = ("python", "/ksight-lab-28803-fixt")   # as bpftrace_printf saw it
    res = r.bpftrace_summary(out)
    (p,) = res["processes"]
    assert (p.pid, p.comm, p.kind, p.stalls) == (28813, "python", "memcg", 30)
    assert p.reclaimed_pages == 11776 and p.total_usec == 2493.53 and p.max_usec == 855.877
    assert sum(p.hist.values()) == 30 == sum(res["histogram_usec"]["memcg"].values())
    assert res["histogram_usec"]["memcg"] == {8: 2, 16: 5, 32: 9, 64: 9, 128: 3, 1024: 2}
    (c,) = res["cgroups"]
    assert c.cgroup == "/ksight-lab-28803-fixt" and c.stalls == 30 and c.hist == p.hist
    assert res["in_progress_at_end"] == 0


def test_parse_lhist_and_stats_and_lost():
    # lhist/stats lines as bpftrace 0.17 printed them here (`@l = lhist(args->vec, 0, 10, 1)`)
    text = ('{"type": "hist", "data": {"@l": [{"min": 1, "max": 1, "count": 14}, '
            '{"min": 2, "max": 2, "count": 0}, {"min": 7, "max": 7, "count": 22}]}}\n'
            '{"type": "stats", "data": {"@st": {"count": 45, "average": 378, "total": 17014}}}\n'
            '{"type": "hist", "data": {"@u": [{"max": -1, "count": 3}, {"min": 10, "count": 2}]}}\n'
            '{"type": "lost_events", "data": {"events": 7}}\n'
            '{"type": "time", "data": "12:00:00\\n"}\n')
    out = bpftrace.parse_output(text)
    assert out.maps["@l"][2] == Bucket(7, 7, 22)
    assert out.maps["@u"] == [Bucket(None, -1, 3), Bucket(10, None, 2)]
    assert out.stats["@st"]["count"] == 45
    assert out.lost_events == 7 and out.other[0]["type"] == "time"


def test_split_key_keeps_commas_in_last_field():
    assert bpftrace.split_key("12,memcg,a,b", 3) == ["12", "memcg", "a,b"]
    with pytest.raises(ParseError):
        bpftrace.split_key("12", 2)


def test_log2_upper_and_merge():
    b = [Bucket(0, 0, 1), Bucket(1, 1, 2), Bucket(2, 3, 0), Bucket(4, 7, 5)]
    assert bpftrace.log2_upper(b) == {1: 1, 2: 2, 8: 5}
    assert recipes.log2_bucket(7.9) == 8 and recipes.log2_bucket(0.5) == 1   # same meaning
    assert bpftrace.merge_hist(b, [Bucket(4, 7, 1)])[-1] == Bucket(4, 7, 6)


@pytest.mark.parametrize("line", [
    "garbage",
    '{"type": "map", "data": {"@n": {"7,0": 1',     # truncated mid-line
    '{"data": {}}',                                   # no type
    '{"type": "hist", "data": {"@h": [{"min": 1, "max": 1}]}}',  # bucket without count
    '{"type": "hist", "data": {"@h": 5}}',
    '{"type": "map", "data": 5}',
])
def test_bad_lines(line):
    with pytest.raises(ParseError):
        bpftrace.parse_output('{"type": "attached_probes", "data": {"probes": 1}}\n' + line)


def test_empty_output_and_bounded_program():
    out = bpftrace.parse_output("")
    assert out.maps == {} and out.attached_probes is None
    assert bpftrace.bounded("BEGIN {}", 2.5).endswith("interval:ms:2500 { exit(); }\n")
    assert bpftrace.bounded("BEGIN {}", None) == "BEGIN {}"


def test_stderr_problem_drops_memlock_noise():
    err = ("ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace. If your program "
           "is not loading, you can try \"ulimit -l 8192\" to fix the problem\n"
           "stdin:1:1-24: ERROR: tracepoint not found: irq:nope_entry\n")
    assert bpftrace.stderr_problem(err) == "stdin:1:1-24: ERROR: tracepoint not found: irq:nope_entry"


# --- backend choice (no bpftrace needed) ------------------------------------------------------
def test_choose(monkeypatch):
    monkeypatch.setattr(bpftrace, "available", lambda: (False, "no bpftrace here"))
    assert bpftrace.choose("auto", True) == ("tracefs", "bpftrace not usable: no bpftrace here")
    assert bpftrace.choose("tracefs", True)[0] == "tracefs"
    assert bpftrace.choose("auto", False)[0] == "tracefs"
    with pytest.raises(Unavailable, match="no bpftrace here"):
        bpftrace.choose("bpftrace", True)
    with pytest.raises(UsageError):
        bpftrace.choose("bpftrace", False)
    monkeypatch.setattr(bpftrace, "available", lambda: (True, "/usr/bin/bpftrace"))
    assert bpftrace.choose("auto", True)[0] == "bpftrace"


def test_cli_backend_bpftrace_unavailable_exits_3(monkeypatch, capsys):
    from ksight.cli.main import main

    monkeypatch.setattr(bpftrace, "available", lambda: (False, "bpftrace is not installed (test)"))
    assert main(["trace", "softirq", "--seconds", "1", "--backend", "bpftrace"]) == 3
    assert "bpftrace is not installed (test)" in capsys.readouterr().err


@needs_root
def test_cli_auto_falls_back_to_tracefs(monkeypatch, capsys):
    from ksight.cli.main import main

    monkeypatch.setattr(bpftrace, "available", lambda: (False, "bpftrace is not installed (test)"))
    assert main(["trace", "softirq", "--seconds", "0.5", "--json"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert res["backend"] == "tracefs" and res["histogram"] is None
    assert "bpftrace is not installed (test)" in res["backend_why"]
    assert main(["trace", "softirq", "--seconds", "0.5"]) == 0
    assert "backend: tracefs (bpftrace not usable: bpftrace is not installed (test))" in capsys.readouterr().out


# --- end to end with bpftrace (root) ----------------------------------------------------------
@pytest.fixture(scope="module")
def have_bpftrace():
    if not IS_ROOT:
        pytest.skip("needs root: bpftrace loads BPF programs (CI runs as root)")
    ok, why = bpftrace.available()
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"bpftrace must work in CI (.ci/run installs it): {why}")
        pytest.skip(why)
    return why


def _our_bpftrace_children() -> list[int]:
    """PIDs of bpftrace processes whose parent is this test process."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if comm == "bpftrace" and ppid == os.getpid():
            found.append(int(d))
    return found


def _gone(pid: int) -> bool:
    from ksight.pids import pid_alive

    return not pid_alive(pid) and not _our_bpftrace_children()


def _softirqs() -> dict[str, int]:
    with open("/proc/softirqs") as f:
        lines = f.read().splitlines()
    return {l.split(":")[0].strip(): sum(int(x) for x in l.split(":")[1].split()) for l in lines[1:]}


def per_kind_of(res):
    return {k: sum(b["count"] for b in h) for k, h in res.histogram.items()}


def test_softirq_histogram_matches_proc_softirqs(have_bpftrace):
    r = recipes.get("softirq")(ROOT, backend="bpftrace")
    with r.session(seconds=3) as t:     # returns once the probes are attached
        before = _softirqs()
        p = subprocess.Popen([PY, "-c", (
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('127.0.0.1',0))\n"
            "c=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for i in range(3000): c.sendto(b'x'*100, s.getsockname())\n")])
        assert p.wait(timeout=30) == 0
        t.wait()
    after = _softirqs()
    assert _gone(t.pid)
    res = r.result(t)
    assert res.backend == "bpftrace" and res.errors == () and res.histogram
    hist_total = sum(b["count"] for h in res.histogram.values() for b in h)
    rows_total = sum(row.count for row in res.softirqs)
    assert hist_total == rows_total > 0          # two maps aggregated separately in the kernel
    delta = sum(after[k] - before[k] for k in after)
    # /proc/softirqs (kernel counters, read outside bpftrace) over nearly the same window: the
    # trace starts a few ms before `before` and stops (interval probe) before `after`
    print("softirqs traced", hist_total, "/proc/softirqs delta", delta, per_kind_of(res))
    assert 0.8 * delta - 50 <= hist_total <= 1.1 * delta + 50, (hist_total, delta)
    per_kind = {k: sum(b["count"] for b in h) for k, h in res.histogram.items()}
    assert per_kind.get("NET_RX", 0) > 0 and per_kind.get("TIMER", 0) > 0, per_kind
    assert per_kind["NET_RX"] <= after["NET_RX"] - before["NET_RX"] + 50


def test_reclaim_histogram_in_memory_cgroup(have_bpftrace):
    from ksight.lab.cgroup import MemoryCgroup

    file_mb, limit_mb = 96, 24
    r = recipes.get("reclaim")(ROOT, backend="bpftrace")
    with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="ksight-trace-") as f:
        f.write(os.urandom(1 << 20) * file_mb)   # clean page cache after fsync
        f.flush()
        os.fsync(f.fileno())
        code = ("import os\nfd = os.open(%r, os.O_RDONLY)\nos.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n"
                "while os.read(fd, 1 << 20): pass\n" % f.name)
        with MemoryCgroup("trbpf", max_bytes=limit_mb << 20) as cg:
            with r.session(seconds=4) as t:
                p = cg.spawn([PY, "-c", code])
                assert p.wait(timeout=30) == 0
            res = r.result(t)
    assert _gone(t.pid)
    assert res.backend == "bpftrace" and res.errors == (), res.errors
    memcg = res.histogram["memcg"]
    total = sum(b["count"] for b in memcg)
    assert total > 0 and all(b["min"] <= b["max"] for b in memcg)
    procs = [x for x in res.processes if x.pid == p.pid and x.kind == "memcg"]
    assert procs, res.processes
    assert procs[0].cgroup.endswith(cg.name)          # named live, from /proc/PID/cgroup
    assert 1 <= procs[0].stalls <= total
    # reading 96 MiB through a 24 MiB limit: at least (96-24) MiB must be reclaimed in the group
    assert procs[0].reclaimed_pages >= 0.5 * ((file_mb - limit_mb) << 20) // 4096, procs[0]
    cgs = [c for c in res.cgroups if c.cgroup and c.cgroup.endswith(cg.name)]
    assert cgs and cgs[0].stalls >= procs[0].stalls


def test_missing_probe_is_reported_and_nothing_left(have_bpftrace):
    run = bpftrace.Run("tracepoint:irq:ksight_no_such_event { @n = count(); }", seconds=2)
    with pytest.raises(Unavailable) as ei:
        with run:
            pass
    assert "does not exist on this kernel" in ei.value.reason
    assert "ksight_no_such_event" in ei.value.reason
    assert run.pid and _gone(run.pid)


def test_stop_and_exception_end_the_child(have_bpftrace):
    r = recipes.get("softirq")(ROOT, backend="bpftrace")
    t0 = time.monotonic()
    with r.session(seconds=30) as t:
        t.stop()                          # like Ctrl-C in the CLI: bpftrace prints its maps
    assert time.monotonic() - t0 < 15 and _gone(t.pid)
    assert t.output.attached_probes == 4 and t.returncode == 0 and t.errors == []
    run = bpftrace.Run(recipes.get("softirq")(ROOT).bpftrace_program(), seconds=30)
    with pytest.raises(RuntimeError):
        with run:
            raise RuntimeError("boom")
    assert _gone(run.pid)
    # tracefs is unmounted again if ksight mounted it for bpftrace
    from ksight.trace import tracefs

    assert not tracefs.mounted_by_us()


def test_cli_bpftrace_backend_json(have_bpftrace, capsys):
    from ksight.cli.main import main

    assert main(["trace", "softirq", "--seconds", "1", "--json", "--backend", "bpftrace"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert res["backend"] == "bpftrace" and res["backend_why"]
    # same top-level keys as the tracefs result, plus the histogram
    for k in ("recipe", "seconds", "events", "lost", "missing", "overhead", "errors", "softirqs"):
        assert k in res
    assert sum(b["count"] for h in res["histogram"].values() for b in h) > 0
    assert not _our_bpftrace_children()


def test_fixtures_are_small():
    for name in ("bpftrace_softirq.jsonl", "bpftrace_reclaim.jsonl"):
        assert (FIXTURES / "trace" / name).stat().st_size < 8192


def test_cli_auto_falls_back_when_a_probe_is_missing(have_bpftrace, monkeypatch, capsys):
    from ksight.cli.main import main

    monkeypatch.setattr(recipes.Softirq, "bpftrace_program",
                        lambda self: "tracepoint:irq:ksight_no_such_event { @n = count(); }")
    assert main(["trace", "softirq", "--seconds", "0.5", "--json"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert res["backend"] == "tracefs" and res["softirqs"]
    assert any("bpftrace failed" in n and "ksight_no_such_event" in n for n in res["notes"])
    assert "used tracefs instead" in cap.err
    assert not _our_bpftrace_children()


def test_sigkill_of_ksight_takes_bpftrace_down(have_bpftrace):
    """PR_SET_PDEATHSIG: a SIGKILLed ksight (no clean-up code runs) leaves no bpftrace behind."""
    from ksight.pids import pid_alive
    from ksight.trace import tracefs

    mounted_before = tracefs.tracefs_mount_point(tracefs._read_mountinfo()) is not None
    p = subprocess.Popen([PY, "-m", "ksight", "trace", "softirq", "--seconds", "0",
                          "--backend", "bpftrace"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = None
    try:
        deadline = time.monotonic() + 20
        while child is None and time.monotonic() < deadline:
            for d in os.listdir("/proc"):
                try:
                    with open(f"/proc/{d}/stat") as f:
                        st = f.read()
                except OSError:
                    continue
                if st.split(") ", 1)[-1].split()[1] == str(p.pid) and "(bpftrace)" in st:
                    child = int(d)
            time.sleep(0.1)
        assert child, "bpftrace never started"
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 10
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(child)
    # the dead ksight could not unmount the tracefs it mounted: do it for it
    mnt = tracefs.tracefs_mount_point(tracefs._read_mountinfo())
    if not mounted_before and mnt and not tracefs.in_use(mnt):
        tracefs._umount(mnt)
