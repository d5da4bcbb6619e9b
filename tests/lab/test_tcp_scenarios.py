"""The TCP lab scenarios: registered with their rules, and everything they make is gone afterwards
(namespaces, load processes, the lowered tcp_mem), also after a kill -9 of the lab (PDEATHSIG
takes the load, `ksight lab cleanup` the namespaces and the sysctl). Whether each one really
makes its fault is tests/e2e/test_tcp_lab.py's job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import needs_root, unavailable

KSIGHT = [sys.executable, "-m", "ksight"]
CONTRACT = {
    "tcp-lossy-link": ("tcp.retransmission-rate",),
    "tcp-listen-overflow": ("tcp.listen-overflow",),
    "tcp-close-wait": ("tcp.close-wait-leak",),
    "tcp-time-wait-storm": ("tcp.time-wait-pressure",),
    "tcp-memory-pressure": ("tcp.memory-pressure",),
    "net-tx-drops": ("net.tx-drops",),
    "tcp-syn-flood": ("tcp.syn-flood",),
    "tcp-fin-wait2": ("tcp.fin-wait2",),
    "tcp-buffer-pinned": ("tcp.buffer-config",),
    "net-softnet-squeeze": ("net.softnet-squeeze",),
    "net-softnet-budget": ("net.softnet-squeeze",),
}
# where each scenario's load runs (its namespace a or b), for the kill -9 test
LOAD_NS = {"net-tx-drops": "a", "net-softnet-squeeze": "a", "net-softnet-budget": "a",
           "tcp-syn-flood": "a",
           "tcp-fin-wait2": "b", "tcp-buffer-pinned": "a", "tcp-memory-pressure": "b"}


def test_registered_with_their_rules():
    from ksight.lab import SCENARIOS

    for name, rules in CONTRACT.items():
        sc = SCENARIOS[name]
        assert sc.area == name.split("-")[0] and sc.expects == rules, name
        assert sc.bounds and sc.summary and sc.default_seconds <= 30


def test_lab_list_shows_them():
    r = subprocess.run([*KSIGHT, "lab", "list"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for name, rules in CONTRACT.items():
        line = next(x for x in r.stdout.splitlines() if x.startswith(name))
        assert rules[0] in line


def _tcp_mem() -> str:
    with open("/proc/sys/net/ipv4/tcp_mem") as f:
        return f.read().strip()


def _budget() -> str:
    with open("/proc/sys/net/core/netdev_budget") as f:
        return f.read().strip()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@needs_root
@pytest.mark.lab
@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_everything_is_undone(name):
    from ksight.lab import SCENARIOS, available, leftovers
    from ksight.lab.netns import list_namespaces

    sc = SCENARIOS[name]
    ok, why = available(sc)
    if not ok:
        unavailable(f"{name}: {why}")
    before = _tcp_mem()
    budget = _budget()
    with sc.running(1) as run:
        pair = run.info["pair"]
        ns = (pair.a, pair.b)
        assert set(ns) <= set(list_namespaces())
        pids = tuple(p.pid for p in run.procs)
        assert pids
        dev = run.info.get("interface")
        if dev:   # inside the lab namespace, not in ours
            assert subprocess.run(["ip", "-n", run.info["ns"], "link", "show", dev],
                                  capture_output=True).returncode == 0
            assert not os.path.exists(f"/sys/class/net/{dev}")
        assert all(_alive(p) for p in pids), run.evidence()
        if name == "tcp-memory-pressure":
            low, pressure, mx = run.info["tcp_mem"]
            assert _tcp_mem().split() == [str(low), str(pressure), str(mx)]
            assert before.split()[2] == str(mx)     # the maximum is never lowered
        if name == "net-softnet-budget":
            assert _budget() == "16" and run.info["netdev_budget_old"] == int(budget)
        line = run.evidence()
        assert "unavailable" not in line, line
    assert not set(ns) & set(list_namespaces())
    assert not any(_alive(p) for p in pids)
    assert _tcp_mem() == before and _budget() == budget
    left = leftovers(os.getpid(), {"net.ipv4.tcp_mem": before, "net.core.netdev_budget": budget})
    assert [x for x in left if not x.startswith("sysctl journal") or _journal_pid() == os.getpid()] == []


def _journal_pid():
    """Whose the lab's sysctl journal is (another lab run on this machine may hold one now)."""
    import json

    from ksight.lab.sysctl import JOURNAL_PATH

    try:
        with open(JOURNAL_PATH) as f:
            return json.load(f).get("pid")
    except (OSError, ValueError):
        return None


@needs_root
@pytest.mark.lab
@pytest.mark.parametrize("name", sorted(LOAD_NS))
def test_kill_9_leaves_nothing_after_cleanup(name):
    from ksight.lab import available
    from ksight.lab.netns import list_namespaces

    ok, why = available(name)
    if not ok:
        unavailable(f"{name}: {why}")
    before = _tcp_mem()
    budget = _budget()
    p = subprocess.Popen([*KSIGHT, "lab", "run", name, "--seconds", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mine = {f"ksl{p.pid}a", f"ksl{p.pid}b"}
    load_ns = f"ksl{p.pid}{LOAD_NS[name]}"

    def up() -> bool:
        if name == "net-softnet-budget":
            return mine <= set(list_namespaces()) and _budget() != budget
        if name != "tcp-memory-pressure":
            return mine <= set(list_namespaces())
        return mine <= set(list_namespaces()) and _tcp_mem() != before

    try:
        end = time.monotonic() + 200     # another lab run may hold the sysctl lock first
        while time.monotonic() < end and not up():
            assert p.poll() is None, "the lab run ended by itself"
            time.sleep(0.2)
        assert up()
        time.sleep(2.0)                  # the load is running (started after the namespaces)
        loads = [int(x) for x in subprocess.run(["ip", "netns", "pids", load_ns],
                                                capture_output=True, text=True).stdout.split()]
        assert loads
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    time.sleep(0.5)
    assert not any(_alive(x) for x in loads)          # PR_SET_PDEATHSIG
    r = subprocess.run([*KSIGHT, "lab", "cleanup"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not mine & set(list_namespaces()), r.stdout
    assert _tcp_mem() == before and _budget() == budget, r.stdout


@needs_root
@pytest.mark.lab
def test_sigterm_during_a_run_cleans_up():
    """`ksight lab run` stopped by SIGTERM (as by Ctrl-C): tcp_mem back, namespaces and load gone."""
    from ksight.lab import available
    from ksight.lab.netns import list_namespaces

    ok, why = available("tcp-memory-pressure")
    if not ok:
        unavailable(f"tcp-memory-pressure: {why}")
    before = _tcp_mem()
    p = subprocess.Popen([*KSIGHT, "lab", "run", "tcp-memory-pressure", "--seconds", "30"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("Reproducing tcp memory pressure for 30 s")
        lines = [p.stdout.readline() for _ in range(3)]   # bounds, the hint, one evidence line
        assert "TCPMemoryPressures" in lines[2], lines
        assert _tcp_mem() != before
        loads = [int(x) for x in subprocess.run(["ip", "netns", "pids", f"ksl{p.pid}b"],
                                                capture_output=True, text=True).stdout.split()]
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and "cleaned up" in out, out
    assert _tcp_mem() == before
    assert not {f"ksl{p.pid}a", f"ksl{p.pid}b"} & set(list_namespaces())
    assert loads and not any(_alive(x) for x in loads)
