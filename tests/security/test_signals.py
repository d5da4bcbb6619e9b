"""A storm of Ctrl-Cs during a lab run, and two lab runs at once (issue 8, points 7 and 11).

Forty SIGINTs 10 ms apart used to leave the loop device and the work directory of
`lab run dirty-backlog` (and the cgroup of `swap-io`) while printing "Stopped; cleaned up.".
A second concurrent `lab run` waited for the sysctl lock while its deadline ran, so its fault
existed for under 0.5 s although it reported "Done after 6.0 s". Root only (the lab acts on the
running kernel); every subprocess has a timeout and is ended by PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import IS_ROOT

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not IS_ROOT, reason="the fault lab needs root (it creates cgroups, "
                                                     "loop devices and swap files)")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "ksight", "lab", "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _wait_for_fault(p: subprocess.Popen, timeout: float = 30.0) -> list[str]:
    """Lines up to the first progress line (the fault exists), within the timeout."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.match(r"\s*\d+\.\ds\s", line):
            return lines
    p.kill()
    pytest.fail("the scenario never reported its fault: " + "".join(lines)[-2000:])


def _available(name: str) -> None:
    from ksight.lab import available
    from tests.conftest import unavailable

    ok, why = available(name)
    if not ok:
        unavailable(f"lab scenario {name}: {why}")


@pytest.mark.parametrize("scenario", ["dirty-backlog", "swap-io"])
def test_forty_ctrl_cs_leave_nothing_and_never_claim_a_cleanup_that_did_not_happen(scenario):
    from ksight.lab import leftovers

    _available(scenario)
    p = _start(scenario, "--seconds", "20")
    try:
        _wait_for_fault(p)
        for _ in range(40):
            try:
                os.kill(p.pid, signal.SIGINT)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        out, _ = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
    left = leftovers(p.pid)
    assert "Traceback" not in out, out[-3000:]
    assert left == [], (left, out[-3000:])
    if "cleaned up" in out.lower():
        # (a SIGINT of the storm that lands after the clean-up may still end it: -SIGINT)
        assert p.returncode in (0, 130, -signal.SIGINT), out[-2000:]


def test_a_second_lab_run_waits_for_the_first_and_reports_its_real_fault_time():
    # dirty-backlog changes vm.dirty_*: a second run must wait for the first's sysctl lock
    _available("dirty-backlog")
    a = _start("dirty-backlog", "--seconds", "4")
    try:
        _wait_for_fault(a)
        b = _start("dirty-backlog", "--seconds", "2")
        out_b, _ = b.communicate(timeout=90)
        out_a, _ = a.communicate(timeout=90)
    finally:
        for p in (a, locals().get("b")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert a.returncode == 0 and b.returncode == 0, (out_a[-1500:], out_b[-1500:])
    # the second one either said it waited, or it refused; if it ran, its fault lasted what
    # was asked (the clock starts once its fault exists, not while it waits for the lock)
    assert "wait" in out_b.lower(), out_b[-2000:]
    m = re.search(r"the fault ran ([\d.]+) s", out_b)
    ticks = [ln for ln in out_b.splitlines() if re.match(r"\s*\d+\.\ds\s", ln)]
    assert m and float(m.group(1)) >= 1.5 and len(ticks) >= 1, out_b[-2000:]
    w = re.search(r"after waiting ([\d.]+) s for another lab run", out_b)
    assert w and float(w.group(1)) >= 0.5, out_b[-2000:]
