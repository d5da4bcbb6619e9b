"""Each page cache scenario really produces its fault, measured by raw kernel counters read
through ksight.sources (meminfo, vmstat) and the cgroup's own files, before/during/after.

The thresholds below are computed from the scenario's own bounds (limits, sizes), not from the
code's output: e.g. a 128 MiB anon set in a 64 MiB cgroup must push >= 64 MiB to swap.
"""

from __future__ import annotations

import os
import time

import pytest

from ksight.fs import LiveRoot
from ksight.sources import vmstat
from tests.conftest import IS_ROOT, needs_root, unavailable

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = LiveRoot()
SECONDS = 3.0


def vm(name: str) -> int:
    v = vmstat.read(ROOT).get(name)
    assert v is not None, f"{name} missing from /proc/vmstat"
    return v


def sysctl(name: str) -> str:
    return ROOT.read_sysctl(name)


def leftovers() -> list[str]:
    from ksight.lab.cgroup import list_lab_groups
    from ksight.lab.netns import list_namespaces

    mine = str(os.getpid())
    out = [g for g in list_lab_groups() if f"-{mine}-" in g]
    out += [n for n in list_namespaces() if n.startswith(f"ksl{mine}")]
    out += [d for d in os.listdir("/var/tmp") if d.startswith(f"ksight-lab-{mine}-")]
    swaps = ROOT.read_text("proc/swaps")
    out += [line for line in swaps.splitlines() if "ksight-lab-" in line]
    return out


@pytest.fixture(autouse=True)
def nothing_left():
    yield
    assert leftovers() == []


def test_registry_lists_the_scenarios():
    from ksight.lab import SCENARIOS

    assert {"dirty-backlog", "cgroup-reclaim", "drop-caches", "swap-io"} <= set(SCENARIOS)
    assert SCENARIOS["dirty-backlog"].expects == ("pagecache.dirty-backlog",)
    assert SCENARIOS["cgroup-reclaim"].expects == ("pagecache.direct-reclaim",)
    assert SCENARIOS["drop-caches"].expects == ("pagecache.drop-caches",)
    assert SCENARIOS["swap-io"].expects == ("pagecache.swap-io",)
    for sc in SCENARIOS.values():
        assert sc.area and sc.summary and sc.bounds


def test_availability_names_what_is_missing(monkeypatch, tmp_path):
    from ksight.lab import SCENARIOS, available

    for sc in SCENARIOS.values():
        ok, why = available(sc)
        if sc.needs_root and not IS_ROOT:
            assert (ok, why) == (False, "needs root"), sc.name
        elif not ok:
            assert why.strip(), sc.name  # never "unavailable" without a reason
    if not IS_ROOT:
        return
    # as root, with no tools on PATH: the scenarios that drive tools say which ones are missing
    monkeypatch.setenv("PATH", str(tmp_path))
    ok, why = available("dirty-backlog")
    assert not ok and "mkfs.ext4" in why and "losetup" in why, why
    ok, why = available("swap-io")
    assert not ok and "mkswap" in why, why


def test_seconds_are_bounded():
    from ksight.lab import SCENARIOS

    with pytest.raises(ValueError):
        with SCENARIOS["drop-caches"].running(0):
            pass
    with pytest.raises(ValueError):
        with SCENARIOS["drop-caches"].running(3600):
            pass


def _loop_write_sectors(dev: str) -> int:
    # /sys/block/<dev>/stat field 7: sectors written (Documentation/block/stat.rst), 512 B each
    return int(ROOT.read_text(f"sys/block/{os.path.basename(dev)}/stat").split()[6])


def _wchan(pid: int) -> str:
    try:
        return ROOT.read_text(f"proc/{pid}/wchan")
    except Exception:
        return ""


@needs_root
def test_dirty_backlog_reaches_the_freerun_ceiling_and_throttles_the_writer():
    sc = _scenario("dirty-backlog")
    names = ["vm.dirty_bytes", "vm.dirty_ratio", "vm.dirty_background_bytes", "vm.dirty_background_ratio"]
    before = {n: sysctl(n) for n in names}
    over, samples, wchans = 0, [], []
    with sc.running(SECONDS) as run:
        info = dict(run.info)
        th = info["throttle"]
        assert int(sysctl("vm.dirty_bytes")) == 32 * MiB
        assert int(sysctl("vm.dirty_background_bytes")) == 16 * MiB
        # the loop device is ours, in direct I/O mode, mounted as ext4 where the writer writes
        dev = info["device"]
        sysblk = f"sys/block/{os.path.basename(dev)}/loop/"
        assert ROOT.read_text(sysblk + "backing_file").strip() == info["backing"]
        assert ROOT.read_text(sysblk + "dio").strip() == "1"
        mi = ROOT.read_text("proc/self/mountinfo")
        assert any(f" {info['mountpoint']} " in ln and " - ext4 " in ln for ln in mi.splitlines())
        # the throttle rule names only our device: 8 MiB/s
        rule = open(th.rule_file).read()
        if th.version == 1:
            assert f"{info['majmin']} {8 * MiB}" in rule.splitlines()
        else:
            assert f"wbps={8 * MiB}" in rule
        sect0, t0 = _loop_write_sectors(dev), time.monotonic()
        while run.remaining() > 0:
            v = vmstat.read(ROOT)
            total = v.get("nr_dirty") + v.get("nr_writeback")
            ceiling = (v.get("nr_dirty_threshold") + v.get("nr_dirty_background_threshold")) / 2
            samples.append((total, ceiling))
            over += total >= ceiling
            wchans.append(_wchan(info["pid"]))
            run.wait(0.2)
        written = (_loop_write_sectors(dev) - sect0) * 512
        elapsed = time.monotonic() - t0
        assert run.procs[0].poll() is None, "writer ended early: its budget ran out"
    # Dirty+Writeback reached the freerun ceiling (thresh + bg_thresh)/2 = 24 MiB, where
    # balance_dirty_pages starts throttling (mm/page-writeback.c), and held it most of the run
    assert over >= 1, samples
    assert over >= len(samples) // 2, samples
    # ... and the writer was seen sleeping there
    assert "balance_dirty_pages" in wchans, wchans
    # writeback to the loop device moved, at no more than the 8 MiB/s throttle (plus a slice)
    assert written > 0
    assert written <= 8 * MiB * elapsed * 1.25 + 4 * MiB, (written, elapsed)
    # everything undone
    assert {n: sysctl(n) for n in names} == before
    assert not [ln for ln in open(th.rule_file).read().splitlines() if ln.split()[:1] == [info["majmin"]]] \
        if os.path.exists(th.rule_file) else True
    assert not os.path.exists(f"/sys/block/{os.path.basename(dev)}/loop/backing_file") or \
        ROOT.read_text(f"sys/block/{os.path.basename(dev)}/loop/backing_file").strip() != info["backing"]
    assert info["mountpoint"] not in ROOT.read_text("proc/self/mountinfo")
    assert not os.path.exists(info["dir"])


def _scenario(name: str):
    """The scenario, or skip/fail (CI) saying why it cannot run on this machine."""
    from ksight.lab import SCENARIOS, available

    sc = SCENARIOS[name]
    ok, why = available(sc)
    if not ok:
        unavailable(f"{name}: {why}")  # a failure in CI, which provides every scenario
    return sc


def _limit_hits(cg) -> int:
    """Times a charge hit the group's limit: memory.failcnt (v1), memory.events `max` (v2)."""
    if cg.version == 1:
        return int(cg.read("memory.failcnt"))
    return int(dict(x.split() for x in cg.read("memory.events").splitlines())["max"])


@needs_root
def test_dirty_backlog_restores_sysctls_when_the_body_raises():
    before = sysctl("vm.dirty_bytes"), sysctl("vm.dirty_ratio"), sysctl("vm.dirty_background_ratio")
    sc = _scenario("dirty-backlog")
    with pytest.raises(RuntimeError):
        with sc.running(2):
            raise RuntimeError("test body failed")
    assert (sysctl("vm.dirty_bytes"), sysctl("vm.dirty_ratio"), sysctl("vm.dirty_background_ratio")) == before


@needs_root
def test_cgroup_reclaim_hits_the_limit_and_reclaims():
    sc = _scenario("cgroup-reclaim")
    with sc.running(SECONDS) as run:
        cg = run.info["cgroup"]
        assert int(open(f"/proc/{run.info['pid']}/cgroup").read().count(cg.path)) == 1
        if cg.version == 1:
            fail0, out0 = int(cg.read("memory.failcnt")), cg.stat()["pgpgout"]
        else:
            fail0 = int(dict(x.split() for x in cg.read("memory.events").splitlines())["max"])
            out0 = cg.stat()["pgscan"]
        run.wait()
        if cg.version == 1:
            fail1, out1 = int(cg.read("memory.failcnt")), cg.stat()["pgpgout"]
            assert int(cg.read("memory.max_usage_in_bytes")) <= 64 * MiB
            assert int(cg.read("memory.usage_in_bytes")) >= 0.8 * 64 * MiB  # held at the limit
        else:
            fail1 = int(dict(x.split() for x in cg.read("memory.events").splitlines())["max"])
            out1 = cg.stat()["pgscan"]
            assert int(cg.read("memory.current")) >= 0.8 * 64 * MiB
    # reclaim kept going after the warm-up: the limit was hit again and >= 16 MiB of pages
    # left the group (a 192 MiB file re-read through a 64 MiB group cannot stay cached)
    assert fail1 > fail0
    assert (out1 - out0) * PAGE >= 16 * MiB


@needs_root
def test_drop_caches_counts_drops():
    sc = _scenario("drop-caches")
    pc0, slab0 = vm("drop_pagecache"), vm("drop_slab")
    with sc.running(SECONDS) as run:
        run.wait()
        drops = run.info["drops"]
    # one drop a second for 3 s + 1 s warm-up; every third one is "2" (slab)
    assert vm("drop_pagecache") - pc0 >= 2
    assert vm("drop_slab") - slab0 >= 1
    assert (vm("drop_pagecache") - pc0) + (vm("drop_slab") - slab0) >= drops


@needs_root
def test_inode_steal_frees_page_cache_with_inodes():
    sc = _scenario("inode-steal")
    steal0 = (vm("pginodesteal") or 0) + (vm("kswapd_inodesteal") or 0)
    with sc.running(8) as run:  # creating 40,000 files comes first: give reclaim time to start
        run.wait()
        hits = _limit_hits(run.info["cgroup"])
    stolen = (vm("pginodesteal") or 0) + (vm("kswapd_inodesteal") or 0) - steal0
    # thousands of pages freed with their inodes (measured here: ~10,000 pages/s)
    assert stolen >= 1000, stolen
    assert hits > 0  # the group was held at its limit (v1 memory.failcnt, v2 memory.events max)


@needs_root
def test_swap_io_swaps_out_and_in():
    sc = _scenario("swap-io")
    out0, in0 = vm("pswpout"), vm("pswpin")
    with sc.running(SECONDS) as run:
        assert run.info["swapfile"] in ROOT.read_text("proc/swaps")
        run.wait()
    # 128 MiB of incompressible anon in a 64 MiB group: >= 64 MiB must go out, and touching
    # every page again brings pages back in
    assert (vm("pswpout") - out0) * PAGE >= 64 * MiB
    assert (vm("pswpin") - in0) * PAGE >= 16 * MiB
    assert run.info["swapfile"] not in ROOT.read_text("proc/swaps")
    assert not os.path.exists(run.info["swapfile"])
