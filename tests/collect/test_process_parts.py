"""Process parts maps, smaps and exe, for the processes of `pids` or for a chosen few (plan.Few):
on corpora (smaps against the kernel's own smaps_rollup totals), live against /proc read here
and os.readlink, and with a process that exits or a capture that holds only smaps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ksight.collect.collector import Collector
from ksight.collect.plan import Few, Needs, Plan
from ksight.collect.processes import chosen, scan
from ksight.fs import DirRoot, LiveRoot
from tests.conftest import corpus, corpus_root


@pytest.mark.parametrize("parts,pid", [
    (("procfs",), 26231),
    (("pcp", "unpacked", "procpid-5.5.7-root-007"), 1309),
    (("pcp", "unpacked", "procpid-5.5.7-root-007"), 214983),
    (("pcp", "unpacked", "procpid-5.5.7-root-007"), 1),
])
def test_smaps_part_adds_up_to_the_kernels_rollup(parts, pid):
    procs, _ = scan(corpus_root(*parts), detail=("stat", "smaps", "smaps_rollup", "maps"),
                    pids=[pid])
    p = procs[pid]
    # smaps_rollup is the kernel's own sum of the same mappings (taken a moment apart in these
    # captures: Rss may move by a few pages, Size-like totals of address space must not)
    rss = sum(r.rss_kb or 0 for r in p.smaps.regions)
    assert abs(rss - p.smaps_rollup.rss_kb) <= max(64, p.smaps_rollup.rss_kb // 100)
    # maps: its own file when the corpus has it, else smaps' headers: same regions either way
    assert [(r.start, r.end, r.perms, r.pathname) for r in p.maps.regions] == \
        [(r.start, r.end, r.perms, r.pathname) for r in p.smaps.regions]
    # lines of the smaps file that start a region, counted here without the parser
    heads = sum(1 for ln in (corpus(*parts) / "proc" / str(pid) / "smaps").read_text().splitlines()
                if ln and "-" in ln.split(" ", 1)[0] and ":" not in ln.split(" ", 1)[0])
    assert len(p.smaps.regions) == heads > 3


@pytest.fixture
def child():
    code = ("import mmap, time\nkeep=[mmap.mmap(-1, 4096, prot=mmap.PROT_READ|(mmap.PROT_WRITE "
            "if i % 2 else 0)) for i in range(300)]\nprint('ready', flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        yield p
    finally:
        p.kill()  # only the process this test started
        p.wait(timeout=10)


def test_live_parts_against_proc(child):
    pid = child.pid
    plan = Plan.of([Needs(processes=("stat", "status", "maps", "smaps", "exe"), pids=(pid,),
                          window=False)])
    snap = Collector().one(plan)
    assert set(snap.processes) == {pid}
    p = snap.processes[pid]
    with open(f"/proc/{pid}/maps") as f:
        lines = f.read().splitlines()
    assert len(p.maps.regions) == len(lines) >= 300
    assert [f"{r.start:x}-{r.end:x}" for r in p.maps.regions] == [ln.split()[0] for ln in lines]
    assert [(r.start, r.end) for r in p.smaps.regions] == [(r.start, r.end) for r in p.maps.regions]
    assert p.exe == os.readlink(f"/proc/{pid}/exe")
    assert p.missing == ()


def test_few_reads_maps_for_the_chosen_only():
    plan = Plan.of([Needs(processes=("stat", "status"), few=(Few(("maps",), 3, "rss"),),
                          window=False)])
    assert plan.few == (Few(("maps",), 3, "rss"),)
    procs = Collector().one(plan).processes
    have = {pid for pid, p in procs.items() if p.maps is not None or
            any(m.startswith("maps:") for m in p.missing)}
    # the three with the most resident memory, ties by PID, as ksight top orders them
    want = sorted(procs.values(), key=lambda p: (-(p.res_kb if p.res_kb is not None else -1),
                                                  p.pid))[:3]
    assert have == {p.pid for p in want} == set(chosen(procs, plan.few[0]))


def test_bad_parts_and_few_are_refused():
    with pytest.raises(ValueError):
        Needs(processes=("maps", "pagemap"))
    with pytest.raises(ValueError):
        Few(("stat",), 3)
    with pytest.raises(ValueError):
        Few(("maps",), 3, by="cpu")


def test_a_process_that_exited_is_dropped_and_counted():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=10)
    procs, missing = scan(LiveRoot(), detail=("stat", "status", "smaps"), pids=[p.pid])
    assert procs == {} and any("exited" in m.reason for m in missing)


def test_capture_with_only_smaps_gives_maps_from_its_headers(tmp_path):
    src = corpus("procfs", "proc", "26231", "smaps")
    d = tmp_path / "proc" / "26231"
    d.mkdir(parents=True)
    (d / "smaps").write_bytes(src.read_bytes())
    (d / "stat").write_bytes((corpus("procfs", "proc", "26231", "stat")).read_bytes())
    procs, _ = scan(DirRoot(str(tmp_path)), detail=("stat", "maps", "exe"), pids=[26231])
    p = procs[26231]
    assert len(p.maps.regions) > 3 and p.maps.regions[0].start < p.maps.regions[-1].start
    # no exe link in the tree: None, and the reason named on the process
    assert p.exe is None and any(m.startswith("exe:") for m in p.missing)


def test_kernel_thread_has_no_mappings():
    procs, _ = scan(LiveRoot(), detail=("stat", "status"))
    kthreads = [pid for pid, p in procs.items() if p.kernel_thread]
    if not kthreads:
        pytest.skip("no kernel thread visible (a PID namespace)")
    pid = kthreads[0]
    got, _ = scan(LiveRoot(), detail=("stat", "status", "maps", "smaps", "exe"), pids=[pid])
    p = got[pid]
    assert p.maps.regions == () and p.smaps.regions == () and p.exe is None
