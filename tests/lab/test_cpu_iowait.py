"""cpu-iowait: readers doing synchronous O_DIRECT reads from a loop device stacked on a second
one whose reads the block throttle holds to a few a second.

Asserted first from raw kernel text read here by hand (not through ksight's parsers): the
readers' CPUs count iowait in /proc/stat, the readers are in D, /proc/stat procs_blocked counts
them, the upper device is busy (/proc/diskstats io_ticks) and serves no more reads than the
throttle lets through. Then `ksight check --json --area cpu` (the CLI, in a subprocess) reports
cpu.high-iowait live and `--from` a capture of the scenario, naming the CPU, the busy device
and the blocked tasks; at rest it does not (unless our own readings show iowait). Everything
is gone afterwards, also after a kill -9 of `ksight lab run` followed by `ksight lab cleanup`.

The machine is shared: iowait is charged only to an idle CPU, so other programs' CPU use takes
from it; the floors are well under what an idle machine shows (docs/lab.md: 85-96 %).
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import needs_root, unavailable
# the CPU lab's and the block-device tests' own readers of raw kernel text
from tests.e2e.test_cpu_lab import cpu_lines, pid_state, share
from tests.lab.test_blockdev import _backing as backing

KSIGHT = [sys.executable, "-m", "ksight"]
IDLE, IOWAIT = 3, 4
NAME = "cpu-iowait"


# --- raw readings, by hand ----------------------------------------------------------------
def procs_blocked() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("procs_blocked "):
                return int(line.split()[1])
    raise AssertionError("no procs_blocked in /proc/stat")


def disk(name: str) -> tuple[int, int]:
    """(reads completed, io_ticks ms) of one device, from /proc/diskstats."""
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if p[2] == name:
                return int(p[3]), int(p[12])
    raise AssertionError(f"{name} not in /proc/diskstats")


def throttle_lines(majmin: str) -> list[str]:
    """The block-throttle rule lines naming the device: v1 root blkio files, v2 io.max of the
    groups at the top of the hierarchy (where the lab makes its group)."""
    from ksight.errors import Unavailable
    from ksight.lab.blockdev import detect_throttle

    try:
        version, mount = detect_throttle()
    except Unavailable:
        return []
    if version == 1:
        files = glob.glob(os.path.join(mount, "blkio.throttle.*_device"))
    else:
        files = glob.glob(os.path.join(mount, "*", "io.max"))
    out = []
    for fn in files:
        try:
            with open(fn) as f:
                out += [f"{fn}: {ln}" for ln in f.read().splitlines()
                        if ln.split()[:1] == [majmin] and (version == 1 or re.search(r"=\d", ln))]
        except OSError:
            pass
    return out


def ours_left(pid: int | None = None) -> list[str]:
    """lab.leftovers() of a run, without the sysctl journal: other lab runs on this shared
    machine may hold one (the journal is machine-wide, not a run's)."""
    from ksight.lab import leftovers

    return [x for x in leftovers(pid) if not x.startswith("sysctl journal")]


def majmin(dev: str) -> str:
    with open(f"/sys/block/{os.path.basename(dev)}/dev") as f:
        return f.read().strip()


class Sampler:
    """/proc/stat every 0.25 s in a thread, while the block runs: what the CPUs really did."""

    def __init__(self):
        self.readings: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.readings.append((time.monotonic(), cpu_lines()))
            self._stop.wait(0.25)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)

    def seconds(self) -> list[tuple[dict, dict]]:
        """Pairs of readings ~1 s apart, not overlapping."""
        out, i = [], 0
        r = self.readings
        while i < len(r):
            j = next((k for k in range(i + 1, len(r)) if r[k][0] - r[i][0] >= 0.95), None)
            if j is None:
                break
            out.append((r[i][1], r[j][1]))
            i = j
        return out

    def free(self, keys: list[str]) -> list[float]:
        """Per second: the most idle + iowait share of the given CPUs (the time iowait could
        take: the kernel charges it only to an idle CPU)."""
        return [max(share(a[k], b[k], IDLE) + share(a[k], b[k], IOWAIT) for k in keys)
                for a, b in self.seconds()]

    def iowait(self, keys: list[str]) -> list[float]:
        return [max(share(a[k], b[k], IOWAIT) for k in keys) for a, b in self.seconds()]


    def reachable(self, cpus: list[int]) -> list[tuple[float, float]]:
        """Per second: (all-CPU, best reader CPU) iowait % the readers could have made, i.e. the
        free (idle + iowait) time of the readers' CPUs, all-CPU as a share of every CPU."""
        out = []
        for a, b in self.seconds():
            n = sum(1 for k in b if k != "cpu")
            keys = reader_keys(cpus) if cpus != [-1] else [k for k in b if k != "cpu"]
            free = [share(a[k], b[k], IDLE) + share(a[k], b[k], IOWAIT) for k in keys]
            out.append((round(sum(free) / max(1, n), 1), round(max(free), 1)))
        return out


def reader_keys(cpus: list[int]) -> list[str]:
    return [f"cpu{c}" for c in cpus if c >= 0] or ["cpu"]


def saturated(free: list[float], floor: float) -> bool:
    """Fewer than two seconds with `floor` % of a CPU free: other programs kept the CPUs busy,
    so no iowait could be charged (not the scenario's fault; the machine is shared)."""
    return sum(1 for f in free if f >= floor) < 2


def unreachable(smp: Sampler, cpus: list[int]) -> str | None:
    """Why the rule could not fire, when other programs left the readers' CPUs too little idle
    time: it needs 20 % of all CPU time or 60 % of one CPU in iowait for two seconds, and iowait
    is idle time. None when it could have (then a missing finding is a failure)."""
    free = smp.reachable(cpus)
    if sum(1 for al, one in free if al >= 25 or one >= 70) >= 2:
        return None
    return ("the CPUs were too busy with other programs for iowait to reach the rule's "
            f"thresholds ((all-CPU, best reader CPU) free time per second {free} %)")


def start(seconds: float):
    from ksight.lab import SCENARIOS, available

    sc = SCENARIOS[NAME]
    ok, why = available(sc)
    if not ok:
        unavailable(f"{NAME}: {why}")
    return sc.running(seconds)


def run_check(*extra: str, seconds: float | None = 3.0) -> dict:
    cmd = [*KSIGHT, "check", "--json", "--area", "cpu", *extra]
    if seconds is not None:
        cmd += ["--interval", str(seconds)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1, 2, 3), p.stderr
    doc = json.loads(p.stdout)
    assert doc["exit_status"] == p.returncode
    return doc


def iowait_findings(doc: dict) -> list[dict]:
    return [f for f in doc["findings"] if f["id"] == "cpu.high-iowait"]


def evidence(f: dict, pattern: str) -> list[dict]:
    return [e for e in f["evidence"] if re.search(pattern, e["name"])]


# --- no root needed ------------------------------------------------------------------------
def test_registry_and_bounds():
    from ksight.lab import SCENARIOS
    from ksight.lab.cpu_scenarios import IowaitReaders

    sc = SCENARIOS[NAME]
    assert isinstance(sc, IowaitReaders)
    assert sc.expects == ("cpu.high-iowait",) and sc.area == "cpu"
    # one or two readers at most: iowait is charged to idle CPUs, more readers only wait
    assert 1 <= sc.readers() <= 2 and sc.readers() <= (os.cpu_count() or 1)
    assert "O_DIRECT" in sc.summary and f"{sc.riops}/s" in sc.summary


def test_io_throttle_refuses_bad_limits():
    from ksight.lab.blockdev import IoThrottle, WriteThrottle

    for bad in ({}, {"riops": 0}, {"riops": -3}, {"rbps": 1.5}):
        with pytest.raises(ValueError):
            IoThrottle("7:0", **bad)
    with pytest.raises(ValueError):
        IoThrottle("loop0", riops=10)
    with pytest.raises(ValueError):
        WriteThrottle("7:0", 0)


# --- the fault, from raw kernel text ---------------------------------------------------------
@needs_root
@pytest.mark.lab
def test_readers_wait_and_their_cpus_show_iowait():
    from ksight.lab.cpu_scenarios import IowaitReaders

    with start(6) as run:
        readers, cpus, dev, lower = (run.info["readers"], run.info["cpus"], run.info["device"],
                                     run.info["lower"])
        name, low_mm = os.path.basename(dev), majmin(lower)
        assert backing(dev) == lower                       # stacked on the lower device
        assert backing(lower).startswith("/var/tmp/ksight-lab-")
        assert throttle_lines(low_mm), "no throttle rule on the lower device"
        d0, t0 = disk(name), time.monotonic()
        states, blocked = [], []
        with Sampler() as smp:
            for _ in range(12):
                time.sleep(0.25)
                states.append([pid_state(p) for p in readers])
                blocked.append(procs_blocked())
        d1, t1 = disk(name), time.monotonic()
    dt = t1 - t0
    # the readers wait on I/O: D nearly always (each read takes ~1/riops s, its CPU work us)
    assert sum(s.count("D") for s in states) >= 0.75 * len(readers) * len(states), states
    assert max(blocked) >= len(readers), blocked        # procs_blocked counts them (and others)
    # the upper device is busy the whole time (a request always in flight), and serves about
    # what the throttle lets through (a first slice at once, then riops a second)
    assert (d1[1] - d0[1]) >= 0.6 * dt * 1000, (d0, d1, dt)
    reads_s = (d1[0] - d0[0]) / dt
    assert 0.3 * IowaitReaders.riops <= reads_s <= 2.5 * IowaitReaders.riops, reads_s
    # iowait on the readers' CPUs: most of the time they had free is iowait, not idle (the idle
    # machine: ~95 % of it); other programs may take the rest of the CPU time
    keys = reader_keys(cpus)
    free, iow = smp.free(keys), smp.iowait(keys)
    if saturated(free, 10):
        pytest.skip(f"the CPUs had no idle time to charge iowait to (free {free} %): "
                    "other programs kept them busy")
    assert sum(iow) >= 0.6 * sum(free), (iow, free)
    # everything gone: readers reaped, both loop devices detached, rule removed, dir deleted
    assert all(pid_state(p) in (None, "Z") for p in readers)
    assert backing(dev) is None and backing(lower) is None
    assert throttle_lines(low_mm) == []
    assert ours_left() == []


# --- ksight check: live, from a capture, at rest ---------------------------------------------
@needs_root
@pytest.mark.lab
def test_check_reports_high_iowait_live_and_from_a_capture(tmp_path):
    cap = str(tmp_path / "cap.tar.zst")
    with start(14) as run:
        cpus, name = run.info["cpus"], run.info["disk"]
        keys = reader_keys(cpus)
        with Sampler() as during_live:
            live = run_check()
        with Sampler() as during_capture:
            p = subprocess.run([*KSIGHT, "capture", "-o", cap, "-i", "1", "-c", "5"],
                               capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    offline = run_check("--from", cap, seconds=None)
    skipped = []
    for how, doc, smp in (("live", live, during_live), ("--from", offline, during_capture)):
        mine = iowait_findings(doc)
        if not mine:
            why = unreachable(smp, cpus)
            if why:
                skipped.append(f"{how}: {why}")
                continue
            pytest.fail(f"{how}: no cpu.high-iowait although the readers' CPUs had free time "
                        f"{smp.reachable(cpus)} % and iowait {smp.iowait(keys)} %: "
                        f"{[f['id'] for f in doc['findings']]} {doc['not_evaluated']}")
        f = mine[0]
        assert f["severity"] in ("warning", "critical") and f["actions"], (how, f)
        # which CPU: the busiest one named is one the readers were pinned to
        busiest = evidence(f, r"^%iowait on CPU \d+")
        assert busiest, (how, f["evidence"])
        cpu = int(re.search(r"CPU (\d+)", busiest[0]["name"]).group(1))
        assert cpus == [-1] or cpu in cpus, (how, cpu, cpus)
        # which device: the upper loop device, busy, and named busy in the explanation
        util = evidence(f, rf"^disk {re.escape(name)} utilisation$")
        assert util and util[0]["value"] >= 50, (how, name, f["evidence"])
        assert re.search(rf"Busy disks: [^.]*\b{re.escape(name)}\b", f["explanation"]), (how, f)
        # the blocked tasks: at least one reader, counted by the kernel (procs_blocked)
        blk = evidence(f, r"procs_blocked")
        assert blk and blk[0]["value"] >= 1, (how, f["evidence"])
    if skipped:
        pytest.skip("; ".join(skipped))


@needs_root
@pytest.mark.lab
def test_a_throttle_alone_is_iowait_with_no_busy_disk():
    """Without the upper device: readers throttled on the device they read. The kernel counts a
    request in /proc/diskstats only once the throttle lets it go, so iowait is high and no disk
    is busy; the rule says so and names the I/O limit as a cause (as a container with io.max
    shows)."""
    from ksight.lab import available
    from ksight.lab.blockdev import IoThrottle, LoopDev
    from ksight.lab.cpu_scenarios import IOWAIT_READER, IowaitReaders, quietest_cpus
    from ksight.lab.scenario import python_worker

    ok, why = available(NAME)
    if not ok:
        unavailable(f"{NAME}: {why}")
    sc = IowaitReaders()
    with LoopDev(sc.size, name="iowait-flat") as dev, \
            IoThrottle(dev.majmin, riops=sc.riops, name="iowait-flat") as th:
        cpus = quietest_cpus()[:sc.readers()] or [-1]
        for cpu in cpus:
            th.spawn(python_worker(IOWAIT_READER, dev.device, sc.size, cpu, 12))
        time.sleep(1.0)
        name = os.path.basename(dev.device)
        d0, t0 = disk(name), time.monotonic()
        with Sampler() as smp:
            doc = run_check()
        d1, t1 = disk(name), time.monotonic()
    # the raw signal: reads go at the throttle's pace, the device is (almost) never busy
    assert (d1[0] - d0[0]) / (t1 - t0) <= 2.5 * sc.riops, (d0, d1)
    assert (d1[1] - d0[1]) <= 0.1 * (t1 - t0) * 1000, (d0, d1)
    mine = iowait_findings(doc)
    if not mine:
        why = unreachable(smp, cpus)
        if why:
            pytest.skip(why)
        pytest.fail(f"no cpu.high-iowait with free time {smp.reachable(cpus)} %: {doc['findings']}")
    f = mine[0]
    assert not evidence(f, rf"^disk {re.escape(name)} utilisation$") or \
        evidence(f, rf"^disk {re.escape(name)} utilisation$")[0]["value"] < 50, f["evidence"]
    assert "No disk was busy" in f["explanation"] and "I/O limit" in f["explanation"], f


@needs_root
@pytest.mark.lab
def test_no_high_iowait_at_rest():
    """Nothing of ours runs now; other programs share the machine, so a finding must be backed
    by our own readings taken meanwhile (>= 10 % iowait in a second, on a CPU it names)."""
    from tests.e2e.test_cpu_lab import cpu_set

    assert ours_left() == []
    with Sampler() as smp:
        doc = run_check()
    assert doc["rules_run"] >= 1, doc["not_evaluated"]
    for f in iowait_findings(doc):
        cpus = cpu_set((f.get("subject") or {}).get("cpu"))
        best = max(smp.iowait(["cpu"] if cpus is None else [f"cpu{c}" for c in cpus]), default=0.0)
        assert best >= 10.0, (f, best)


# --- kill -9 of the lab, then `ksight lab cleanup` -----------------------------------------
@needs_root
@pytest.mark.lab
def test_kill_9_then_lab_cleanup_removes_devices_and_rule():
    from ksight.lab import available

    ok, why = available(NAME)
    if not ok:
        unavailable(f"{NAME}: {why}")
    p = subprocess.Popen([*KSIGHT, "lab", "run", NAME, "--seconds", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loops: list[str] = []
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert p.poll() is None, "the lab run ended by itself"
            loops = [x.split()[2] for x in ours_left(p.pid) if x.startswith("loop device ")]
            if len(loops) == 2:
                break
            time.sleep(0.2)
        assert len(loops) == 2, ours_left(p.pid)
        time.sleep(1.5)  # the readers are running
        upper = next(d for d in loops if (backing(d) or "").startswith("/dev/loop"))
        lower = backing(upper)
        low_mm = majmin(lower)
        assert throttle_lines(low_mm)
        readers = [int(x) for x in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                                  text=True).stdout.split()]
        assert readers
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # the readers die with the lab (PR_SET_PDEATHSIG; a read in flight ends within 1/riops s)
    end = time.monotonic() + 10
    while time.monotonic() < end and any(pid_state(r) not in (None, "Z") for r in readers):
        time.sleep(0.1)
    assert all(pid_state(r) in (None, "Z") for r in readers)
    # the killed run could not clean up: both devices and the rule are still there
    left = ours_left(p.pid)
    assert sum(x.startswith("loop device ") for x in left) == 2, left
    r = subprocess.run([*KSIGHT, "lab", "cleanup"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert ours_left(p.pid) == [], (ours_left(p.pid), r.stdout)
    assert backing(upper) is None and backing(lower) is None, r.stdout
    assert throttle_lines(low_mm) == [], r.stdout
