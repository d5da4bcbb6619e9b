"""CPU rules on real /proc/stat text (procfs corpus, 8 CPUs) with constructed later readings:
per interval and per CPU, sustained vs burst, a CPU going offline, the quiet busy machine, the
load made of runnable vs blocked tasks, and the live-only kernel-profile enrichment."""

from __future__ import annotations

import pytest

from ksight.collect.snapshot import take
from ksight.diagnose.engine import diagnose
from tests.conftest import corpus_text
from tests.diagnose.helpers import tree
from tests.model.cpu_text import bump, spread
from tests.views.test_cpu import pid_stat, softirqs_bump

SOURCES = ["stat", "loadavg", "pressure", "softirqs", "interrupts", "uptime", "diskstats",
           "softnet_stat", "sysctl"]


def base_files():
    return {
        "proc/stat": corpus_text("procfs", "proc", "stat"),
        "proc/softirqs": corpus_text("pcp", "files", "softirqs-8cpu-x86_64"),
        "proc/loadavg": corpus_text("procfs", "proc", "loadavg"),
        "proc/diskstats": corpus_text("procfs", "proc", "diskstats"),
        "proc/26231/stat": corpus_text("procfs", "proc", "26231", "stat"),
    }


def run(tmp_path, steps, *, loadavg=None, softirqs=None, drop_at=None, vim=None, disk=None,
        scalars=None, n=3, d_copies=0):
    """n snapshots 1 s apart; `steps(i)` gives the per-CPU tick deltas of interval i."""
    files = base_files()
    snaps = []
    for i in range(n):
        f = dict(files)
        f["proc/uptime"] = f"{1000 + i:.2f} 1900.00\n"
        if loadavg:
            f["proc/loadavg"] = loadavg
        if softirqs and i:
            f["proc/softirqs"] = softirqs_bump(files["proc/softirqs"], softirqs[0],
                                               {c: v * i for c, v in softirqs[1].items()})
        if vim and i:
            f["proc/26231/stat"] = pid_stat(files["proc/26231/stat"], **{
                k: (v * i if isinstance(v, int) else v) for k, v in vim.items()})
        for k in range(d_copies):  # more processes in D: copies of vim under other PIDs
            f[f"proc/{40000 + k}/stat"] = pid_stat(
                files["proc/26231/stat"].replace("26231", str(40000 + k), 1), state="D")
        if disk and i:
            f["proc/diskstats"] = _disk_bump(files["proc/diskstats"], disk[0], disk[1] * i)
        snaps.append(f)
        if i + 1 < n:
            drop = (7,) if drop_at is not None and i + 1 >= drop_at else ()
            files = dict(files)
            files["proc/stat"] = bump(files["proc/stat"], steps(i), drop=drop, scalars=scalars)
    out = []
    for i, f in enumerate(snaps):
        out.append(take(tree(tmp_path / f"s{i}", f), sources=SOURCES, processes=True,
                        taken_at=1_700_000_000 + i))
    return diagnose(out, ["cpu"])


def _disk_bump(text: str, name: str, io_ms: int) -> str:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) > 3 and f[2] == name:
            f[12] = str(int(f[12]) + io_ms)          # io_ticks (ms spent doing I/O)
            f[13] = str(int(f[13]) + 2 * io_ms)      # weighted: a queue of 2 on average
            line = " ".join(f)
        out.append(line)
    return "\n".join(out) + "\n"


def ids(report):
    return {f.id for f in report.findings if f.severity in ("warning", "critical")}


def find(report, rid):
    return next(f for f in report.findings if f.id == rid)


def test_one_cpu_pinned_in_softirq_is_a_finding_although_the_total_is_12_pct(tmp_path):
    def steps(i):
        d = spread(8, {"user": 5, "idle": 95})
        d[3] = {"softirq": 100}
        return d

    r = run(tmp_path, steps, softirqs=("NET_RX", {3: 50000}))
    assert ids(r) == {"cpu.high-softirq"}, r.findings
    f = find(r, "cpu.high-softirq")
    assert f.subject is not None and f.subject.cpu == "3"
    ev = {e.name: e for e in f.evidence}
    # all: 100 soft ticks of 800 = 12.5 %, below the 15 % all-CPU threshold; CPU 3 at 100 %
    assert ev["%soft (all CPUs, peak interval)"].value == pytest.approx(12.5)
    assert ev["%soft on CPU 3 (busiest, peak interval)"].value == 100.0
    assert ev["softirq NET_RX"].value == pytest.approx(50000.0)
    assert "busiest CPU 3 with 100 %" in ev["softirq NET_RX"].note
    assert "NET_RX" in f.explanation and "Network softirqs" in f.explanation
    assert "CPU 3 at 100.0 %" in f.explanation and "peaked at 12.5 %" in f.explanation


def test_busy_healthy_machine_not_at_rest_is_quiet(tmp_path):
    # every CPU 90 % user, 5 % system, 5 % idle; load 7.5 on 8 CPUs: busy, and nothing wrong
    r = run(tmp_path, lambda i: spread(8, {"user": 90, "system": 5, "idle": 5}),
            loadavg="7.50 7.00 6.00 9/500 12000\n")
    assert r.rules_run == 6 and not r.not_evaluated, r.not_evaluated
    assert ids(r) == set(), r.findings


def test_idle_machine_is_quiet(tmp_path):
    r = run(tmp_path, lambda i: spread(8, {"idle": 100}))
    assert r.findings == [] and r.rules_run == 6


def test_high_system_everywhere_names_the_process(tmp_path):
    r = run(tmp_path, lambda i: spread(8, {"user": 30, "system": 40, "idle": 30}),
            vim={"stime": 80, "utime": 10}, scalars={"ctxt": 20000})
    assert ids(r) == {"cpu.high-system"}
    f = find(r, "cpu.high-system")
    assert f.subject is None and f.severity == "warning"  # 40 % < the 60 % critical
    ev = {e.name: e for e in f.evidence}
    assert ev["%sys (all CPUs, peak interval)"].value == pytest.approx(40.0)
    # vim: stime +80 ticks per 1 s interval at USER_HZ 100: 80 % of one CPU
    assert ev["process vim (pid 26231) system time"].value == pytest.approx(80.0)
    assert ev["context switches"].value == pytest.approx(20000.0)
    assert any(a.text.startswith("strace -c -f -p 26231") for a in f.actions)


def test_a_burst_in_one_interval_is_not_a_finding(tmp_path):
    def steps(i):
        return spread(8, {"system": 90, "idle": 10} if i == 0 else {"user": 5, "idle": 95})

    r = run(tmp_path, steps)
    assert "cpu.high-system" not in ids(r)


def test_one_cpu_high_system_with_a_cpu_going_offline(tmp_path):
    def steps(i):
        d = spread(8, {"idle": 100})
        d[1] = {"system": 80, "user": 20}
        return d

    r = run(tmp_path, steps, drop_at=2)  # cpu7 offline in the last snapshot
    assert not any("internal error" in n.reason for n in r.not_evaluated), r.not_evaluated
    assert ids(r) == {"cpu.high-system"}
    f = find(r, "cpu.high-system")
    assert f.subject.cpu == "1"
    ev = {e.name: e for e in f.evidence}
    assert ev["%sys on CPU 1 (busiest, peak interval)"].value == pytest.approx(80.0)
    # interval 2: 7 CPUs online in both readings, 80 of 700 ticks = 11.4 % (interval 1: 10 %)
    assert ev["%sys (all CPUs, peak interval)"].value == pytest.approx(100 * 80 / 700, abs=0.01)


def test_iowait_names_the_busy_disk(tmp_path):
    r = run(tmp_path, lambda i: spread(8, {"user": 10, "iowait": 30, "idle": 60}),
            disk=("sdb", 900))
    assert ids(r) == {"cpu.high-iowait"}
    f = find(r, "cpu.high-iowait")
    ev = {e.name: e for e in f.evidence}
    # sdb: 900 ms of I/O per 1 s interval = 90 % utilised, weighted 1800 ms/s = queue 1.8
    assert ev["disk sdb utilisation"].value == pytest.approx(90.0)
    assert "mean queue 1.80" in ev["disk sdb utilisation"].note
    assert "Busy disks: sdb" in f.explanation and "idle time" in f.explanation


def test_steal_and_irq(tmp_path):
    def steps(i):
        d = spread(8, {"user": 50, "steal": 20, "idle": 30})
        d[0] = {"irq": 50, "idle": 50}
        return d

    r = run(tmp_path, steps)
    assert ids(r) == {"cpu.steal", "cpu.high-irq"}
    assert find(r, "cpu.steal").subject is None  # 7 x 20 / 800 = 17.5 % of all: machine-wide
    irq = find(r, "cpu.high-irq")
    assert irq.subject.cpu == "0"  # 50 / 800 = 6.25 % of all, 50 % of CPU 0


def test_load_made_of_blocked_tasks(tmp_path):
    # corpus /proc/stat: procs_running 2, procs_blocked 1; vim in D
    r = run(tmp_path, lambda i: spread(8, {"idle": 100}), loadavg="20.00 10.00 5.00 2/500 1\n",
            vim={"state": "D"}, d_copies=15)
    f = find(r, "cpu.load-high")
    assert f.severity == "warning"  # 2.5 per CPU: between 1.5 and 4
    ev = {e.name: e for e in f.evidence}
    assert ev["load average (1 min)"].value == 20.0 and ev["CPUs online"].value == 8
    assert ev["processes in D state (peak)"].value == 16
    # now: procs_running 2 less the reader, + 16 in D
    assert ev["runnable + blocked tasks now (peak of the window)"].value == 17
    assert "uninterruptible sleep (D)" in f.explanation and "not a lack of CPU" in f.explanation


def test_load_made_of_runnable_tasks(tmp_path):
    r = run(tmp_path, lambda i: spread(8, {"user": 100}), loadavg="40.00 30.00 20.00 40/500 1\n",
            scalars={"procs_running": 40})
    f = find(r, "cpu.load-high")
    assert f.severity == "critical"  # 5 per CPU
    assert "runnable tasks: 40" in f.explanation


def test_load_at_the_cpu_count_is_fine(tmp_path):
    r = run(tmp_path, lambda i: spread(8, {"user": 100}), loadavg="8.00 8.00 8.00 9/500 1\n")
    assert "cpu.load-high" not in ids(r)


# ---- the kernel-profile enrichment ----------------------------------------------------------

def _system_report(tmp_path):
    return run(tmp_path, lambda i: spread(8, {"user": 30, "system": 40, "idle": 30}))


def test_enrichment_never_runs_from_a_capture(tmp_path, monkeypatch):
    from ksight.diagnose import enrich
    from ksight.trace import perf

    def boom(*a, **k):
        raise AssertionError("perf must not run for a capture")

    monkeypatch.setattr(perf, "sample_kernel", boom)
    r = _system_report(tmp_path)
    assert enrich.enrich(r, live=False) == []
    f = find(r, "cpu.high-system")
    ev = [e for e in f.evidence if e.name == "kernel functions"]
    assert len(ev) == 1 and ev[0].value == "not taken" and "capture" in ev[0].note


def test_enrichment_live_adds_kernel_functions(tmp_path, monkeypatch):
    from ksight.diagnose import enrich
    from ksight.trace import perf

    samples = perf.parse_script(
        "loop 7/7  1.000000: cpu-clock:\n\tffff1 clear_user ([kernel.kallsyms])\n"
        "\tffff2 do_syscall_64 ([kernel.kallsyms])\n\n"
        "loop 7/7  1.010000: cpu-clock:\n\tffff1 clear_user ([kernel.kallsyms])\n"
        "\tffff2 do_syscall_64 ([kernel.kallsyms])\n\n"
        "loop 7/7  1.020000: cpu-clock:\n\t  1234 main (/bin/loop)\n\n")
    calls = []

    def fake(seconds, pid=None, **kw):
        calls.append(seconds)
        return perf.summarize_kernel(samples, seconds=seconds)

    monkeypatch.setattr(perf, "sample_kernel", fake)
    r = _system_report(tmp_path)
    assert enrich.enrich(r, live=True) == ["kernel-profile"] and calls == [1.0]
    ev = {e.name: e for e in find(r, "cpu.high-system").evidence}
    # 2 of 3 busy samples end in clear_user
    assert ev["kernel function clear_user"].value == pytest.approx(66.7)
    assert ev["kernel function clear_user"].source == "perf record -a (1 s)"
    assert ev["hottest kernel stack"].value == "do_syscall_64;clear_user"  # outermost first


def test_enrichment_says_why_when_perf_is_unavailable(tmp_path, monkeypatch):
    from ksight.diagnose import enrich
    from ksight.errors import Unavailable
    from ksight.trace import perf

    def missing(*a, **k):
        raise Unavailable("perf", "perf is not installed (Debian: apt install linux-perf)")

    monkeypatch.setattr(perf, "sample_kernel", missing)
    r = _system_report(tmp_path)
    enrich.enrich(r, live=True)
    ev = [e for e in find(r, "cpu.high-system").evidence if e.name == "kernel functions"]
    assert ev and "not installed" in ev[0].note


def test_check_from_a_capture_reports_high_system_without_profiling(tmp_path, monkeypatch, capsys):
    """`ksight check --from` a capture of a system-call loop: cpu.high-system with the process,
    and the profile's absence explained."""
    import json
    import os
    import subprocess
    import sys

    from ksight.cli.main import main
    from ksight.trace import perf

    monkeypatch.setattr(perf, "sample_kernel",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("no perf offline")))
    cpu = max(os.sched_getaffinity(0))
    code = ("import os,time\nfd=os.open('/dev/zero',os.O_RDONLY)\nb=[bytearray(65536)]\n"
            "t=time.time()+30\nwhile time.time()<t:\n    os.readv(fd,b)\n")
    p = subprocess.Popen([sys.executable, "-c", code],
                         preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    cap2 = str(tmp_path / "cap2")
    try:
        assert main(["capture", "-o", cap2, "--interval", "1", "--count", "4"]) == 0
    finally:
        p.kill()
        p.wait()
    capsys.readouterr()
    main(["check", "--from", cap2, "--area", "cpu", "--json"])
    doc = json.loads(capsys.readouterr().out)
    f = next((f for f in doc["findings"] if f["id"] == "cpu.high-system"), None)
    assert f is not None, doc
    names = [e["name"] for e in f["evidence"]]
    assert any(n.startswith("process ") and n.endswith("system time") for n in names), names
    # the loop is among the top system-time processes of the capture's intervals (the machine
    # is shared: other processes may outrank it in the finding's peak interval)
    assert main(["cpu", "--from", cap2, "--json"]) == 0
    ivs = json.loads(capsys.readouterr().out)["intervals"]
    assert any(t["pid"] == p.pid for iv in ivs for t in iv["top_sys"]), ivs
    absent = [e for e in f["evidence"] if e["name"] == "kernel functions"]
    assert absent and "capture" in absent[0]["note"]


def test_missing_stat_is_not_evaluated_with_the_reason(tmp_path):
    files = base_files()
    files["proc/stat"] = files["proc/stat"][:30]  # truncated mid-line
    snaps = []
    for i in range(2):
        f = dict(files)
        f["proc/uptime"] = f"{1000 + i:.2f} 1900.00\n"
        snaps.append(take(tree(tmp_path / f"s{i}", f), sources=SOURCES, processes=True,
                          taken_at=1_700_000_000 + i))
    r = diagnose(snaps, ["cpu"])
    reasons = {n.rule: n.reason for n in r.not_evaluated}
    assert set(reasons) == {"cpu.high-system", "cpu.high-softirq", "cpu.high-iowait",
                            "cpu.high-irq", "cpu.steal", "cpu.load-high"}, reasons
    assert all(x.startswith("stat:") for x in reasons.values()), reasons
    assert not any("internal error" in x for x in reasons.values())


def test_one_snapshot_judges_only_the_load(tmp_path):
    files = base_files()
    files["proc/uptime"] = "1000.00 1900.00\n"
    files["proc/loadavg"] = "30.00 10.00 5.00 30/500 1\n"
    snap = take(tree(tmp_path, files), sources=SOURCES, processes=True, taken_at=1_700_000_000)
    r = diagnose([snap], ["cpu"])
    assert {f.id for f in r.findings} == {"cpu.load-high"}
    assert {n.rule for n in r.not_evaluated} == {"cpu.high-system", "cpu.high-softirq",
                                                 "cpu.high-iowait", "cpu.high-irq", "cpu.steal"}


def test_live_check_runs_the_enrichment_once(monkeypatch, capsys):
    """`ksight check --area cpu` live, with a readv loop pinned to one CPU: cpu.high-system
    fires and `check` runs the kernel-profile enrichment (perf replaced by a stand-in that
    counts its calls: the real one is tested in test_cpu_profile.py and tests/e2e)."""
    import json
    import os
    import subprocess
    import sys

    from ksight.cli.main import main
    from ksight.trace import perf

    calls = []
    samples = perf.parse_script("loop 7/7  1.000000: cpu-clock:\n\tffff1 clear_user "
                                "([kernel.kallsyms])\n\n")

    def fake(seconds, pid=None, **kw):
        calls.append(seconds)
        return perf.summarize_kernel(samples, seconds=seconds)

    monkeypatch.setattr(perf, "sample_kernel", fake)
    cpu = max(os.sched_getaffinity(0))
    code = ("import os,time\nfd=os.open('/dev/zero',os.O_RDONLY)\nb=[bytearray(65536)]\n"
            "t=time.time()+20\nwhile time.time()<t:\n    os.readv(fd,b)\n")
    p = subprocess.Popen([sys.executable, "-c", code],
                         preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        main(["check", "--area", "cpu", "--json"])
    finally:
        p.kill()
        p.wait()
    doc = json.loads(capsys.readouterr().out)
    f = next((f for f in doc["findings"] if f["id"] == "cpu.high-system"), None)
    assert f is not None, [g["id"] for g in doc["findings"]]
    assert calls == [1.0]
    ev = {e["name"]: e for e in f["evidence"]}
    assert ev["kernel function clear_user"]["value"] == 100.0
    assert ev["kernel function clear_user"]["source"] == "perf record -a (1 s)"


def test_ctrl_c_during_the_profile_keeps_the_report(tmp_path, monkeypatch):
    from ksight.diagnose import enrich
    from ksight.trace import perf

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(perf, "sample_kernel", interrupted)
    r = _system_report(tmp_path)
    assert enrich.enrich(r, live=True) == []
    ev = [e for e in find(r, "cpu.high-system").evidence if e.name == "kernel functions"]
    assert ev and "interrupted" in ev[0].note


def test_load_left_over_from_an_earlier_burst_is_info(tmp_path):
    # load 20 on 8 CPUs, but now 2 running (one is the reader) and nobody in D
    files_load = "20.00 10.00 5.00 2/500 1\n"
    r = run(tmp_path, lambda i: spread(8, {"idle": 100}), loadavg=files_load,
            scalars={"procs_running": 2, "procs_blocked": 0})
    f = find(r, "cpu.load-high")
    assert f.severity == "info" and "decaying" in f.explanation
    ev = {e.name: e for e in f.evidence}
    # the first reading is the corpus's: procs_running 2 (less the reader) + procs_blocked 1
    assert ev["runnable + blocked tasks now (peak of the window)"].value == 2
