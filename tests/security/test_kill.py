"""Kill test (issue 8): SIGKILL every long-running command at random moments, then run ONE
later ksight command, and check that nothing the killed run made is left.

Commands: capture, check, trace with each backend (tracefs, bpftrace), trace profile (perf),
lab run of each scenario. Moments are drawn from a seeded RNG (KSIGHT_KILL_SEED, default 8;
KSIGHT_KILL_MOMENTS per command, default 2) so a failure can be replayed. The later command
is `ksight cleanup` for some kills and `ksight check --interval 0.5 --step 0.5` for others
(every command must clean what a dead run recorded, not just `cleanup`).

Checked after each kill, for the killed PID: no tracefs instance `ksight-<pid>-*`; no event
left enabled in the global instance (compared with before); no tracefs mount if there was none
before and no live ksight uses one; none of the processes it recorded (perf, bpftrace, sleep,
by PID and start time) still running; no `ksight-lab-<pid>-*` cgroup, `ksl<pid>a/b` netns,
loop device or swap file backed by its work directory, work directory; sysctls as before.
Root only; missing tools skip naming the tool (fail in CI, see tests/conftest.need_tool).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest

from tests.conftest import IS_ROOT, need_tool

pytestmark = [pytest.mark.skipif(not IS_ROOT, reason="needs root: kills runs that trace, mount "
                                 "tracefs and make cgroups, loop devices and swap files"),
              pytest.mark.root]

KSIGHT = [sys.executable, "-m", "ksight"]
SEED = int(os.environ.get("KSIGHT_KILL_SEED", "8"))
MOMENTS = int(os.environ.get("KSIGHT_KILL_MOMENTS", "2"))
SYSCTLS = ("vm.dirty_bytes", "vm.dirty_background_bytes", "vm.dirty_ratio",
           "vm.dirty_background_ratio", "vm.swappiness", "vm.drop_caches")
STATE = "/run/ksight"
TRACEFS = "/sys/kernel/tracing"


def _sysctls() -> dict:
    out = {}
    for n in SYSCTLS:
        try:
            with open("/proc/sys/" + n.replace(".", "/")) as f:
                out[n] = f.read().strip()
        except OSError:
            pass
    out.pop("vm.drop_caches", None)   # write-only trigger
    return out


def _tracefs_mounted() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split(" - ")
            if len(parts) == 2 and parts[1].split()[0] == "tracefs":
                return parts[0].split()[4]
    return None


def _global_events(mnt: str | None) -> str:
    if not mnt:
        return ""
    with open(os.path.join(mnt, "set_event")) as f:
        return f.read()


def _recorded(pid: int) -> list[dict]:
    """The entries the run `pid` recorded in /run/ksight (read just before it is killed)."""
    out = []
    try:
        names = os.listdir(STATE)
    except OSError:
        return out
    for n in names:
        if n.startswith(f"{pid}-") and n.endswith(".json"):
            try:
                with open(os.path.join(STATE, n)) as f:
                    out += json.load(f).get("entries", [])
            except (OSError, ValueError):
                pass
    return out


def _live_other_records(pid: int) -> bool:
    try:
        return any(not n.startswith(f"{pid}-") for n in os.listdir(STATE) if n.endswith(".json"))
    except OSError:
        return False


def _still_running(proc: dict) -> bool:
    from ksight import pids

    here, _ = pids.locate(pids.Proc.of(proc))
    return here is not None and not pids.is_zombie(here)


def _leftovers(pid: int, entries: list[dict], before: dict) -> list[str]:
    from ksight.lab import cgroup, leftovers, netns

    left = []
    mnt = _tracefs_mounted()
    if mnt:
        try:
            left += [f"instance {n}" for n in os.listdir(os.path.join(mnt, "instances"))
                     if n.startswith(f"ksight-{pid}-")]
        except OSError:
            pass
        if _global_events(mnt) != before["events"]:
            left.append(f"global events changed: {_global_events(mnt)!r}")
    if mnt and not before["mnt"] and not _live_other_records(pid):
        left.append(f"tracefs still mounted at {mnt}")
    for e in entries:
        if e.get("kind") == "child":
            # SIGKILL (PR_SET_PDEATHSIG, or the clean-up's) is delivered at once, but a process
            # releasing BPF programs may take a moment to finish exiting: allow 10 s
            end = time.monotonic() + 10
            while _still_running(e["proc"]) and time.monotonic() < end:
                time.sleep(0.05)
            if _still_running(e["proc"]):
                left.append(f"{e.get('what')} child {e['proc']} still running")
    left += [x for x in leftovers(pid) if not x.startswith("sysctl journal")]
    left += [f"cgroup {p}" for p in cgroup.list_lab_groups()
             if os.path.basename(p).startswith(f"ksight-lab-{pid}-")]
    left += [f"netns {n}" for n in netns.list_namespaces() if n in (f"ksl{pid}a", f"ksl{pid}b")]
    now = _sysctls()
    for n, v in before["sysctls"].items():
        if now.get(n) != v:
            left.append(f"sysctl {n} = {now.get(n)} (was {v})")
    if os.path.exists("/run/ksight-lab-sysctl.json"):
        left.append("sysctl journal left")
    return sorted(set(left))


def _kill_at(argv: list[str], at: float) -> tuple[int, list[dict]]:
    p = subprocess.Popen(KSIGHT + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    entries: list[dict] = []
    end = time.monotonic() + at
    while time.monotonic() < end and p.poll() is None:
        entries = _recorded(p.pid) or entries
        time.sleep(0.02)
    entries = _recorded(p.pid) or entries
    p.kill()
    p.wait(timeout=30)
    return p.pid, entries


def _later(n: int) -> list[str]:
    # alternate: the thorough `ksight cleanup`, and a plain `check` (the hook every command runs)
    return ["cleanup"] if n % 2 == 0 else ["check", "--interval", "0.5", "--step", "0.5"]


def _run_case(argv: list[str], lo: float, hi: float, rng: random.Random, n: int) -> None:
    before = {"sysctls": _sysctls(), "mnt": _tracefs_mounted()}
    before["events"] = _global_events(before["mnt"])
    at = rng.uniform(lo, hi)
    pid, entries = _kill_at(argv, at)
    later = _later(n)
    r = subprocess.run(KSIGHT + later, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    left = _leftovers(pid, entries, before)
    assert not left, (f"`ksight {' '.join(argv)}` killed after {at:.2f} s (seed {SEED}), then "
                      f"`ksight {' '.join(later)}` left: {left}\n{r.stdout}\n{r.stderr}")


CASES = [
    ("capture", lambda d: ["capture", "-o", os.path.join(d, "cap"), "--interval", "5"], 0.2, 1.5),
    ("check", lambda d: ["check", "--interval", "5"], 0.2, 1.5),
    ("trace-tracefs", lambda d: ["trace", "softirq", "--backend", "tracefs", "--seconds", "30"],
     0.2, 2.0),
    ("trace-bpftrace", lambda d: ["trace", "softirq", "--backend", "bpftrace", "--seconds", "30"],
     0.3, 3.0),
    ("profile", lambda d: ["trace", "profile", "--seconds", "30"], 0.2, 2.5),
]


@pytest.mark.parametrize("name,make,lo,hi", CASES, ids=[c[0] for c in CASES])
def test_kill_command(name, make, lo, hi, tmp_path):
    if name == "trace-bpftrace":
        need_tool("bpftrace", "the bpftrace backend")
    if name == "profile":
        need_tool("perf", "trace profile samples with perf")
    rng = random.Random(f"{SEED}-{name}")
    for n in range(MOMENTS + 1):
        _run_case(make(str(tmp_path / str(n))), lo, hi, rng, n)


def _scenarios():
    from ksight.lab import SCENARIOS

    return list(SCENARIOS)


@pytest.mark.parametrize("scenario", _scenarios())
def test_kill_lab_run(scenario):
    from ksight.lab import SCENARIOS, available

    ok, why = available(SCENARIOS[scenario])
    if not ok:
        pytest.skip(f"lab scenario {scenario} cannot run here: {why}")
    rng = random.Random(f"{SEED}-{scenario}")
    for n in range(MOMENTS):
        _run_case(["lab", "run", scenario, "--seconds", "20", "-q"], 0.3, 3.0, rng,
                  n + len(scenario))
