"""What keeps the recorder's samples cheap (issue 13), and that each saving keeps what the rules
need: sources read every K samples and carried between (each carried sample says so), the
process table ranked by stat alone every few samples with only the chosen processes read in
full, and ksight._procscan.stat_ranks against the reference parser."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from ksight.collect import processes as P
from ksight.collect.plan import Plan
from ksight.collect.processes import Rank, rank
from ksight.fs import DirRoot, LiveRoot
from ksight.model.snapshot import HostInfo, Missing, Snapshot
from ksight.record.recorder import (RANK_EVERY, Cadence, ProcessPicker, Recorder, choose_ranked,
                                    recorder_plans)
from ksight.record.store import Recording
from ksight.sources import SYSTEM
from ksight.sources.proc_pid import stat as pstat

HOST = HostInfo(hostname="h", kernel="6.1", kernel_version=None, page_size=4096,
                page_size_assumed=False, clk_tck=100, cpus=2, boot_id="b")


def _snap(t, sources, unavailable=()):
    return Snapshot(taken_at=t, monotonic=t, uptime_s=t, host=HOST, sources=dict(sources),
                    unavailable=tuple(unavailable))


# ---- sources read every K samples ----------------------------------------------------------------

def test_registry_declares_a_cadence_only_with_a_reason():
    slow = {n: s for n, s in SYSTEM.items() if s.record_every > 1}
    assert {"vmallocinfo", "slabinfo", "sysctl", "netclass", "numa", "swaps", "sysvipc_shm",
            "lru_gen"} <= set(slow)
    for n, s in slow.items():
        assert s.record_why, f"{n}: a cadence without a reason"
    # counters whose per-interval rates rules read are read every sample
    for n in ("stat", "vmstat", "meminfo", "netdev", "snmp", "netstat", "diskstats", "pressure",
              "interrupts", "softirqs", "cgroup_memory", "zoneinfo"):
        assert SYSTEM[n].record_every == 1, n


def test_cadence_reads_every_k_samples_and_carries_between():
    plan = Plan(sources=("meminfo", "vmallocinfo", "sysctl"))
    cad = Cadence(plan)
    k = SYSTEM["vmallocinfo"].record_every
    reads = []
    snaps = []
    for i in range(2 * k + 1):
        p = cad.plan(plan)
        got = {n: f"{n}@{i}" for n in p.sources}
        reads.append("vmallocinfo" in p.sources)
        assert "meminfo" in p.sources  # every sample
        snaps.append(cad.fill(_snap(1000.0 + i, got)))
    assert [i for i, r in enumerate(reads) if r] == [0, k, 2 * k]
    for i, s in enumerate(snaps):
        assert s.get("meminfo") == f"meminfo@{i}"
        assert s.get("vmallocinfo") == f"vmallocinfo@{i - i % k}"  # the last read's value
        note = s.missing("vmallocinfo:carried")
        if i % k:
            assert note is not None and f"every {k} samples" in note.reason
        else:
            assert note is None  # read in this sample: nothing carried


def test_cadence_carries_why_a_source_was_unavailable():
    plan = Plan(sources=("meminfo", "slabinfo"))
    cad = Cadence(plan)
    why = Missing("slabinfo", "proc/slabinfo: permission denied")
    s0 = cad.fill(_snap(1.0, {"meminfo": 1}, [why]))
    assert s0.missing("slabinfo") == why
    p = cad.plan(plan)
    assert "slabinfo" not in p.sources
    s1 = cad.fill(_snap(2.0, {"meminfo": 2}))
    assert s1.get("slabinfo") is None and s1.missing("slabinfo") == why
    assert s1.missing("slabinfo:carried") is not None


def test_cadence_counts_samples_not_ticks():
    """A skipped tick (an overrun) does not make a source miss its read: samples are counted."""
    plan = Plan(sources=("sysctl",))
    cad = Cadence(plan)
    k = SYSTEM["sysctl"].record_every
    n_read = 0
    for i in range(3 * k):
        p = cad.plan(plan)
        n_read += "sysctl" in p.sources
        cad.fill(_snap(float(i * 7), {n: 1 for n in p.sources}))
    assert n_read == 3


# ---- the process table: ranked by stat, the chosen read in full ---------------------------------

def _r(ticks, rss, start=1, kt=False):
    return Rank(ticks, start, rss, kt)


def test_choose_ranked_largest_busiest_and_no_kernel_threads_by_memory():
    first = {1: _r(0, 900), 2: _r(0, 800), 3: _r(0, 10), 4: _r(0, 5000, kt=True), 5: _r(0, 1)}
    pids, st = choose_ranked(first, 2, {})
    assert pids == [1, 2]  # no CPU known yet; the kernel thread is not ranked by memory
    later = {1: _r(1, 900), 2: _r(0, 800), 3: _r(500, 10), 4: _r(50, 5000, kt=True), 5: _r(0, 1)}
    pids, st = choose_ranked(later, 2, st, watched=(5,))
    assert pids == [1, 2, 3, 4, 5]  # 3 and 4 busiest, 5 watched
    # a reused PID (another start time) is a new process: all its ticks are since the last
    # ranking, not compared with the old process's
    again = {1: _r(1, 900), 2: _r(0, 800), 3: _r(100, 10, start=99), 5: _r(0, 1)}
    pids, st = choose_ranked(again, 1, st)
    assert 3 in pids and st["kept"].get((3, 99)) and (3, 1) not in st["kept"]
    # a process that started since the last ranking counts too
    pids, st = choose_ranked({**again, 6: _r(300, 1, start=7)}, 1, st)
    assert 6 in pids


def test_picker_ranks_first_then_next_sample_then_every_rank_every():
    pk = ProcessPicker(3, rank_every=RANK_EVERY)
    ranked_at = []
    for i in range(3 * RANK_EVERY + 2):
        if i:
            pk.sampled()
        if pk.due():
            pk.rank({1: _r(i, 10)})
            ranked_at.append(i)
    assert ranked_at[:2] == [0, 1]
    assert all(b - a == RANK_EVERY for a, b in zip(ranked_at[1:], ranked_at[2:]))
    assert pk.pids((7,)) == (1, 7) and pk.pids() == (1,)


def _sleepers(n):
    return [subprocess.Popen(["sleep", "60"]) for _ in range(n)]


def _reference(root, pid):
    st = pstat.parse(root.read_text(f"proc/{pid}/stat"), f"proc/{pid}/stat")
    return (st.utime_ticks + st.stime_ticks, st.starttime_ticks, st.rss_pages, bool(st.flags & P.PF_KTHREAD))


def test_rank_matches_the_reference_parser_live():
    kids = _sleepers(5)
    try:
        time.sleep(0.2)
        root = LiveRoot()
        got = rank(root)
        ps = os.sysconf("SC_PAGE_SIZE") // 1024
        for k in kids:
            r = got[k.pid]
            t, start, rss, kt = _reference(root, k.pid)
            assert (r.ticks, r.starttime, r.rss_kb, r.kernel_thread) == (t, start, rss * ps, kt)
        assert got[os.getpid()].kernel_thread is False
        kthreads = [p for p, r in got.items() if r.kernel_thread]
        if os.path.exists("/proc/2/stat"):  # kthreadd, where this is not a container
            assert 2 in kthreads or not kthreads
        # again: the kept fds are read with pread and give the same
        again = rank(root)
        for k in kids:
            assert again[k.pid] == got[k.pid]
    finally:
        for k in kids:
            k.kill()
            k.wait()
    gone = rank(LiveRoot())
    assert not any(k.pid in gone for k in kids)  # exited: left out, its kept fd closed
    assert not any(k.pid in P._rank_kept for k in kids)


@pytest.mark.skipif(getattr(P._procscan, "stat_ranks", None) is None,
                    reason="needs the C extension ksight._procscan (gcc and python3-dev at install)")
def test_stat_ranks_c_answers_only_for_the_plain_form(tmp_path):
    """The C reader gives what the reference parser gives, or a code (the PID then goes to
    Python): a stat cut short, a '-' or a sign in a field it reads, another PID's text."""
    proc = tmp_path / "proc"
    good = ("{pid} (a b) c) S 1 1 1 0 -1 4194560 10 0 0 0 7 5 0 0 20 0 1 0 12345 100000 42 "
            + " ".join(["0"] * 27) + "\n")
    cases = {
        10: good.format(pid=10),
        11: good.format(pid=11)[:-1],  # no final line break: cut short
        12: good.format(pid=12).replace(" 7 5 ", " - 5 "),
        13: good.format(pid=13).replace(" 12345 ", " -12345 "),
        14: good.format(pid=99),  # not this PID's text
        15: "15 (x) S 1 1\n",  # too few fields
    }
    for pid, text in cases.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(text)
    out = P._procscan.stat_ranks(str(tmp_path), list(cases) + [16])
    assert out[0] == (12, 12345, 42, 4194560)
    assert all(isinstance(x, int) and x != 0 for x in out[1:])
    assert out[-1] == 2  # ENOENT: no such PID
    # the reference parser on the good one agrees
    st = pstat.parse(cases[10], "stat")
    assert out[0] == (st.utime_ticks + st.stime_ticks, st.starttime_ticks, st.rss_pages, st.flags)


def test_rank_on_a_tree_uses_the_reference_parser(tmp_path):
    proc = tmp_path / "proc"
    text = ("7 (w) R 1 1 1 0 -1 2097216 0 0 0 0 30 12 0 0 20 0 1 0 555 0 0 "
            + " ".join(["0"] * 27) + "\n")
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "stat").write_text(text)
    (proc / "8").mkdir()
    (proc / "8" / "stat").write_text("garbage\n")
    got = rank(DirRoot(str(tmp_path)))
    assert got == {7: Rank(42, 555, 0, True)}  # PF_KTHREAD set; the malformed one left out


def test_recording_reads_the_chosen_and_catches_a_newcomer(tmp_path):
    """Live: the samples between rankings hold the chosen processes only (and say of how many),
    a busy process started after the recorder is stored a few samples after a ranking is due,
    and a carried source is in every sample with its note."""
    db = tmp_path / "r.db"
    marks = []
    burner = []
    N = 20  # room among the busiest for the newcomer on a machine busy with other work

    def on_sample(st):
        marks.append(time.monotonic())
        if st.samples == 3 and not burner:
            burner.append(subprocess.Popen(["sh", "-c", "while :; do :; done"]))

    try:
        st = Recorder(_live(), str(db), interval=0.2, seconds=0.2 * (3 + RANK_EVERY + 12), processes=N,
                      watcher=False, on_sample=on_sample).run()
    finally:
        for b in burner:
            b.kill()
            b.wait()
    assert st.rankings >= 2
    with Recording.open(db) as rec:
        snaps = list(rec.snapshots())
    assert len(snaps) == st.samples
    for s in snaps:
        assert len(s.processes) <= 3 * N + 2
        sub = s.missing("processes:sample")
        assert sub is not None and f"holds {len(s.processes)} of" in sub.reason
        assert s.get("sysctl") is not None  # read or carried: every sample holds it
    assert any(s.missing("sysctl:carried") for s in snaps[1:])
    pid = burner[0].pid
    seen = [i for i, s in enumerate(snaps) if pid in s.processes]
    # due RANK_EVERY samples after the second ranking; it waits while the CPU is accounted
    # for, until the newcomer's own CPU shows as unaccounted (a few samples on a busy machine)
    assert seen and seen[0] <= 3 + RANK_EVERY + 10, (seen, len(snaps), st)


def _live():
    from ksight.collect.collector import Collector

    return Collector.open(None)


def _cpu_snap(t, busy, procs):
    """A sample at time t: /proc/stat's busy ticks, and processes {pid: ticks}."""
    from types import SimpleNamespace as NS

    stat = NS(cpu_total=NS(user_ticks=busy, nice_ticks=0, system_ticks=0))
    table = {pid: NS(stat=NS(starttime_ticks=1, utime_ticks=t_, stime_ticks=0))
             for pid, t_ in procs.items()}
    return Snapshot(taken_at=t, monotonic=t, uptime_s=t, host=HOST, sources={"stat": stat},
                    processes=table)


def test_a_ranking_waits_while_the_chosen_account_for_the_cpu():
    pk = ProcessPicker(2, rank_every=3, unseen_cpu=0.05, rank_at_least=9)
    pk.rank({1: _r(0, 10)})
    pk.rank({1: _r(0, 10)})  # the first two rankings
    ranked = []
    busy = mine = 0
    for i in range(1, 25):
        pk.sampled()
        if pk.due():
            pk.rank({1: _r(mine, 10)})
            ranked.append(i)
        busy += 50  # half a CPU, all of it the chosen process's
        mine += 50
        pk.note(_cpu_snap(float(i), busy, {1: mine}))
    assert ranked == [9, 18] and pk.postponed == 3  # waited to rank_at_least each time (3, 12, 21)
    # CPU used outside the chosen ones: ranked as soon as due
    pk2 = ProcessPicker(2, rank_every=3, unseen_cpu=0.05, rank_at_least=9)
    pk2.rank({1: _r(0, 10)})
    pk2.rank({1: _r(0, 10)})
    ranked = []
    busy = 0
    for i in range(1, 10):
        pk2.sampled()
        if pk2.due():
            pk2.rank({1: _r(0, 10)})
            ranked.append(i)
        busy += 30  # 30 % of a CPU nobody read
        pk2.note(_cpu_snap(float(i), busy, {1: 0}))
    assert ranked == [3, 6, 9]


def test_the_recorder_raises_its_soft_nofile_limit_for_the_kept_fds():
    """systemd starts services at a soft RLIMIT_NOFILE of 1,024: the kept procfs fds would be
    capped at 256. The recorder raises the soft limit (within the hard one), never lowers it."""
    code = (
        "import resource\n"
        "from ksight.record.recorder import NOFILE_WANTED, _raise_nofile\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "low = min(1024, soft)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))\n"
        "_raise_nofile()\n"
        "got = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "want = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)\n"
        "assert got == max(low, want), (got, low, want)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\n"
        "_raise_nofile()\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard  # never lowered\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_carried_sample_keeps_the_order_of_a_read_one():
    """The store's delta frame writes a sample's source values whole when their names' order
    differs from the frame before: a carried sample must list its sources as a read one does."""
    plan = Plan(sources=("meminfo", "vmallocinfo", "sysctl", "stat", "process_maps"))
    cad = Cadence(plan)
    orders = []
    for i in range(12):
        p = cad.plan(plan)
        later = [n for n in p.sources if n == "process_maps"]  # take() reads it after the scan
        got = {n: i for n in p.sources if n not in later}
        got.update({n: i for n in later})
        orders.append(list(cad.fill(_snap(float(i), got)).sources))
    assert all(o == orders[0] for o in orders), orders


def test_loop_runs_with_startup_frozen_and_unfreezes_after(tmp_path):
    """The loop runs with start-up's objects in the GC's permanent generation (full collections
    visit only what samples made since), and the recorder leaves the GC as it found it."""
    import gc

    from ksight.record.recorder import GC_YOUNG

    frozen, young = [], []
    before = gc.get_freeze_count()
    assert before == 0  # pytest has frozen nothing
    was = gc.get_threshold()

    def seen(st):
        frozen.append(gc.get_freeze_count())
        young.append(gc.get_threshold()[0])

    st = Recorder(_live(), str(tmp_path / "g.db"), interval=0.1, seconds=0.2, processes=3,
                  watcher=False, on_sample=seen).run()
    assert st.samples >= 2 and frozen and all(n > 1000 for n in frozen)
    assert all(y == max(was[0], GC_YOUNG) for y in young) and GC_YOUNG > 700
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == was
    # something else froze first: the recorder neither freezes more nor undoes theirs
    gc.freeze()
    try:
        mine = gc.get_freeze_count()
        frozen.clear()
        Recorder(_live(), str(tmp_path / "h.db"), interval=0.1, seconds=0.1, processes=3,
                 watcher=False, on_sample=lambda st: frozen.append(gc.get_freeze_count())).run()
        assert frozen and all(n == mine for n in frozen) and gc.get_freeze_count() == mine
    finally:
        gc.unfreeze()
