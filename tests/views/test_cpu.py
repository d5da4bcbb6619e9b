"""`ksight cpu` views on real kernel text with known changes: rates, imbalance, top processes,
PSI, topology from a sysfs tree, D-state tasks grouped by stack, and the CLI end to end."""

from __future__ import annotations

import json
import re

import pytest

from ksight.collect.snapshot import take
from ksight.views import cpu as view
from tests.conftest import corpus_text
from tests.diagnose.helpers import tree
from tests.model.cpu_text import bump, spread

SOURCES = ["stat", "loadavg", "pressure", "softirqs", "interrupts", "uptime"]


def softirqs_bump(text: str, kind: str, per_cpu: dict[int, int]) -> str:
    out = []
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.strip() == kind:
            vals = rest.split()
            for c, d in per_cpu.items():
                vals[c] = str(int(vals[c]) + d)
            line = f"{name}:" + "".join(f" {v:>10}" for v in vals)
        out.append(line)
    return "\n".join(out) + "\n"


def pid_stat(text: str, *, state: str | None = None, utime: int = 0, stime: int = 0) -> str:
    r = text.rindex(")")
    rest = text[r + 2:].split()
    if state:
        rest[0] = state
    rest[11] = str(int(rest[11]) + utime)  # field 14 utime
    rest[12] = str(int(rest[12]) + stime)  # field 15 stime
    return text[:r + 2] + " ".join(rest) + "\n"


def _snaps(tmp_path, states, step=1.0, processes=True):
    out = []
    for i, files in enumerate(states):
        files = dict(files)
        files.setdefault("proc/uptime", f"{1000 + i * step:.2f} 1900.00\n")
        root = tree(tmp_path / f"s{i}", files)
        out.append(take(root, sources=SOURCES, processes=processes,
                        taken_at=1_700_000_000 + i * step))
    return out


@pytest.fixture
def base():
    return {
        "proc/stat": corpus_text("procfs", "proc", "stat"),              # 8 CPUs
        "proc/softirqs": corpus_text("pcp", "files", "softirqs-8cpu-x86_64"),
        "proc/loadavg": corpus_text("procfs", "proc", "loadavg"),
        "proc/pressure/cpu": corpus_text("procfs", "proc", "pressure", "cpu"),
        "proc/26231/stat": corpus_text("procfs", "proc", "26231", "stat"),  # vim, utime 1677
    }


def test_interval_rates_top_and_imbalance(tmp_path, base):
    later = dict(base)
    d = spread(8, {"idle": 200})
    d[1] = {"user": 40, "system": 100, "idle": 60}
    later["proc/stat"] = bump(base["proc/stat"], d, scalars={"ctxt": 5000, "intr": 3000,
                                                             "processes": 20, "procs_running": 4,
                                                             "procs_blocked": 2})
    later["proc/softirqs"] = softirqs_bump(base["proc/softirqs"], "NET_RX", {3: 9000, 0: 1000})
    later["proc/loadavg"] = "9.50 4.00 2.00 5/500 12000\n"
    later["proc/pressure/cpu"] = "some avg10=1.00 avg60=2.00 avg300=3.85 total=500015\n"
    later["proc/26231/stat"] = pid_stat(base["proc/26231/stat"], state="D", utime=40, stime=100)
    s = view.CpuStream(top=3)
    a, b = _snaps(tmp_path, [base, later], step=2.0)
    assert s.add(a) is None
    iv = s.add(b)
    assert iv.seconds == pytest.approx(2.0)
    # cpu1: 40 + 100 + 60 = 200 ticks: usr 20 %, sys 50 %; all: 1600 ticks, sys 100/1600
    assert iv.cpus[1].usr == pytest.approx(20.0) and iv.cpus[1].sys == pytest.approx(50.0)
    assert iv.all.sys == pytest.approx(6.25)
    # 5000 context switches, 3000 interrupts, 20 forks over 2 s
    assert (iv.ctxt_per_s, iv.intr_per_s, iv.forks_per_s) == (2500.0, 1500.0, 10.0)
    assert (iv.procs_running, iv.procs_blocked, iv.d_state) == (4, 2, 1)
    assert (iv.load1, iv.cpus_online) == (9.5, 8)
    # PSI cpu some total +500000 us over 2 s: 25 % of the interval
    assert iv.psi_some_pct == pytest.approx(25.0) and iv.psi_full_pct is None
    # vim: stime +100 ticks, utime +40 over 2 s at USER_HZ 100: 50 % and 20 % of one CPU
    assert iv.top_sys[0].pid == 26231 and iv.top_sys[0].sys_pct == pytest.approx(50.0)
    assert iv.top_usr[0].usr_pct == pytest.approx(20.0)
    # NET_RX: 10000 over 2 s = 5000/s, 90 % on CPU 3
    net = next(r for r in iv.softirqs if r.name == "NET_RX")
    assert net.per_s == pytest.approx(5000.0) and net.busiest_cpu == 3
    assert net.busiest_share_pct == pytest.approx(90.0)
    assert net.per_cpu[3] == pytest.approx(4500.0) and net.per_cpu[5] == 0.0
    assert iv.softirqs[0].name == "NET_RX"  # the only kind that moved
    assert s.average() is not None and s.average().all.sys == pytest.approx(6.25)


def test_text_and_rates_render(tmp_path, base):
    from ksight.render import cpu_text

    later = dict(base)
    later["proc/stat"] = bump(base["proc/stat"], spread(8, {"user": 10, "idle": 90}))
    later["proc/softirqs"] = softirqs_bump(base["proc/softirqs"], "TIMER", {0: 100, 1: 100})
    s = view.CpuStream()
    for snap in _snaps(tmp_path, [base, later]):
        iv = s.add(snap)
    lines = cpu_text.interval_text(iv)
    assert re.search(r"\ball\s+10\.00\s+0\.00\s+0\.00", lines[1]), lines[1]
    assert len([ln for ln in lines if re.match(r"\S+\s+\d+\s+10\.00", ln)]) == 8
    r = cpu_text.rates_text(iv, "softirqs")
    assert r[1].split()[1:3] == ["TIMER", "200"] and "50.0%" in r[1]


def test_reboot_between_snapshots_gives_no_row(tmp_path, base):
    later = dict(base)
    later["proc/uptime"] = "5.00 1.00\n"  # uptime went back: another boot
    s = view.CpuStream()
    snaps = _snaps(tmp_path, [base, later])
    assert s.add(snaps[0]) is None and s.add(snaps[1]) is None
    assert s.breaks and "rebooted" in s.breaks[0]


def test_topology_from_a_sysfs_tree(tmp_path):
    # 4 CPUs: 2 cores x 2 threads, one socket, 2 NUMA nodes; L1d 32K per core, L3 8M shared
    files = {"sys/devices/system/cpu/online": "0-3\n",
             "sys/devices/system/node/node0/cpulist": "0-1\n",
             "sys/devices/system/node/node1/cpulist": "2-3\n"}
    for c in range(4):
        t = f"sys/devices/system/cpu/cpu{c}/topology/"
        files[t + "physical_package_id"] = "0\n"
        files[t + "core_id"] = f"{c // 2}\n"
        files[t + "thread_siblings_list"] = f"{c // 2 * 2}-{c // 2 * 2 + 1}\n"
        files[t + "core_siblings_list"] = "0-3\n"
        ca = f"sys/devices/system/cpu/cpu{c}/cache/"
        for ix, (lvl, typ, size, shared) in enumerate([
                (1, "Data", "32K", f"{c // 2 * 2}-{c // 2 * 2 + 1}"),
                (1, "Instruction", "32K", f"{c // 2 * 2}-{c // 2 * 2 + 1}"),
                (3, "Unified", "8192K", "0-3")]):
            files[ca + f"index{ix}/level"] = f"{lvl}\n"
            files[ca + f"index{ix}/type"] = f"{typ}\n"
            files[ca + f"index{ix}/size"] = f"{size}\n"
            files[ca + f"index{ix}/shared_cpu_list"] = f"{shared}\n"
            files[ca + f"index{ix}/ways_of_associativity"] = "8\n"
            files[ca + f"index{ix}/coherency_line_size"] = "64\n"
    snap = take(tree(tmp_path, files), sources=["cpu_topology", "numa"])
    t = view.topology(snap)
    assert (t.sockets, t.cores, t.threads, t.threads_per_core, t.smt) == (1, 2, 4, 2, True)
    assert t.numa_nodes == {0: "0-1", 1: "2-3"}
    kinds = {k[0].name: k for k in t.caches}
    assert set(kinds) == {"L1d", "L1i", "L3"}
    assert [c.shared_cpus for c in kinds["L1d"]] == ["0-1", "2-3"] and kinds["L1d"][0].size_kb == 32
    assert [c.shared_cpus for c in kinds["L3"]] == ["0-3"] and kinds["L3"][0].size_kb == 8192
    assert [p.node for p in t.places] == [0, 0, 1, 1]


def test_topology_live_agrees_with_lscpu():
    import subprocess

    from tests.conftest import need_tool

    need_tool("lscpu", "cache sizes to compare with")
    r = subprocess.run(["lscpu", "-C", "-B"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.skip(f"lscpu -C gives nothing here: {r.stderr.strip()[:100]}")
    theirs = {}
    for line in r.stdout.splitlines()[1:]:
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            theirs[f[0]] = int(f[1]) // 1024  # ONE-SIZE, bytes -> KiB
    from ksight.collect.collector import Collector
    from ksight.collect.plan import Needs, Plan

    t = view.topology(Collector().one(Plan.of([Needs(sources=view.TOPOLOGY_SOURCES, window=False)])))
    ours = {k[0].name: k[0].size_kb for k in t.caches}
    for name, kb in theirs.items():
        assert ours.get(name) == kb, (name, ours, theirs)


def test_parse_stack():
    text = ("[<0>] io_schedule+0x42/0x70\n[<0>] folio_wait_bit_common+0x12d/0x300\n"
            "[<0>] do_syscall_64+0x5b/0x110\n")
    assert view.parse_stack(text) == ("io_schedule", "folio_wait_bit_common", "do_syscall_64")
    assert view.parse_stack("") == ()
    from ksight.errors import ParseError

    with pytest.raises(ParseError):
        view.parse_stack("[<0>]io_schedule")


def test_blocked_groups_by_stack(tmp_path):
    vim = corpus_text("procfs", "proc", "26231", "stat")
    files = {"proc/stat": corpus_text("procfs", "proc", "stat"),
             "proc/loadavg": corpus_text("procfs", "proc", "loadavg")}
    stack = "[<0>] io_schedule+0x42/0x70\n[<0>] folio_wait_bit_common+0x12d/0x300\n"
    for pid in (100, 101):
        t = f"proc/{pid}/task/{pid}/"
        files[t + "stat"] = pid_stat(vim.replace("26231", str(pid), 1), state="D")
        files[t + "wchan"] = "io_schedule"
        files[t + "stack"] = stack
    t = "proc/102/task/103/"  # a thread in D whose stack we may not read
    files["proc/102/task/102/stat"] = pid_stat(vim.replace("26231", "102", 1), state="S")
    files[t + "stat"] = pid_stat(vim.replace("26231", "103", 1), state="D")
    files[t + "wchan"] = "0"
    b = view.blocked(take(tree(tmp_path, files), sources=view.BLOCKED_SOURCES))
    assert len(b.tasks) == 3
    assert b.groups[0].stack == ("io_schedule", "folio_wait_bit_common")
    assert [t.pid for t in b.groups[0].tasks] == [100, 101]
    assert b.groups[1].stack == () and b.groups[1].tasks[0].tid == 103
    assert b.groups[1].tasks[0].wchan is None and b.stack_reason
    assert b.procs_blocked == 1 and b.cpus_online == 8  # corpus /proc/stat: procs_blocked 1


def test_cli_json_live_and_from_capture(tmp_path, capsys):
    from ksight.cli.main import main

    assert main(["cpu", "0.2", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["intervals"]) == 2 and doc["average"]["all"]["cpu"] == "all"
    al = doc["intervals"][0]["mpstat"]["all"]
    assert sum(al[k] for k in ("usr", "nice", "sys", "iowait", "irq", "soft", "steal", "idle")) \
        == pytest.approx(100.0, abs=0.01)
    cap = str(tmp_path / "cap")
    assert main(["capture", "-o", cap, "--interval", "0.2", "--count", "3"]) == 0
    capsys.readouterr()
    assert main(["cpu", "--from", cap, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["intervals"]) == 2
    assert main(["cpu", "--from", cap, "--softirqs"]) == 0
    assert "KIND" in capsys.readouterr().out
    assert main(["cpu", "--from", cap, "--blocked"]) == 0
    assert "threads in D state not read" in capsys.readouterr().out  # not captured by default
    assert main(["cpu", "--from", cap, "1", "2"]) == 3  # INTERVAL/COUNT refused with --from
    assert main(["cpu", "--topology", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["topology"]["threads"] >= 1


def test_truncated_stat_is_named_not_a_traceback(tmp_path, base):
    import argparse

    from ksight.cli import cpu as cli
    from ksight.collect.collector import Collector
    from ksight.errors import Unavailable

    bad = dict(base)
    bad["proc/stat"] = base["proc/stat"][:20]  # cut in the middle of the cpu line
    bad["proc/uptime"] = "1000.00 1900.00\n"
    col = Collector(tree(tmp_path, bad))
    args = argparse.Namespace(interval=None, count=None, top=5, softirqs=False, interrupts=False,
                              json=True, from_=None)
    with pytest.raises(Unavailable) as e:
        cli._intervals(col, args)
    assert "/proc/stat" in str(e.value)


def test_no_psi_no_softirqs_old_kernel(tmp_path, base):
    from ksight.render import cpu_text

    files = {k: v for k, v in base.items() if k not in ("proc/pressure/cpu", "proc/softirqs")}
    later = dict(files)
    later["proc/stat"] = bump(files["proc/stat"], spread(8, {"user": 10, "idle": 90}))
    s = view.CpuStream()
    for snap in _snaps(tmp_path, [files, later]):
        iv = s.add(snap)
    assert iv.psi_some_pct is None and iv.softirqs == ()
    assert not any("PSI" in ln for ln in cpu_text.interval_text(iv))
    assert "no softirqs counted" in cpu_text.rates_text(iv, "softirqs")[0]


def test_blocked_skips_vanished_pids(tmp_path):
    vim = corpus_text("procfs", "proc", "26231", "stat")
    files = {"proc/stat": corpus_text("procfs", "proc", "stat"),
             "proc/loadavg": corpus_text("procfs", "proc", "loadavg"),
             "proc/300/cmdline": "",  # exited between listing and reading: no task directory
             "proc/301/task/301/wchan": "0"}  # no stat: gone while we read
    files["proc/100/task/100/stat"] = pid_stat(vim.replace("26231", "100", 1), state="D")
    b = view.blocked(take(tree(tmp_path, files), sources=view.BLOCKED_SOURCES))
    assert [t.pid for t in b.tasks] == [100]


def test_blocked_from_a_snapshot_without_the_source_says_so(tmp_path):
    """An older capture (no blocked_tasks): the process table's leaders in D, and a note."""
    vim = corpus_text("procfs", "proc", "26231", "stat")
    files = {"proc/stat": corpus_text("procfs", "proc", "stat"),
             "proc/loadavg": corpus_text("procfs", "proc", "loadavg"),
             "proc/100/stat": pid_stat(vim.replace("26231", "100", 1), state="D"),
             "proc/101/stat": pid_stat(vim.replace("26231", "101", 1), state="S")}
    snap = take(tree(tmp_path, files), sources=("stat", "loadavg"), processes=True)
    b = view.blocked(snap, live=False)
    assert [t.pid for t in b.tasks] == [100]
    assert b.tasks[0].stack is None and b.stack_reason
    assert any("threads in D state not read" in n for n in b.notes)


def test_blocked_tasks_source_is_opt_in():
    from ksight.sources import DEFAULT, SYSTEM

    assert "blocked_tasks" in SYSTEM and "blocked_tasks" not in DEFAULT


def test_blocked_tasks_survive_a_capture_made_with_the_source(tmp_path):
    """`ksight capture --with blocked_tasks`: the D-state thread, its wait channel and stack come
    back on replay, as read from the tree (not from the capture's own idea of them)."""
    from ksight.collect.collector import Collector
    from ksight.collect.plan import Needs, Plan
    from ksight.store.capture import capture

    vim = corpus_text("procfs", "proc", "26231", "stat")
    files = {"proc/stat": corpus_text("procfs", "proc", "stat"),
             "proc/loadavg": corpus_text("procfs", "proc", "loadavg"),
             "proc/uptime": "100.00 50.00\n",
             "proc/100/task/101/stat": pid_stat(vim.replace("26231", "101", 1), state="D"),
             "proc/100/task/101/wchan": "rwsem_down_write_slowpath",
             "proc/100/task/101/stack": "[<0>] rwsem_down_write_slowpath+0x1/0x2\n"
                                        "[<0>] do_mmap+0x3/0x4\n"}
    out = str(tmp_path / "cap")
    capture(out, root=tree(tmp_path / "t", files), count=1, processes=False, sockets=False,
            sources=["stat", "loadavg", "uptime"], extra_sources=("blocked_tasks",))
    snap = Collector.open(out).one(Plan.of([Needs(sources=view.BLOCKED_SOURCES, window=False)]))
    b = view.blocked(snap, live=False)
    assert [(t.pid, t.tid, t.wchan) for t in b.tasks] == [(100, 101, "rwsem_down_write_slowpath")]
    assert b.groups[0].stack == ("rwsem_down_write_slowpath", "do_mmap")
